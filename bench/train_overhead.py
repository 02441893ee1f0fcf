"""Training overhead: the real training loop vs the bare step, per backbone (target: like-for-like ratio <= 1.10).

Real loop: `oodpose.train.train` (loading from the cache, augmentation, targets, logging, snapshots),
median seconds per iteration from its log. Bare step: forward, targets, loss, backward and Adam on
batches already in memory, same memory format and runtime settings. Like for like, the bare step
runs on the loop's own batches in the loop's order (the `paper` preset's per-batch scale jitter
changes the canvas every batch), so the ratio measures only what the loop adds; the bare step on the
fixed `none` canvas is kept beside it, which shows what the jitter itself costs. CPU, 2 threads,
288x162 frames at global scale 0.8, batch 8. Each measurement runs in a fresh process (a training job's
caches start empty too); the like-for-like bare step runs before and after the loop and is pooled, so
that a drift of the machine's speed does not land on one side of the ratio. Also saves a
torch.profiler table of a short real run per backbone in bench/profiles/.

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
from common import bare_step_seconds, in_fresh_process, loader_seconds, machine, synthetic_cache, train_seconds  # noqa: E402

BACKBONES = [("mobilenetv2_035", "scratch"), ("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")]
TARGET = 1.10


def profile_iteration(cache_path: Path, out: Path, backbone: str, init: str, path: Path) -> None:
    """A torch.profiler table of a short real training run (data loading included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_seconds(cache_path, out, backbone, init, 4, snapshot_every=4, device="cpu", threads=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))


def measure(cache_path: Path, out: Path, backbone: str, init: str, iterations: int, workers: int) -> dict:
    """Median seconds per iteration of the loop and of the bare step, each in a fresh process."""
    steps = dict(threads=2, loop_canvases=iterations)
    bare = in_fresh_process(bare_step_seconds, cache_path, backbone, init, iterations, **steps)
    options = dict(snapshot_every=max(1, iterations // 2), device="cpu", threads=2, workers=workers)
    real = in_fresh_process(train_seconds, cache_path, out, backbone, init, iterations, **options)
    bare += in_fresh_process(bare_step_seconds, cache_path, backbone, init, iterations, **steps)
    fixed = in_fresh_process(bare_step_seconds, cache_path, backbone, init, iterations, threads=2)
    loader = in_fresh_process(loader_seconds, cache_path, backbone, init, iterations, threads=2)
    warmup = iterations // 10  # the first steps hold one-off set-up, as the loop's first iterations do
    real_s, bare_s = (
        statistics.median(real[warmup:]),
        statistics.median(bare[warmup:iterations] + bare[-iterations + warmup :]),
    )
    fixed_s = statistics.median(fixed[warmup:])
    return {
        "init": init,
        "real_loop_s": real_s,
        "bare_step_loop_canvases_s": bare_s,
        "ratio": real_s / bare_s,
        "meets_target": real_s / bare_s <= TARGET,
        "loader_alone_s": statistics.median(loader[warmup:]),  # fetching and augmenting a batch, no step
        "bare_step_fixed_canvas_s": fixed_s,
        "ratio_to_fixed_canvas": real_s / fixed_s,
    }


def main(tiny: bool, workers: int) -> dict:
    iterations = 8 if tiny else 80
    report = {
        "benchmark": "train_overhead",
        "machine": machine(),
        "threads": 2,
        "batch": 8,
        "iterations": iterations,
        "workers": workers,
        "input": "288x162 frames at global scale 0.8 (230x130), paper preset's scale jitter (like-for-like)",
        "target_ratio": TARGET,
        "backbones": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = synthetic_cache(Path(tmp), 120 if tiny else 600)
        for backbone, init in BACKBONES[:1] if tiny else BACKBONES:
            out = Path(tmp) / f"{backbone}-{init}"
            report["backbones"][backbone] = measure(cache_path, out, backbone, init, iterations, workers)
            if not tiny:
                profile = Path(__file__).parent / "profiles" / f"train_{backbone}.txt"
                profile_iteration(cache_path, Path(tmp) / f"profile-{backbone}", backbone, init, profile)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few iterations of one backbone (CI)")
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    args = parser.parse_args()
    print(json.dumps(main(args.tiny, args.workers), indent=2))
