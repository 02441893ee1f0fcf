"""config/test.yaml end to end through SLURM (the test cluster in tests/slurm/) vs locally with --cores 2.

Target: the SLURM run takes at most 2x the local one. Needs root (it starts the test cluster).

    python bench/slurm_vs_local.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, machine, timed_snakemake, workflow_dir  # noqa: E402


def main() -> dict:
    cluster = REPO / "tests" / "slurm" / "cluster.sh"
    subprocess.run([str(cluster), "start"], check=True, capture_output=True)
    try:
        with tempfile.TemporaryDirectory() as local, tempfile.TemporaryDirectory() as slurm:
            local_s = timed_snakemake(workflow_dir(Path(local)), "--cores", "2", "--configfile", "config/test.yaml")
            slurm_s = timed_snakemake(
                workflow_dir(Path(slurm)), "--profile", "profiles/slurm-ci", "--configfile", "config/test.yaml"
            )
    finally:
        subprocess.run([str(cluster), "stop"], check=True)
    return {
        "benchmark": "slurm_vs_local",
        "machine": machine(),
        "local_cores2_s": local_s,
        "slurm_s": slurm_s,
        "ratio": slurm_s / local_s,
        "target_ratio": 2.0,
        "meets_target": slurm_s <= 2 * local_s,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
