"""The demo (config/demo.yaml) end to end from a clean results/ (target: <= 10 min wall on 2 cores).

python bench/demo.py [--tiny]     # --tiny: a dry run of the demo (plans the jobs, runs none)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_snakemake, workflow_dir  # noqa: E402


def main(tiny: bool) -> dict:
    config = "config/demo.yaml"
    dry_run = ["-n"] if tiny else []
    with tempfile.TemporaryDirectory() as tmp:
        seconds = timed_snakemake(workflow_dir(Path(tmp)), "--cores", "2", "--configfile", config, *dry_run)
    return {
        "benchmark": "demo",
        "machine": machine(),
        "config": config,
        "dry_run": tiny,
        "wall_s": seconds,
        "target_s": 600,
        "meets_target": seconds <= 600,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="dry run: plan the jobs, run none (CI)")
    print(json.dumps(main(parser.parse_args().tiny), indent=2))
