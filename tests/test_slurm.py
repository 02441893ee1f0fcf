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
    local = {"synthesize", "prepare", "aggregate", "figures", "individuals"}
    assert not any(rule in job.get("Comment", "") for job in jobs for rule in local)  # localrules stay local


def test_a_fused_groups_training_jobs_share_one_submission_and_one_gpu(cluster, tmp_path):
    """`training: fuse`: each backbone-and-init group's training jobs are one sbatch job with one GPU, whose time
    limit covers them in series; the first trains the group, the other finds its final snapshot."""
    for folder in ("config", "profiles"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    config = yaml.safe_load((tmp_path / "config" / "test.yaml").read_text())
    config["study"]["backbones"] = ["efficientnet_lite0"]
    config["training"]["fuse"] = True
    (tmp_path / "config" / "fused.yaml").write_text(yaml.safe_dump(config))
    cells = [
        f"results/synthetic/efficientnet_lite0/{i}/split{s}_frac50" for i in ("imagenet", "scratch") for s in (1, 2)
    ]
    before = {job["JobId"] for job in slurm_jobs()}
    targets = [f"{cell}/model.pt" for cell in cells]
    workflow = snakemake_argv(tmp_path, *targets, "--profile", "profiles/slurm-ci", "--configfile", "config/fused.yaml")
    command = ["timeout", "-k", "10", "600", *workflow]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    train = [job for job in slurm_jobs() if job["JobId"] not in before and "rule_train" in job.get("Comment", "")]
    assert sorted(job["Comment"] for job in train) == [
        f"rule_train-synthetic-efficientnet_lite0-{init}_train" for init in ("imagenet", "scratch")
    ]
    assert all("gpu:fake:1" in job.get("TresPerJob", "") + job.get("TresPerNode", "") for job in train), train[0]
    assert all(job["JobState"] == "COMPLETED" and job["TimeLimit"] == "00:32:00" for job in train)  # 2 x 16 min
    logs = [(tmp_path / "results" / "logs" / cell.removeprefix("results/") / "train.log").read_text() for cell in cells]
    assert sum("fused: training" in log for log in logs) == 2
    assert sum("at iteration 4" in log for log in logs) == 2
