"""The workflow through Snakemake's SLURM executor on a real single-node SLURM cluster (tests/slurm/).

Marked `slurm` (not in the default run: it installs and starts system daemons); `.ci/run` runs it as
root. It skips with the reason where SLURM cannot be installed or started.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_workflow import snakemake_argv

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster():
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True)
    if started.returncode == 3:
        pytest.skip(f"SLURM test cluster unavailable: {started.stderr.strip().splitlines()[-1]}")
    assert started.returncode == 0, started.stderr
    yield
    subprocess.run([str(CLUSTER), "stop"], check=True)


def slurm_jobs() -> list[dict[str, str]]:
    """Every job the controller still knows (finished ones for MinJobAge=3600 s: the whole test), as key=value dicts."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines() if "JobId=" in line]


def test_test_study_runs_through_slurm_with_gpu_requests(cluster, tmp_path):
    for folder in ("config", "profiles"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    config = yaml.safe_load((tmp_path / "config" / "test.yaml").read_text())
    config["study"]["backbones"] = ["efficientnet_lite0"]  # one backbone: each kind of training job, a third of them
    del config["evaluation"]["corruptions"]  # Horse-C's jobs add 2 minutes here; the local end-to-end runs them
    (tmp_path / "config" / "slurm-test.yaml").write_text(yaml.safe_dump(config))
    before = {job["JobId"] for job in slurm_jobs()}
    workflow = snakemake_argv(tmp_path, "--profile", "profiles/slurm-ci", "--configfile", "config/slurm-test.yaml")
    command = ["timeout", "-k", "10", "900", *workflow]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = tmp_path / "results" / "synthetic" / "summary"
    for name in ("metrics.csv", "regressions.csv", "table1.md", "figures/figure1.png", "figures/figure3c.png"):
        assert (summary / name).exists(), name
    jobs = [job for job in slurm_jobs() if job["JobId"] not in before]
    train = [job for job in jobs if "rule_train" in job.get("Comment", "")]
    assert len(train) == 4  # 2 inits x 2 splits, each its own sbatch job
    assert all("gpu:fake:1" in job.get("TresPerJob", "") + job.get("TresPerNode", "") for job in train), train[0]
    assert all(job["Partition"] == "gpu" and job["JobState"] == "COMPLETED" for job in train)
    local = {"synthesize", "prepare", "aggregate", "figures"}
    assert not any(rule in job.get("Comment", "") for job in jobs for rule in local)  # localrules stay local
