"""The Snakemake workflow: the study matrix, an end-to-end run of config/test.yaml, partial reruns."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oodpose.study import EVALUATIONS

REPO = Path(__file__).resolve().parents[1]
CELL = "results/synthetic/efficientnet_lite0/imagenet/split1_frac50"


def snakemake_argv(workdir: Path, *args: str) -> list[str]:
    """The project's workflow run in `workdir`, with `args`."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = snakemake_argv(workdir, *args)
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """The per-rule job counts of a `--quiet rules` dry run."""
    counts, table = {}, False
    for line in output.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
        elif table and not parts:
            break
        elif table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def planned_outputs(output: str, suffix: str) -> set[str]:
    return {
        line.split("output: ")[1].split(",")[0]
        for line in output.splitlines()
        if "output: " in line and line.split(",")[0].endswith(suffix)
    }


def n_cells(config: dict) -> int:
    study = config["study"]
    return len(study["backbones"]) * len(study["splits"]) * len(study["fractions"]) * len(study["inits"])


@pytest.fixture
def workdir(tmp_path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def test_paper_config_dry_run_counts(workdir):
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules").stdout)  # config/config.yaml, from nothing
    assert counts["train"] == 156 and counts["evaluate"] == 156
    assert counts["download_horse10"] == counts["prepare"] == counts["aggregate"] == counts["figures"] == 1
    assert counts["individuals"] == 1  # the dataset's individuals and Figure 2, from its cache alone
    assert counts["fetch_weights"] == 13  # every paper backbone's weights (timm hub, Keras), fetched once
    plan = snakemake(workdir, "-n").stdout
    pretrained = [job for job in plan.split("rule train:")[1:] if "/imagenet/" in job.split("output:")[1].split()[0]]
    assert len(pretrained) == 78
    assert all("input: results/horse10/cache, resources/weights/" in job for job in pretrained)
    assert "results/horse10/summary/findings.md" in plan  # the findings report is part of every study


def test_horse_c_overlay_adds_the_corrupted_sets_and_their_scoring_only(workdir):
    args = ("-n", "--quiet", "rules", "--configfile", "config/config.yaml", "config/horse-c.yaml")
    counts = job_counts(snakemake(workdir, *args).stdout)
    assert counts["corrupt"] == 75 and counts["evaluate_corrupted"] == counts["train"] == counts["evaluate"] == 156
    plan = snakemake(workdir, *args[:1], *args[3:]).stdout
    assert "results/horse10/summary/corruptions/mce.csv" in plan
    assert "results/horse10/summary/figures/corruptions.png" in plan


def test_modern_config_dry_run_covers_the_paper_and_the_added_backbones(workdir):
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "config/modern.yaml").stdout)
    assert counts["train"] == counts["evaluate"] == 25 * 3 * 2 * 2 and counts["fetch_weights"] == 25


def with_backbone_rows(workdir: Path, rows: dict[str, str], study: dict) -> str:
    """config/test.yaml on a copy of the backbone table with `rows` (name: timm model) added as generic rows."""
    import pandas as pd

    table = pd.read_csv(workdir / "config" / "backbones.tsv", sep="\t", keep_default_na=False)
    template = table[table["name"] == "convnext_atto"].iloc[0]
    added = [template.to_dict() | {"name": n, "timm_model": model, "weights": "none"} for n, model in rows.items()]
    pd.concat([table, pd.DataFrame(added)]).to_csv(workdir / "mine.tsv", sep="\t", index=False)
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["backbones_table"] = "mine.tsv"
    config["study"] |= study
    (workdir / "mine.yaml").write_text(yaml.safe_dump(config))
    return "mine.yaml"


def test_a_model_that_cannot_reach_stride_16_stops_the_workflow_before_any_job(workdir):
    configfile = with_backbone_rows(workdir, {"swin": "swin_tiny_patch4_window7_224"}, {"backbones": ["swin"]})
    result = snakemake(workdir, "-n", "--configfile", configfile, check=False)
    assert result.returncode != 0
    assert "backbone 'swin': timm model 'swin_tiny_patch4_window7_224' cannot take frames of any size" in (
        result.stdout + result.stderr
    )


