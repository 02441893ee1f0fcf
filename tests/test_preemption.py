"""Training jobs are safe to kill at any moment: a rerun of the workflow resumes and ends where an
unbroken run ends (bitwise, on CPU)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch
import yaml
from test_workflow import snakemake_argv

REPO = Path(__file__).resolve().parents[1]
CELL = "results/synthetic/efficientnet_lite0/imagenet/split1_frac50"


def make_workdir(path: Path) -> Path:
    shutil.copytree(REPO / "config", path / "config")
    config = yaml.safe_load((path / "config" / "test.yaml").read_text())
    config["study"] |= {"backbones": ["efficientnet_lite0"], "inits": ["imagenet"], "splits": [1], "fractions": [50]}
    config["training"] |= {
        "iterations": {"imagenet": 40, "scratch": 40},
        "snapshot_every": 5,
        "curve_iterations": {"imagenet": [], "scratch": []},
    }
    (path / "config" / "preempt.yaml").write_text(yaml.safe_dump(config))
    return path


def snakemake_command(workdir: Path, *extra: str) -> list[str]:
    return snakemake_argv(workdir, f"{CELL}/model.pt", "--cores", "1", "--configfile", "config/preempt.yaml", *extra)


def weights(workdir: Path) -> dict:
    return torch.load(workdir / CELL / "model.pt", weights_only=False)["model"]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> dict:
    workdir = make_workdir(tmp_path_factory.mktemp("unbroken"))
    subprocess.run(snakemake_command(workdir), check=True, capture_output=True, cwd=workdir)
    return weights(workdir)


def training_process(run: subprocess.Popen) -> psutil.Process:
    for child in psutil.Process(run.pid).children(recursive=True):
        if any("train.py" in part for part in child.cmdline()):
            return child
    raise AssertionError("no training process under snakemake")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_training_resumes_to_the_same_result(unbroken, tmp_path, signum):
    workdir = make_workdir(tmp_path)
    run = subprocess.Popen(
        snakemake_command(workdir),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    snapshot = workdir / CELL / "snapshots" / "snapshot-0000010.pt"
    deadline = time.monotonic() + 180
    while not snapshot.exists():
        assert run.poll() is None and time.monotonic() < deadline, "training never reached iteration 10"
        time.sleep(0.1)
    training_process(run).send_signal(signum)
    assert run.wait(timeout=120) != 0
    assert not (workdir / CELL / "model.pt").exists()
    stopped_at = max(int(p.stem.split("-")[1]) for p in (workdir / CELL / "snapshots").glob("snapshot-*.pt"))
    assert 10 <= stopped_at < 40

    rerun = subprocess.run(
        snakemake_command(workdir, "--rerun-incomplete"), cwd=workdir, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (workdir / "results" / "logs" / CELL.removeprefix("results/") / "train.log").read_text()
    assert f"at iteration {stopped_at}" in log
    history = pd.read_csv(workdir / CELL / "train_log.csv")  # across both attempts, whatever became of their logs
    assert list(history["iteration"]) == list(range(40))
    resumed = weights(workdir)
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)
