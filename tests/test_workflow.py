"""The Snakemake workflow: the study matrix, an end-to-end run of config/test.yaml, partial reruns."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CELL = "results/synthetic/efficientnet_lite0/imagenet/split1_frac50"


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
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
    return {line.split("output: ")[1].split(",")[0] for line in output.splitlines()
            if "output: " in line and line.split(",")[0].endswith(suffix)}  # fmt: skip


@pytest.fixture
def workdir(tmp_path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def test_paper_config_dry_run_counts(workdir):
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules").stdout)  # config/config.yaml, from nothing
    assert counts["train"] == 156 and counts["evaluate"] == 156
    assert counts["download_horse10"] == counts["prepare"] == counts["aggregate"] == counts["figures"] == 1
    assert counts["fetch_weights"] == 11  # every pretrained backbone with timm weights, fetched once


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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """config/test.yaml run end to end, once for the tests below."""
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / "config", workdir / "config")
    snakemake(workdir, "--cores", "2", "--configfile", "config/test.yaml")
    return workdir


def test_end_to_end_produces_every_output(finished_run):
    summary = finished_run / "results" / "synthetic" / "summary"
    for name in [
        "metrics.csv",
        "summary.csv",
        "regressions.csv",
        "pretrained_vs_scratch.csv",
        "table1.csv",
        "table1.md",
    ]:
        assert (summary / name).stat().st_size > 0, name
    for figure in ["figure1", "figure3ab", "figure3c", "figure4_5a", "figure5b"]:
        for ext in ("png", "pdf"):
            assert (summary / "figures" / f"{figure}.{ext}").stat().st_size > 1000
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    n_cells = len(config["study"]["backbones"]) * len(config["study"]["splits"]) * 2 * len(config["study"]["fractions"])
    cells = list((finished_run / "results" / "synthetic").glob("*/*/split*_frac*/metrics.csv"))
    assert len(cells) == n_cells
    import pandas as pd

    regressions = pd.read_csv(summary / "regressions.csv")
    assert regressions["slope"].notna().any()
    assert (finished_run / "results" / "logs" / "synthetic" / "efficientnet_lite0" / "imagenet" / "split1_frac50"
            / "train.log").exists()  # fmt: skip
    assert (finished_run / "results" / "benchmarks" / "synthetic" / "prepare.tsv").exists()


def test_report_is_self_contained_html(finished_run):
    snakemake(finished_run, "--configfile", "config/test.yaml", "--report", "results/report.html")
    html = (finished_run / "results" / "report.html").read_text(errors="ignore")
    assert "Table 1" in html and "Figure 1" in html


def test_rerun_one_cell_by_asking_for_its_file(finished_run):
    cell = finished_run / CELL
    others = sorted((finished_run / "results" / "synthetic").glob("*/*/split*_frac*/model.pt"))
    stamps = {p: p.stat().st_mtime_ns for p in others if CELL not in str(p)}
    shutil.rmtree(cell)
    result = snakemake(finished_run, f"{CELL}/metrics.csv", "--cores", "2", "--configfile", "config/test.yaml")
    assert (cell / "model.pt").exists() and (cell / "metrics.csv").exists()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {"train": 1, "evaluate": 1, "total": 2}


def test_changing_one_backbone_rate_reruns_only_its_cells(finished_run):
    table = finished_run / "config" / "backbones.tsv"
    original = table.read_text()
    try:
        lines = original.splitlines()
        lite1 = next(i for i, line in enumerate(lines) if line.startswith("efficientnet_lite1\t"))
        fields = lines[lite1].split("\t")
        fields[6] = "7e-4"  # pretrained ILR
        lines[lite1] = "\t".join(fields)
        table.write_text("\n".join(lines) + "\n")
        plan = snakemake(finished_run, "-n", "--configfile", "config/test.yaml").stdout
        retrained = planned_outputs(plan, "model.pt")
        assert retrained and all("/efficientnet_lite1/imagenet/" in p for p in retrained)
        assert len(retrained) == 2  # two splits, one fraction
    finally:
        table.write_text(original)


def test_failing_cells_leave_a_partial_summary(finished_run):
    import pandas as pd

    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    config["study"]["backbones"].append("mobilenetv2_035")  # no ImageNet weights: its pretrained cells fail
    (finished_run / "config" / "failing.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(finished_run, "--cores", "2", "--keep-going", "--configfile", "config/failing.yaml", check=False)
    assert result.returncode != 0
    counts = job_counts(result.stdout + result.stderr)  # only the new backbone's cells: the YAML's reordered keys
    assert counts["train"] == counts["evaluate"] == 4 and "synthesize" not in counts and "prepare" not in counts
    scratch = finished_run / "results" / "synthetic" / "mobilenetv2_035" / "scratch"
    assert (scratch / "split1_frac50" / "metrics.csv").exists()  # the other cells went on
    log = (
        finished_run / "results" / "logs" / "synthetic" / "mobilenetv2_035" / "imagenet" / "split1_frac50" / "train.log"
    )
    assert "no ImageNet weights for backbone 'mobilenetv2_035'" in log.read_text()

    snakemake(finished_run, "partial", "--cores", "2", "--configfile", "config/failing.yaml")
    partial = finished_run / "results" / "synthetic" / "partial_summary"
    missing = pd.read_csv(partial / "missing_cells.csv")
    assert (
        len(missing) == 2 and set(missing["backbone"]) == {"mobilenetv2_035"} and set(missing["init"]) == {"imagenet"}
    )
    metrics = pd.read_csv(partial / "metrics.csv")
    assert "mobilenetv2_035" in set(metrics["backbone"]) and (partial / "figures" / "figure1.png").exists()
    log = finished_run / "results" / "logs" / "synthetic" / "partial_summary" / "aggregate.log"
    assert "cells without metrics (2)" in log.read_text()