@pytest.mark.slow
def test_any_timm_model_trains_through_the_workflow(workdir):
    """A tiny ConvNeXt and a tiny ViT (timm's randomly initialised test models) from config to findings."""
    rows = {"tiny_convnext": "test_convnext", "tiny_vit": "test_vit"}
    study = {"backbones": list(rows), "inits": ["scratch"], "splits": [1]}
    snakemake(workdir, "--cores", "2", "--configfile", with_backbone_rows(workdir, rows, study))
    import pandas as pd

    metrics = pd.read_csv(workdir / "results" / "synthetic" / "summary" / "metrics.csv")
    assert set(metrics["backbone"]) == set(rows) and metrics["normalised_error"].notna().all()
    assert "(a)" in (workdir / "results" / "synthetic" / "summary" / "findings.md").read_text()


def test_a_paper_family_row_timm_does_not_have_stops_the_workflow_before_any_job(workdir):
    import pandas as pd

    table = pd.read_csv(workdir / "config" / "backbones.tsv", sep="\t", keep_default_na=False)
    table.loc[table["name"] == "efficientnet_lite0", "timm_model"] = "tf_efficientnet_zz"
    table.to_csv(workdir / "mine.tsv", sep="\t", index=False)
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    (workdir / "mine.yaml").write_text(yaml.safe_dump(config | {"backbones_table": "mine.tsv"}))
    result = snakemake(workdir, "-n", "--configfile", "mine.yaml", check=False)
    assert result.returncode != 0
    assert "backbone 'efficientnet_lite0': timm has no model 'tf_efficientnet_zz'" in result.stdout + result.stderr


def test_every_rule_that_makes_files_keeps_a_log_and_a_benchmark():
    """Each job's time and memory sit beside its log (results/benchmarks/), as for every cell's jobs."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\S)", path.read_text()):
            rule = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if rule and "\n    output:" in block:
                for directive in ("log", "benchmark"):
                    assert f"\n    {directive}:" in block, f"{path.name}: rule {rule[1]} has no {directive}"


def test_every_file_that_evaluates_a_model_is_removed_when_its_cell_retrains():
    """A new model of a cell removes oodpose.study.EVALUATIONS beside it: every output of a rule that evaluates one."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=\S)", path.read_text()):
            rule = re.match(r"rule (\w*evaluate\w*):", block)
            if rule:
                outputs = block.split("\n    output:")[1].split("\n    log:")[0]
                names = re.findall(r'_DIR}/([\w.]+)"', outputs)
                assert names and set(names) <= set(EVALUATIONS), f"{path.name}: rule {rule[1]} writes {names}"


def test_schema_rejects_bad_config(workdir):
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["study"]["inits"] = ["imagenet", "random"]
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0 and "random" in result.stdout + result.stderr
    config["study"]["inits"] = ["imagenet"]
    config["study"]["datasets"] = ["horse99"]
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert (
        result.returncode != 0 and "study dataset 'horse99' is not under `datasets:`" in result.stdout + result.stderr
    )


def test_a_yaml_mistake_in_the_default_config_is_named_by_line_and_column(workdir):
    """Before: Snakemake's 'Config file is not valid JSON or YAML', naming neither the file nor the line."""
    config = workdir / "config" / "config.yaml"
    config.write_text(config.read_text().replace("splits: [1, 2, 3]", "splits: [1, 2, 3", 1))
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config/config.yaml, line 14, column 12: not valid YAML" in output and "flow sequence at line 13" in output


