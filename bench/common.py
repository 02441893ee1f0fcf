"""Shared helpers of the benchmarks: the machine description and running the workflow in a scratch folder."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def workflow_dir(root: Path) -> Path:
    """A scratch working directory holding a copy of the project's config and profiles."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("config", "profiles"):
        shutil.copytree(REPO / folder, root / folder, dirs_exist_ok=True)
    return root


def timed_snakemake(workdir: Path, *args: str) -> float:
    """Wall seconds of one Snakemake run (which must succeed)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start
