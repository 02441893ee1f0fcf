"""Training overhead: the real training loop vs the bare step, per backbone (target: ratio <= 1.10).

Real loop: `oodpose.train.train` (loading from the cache, augmentation, targets, logging, snapshots),
median seconds per iteration from its log. Bare step: forward, targets, loss, backward and Adam on a
batch already in memory, same memory format. CPU, 2 threads, 288x162 frames, batch 8. Also saves a
torch.profiler table of one real iteration per backbone in bench/profiles/.

    python bench/train_overhead.py [--tiny] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, synthetic_cache, train_seconds  # noqa: E402

from oodpose.backbones import get_backbone  # noqa: E402
from oodpose.data.cache import Cache  # noqa: E402
from oodpose.data.dataset import PoseDataset  # noqa: E402
from oodpose.models import build_model  # noqa: E402
from oodpose.targets import make_targets, pose_loss  # noqa: E402

BACKBONES = [("mobilenetv2_035", "scratch"), ("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")]


def bare_step_seconds(cache: Cache, backbone: str, init: str, iterations: int, threads: int) -> list[float]:
    torch.set_num_threads(threads)
    rows = cache.frames(1, 50, "train")
    dataset = PoseDataset(cache, rows, augment=True)
    images, keypoints, _ = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    images = images.contiguous(memory_format=torch.channels_last)
    model = build_model(get_backbone(backbone), len(cache.bodyparts), init).to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        scoremap, locref = model(images)
        loss = pose_loss(scoremap, locref, *make_targets(keypoints, scoremap.shape[-2:]))[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def profile_iteration(cache_path: Path, out: Path, backbone: str, init: str, path: Path) -> None:
    """A torch.profiler table of a short real training run (data loading included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_seconds(cache_path, out, backbone, init, 2, snapshot_every=2, device="cpu", threads=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))


def main(tiny: bool, workers: int) -> dict:
    iterations, warmup = (4, 1) if tiny else (40, 5)
    report = {
        "benchmark": "train_overhead",
        "machine": machine(),
        "threads": 2,
        "batch": 8,
        "workers": workers,
        "input": "288x162 frames at global scale 0.8 (230x130)",
        "target_ratio": 1.10,
        "backbones": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = synthetic_cache(Path(tmp), 120 if tiny else 600)
        cache = Cache(cache_path)
        for backbone, init in BACKBONES[:1] if tiny else BACKBONES:
            out = Path(tmp) / f"{backbone}-{init}"
            real = train_seconds(
                cache_path,
                out,
                backbone,
                init,
                iterations,
                snapshot_every=max(1, iterations // 2),
                device="cpu",
                threads=2,
                workers=workers,
            )[warmup:]
            bare = bare_step_seconds(cache, backbone, init, iterations, threads=2)[warmup:]
            ratio = statistics.median(real) / statistics.median(bare)
            report["backbones"][backbone] = {
                "init": init,
                "real_loop_s": statistics.median(real),
                "bare_step_s": statistics.median(bare),
                "ratio": ratio,
                "meets_target": ratio <= 1.10,
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