def test_a_study_that_grows_keeps_its_prepared_cache(workdir):
    """The cache holds the dataset's splits at 50 %: adding a fraction, split or backbone prepares nothing again."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["study"] |= {"backbones": ["efficientnet_lite0"], "splits": [1], "fractions": [50]}
    (workdir / "small.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/synthetic/cache", "--cores", "1", "--configfile", "small.yaml")
    config["study"] |= {
        "backbones": ["efficientnet_lite0", "efficientnet_lite1"],
        "splits": [1, 2],
        "fractions": [5, 50],
    }
    (workdir / "grown.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "grown.yaml").stdout)
    assert "prepare" not in counts and "synthesize" not in counts
    assert counts["train"] == n_cells(config)  # none trained yet: every cell, on the cache as it is


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """config/test.yaml run end to end, once for the tests below; tests that change it take `run_copy`."""
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / "config", workdir / "config")
    snakemake(workdir, "--cores", "2", "--configfile", "config/test.yaml")
    return workdir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run (outputs, Snakemake's records, timestamps), free to change.

    Removed after its test: a copy is about 1.5 GB (mostly snapshots), and nine kept to the session's end
    (about 13.5 GB) are more than CI's disk can be counted on to have free."""
    copy = Path(shutil.copytree(finished_run, tmp_path / "run", symlinks=True))
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


@pytest.mark.slow
def test_end_to_end_produces_every_output(finished_run):
    summary = finished_run / "results" / "synthetic" / "summary"
    for name in [
        "metrics.csv",
        "summary.csv",
        "regressions.csv",
        "pretrained_vs_scratch.csv",
        "table1.csv",
        "table1.md",
        "findings.csv",
        "findings.md",
        "individuals.csv",
    ]:
        assert (summary / name).stat().st_size > 0, name
    for figure in ["figure1", "figure2", "figure3ab", "figure3c", "figure4_5a", "figure5b"]:
        for ext in ("png", "pdf"):
            assert (summary / "figures" / f"{figure}.{ext}").stat().st_size > 1000
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    cells = list((finished_run / "results" / "synthetic").glob("*/*/split*_frac*/metrics.csv"))
    assert len(cells) == n_cells(config)
    import pandas as pd

    regressions = pd.read_csv(summary / "regressions.csv")
    assert regressions["slope"].notna().any()
    assert (
        finished_run
        / "results"
        / "logs"
        / "synthetic"
        / "efficientnet_lite0"
        / "imagenet"
        / "split1_frac50"
        / "train.log"
    ).exists()
    logs, benchmarks = finished_run / "results" / "logs", finished_run / "results" / "benchmarks"
    every_job = {log.relative_to(logs).with_suffix("") for log in logs.rglob("*.log")}
    assert every_job == {tsv.relative_to(benchmarks).with_suffix("") for tsv in benchmarks.rglob("*.tsv")}
    assert Path("synthetic/summary/figures") in every_job


def started_training_jobs(log: str) -> list[tuple[str, str]]:
    """(backbone, init) of each training job, in the order a run's Snakemake log shows them started."""
    jobs, in_train = [], False
    for line in log.splitlines():
        if line.startswith(("rule ", "localrule ")):
            in_train = line.split()[-1] == "train:"
        elif in_train and "wildcards:" in line:
            wildcards = dict(item.split("=") for item in line.split("wildcards:")[1].strip().split(", "))
            jobs.append((wildcards["backbone"], wildcards["init"]))
            in_train = False
    return jobs


@pytest.mark.slow
def test_training_jobs_start_longest_first(finished_run):
    """The demo once started its longest job (a pretrained Lite2, 238 s) last, and one of its 2 cores idled for
    2.5 minutes; training jobs now start in order of the table's estimate of their minutes, longest first."""
    from oodpose.backbones import load_backbones

    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    table, iterations = load_backbones(finished_run / "config" / "backbones.tsv"), config["training"]["iterations"]
    first_run = sorted((finished_run / ".snakemake" / "log").glob("*.snakemake.log"))[0].read_text()
    minutes = [table[b].gpu_minutes_per_1k_iter * iterations[i] for b, i in started_training_jobs(first_run)]
    assert len(minutes) == n_cells(config) and minutes == sorted(minutes, reverse=True)


