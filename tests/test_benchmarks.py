"""Every benchmark runs in its tiny mode and prints one JSON object, so none of them rots.

The timings themselves are not checked here: benchmarks check speed, tests check behaviour.
"""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args",
    [
        ("train_overhead.py", ["--tiny"]),
        ("cpu_defaults.py", ["--tiny"]),
        ("eval_throughput.py", ["--tiny"]),
        ("corruptions.py", ["--tiny"]),
        ("data.py", ["--tiny"]),
        ("demo.py", ["--tiny"]),
        ("demo.py", ["--tiny", "--config", "config/laptop.yaml"]),
        ("search.py", ["--tiny"]),
        ("workflow_dag.py", ["--repeats", "1"]),
        ("backbone_estimates.py", ["convnext_atto", "vit_small_patch16"]),
    ],
)
def test_benchmark_tiny_mode_prints_json(script, args):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["benchmark"] == script.removesuffix(".py") and "machine" in report


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="bench/gpu.py needs a CUDA GPU")
def test_gpu_benchmark_tiny_mode_prints_json(tmp_path):
    command = [sys.executable, str(BENCH / "gpu.py"), str(tmp_path), "--tiny", "--only", "graphs", "hours", "match"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["benchmark"] == "gpu"


ARCHIVED_PER_CHILD = [("logs", "log"), ("results", "json"), ("specs", "json")]
GPU_CHECK_CHILDREN = [
    "workflow",
    "match-resnet50",
    "match-efficientnet_lite0",
    "resume",
    "loop-mobilenetv2_035",
    "cell",
]


def gpu_check(out: Path, *args) -> dict:
    command = [sys.executable, str(BENCH / "gpu_check.py"), str(out), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["benchmark"] == "gpu_check" and json.loads((out / "report.json").read_text()) == report | {
        "wall_s": pytest.approx(report["wall_s"], abs=1.0)
    }
    return report


@pytest.mark.slow
def test_the_gpu_check_dry_run_logs_every_child_and_reports_what_each_measured(tmp_path):
    """The GPU check's path on the CPU: every child runs in its own process, logs to its own file, and reports."""
    children = gpu_check(tmp_path, "--tiny")["children"]
    assert list(children) == GPU_CHECK_CHILDREN
    for name, record in children.items():
        assert record["rc"] == 0, record.get("log_tail")
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0
    # The workflow runs beside the match part (neither is timed); each timed child starts once both have ended
    # (0.2 s: the report's times are rounded to 0.1 s).
    ended = {name: record["started_s"] + record["wall_s"] - 0.2 for name, record in children.items()}
    assert children["match-resnet50"]["started_s"] < ended["workflow"]
    assert children["loop-mobilenetv2_035"]["started_s"] >= max(ended["workflow"], ended["resume"])
    assert children["cell"]["started_s"] >= ended["loop-mobilenetv2_035"]
    assert set(children["match-resnet50"]["result"]) >= {"graphed_vs_eager_max_rel", "eager_vs_eager_max_rel"}
    assert {"workers0_eager", "workers2_graphed"} <= set(children["loop-mobilenetv2_035"]["result"])
    stopped = children["resume"]["result"]  # SIGTERM'd after its snapshot at 3 of 12 iterations, then rerun
    assert stopped["rc_on_sigterm"] == 143 and 3 <= stopped["stopped_at"] < 12 and stopped["log_complete"]
    assert stopped["resumed_vs_unbroken_max_rel"] == stopped["unbroken_vs_unbroken_max_rel"] == 0.0  # CPU: bitwise
    assert stopped["within"]
    assert children["workflow"]["result"]["dry_run"] and set(children["cell"]["result"]["pck"]) == {
        "train",
        "test_within",
        "test_ood",
    }


@pytest.mark.slow
def test_the_fused_measurement_dry_run_reports_each_k_and_the_study_projection(tmp_path):
    """Fused training's GPU measurement (issue: fused cells) on the CPU: its own command, one child per backbone;
    the vmap engine beside it steps each frozen-BN cell as its own step would (within float rounding)."""
    report = gpu_check(tmp_path / "check", "--tiny", "--only", "fused", "engines", "--archive", tmp_path / "a.tgz")
    assert list(report["children"]) == ["fused-mobilenetv2_035", "engines-efficientnet_lite0", "workflow-fused"]
    assert report["children"]["workflow-fused"]["result"]["dry_run"]  # its full run is the slurm test's, on the CPU
    with tarfile.open(tmp_path / "a.tgz") as archive:  # what a machine whose files come back few at a time returns
        archived = json.load(archive.extractfile("report.json"))
        assert archived == report | {"wall_s": pytest.approx(report["wall_s"], abs=1.0)}
        names = {f"{part}/{child}.{kind}" for child in report["children"] for part, kind in ARCHIVED_PER_CHILD}
        assert set(archive.getnames()) == names | {"report.json"}  # not the training runs beside the results
    engines = report["children"]["engines-efficientnet_lite0"]["result"]
    assert engines["vmap_max_rel_grad"] < 1e-4 and engines["streams_2"] > 0 and engines["vmap_2"] > 0
    result = report["children"]["fused-mobilenetv2_035"]["result"]
    memory, unchanged = result.pop("memory"), result.pop("unchanged")
    settings = {"eager_1", "fused_1", "fused_2", "fused_1_again"}
    assert set(result) == settings | {"best_gain"} and all(v > 0 for v in result.values())
    assert set(memory) == settings and all(m["host_rss_gib"] > 0.1 for m in memory.values())
    assert unchanged == {  # on the CPU a cell's arithmetic is the same fused or alone, to the bit
        "alone_vs_alone_max_rel": 0.0,
        "fused_vs_alone_max_rel": {"fused_2": 0.0},
        "logged": 8,
        "within": True,
    }
    study = report["fused_paper_study"]
    assert study["table_eager_gpu_hours"] == pytest.approx(282.03)
    assert study["fused_gpu_hours"] < study["table_eager_gpu_hours"] or result["best_gain"] <= 1


def test_the_gpu_check_starts_no_child_past_its_budget(tmp_path):
    """A cut budget leaves a report that names every child it did not start, rather than a run cut mid-child."""
    children = gpu_check(tmp_path, "--tiny", "--budget-s", "0")["children"]
    assert list(children) == GPU_CHECK_CHILDREN and all("budget" in c["skipped"] for c in children.values())
    assert not list((tmp_path / "logs").iterdir())


def test_demo_verdict_is_plain_json():
    """A run within its time target compared numpy PCKs and crashed on printing them (numpy bool)."""
    sys.path.insert(0, str(BENCH))
    import numpy as np
    from demo import verdict

    cells = {"lite0/imagenet/1": {"within": np.float64(0.6), "ood": np.float64(0.1)}}
    assert json.loads(json.dumps(verdict(800.0, cells, 900, 0.5)))["meets_target"] is True
    cells["lite0/imagenet/2"] = {"within": np.float64(0.4), "ood": np.float64(0.1)}
    assert json.loads(json.dumps(verdict(800.0, cells, 900, 0.5)))["meets_target"] is False


def test_publish_writes_a_results_page_with_the_figures_and_the_run_that_made_them(tmp_path):
    """A run's figures, findings and report are copied together, and its results page is written from them."""
    sys.path.insert(0, str(BENCH))
    from common import publish_run
    from demo import PUBLISHED, SUMMARY, results_page

    summary = tmp_path / "run" / SUMMARY
    for name in PUBLISHED:
        (summary / name).parent.mkdir(parents=True, exist_ok=True)
        (summary / name).write_text(f"content of {name}")
    (summary / "findings.md").write_text("# Findings\n\n## synthetic, 50 % training data\n\n| (a) | **supported** |\n")
    cells = {"lite0/imagenet/1": {"within": 0.75, "ood": 0.2}, "lite0/scratch/2": {"within": 0.5, "ood": 0.01}}
    report = {
        "config": "config/laptop.yaml",
        "command": "python bench/demo.py --config config/laptop.yaml",
        "commit": "abc1234",
        "machine": {"cores": 2, "cpu": "x86_64", "torch": "2.14.1"},
        "date": "2026-12-02",
        "wall_s": 6000.0,
        "final_pck": cells,
        "lowest_pretrained_within_pck": 0.75,
    }
    publish_run([summary / name for name in PUBLISHED], report, tmp_path / "results" / "laptop", results_page)
    folder = tmp_path / "results" / "laptop"
    assert (folder / "figure5b.png").read_text() == "content of figures/figure5b.png"
    assert json.loads((folder / "run.json").read_text())["commit"] == "abc1234"
    assert sorted(p.name for p in folder.iterdir()) == [*sorted(Path(n).name for n in PUBLISHED), "run.json"]
    page = (tmp_path / "results" / "laptop.md").read_text()
    assert "`python bench/demo.py --config config/laptop.yaml` at commit `abc1234`" in page and "2026-12-02" in page
    assert "| lite0, pretrained | 0.750 / 0.200 | – |" in page and "| lite0, scratch | – | 0.500 / 0.010 |" in page
    assert "**met**" in page  # 6000 s and 0.75 against the laptop study's 7200 s and 0.7
    assert "![Figure 5B" in page and "(laptop/figure5b.png)" in page
    assert "\n## Findings\n" in page and "\n### synthetic, 50 % training data\n" in page


def test_publish_refuses_a_dry_run():
    """A dry run has no figures: asking it to publish is refused by name, before anything runs or is written."""
    command = [sys.executable, str(BENCH / "demo.py"), "--tiny", "--publish", "docs/nowhere"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--publish docs/nowhere" in result.stderr and result.stdout == ""
    assert not (BENCH.parent / "docs" / "nowhere").exists()


def test_the_search_page_shows_its_choices_and_heatmaps(tmp_path):
    sys.path.insert(0, str(BENCH))
    from common import publish_run
    from search import results_page

    heatmap = tmp_path / "efficientnet_lite0_imagenet.png"
    heatmap.write_text("png")
    chosen = {"backbone": "efficientnet_lite0", "schedule": "ilr0.0005_final0.0_cycles1", "score": 0.41234}
    chosen |= {"distinguishable": False, "table_rank": None}
    report = {"command": "python bench/search.py", "commit": "abc1234", "date": "2026-12-03", "wall_s": 2000.0}
    report |= {"target_s": 2700, "meets_target": True, "chosen": [chosen]}
    report["machine"] = {"cores": 2, "cpu": "x86_64", "torch": "2.14.1"}
    publish_run([heatmap], report, tmp_path / "search-laptop", results_page)
    page = (tmp_path / "search-laptop.md").read_text()
    assert "`python bench/search.py` at commit `abc1234`" in page and "**met**" in page
    assert "| efficientnet_lite0 | ilr0.0005_final0.0_cycles1 | 0.412 | False | – |" in page
    assert "(search-laptop/efficientnet_lite0_imagenet.png)" in page


def test_the_gpu_check_archive_holds_the_workflows_rule_logs_and_no_training_runs(tmp_path):
    sys.path.insert(0, str(BENCH))
    from gpu_check import write_report

    kept = ["logs/workflow.log", "results/workflow.json", "results/workflow/results/logs/synthetic/a/train.log"]
    for name in [*kept, "results/runs-cell/model.pt", "results/workflow/results/synthetic/cache/images.npy"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    write_report(tmp_path, {"children": {}}, tmp_path / "check.tgz")
    with tarfile.open(tmp_path / "check.tgz") as archive:
        assert sorted(archive.getnames()) == sorted([*kept, "report.json"])


def test_the_full_gpu_check_needs_no_download(tmp_path):
    """A GPU machine reaches no hub: every pretrained network the full check trains must install its weights from a
    package (the loop part's pretrained EfficientNet-B3 needed the Hugging Face hub)."""
    sys.path.insert(0, str(BENCH))
    from gpu_check import PARTS, plan

    from oodpose.backbones import get_backbone

    children = plan(tmp_path, tmp_path / "cache", tiny=False)
    assert {part for part, *_ in children} == set(PARTS)
    pretrained = {a["backbone"] for _, _, a, _ in children if a.get("init") == "imagenet"} | {"efficientnet_lite0"}
    assert {b: get_backbone(b).source.kind for b in pretrained} == dict.fromkeys(pretrained, "pypi")


def loop_result(eager: list[float], graphed: list[float], bare: float) -> dict:
    """A gpu_check loop child's result: seconds per iteration at workers 0, 2, 4 and 8, and of the bare step."""
    return {"bare_graphed_step_s": bare} | {
        f"workers{n}_{mode}": {"loop_s": s}
        for mode, seconds in (("eager", eager), ("graphed", graphed))
        for n, s in zip((0, 2, 4, 8), seconds, strict=True)
    }


def check_report(graphed_vs_eager: float, resumed: bool = True) -> dict:
    match = {"graphed_vs_eager_max_rel": {"200": graphed_vs_eager}, "eager_vs_eager_max_rel": {"200": 2e-4}}
    return {
        "machine": {"gpu": "a GPU"},
        "device": "cuda",
        "children": {
            "match-resnet50": {"result": match},
            "resume": {"result": {"rc_on_sigterm": 143 if resumed else 1, "within": resumed}},
            # the fastest at 8 workers, which a job of 8 CPUs does not start (one CPU drives the GPU)
            "loop-mobilenetv2_035": {
                "result": loop_result([0.02, 0.01, 0.008, 0.001], [0.01, 0.005, 0.004, 0.001], 0.004)
            },
            "loop-resnet50": {"result": loop_result([0.03, 0.02, 0.02, 0.001], [0.01, 0.006, 0.004, 0.001], 0.003)},
            "loop-efficientnet_b3": {
                "result": loop_result([0.06, 0.05, 0.04, 0.001], [0.02, 0.01, 0.01, 0.001], 0.0095)
            },
            "cell": {"result": {"minutes_per_1k_iterations": 0.1, "median_iteration_s": 0.005}},  # overhead 1.2
        },
    }


@pytest.mark.parametrize(
    "graphed_vs_eager, resumed, mode", [(5e-4, True, "graphed"), (3e-3, True, "eager"), (5e-4, False, "eager")]
)
def test_gpu_minutes_come_from_the_real_loop_and_scale_the_unmeasured_rows(tmp_path, graphed_vs_eager, resumed, mode):
    """Graphed by default only where graphed losses match eager ones and a graphed job stopped by SIGTERM resumes."""
    from oodpose.backbones import DEFAULT_TABLE, load_backbones

    (tmp_path / "report.json").write_text(json.dumps(check_report(graphed_vs_eager, resumed)))
    table = tmp_path / "backbones.tsv"
    table.write_text(DEFAULT_TABLE.read_text())
    command = [sys.executable, str(BENCH / "gpu_minutes.py"), str(tmp_path / "report.json"), "--table", str(table)]
    result = subprocess.run([*command, "--write"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["mode"] == mode and report["overhead"] == pytest.approx(1.2)
    assert report["probes"]["mobilenetv2_035"] == pytest.approx(
        {"eager": 0.008 * 20, "workers_eager": 4, "graphed": 0.004 * 20, "workers_graphed": 4}
        | {"loader_ratio": 1.0, "loader_keeps_up": True}
    )
    assert not report["probes"]["resnet50"]["loader_keeps_up"]  # 0.004 s a graphed loop step, 0.003 s bare
    rows, before = report["minutes_per_1k_iter"], load_backbones(DEFAULT_TABLE)
    assert rows["mobilenetv2_050"]["graphed"] == pytest.approx(0.5 * 0.08 / 0.42)  # the table's ratio within a family
    assert rows["resnet101"]["eager"] == pytest.approx(0.87 * 0.4 / 0.5)
    assert rows["efficientnet_lite0"]["graphed"] == 0.1  # the cell's own, not scaled
    assert rows["convnext_atto"]["graphed"] == pytest.approx(0.08)  # scaled by ResNet-50's, floored at MobileNetV2's
    hours = report["paper_study_gpu_hours"]
    assert hours["table"] == pytest.approx(282.03) and hours["graphed_real_loop"] < hours["eager_real_loop"]
    after = load_backbones(table)
    assert all(after[n].gpu_minutes_per_1k_iter == pytest.approx(rows[n][mode], rel=5e-3) for n in rows)
    unchanged = [line.split("\t")[:12] for line in DEFAULT_TABLE.read_text().splitlines()]
    assert [line.split("\t")[:12] for line in table.read_text().splitlines()] == unchanged  # only that column
    assert all(after[n].gpu_minutes_per_1k_iter != before[n].gpu_minutes_per_1k_iter for n in rows)


def fused_result(gain: float, reserved_gib: dict[str, float], fused_vs_alone: float = 0.0, **steps_per_s) -> dict:
    """A gpu_check fused child's result: its best gain, steps/s per setting, the GPU memory each reserved and how
    far its first cell's losses fused (K = 2) were from alone, against a noise of 1e-4."""
    return {
        "best_gain": gain,
        "memory": {k: {"gpu_reserved_peak_gib": v} for k, v in reserved_gib.items()},
        "unchanged": {
            "alone_vs_alone_max_rel": 1e-4,
            "fused_vs_alone_max_rel": {"fused_2": fused_vs_alone},
            "within": fused_vs_alone <= 1e-3,
        },
    } | steps_per_s


def test_gpu_memory_a_cell_comes_from_the_fused_run_and_scales_the_unmeasured_rows(tmp_path):
    """The table's `gpu_mem_mb`, which decides how many cells a fused job takes, was never measured: a fused run's
    reserved GPU memory a cell replaces it; the fused GPU-hours divide each family's eager real loop; and where the
    engines part measured bare streams at a K, their ratio to the fused real loop says whether the loader keeps up."""
    sys.path.insert(0, str(BENCH))
    from common import study_gpu_hours

    from oodpose.backbones import DEFAULT_TABLE, load_backbones

    (tmp_path / "report.json").write_text(json.dumps(check_report(5e-4)))
    fused = {
        "fused-mobilenetv2_035": fused_result(4.0, {"eager_1": 1.0, "fused_1": 1.2, "fused_2": 2.0, "fused_12": 9}),
        "fused-resnet50": fused_result(
            2.0, {"eager_1": 2.5, "fused_1": 3.0, "fused_12": 48.0}, fused_6=290, fused_12=200
        ),
        "fused-efficientnet_b3": fused_result(3.0, {"fused_1": 2.5, "fused_2": 6.0, "fused_12": 30.0}, 2e-3),
        "engines-resnet50": {"result": {"streams_6": 300.0, "vmap_6": 250.0, "streams_12": 330.0}},
    }
    children = {k: v if k.startswith("engines-") else {"result": v} for k, v in fused.items()}
    (tmp_path / "fused.json").write_text(json.dumps({"children": children}))
    table = tmp_path / "backbones.tsv"
    table.write_text(DEFAULT_TABLE.read_text())
    command = [sys.executable, str(BENCH / "gpu_minutes.py"), str(tmp_path / "report.json"), "--table", str(table)]
    result = subprocess.run(
        [*command, "--fused", str(tmp_path / "fused.json"), "--write"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    memory = {name: row.gpu_mem_mb for name, row in load_backbones(table).items()}
    assert memory["mobilenetv2_035"] == memory["mobilenetv2_050"] == 1300  # 1.2 GiB, K = 1's; both 3000 in the table
    assert (memory["resnet50"], memory["resnet101"]) == (4100, 5500)  # 48 GiB / 12; 8000 x 4096 / 6000
    assert (memory["efficientnet_b3"], memory["efficientnet_b6"]) == (3100, 7700)  # 6 GiB / 2; 20000 x 3072 / 8000
    assert memory["convnext_atto"] == 2100  # scaled by ResNet-50's: 3000 x 4096 / 6000
    unchanged = [line.split("\t")[:11] + line.split("\t")[13:] for line in DEFAULT_TABLE.read_text().splitlines()]
    assert [line.split("\t")[:11] + line.split("\t")[13:] for line in table.read_text().splitlines()] == unchanged
    rows, hours = report["minutes_per_1k_iter"], report["paper_study_gpu_hours"]
    gains = {"mobilenetv2": 4.0, "resnet": 2.0, "efficientnet": 3.0}
    gain = {n: next((g for f, g in gains.items() if n.startswith(f)), gains["resnet"]) for n in rows}  # timm: ResNet's
    by_gain = {n: r["eager"] / gain[n] for n, r in rows.items()}
    assert hours["fused_real_loop"] == pytest.approx(study_gpu_hours(by_gain))
    assert 1 / 4 < hours["fused_to_eager"] < 1 / 2
    assert report["fused_loop_ratio"] == {  # bare streams / the real loop, where both parts ran that K
        "resnet50": {
            "6": {"ratio": pytest.approx(300 / 290), "keeps_up": True},
            "12": {"ratio": pytest.approx(1.65), "keeps_up": False},
        }
    }
    unchanged = {probe: verdict["within"] for probe, verdict in report["fused_unchanged"].items()}
    assert unchanged == {"mobilenetv2_035": True, "resnet50": True, "efficientnet_b3": False}  # 2e-3 > 1e-3, 1e-4
    cpu_run = {
        k: {"result": v | {"memory": {"fused_1": {"host_rss_gib": 1.0}}}} for k, v in fused.items() if "fused" in k
    }
    (tmp_path / "fused.json").write_text(json.dumps({"children": cpu_run}))
    result = subprocess.run([*command, "--fused", str(tmp_path / "fused.json")], capture_output=True, text=True)
    assert result.returncode == 1 and "fused.json: its fused runs recorded no GPU memory" in result.stderr
