"""How long `snakemake -n` takes to build the DAG of the paper's full study (target: <= 3 s).

python bench/workflow_dag.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_snakemake, workflow_dir  # noqa: E402


def main(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = workflow_dir(Path(tmp))
        config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
        (workdir / "horse10").mkdir()
        config["datasets"]["horse10"]["path"] = str(workdir / "horse10")
        (workdir / "paper.yaml").write_text(yaml.safe_dump(config))
        times = [
            timed_snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "paper.yaml") for _ in range(repeats)
        ]
    return {
        "benchmark": "workflow_dag",
        "machine": machine(),
        "jobs": "156 train + 156 evaluate + 16 other",
        "dry_run_s": times,
        "median_s": statistics.median(times),
        "target_s": 3.0,
        "meets_target": statistics.median(times) <= 3.0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    print(json.dumps(main(parser.parse_args().repeats), indent=2))
