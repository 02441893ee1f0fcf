"""Training overhead: the real training loop vs the bare step, per backbone (target: ratio <= 1.10).

Real loop: `oodpose.train.train` (loading from the cache, augmentation, targets, logging, snapshots),
median seconds per iteration from its log. Bare step: forward, targets, loss, backward and Adam on a
batch already in memory, same memory format and runtime settings. CPU, 2 threads, 288x162 frames,
batch 8. The bare step is measured before and after the real loop and pooled, so that a drift of
the machine's speed does not land on one side of the ratio. Also saves a torch.profiler table of a
short real run per backbone in bench/profiles/.

    python bench/train_overhead.py [--tiny] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import bare_step_seconds, machine, synthetic_cache, train_seconds  # noqa: E402

BACKBONES = [("mobilenetv2_035", "scratch"), ("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")]
TARGET = 1.10


def profile_iteration(cache_path: Path, out: Path, backbone: str, init: str, path: Path) -> None:
    """A torch.profiler table of a short real training run (data loading included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_seconds(cache_path, out, backbone, init, 4, snapshot_every=4, device="cpu", threads=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))


def main(tiny: bool, workers: int) -> dict:
    iterations, warmup = (4, 1) if tiny else (80, 8)
    report = {
        "benchmark": "train_overhead",
        "machine": machine(),
        "threads": 2,
        "batch": 8,
        "workers": workers,
        "input": "288x162 frames at global scale 0.8 (230x130)",
        "target_ratio": TARGET,
        "backbones": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = synthetic_cache(Path(tmp), 120 if tiny else 600)
        for backbone, init in BACKBONES[:1] if tiny else BACKBONES:
            bare = bare_step_seconds(cache_path, backbone, init, iterations // 2 + warmup, threads=2)[warmup:]
            real = train_seconds(
                cache_path,
                Path(tmp) / f"{backbone}-{init}",
                backbone,
                init,
                iterations,
                snapshot_every=max(1, iterations // 2),
                device="cpu",
                threads=2,
                workers=workers,
            )[warmup:]
            bare += bare_step_seconds(cache_path, backbone, init, iterations // 2 + warmup, threads=2)[warmup:]
            ratio = statistics.median(real) / statistics.median(bare)
            report["backbones"][backbone] = {
                "init": init,
                "real_loop_s": statistics.median(real),
                "bare_step_s": statistics.median(bare),
                "ratio": ratio,
                "meets_target": ratio <= TARGET,
            }
            if not tiny:
                profile_iteration(
                    cache_path,
                    Path(tmp) / f"profile-{backbone}",
                    backbone,
                    init,
                    Path(__file__).parent / "profiles" / f"train_{backbone}.txt",
                )
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few iterations of one backbone (CI)")
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    args = parser.parse_args()
    print(json.dumps(main(args.tiny, args.workers), indent=2))
