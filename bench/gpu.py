"""The CUDA path, measured on one GPU: correctness, loader feed, mixed precision, channels_last, and the
projected GPU-hours of the paper's study.

- train + evaluate two cells on CUDA (EfficientNet-Lite0 pretrained, ResNet-50 from scratch);
- loader feed (target <= 1.05): ResNet-50 real loop / bare step on a batch already on the device;
- bf16 autocast vs fp32, channels_last vs contiguous, on the bare step;
- the paper's 156 training jobs: measured seconds per iteration per backbone (bf16, batch 8)
  x 30k (pretrained) or 180k (scratch) iterations x 3 splits x 2 fractions, written to gpu_hours.csv.

    python bench/gpu.py OUT_DIR [--tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, synthetic_cache, train_seconds  # noqa: E402

from oodpose.backbones import load_backbones  # noqa: E402
from oodpose.data.cache import Cache  # noqa: E402
from oodpose.data.dataset import PoseDataset  # noqa: E402
from oodpose.evaluate import evaluate  # noqa: E402
from oodpose.models import build_model  # noqa: E402
from oodpose.targets import make_targets, pose_loss  # noqa: E402

PAPER = ["mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "resnet50", "resnet101"] + [
    f"efficientnet_b{i}" for i in range(7)
]


def bare_step(cache: Cache, backbone: str, amp: bool, channels_last: bool, iterations: int) -> float:
    """Median seconds of forward, loss, backward and Adam on a batch of 8 already on the GPU."""
    images, keypoints, _ = next(
        iter(torch.utils.data.DataLoader(PoseDataset(cache, cache.frames(1, 50, "train"), augment=True), batch_size=8))
    )
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images, keypoints = images.cuda().contiguous(memory_format=fmt), keypoints.cuda()
    model = build_model(load_backbones()[backbone], len(cache.bodyparts), "scratch").cuda().to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(iterations):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            scoremap, locref = model(images)
        loss = pose_loss(scoremap, locref, *make_targets(keypoints, scoremap.shape[-2:]))[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[5:])


def main(root: Path, tiny: bool) -> dict:
    torch.backends.cudnn.benchmark = True
    cache_path = synthetic_cache(root, 600)
    cache = Cache(cache_path)
    report = {"benchmark": "gpu", "machine": machine(), "bf16_supported": torch.cuda.is_bf16_supported()}
    for backbone, init in (("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")):
        out = root / f"{backbone}-{init}"
        train_seconds(cache_path, out, backbone, init, 200, snapshot_every=100, curve_iterations=[100], device="cuda")
        metrics = evaluate(out, cache_path, out / "predictions.h5", out / "metrics.csv", device="cuda")
        final = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == 200)].set_index("set")
        settings = json.loads((out / "settings.json").read_text())
        report[f"{backbone}/{init}"] = {
            "amp": settings["amp"],
            "normalised_error": final["normalised_error"].to_dict(),
            "pck": final["pck"].to_dict(),
        }
    n = 30 if tiny else 80
    real = statistics.median(
        train_seconds(cache_path, root / "loader", "resnet50", "scratch", n, snapshot_every=n, device="cuda")[10:]
    )
    bare = bare_step(cache, "resnet50", amp=True, channels_last=True, iterations=n)
    report["resnet50_loader"] = {
        "real_loop_s": real,
        "bare_step_on_device_s": bare,
        "ratio": real / bare,
        "target_ratio": 1.05,
        "meets_target": real / bare <= 1.05,
    }
    report["resnet50_bare_step_s"] = {
        "bf16_channels_last": bare,
        "fp32_channels_last": bare_step(cache, "resnet50", amp=False, channels_last=True, iterations=n),
        "bf16_contiguous": bare_step(cache, "resnet50", amp=True, channels_last=False, iterations=n),
    }
    rows = []
    for backbone in PAPER[:2] if tiny else PAPER:
        seconds = bare_step(cache, backbone, amp=True, channels_last=True, iterations=n)
        for init, iterations in (("imagenet", 30000), ("scratch", 180000)):
            rows.append(
                {
                    "backbone": backbone,
                    "init": init,
                    "s_per_iter_bare": seconds,
                    "iterations": iterations,
                    "cells": 6,
                    "gpu_hours": seconds * iterations * 6 / 3600,
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(root / "gpu_hours.csv", index=False)
    report["paper_study_gpu_hours"] = {
        "training_total": float(table["gpu_hours"].sum()),
        "how": "measured bare-step seconds per iteration (bf16, batch 8, 230x130 input) "
        "x iterations x 3 splits x 2 fractions; loader overhead and evaluation "
        "not included",
    }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(args.out, args.tiny), indent=2, default=str))
