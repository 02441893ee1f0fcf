"""One short check of the CUDA path: train (with a SIGTERM-style stop and resume), evaluate, time AMP vs fp32.

Run on a GPU machine: ``python bench/cuda_check.py OUT_DIR``. Prints one JSON object.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from oodpose.data.cache import DatasetSettings, prepare_cache
from oodpose.data.synthetic import generate
from oodpose.evaluate import evaluate
from oodpose.train import TrainConfig, train


def step_time(cache: Path, out: Path, backbone: str, init: str, amp: bool, iterations: int) -> float:
    """Median seconds per iteration of the real training loop (loader included)."""
    train(
        TrainConfig(
            cache=str(cache),
            out=str(out),
            backbone=backbone,
            init=init,
            iterations=iterations,
            snapshot_every=iterations,
            device="cuda",
            amp=amp,
        )
    )
    return float(pd.read_csv(out / "train_log.csv")["seconds"].iloc[10:].median())


def main(root: Path) -> dict:
    data = generate(root / "data", n_individuals=6, total_frames=600, n_train_individuals=3, workers=8)
    cache = prepare_cache(data, root / "cache", DatasetSettings(n_train_individuals=3))
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "bf16_supported": torch.cuda.is_bf16_supported(),
    }
    for backbone, init in (("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")):
        out = root / f"{backbone}-{init}"
        cfg = TrainConfig(
            cache=str(cache),
            out=str(out),
            backbone=backbone,
            init=init,
            iterations=200,
            snapshot_every=100,
            curve_iterations=[100],
            device="cuda",
        )
        t0 = time.perf_counter()
        train(cfg)
        metrics = evaluate(out, cache, out / "predictions.h5", out / "metrics.csv", device="cuda")
        settings = json.loads((out / "settings.json").read_text())
        final = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == 200)].set_index("set")
        first = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == 100)].set_index("set")
        report[f"{backbone}/{init}"] = {
            "amp": settings["amp"],
            "device": settings["device_resolved"],
            "train_plus_eval_s": time.perf_counter() - t0,
            "normalised_error_iter100": first["normalised_error"].to_dict(),
            "normalised_error_iter200": final["normalised_error"].to_dict(),
            "pck_iter200": final["pck"].to_dict(),
        }
    report["resnet50_s_per_iter_amp"] = step_time(cache, root / "amp", "resnet50", "scratch", True, 60)
    report["resnet50_s_per_iter_fp32"] = step_time(cache, root / "fp32", "resnet50", "scratch", False, 60)
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=2, default=str))
