"""The CPU defaults, chosen by measurement: channels_last vs contiguous, and torch.compile vs eager.

For each backbone, the bare training step (forward, targets, loss, backward, Adam; batch 8 at
288x162 x 0.8, 2 threads) in both memory formats, and compiled (channels_last): the first step,
which holds the compilation, from an empty inductor cache ("cold", a node's first job) and again
from the filled one ("warm", later jobs on that node), and the median of the rest. Tiny mode (CI)
runs one backbone for a few iterations and leaves torch.compile out: its warm-up alone takes a
minute (the training tests cover the option itself).

    python bench/cpu_defaults.py [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bare_step_seconds, machine, synthetic_cache  # noqa: E402

BACKBONES = [("mobilenetv2_035", "scratch"), ("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")]


def main(tiny: bool) -> dict:
    iterations, warmup = (3, 1) if tiny else (30, 5)
    report = {"benchmark": "cpu_defaults", "machine": machine(), "threads": 2, "batch": 8, "backbones": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = synthetic_cache(Path(tmp), 120 if tiny else 600)
        for backbone, init in BACKBONES[:1] if tiny else BACKBONES:
            row = {}
            for name, channels_last in (("channels_last_s", True), ("contiguous_s", False)):
                times = bare_step_seconds(cache_path, backbone, init, iterations, 2, channels_last=channels_last)
                row[name] = statistics.median(times[warmup:])
            row["channels_last_speedup"] = row["contiguous_s"] / row["channels_last_s"]
            if not tiny:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / f"inductor-{backbone}")
                times = bare_step_seconds(cache_path, backbone, init, iterations, 2, compile=True)
                row["compiled_first_step_cold_s"] = times[0]
                row["compiled_s"] = statistics.median(times[warmup:])
                row["compile_speedup"] = row["channels_last_s"] / row["compiled_s"]
                torch._dynamo.reset()
                row["compiled_first_step_warm_s"] = bare_step_seconds(cache_path, backbone, init, 1, 2, compile=True)[0]
            report["backbones"][backbone] = row
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="one backbone, a few iterations, no torch.compile (CI)")
    args = parser.parse_args()
    print(json.dumps(main(args.tiny), indent=2))