@pytest.mark.slow
def test_report_is_self_contained_html(run_copy):
    snakemake(run_copy, "--configfile", "config/test.yaml", "--report", "results/report.html")
    html = (run_copy / "results" / "report.html").read_text(errors="ignore")
    assert "Table 1" in html and "Figure 1" in html and "1. Findings" in html  # categories sort by their number
    assert "How to read this report" in html  # the workflow's own description, not a small study's narrative
    assert "config/laptop.yaml" not in html and "config/demo.yaml" not in html


@pytest.mark.slow
def test_rerun_one_cell_by_asking_for_its_file(run_copy):
    cell = run_copy / CELL
    others = sorted((run_copy / "results" / "synthetic").glob("*/*/split*_frac*/model.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in others if CELL not in str(p)}
    shutil.rmtree(cell)
    result = snakemake(run_copy, f"{CELL}/metrics.csv", "--cores", "2", "--configfile", "config/test.yaml")
    assert (cell / "model.pt").exists() and (cell / "metrics.csv").exists()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"train": 1, "evaluate": 1, "total": 2}


@pytest.mark.slow
def test_changing_one_backbone_rate_reruns_only_its_cells(run_copy):
    import pandas as pd

    table_path = run_copy / "config" / "backbones.tsv"
    table = pd.read_csv(table_path, sep="\t")
    table.loc[table["name"] == "efficientnet_lite1", "pretrained_ilr"] = 7e-4
    table.to_csv(table_path, sep="\t", index=False)
    plan = snakemake(run_copy, "-n", "--configfile", "config/test.yaml").stdout
    retrained = planned_outputs(plan, "model.pt")
    assert retrained and all("/efficientnet_lite1/imagenet/" in p for p in retrained)
    assert len(retrained) == 2  # two splits, one fraction


@pytest.mark.slow
def test_adding_a_fraction_trains_only_the_new_cells(run_copy):
    config = yaml.safe_load((run_copy / "config" / "test.yaml").read_text())
    config["study"]["fractions"] = [5, 50]
    (run_copy / "config" / "fractions.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(run_copy, "-n", "--configfile", "config/fractions.yaml").stdout
    retrained = planned_outputs(plan, "model.pt")
    assert len(retrained) == n_cells(config) // 2 and all(p.endswith("_frac5/model.pt") for p in retrained)
    assert "rule prepare:" not in plan


@pytest.mark.slow
def test_a_corrected_imagenet_top1_reaches_the_statistics_and_retrains_nothing(run_copy):
    import pandas as pd

    table_path = run_copy / "config" / "backbones.tsv"
    table = pd.read_csv(table_path, sep="\t")
    table.loc[table["name"] == "efficientnet_lite1", "imagenet_top1"] = 90.0
    table.to_csv(table_path, sep="\t", index=False)
    result = snakemake(run_copy, "--cores", "2", "--configfile", "config/test.yaml")
    counts = job_counts(result.stdout + result.stderr)
    assert counts.get("aggregate") == counts.get("figures") == 1 and "train" not in counts and "evaluate" not in counts
    summary = run_copy / "results" / "synthetic" / "summary"
    table1 = pd.read_csv(summary / "table1.csv").set_index("backbone")
    assert table1.loc["efficientnet_lite1", "imagenet_top1"] == 90.0
    metrics = pd.read_csv(summary / "metrics.csv")
    assert set(metrics.loc[metrics["backbone"] == "efficientnet_lite1", "imagenet_top1"]) == {90.0}


def with_corruptions(workdir: Path, types: list[str]) -> str:
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["evaluation"]["corruptions"]["types"] = types
    (workdir / "config" / "horse-c-test.yaml").write_text(yaml.safe_dump(config))
    return "config/horse-c-test.yaml"


@pytest.mark.slow
def test_horse_c_scores_every_cell_and_a_new_corruption_retrains_nothing(finished_run, run_copy):
    import pandas as pd

    summary = finished_run / "results" / "synthetic" / "summary"
    scored = pd.read_csv(finished_run / CELL / "metrics_corrupted.csv")
    assert set(zip(scored["corruption"], scored["severity"], strict=True)) == {
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
    }
    assert set(scored["set"]) == {"test_within", "test_ood"}
    mce = pd.read_csv(summary / "corruptions" / "mce.csv")
    assert len(mce) == 3 * 2 * 2 and mce["reference"].eq("efficientnet_lite0 (imagenet)").all()  # no ResNet-50 here
    assert (summary / "figures" / "corruptions.png").stat().st_size > 1000
    claims = pd.read_csv(summary / "findings.csv")
    horse_c = claims[claims["claim"].isin(["f", "g", "h"])]
    assert set(horse_c["claim"]) == {"f", "g", "h"} and not horse_c["statistic"].str.startswith("not testable").any()

    cells = n_cells(yaml.safe_load((run_copy / "config" / "test.yaml").read_text()))
    config = with_corruptions(run_copy, ["gaussian_noise", "contrast"])
    counts = job_counts(snakemake(run_copy, "-n", "--quiet", "rules", "--configfile", config).stdout)
    scoring = {"evaluate_corrupted": cells, "aggregate": 1, "figures": 1, "all": 1}
    assert counts == {"corrupt": 2} | scoring | {"total": cells + 5}  # the new sets, then scoring only


@pytest.mark.slow
def test_a_finished_study_without_horse_c_grows_it_without_retraining(run_copy):
    """The study asks for Horse-C's tables and figure: without that, Snakemake saw nothing to do."""
    for made in [*run_copy.glob("results/synthetic/*/*/split*_frac*/metrics_corrupted.csv")]:
        made.unlink()
    shutil.rmtree(run_copy / "results" / "synthetic" / "corrupted")
    shutil.rmtree(run_copy / "results" / "synthetic" / "summary" / "corruptions")
    counts = job_counts(snakemake(run_copy, "-n", "--quiet", "rules", "--configfile", "config/test.yaml").stdout)
    cells = n_cells(yaml.safe_load((run_copy / "config" / "test.yaml").read_text()))
    assert counts == {"corrupt": 2, "evaluate_corrupted": cells, "aggregate": 1, "figures": 1, "all": 1} | {
        "total": cells + 5
    }


@pytest.mark.slow
@pytest.mark.parametrize("setting, value", [("amp", False), ("compile", True)])
def test_changing_a_training_switch_reruns_every_cell(run_copy, setting, value):
    config = yaml.safe_load((run_copy / "config" / "test.yaml").read_text())
    config["training"][setting] = value
    (run_copy / "config" / "switched.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(run_copy, "-n", "--configfile", "config/switched.yaml").stdout
    assert len(planned_outputs(plan, "model.pt")) == n_cells(config)  # every cell


@pytest.mark.slow
def test_a_copy_of_the_backbone_table_retrains_nothing(run_copy):
    """A cell is defined by its row's values, not by the path of the table that holds them."""
    shutil.copyfile(run_copy / "config" / "backbones.tsv", run_copy / "my_backbones.tsv")
    config = yaml.safe_load((run_copy / "config" / "test.yaml").read_text())
    (run_copy / "config" / "copied.yaml").write_text(yaml.safe_dump(config | {"backbones_table": "my_backbones.tsv"}))
    plan = snakemake(run_copy, "-n", "--configfile", "config/copied.yaml").stdout
    assert not planned_outputs(plan, "model.pt")


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["cuda_graphs", "fuse"])
def test_switching_how_cells_train_retrains_nothing(run_copy, switch):
    """How a step is launched, or how many cells one job trains, never changes a cell's result: the switches
    reach the job outside its params."""
    config = yaml.safe_load((run_copy / "config" / "test.yaml").read_text())
    config["training"][switch] = True
    (run_copy / "config" / "switched.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(run_copy, "-n", "--configfile", "config/switched.yaml").stdout
    assert not planned_outputs(plan, "model.pt")


@pytest.mark.slow
def test_failing_cells_leave_a_partial_summary(run_copy):
    import pandas as pd

    table = pd.read_csv(run_copy / "config" / "backbones.tsv", sep="\t")
    row = table[table["name"] == "mobilenetv2_035"].assign(weights="none")  # no ImageNet weights: pretrained fail
    pd.concat([table[table["name"] != "mobilenetv2_035"], row]).to_csv(
        run_copy / "config" / "backbones.tsv", sep="\t", index=False
    )
    config = yaml.safe_load((run_copy / "config" / "test.yaml").read_text())
    config["study"]["backbones"].append("mobilenetv2_035")
    config["study"]["splits"] = [1]  # the new backbone's two cells of one split: one fails, one goes on
    (run_copy / "config" / "failing.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(run_copy, "--cores", "2", "--keep-going", "--configfile", "config/failing.yaml", check=False)
    assert result.returncode != 0
    counts = job_counts(result.stdout + result.stderr)  # only the new backbone's cells: the YAML's reordered keys
    assert counts["train"] == counts["evaluate"] == 2 and "synthesize" not in counts and "prepare" not in counts
    scratch = run_copy / "results" / "synthetic" / "mobilenetv2_035" / "scratch"
    assert (scratch / "split1_frac50" / "metrics.csv").exists()  # the other cells went on
    log = run_copy / "results" / "logs" / "synthetic" / "mobilenetv2_035" / "imagenet" / "split1_frac50" / "train.log"
    assert "no ImageNet weights for backbone 'mobilenetv2_035'" in log.read_text()

    snakemake(run_copy, "partial", "--cores", "2", "--configfile", "config/failing.yaml")
    partial = run_copy / "results" / "synthetic" / "partial_summary"
    missing = pd.read_csv(partial / "missing_cells.csv")
    assert (
        len(missing) == 1 and set(missing["backbone"]) == {"mobilenetv2_035"} and set(missing["init"]) == {"imagenet"}
    )
    metrics = pd.read_csv(partial / "metrics.csv")
    assert "mobilenetv2_035" in set(metrics["backbone"]) and (partial / "figures" / "figure1.png").exists()
    log = run_copy / "results" / "logs" / "synthetic" / "partial_summary" / "aggregate.log"
    assert "cells without metrics (1)" in log.read_text()


def test_a_config_file_alone_with_the_schemas_defaults(workdir):
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    del config["training"]["threads"]  # config/config.yaml says 4, the schema 2
    (workdir / "laptop.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake(workdir, "-n", "--cores", "8", "--configfile", "laptop.yaml").stdout
    assert "threads: 2" in plan and "threads: 4" not in plan


def project_config(workdir: Path, project: Path) -> str:
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["datasets"] = {"mine": {"path": str(project), "n_splits": 1, "n_train_individuals": 1}}
    config["study"] |= {"datasets": ["mine"], "splits": [1]}
    (workdir / "mine.yaml").write_text(yaml.safe_dump(config))
    return "mine.yaml"


def test_a_scripts_bad_input_is_one_line_on_the_console_and_info_reaches_the_log(workdir):
    from test_reliability import make_project

    rows = [[10.0 + i, 10.0, 14.0 + i, 12.0, 30.0, 20.0] for i in range(5)] + [[float("nan")] * 6]
    project = make_project(workdir / "project", rows=rows)
    configfile = project_config(workdir, project)
    snakemake(workdir, "results/mine/cache", "--cores", "1", "--configfile", configfile)
    log = (workdir / "results" / "logs" / "mine" / "prepare.log").read_text()
    assert "INFO oodpose.data.labels:" in log and "skipped 1 frames with no labels at all" in log

    labels = project / "CollectedData_me.csv"
    labels.write_text("# my labels\n" + labels.read_text())
    result = snakemake(workdir, "results/mine/cache", "--cores", "1", "--configfile", configfile, check=False)
    assert result.returncode != 0
    assert f"error: {labels}: DeepLabCut's three header rows" in result.stderr
    assert "(log: results/logs/mine/prepare.log)" in result.stderr


def open_to_everyone(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


def as_another_user(workdir: Path) -> list[str]:
    """The command prefix that runs a process as a user who owns nothing here (root writes anywhere), with
    `workdir` opened to that user; skipped where that user cannot run the project's Python."""
    if os.geteuid() != 0:
        return []
    open_to_everyone(workdir)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, sys.executable, "-c", "import oodpose"]).returncode:
        pytest.skip("no unprivileged user can run this Python here")
    return prefix


@pytest.fixture
def open_workdir():
    """A workdir outside pytest's private temporary folder, which no other user may enter."""
    import tempfile

    workdir = Path(tempfile.mkdtemp())
    shutil.copytree(REPO / "config", workdir / "config")
    yield workdir
    open_to_everyone(workdir)  # the test made parts of it read-only
    shutil.rmtree(workdir)


def test_a_read_only_cell_folder_is_named_before_any_job(open_workdir):
    """Before: Snakemake's PermissionError traceback once it prepared the cell's job."""
    cell = open_workdir / CELL
    cell.mkdir(parents=True)
    (cell / "metrics.csv").write_text("made under other settings\n")
    command = [
        *as_another_user(open_workdir),
        *snakemake_argv(open_workdir, "--cores", "1", "--configfile", "config/test.yaml"),
    ]
    cell.chmod(0o555)
    env = os.environ | {"HOME": str(open_workdir)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=open_workdir, env=env)
    assert result.returncode != 0
    assert f"{CELL} is not writable by this user, and this run writes there" in result.stdout + result.stderr
    assert "rule synthesize" not in result.stdout + result.stderr  # before any job


def test_editing_a_label_file_prepares_the_dataset_again(workdir):
    from test_reliability import make_project

    project = make_project(workdir / "project")
    configfile = project_config(workdir, project)
    snakemake(workdir, "results/mine/cache", "--cores", "1", "--configfile", configfile)
    assert "Nothing to be done" in snakemake(workdir, "-n", "results/mine/cache", "--configfile", configfile).stdout
    labels = project / "CollectedData_me.csv"
    labels.write_text(labels.read_text().replace(",30.0,", ",31.0,", 1))
    plan = snakemake(workdir, "-n", "--configfile", configfile, "--quiet", "rules").stdout
    counts = job_counts(plan)
    assert counts["prepare"] == 1 and counts["train"] == n_cells(yaml.safe_load((workdir / configfile).read_text()))


@pytest.mark.slow
def test_a_rerun_after_a_rate_change_really_retrains(finished_run, run_copy, tmp_path):
    import pandas as pd
    import torch

    from oodpose.settings import TrainConfig
    from oodpose.train import train

    table_path = run_copy / "config" / "backbones.tsv"
    table = pd.read_csv(table_path, sep="\t")
    table.loc[table["name"] == "efficientnet_lite0", "pretrained_ilr"] = 2e-3
    table.to_csv(table_path, sep="\t", index=False)
    snakemake(run_copy, f"{CELL}/model.pt", "--cores", "2", "--configfile", "config/test.yaml")
    settings = json.loads((run_copy / CELL / "settings.json").read_text())
    assert settings["ilr"] == 2e-3
    fields = {f: settings[f] for f in TrainConfig.__dataclass_fields__ if f not in ("cache", "out", "weights")}
    fresh = train(TrainConfig(**fields, cache=str(run_copy / "results/synthetic/cache"), out=str(tmp_path / "fresh")))
    rerun, first, fresh = (
        torch.load(p, weights_only=False)["model"]
        for p in (run_copy / CELL / "model.pt", finished_run / CELL / "model.pt", fresh)
    )
    assert all(torch.equal(rerun[k], fresh[k]) for k in fresh)
    assert not all(torch.equal(rerun[k], first[k]) for k in first)
