"""The CUDA path, measured on one GPU: correctness, loader feed, mixed precision, channels_last,
torch.compile, and the projected GPU-hours of the paper's study.

- train + evaluate two cells on CUDA (EfficientNet-Lite0 pretrained, ResNet-50 from scratch);
- loader feed (target <= 1.05): ResNet-50 real loop / bare step on a batch already on the device,
  both as wall seconds per iteration over a run (the loop waits for the device only every 100
  iterations, so per-iteration host times are not the device's);
- bf16 autocast vs fp32 (TF32), channels_last vs contiguous, on the bare step;
- torch.compile, bf16 and fp32: its warm-up, the bare step and the real loop;
- the paper's 156 training jobs: measured seconds per iteration per backbone (bf16, batch 8)
  x 30k (pretrained) or 180k (scratch) iterations x 3 splits x 2 fractions, written to gpu_hours.csv.

The report is rewritten to OUT_DIR/report.json after each part, so a cut run keeps what it measured.

    python bench/gpu.py OUT_DIR [--tiny] [--only loader compile cells hours]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bare_step, machine, synthetic_cache, train_seconds  # noqa: E402

from oodpose.evaluate import evaluate  # noqa: E402

PARTS = ["loader", "compile", "cells", "hours"]
PAPER = ["mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "resnet50", "resnet101"] + [
    f"efficientnet_b{i}" for i in range(7)
]


def device_seconds(step, iterations: int, warmup: int = 5) -> float:
    """Wall seconds per call of a CUDA `step`, over `iterations` calls after `warmup`, waiting only at the ends."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def loop_seconds(cache_path: Path, out: Path, n: int, **options) -> float:
    """Wall seconds per iteration of the real ResNet-50 loop over iterations 20 .. 20 + n: after the warm-up,
    before the final snapshot (written every 5,000 iterations in a study)."""
    seconds = train_seconds(cache_path, out, "resnet50", "scratch", n + 21, snapshot_every=n + 21, **options)
    return sum(seconds[20 : 20 + n]) / n


def main(root: Path, tiny: bool, parts: list[str]) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    cache_path = synthetic_cache(root, 600)
    report = {"benchmark": "gpu", "machine": machine(), "bf16_supported": torch.cuda.is_bf16_supported()}

    def save():
        (root / "report.json").write_text(json.dumps(report, indent=2, default=str))

    n = 20 if tiny else 100
    resnet50 = functools.partial(bare_step, cache_path, "resnet50", "scratch", "cuda")
    if "loader" in parts:
        bare, real = device_seconds(resnet50(), n), loop_seconds(cache_path, root / "loop", n, device="cuda")
        report["resnet50_loader"] = {"real_loop_s": real, "bare_step_on_device_s": bare, "ratio": real / bare}
        report["resnet50_loader"] |= {"target_ratio": 1.05, "meets_target": real / bare <= 1.05}
        report["resnet50_bare_step_s"] = {
            "bf16_channels_last": bare,
            "fp32_channels_last": device_seconds(resnet50(amp=False), n),
            "bf16_contiguous": device_seconds(resnet50(channels_last=False), n),
        }
        save()
    if "compile" in parts:  # needs Triton and a C compiler on the GPU machine
        for amp in (True, False):
            start = time.perf_counter()
            step = resnet50(compile=True, amp=amp)
            step()
            torch.cuda.synchronize()
            warmup = time.perf_counter() - start
            bare = device_seconds(step, n)
            real = loop_seconds(cache_path, root / f"loop-compiled-{amp}", n, device="cuda", compile=True, amp=amp)
            report[f"resnet50_compiled_{'bf16' if amp else 'fp32'}"] = {
                "first_step_s": warmup,
                "bare_step_on_device_s": bare,
                "real_loop_s": real,
                "ratio": real / bare,
            }
            save()
    if "cells" in parts:
        for backbone, init in (("efficientnet_lite0", "imagenet"), ("resnet50", "scratch")):
            out = root / f"{backbone}-{init}"
            options = {"snapshot_every": 100, "curve_iterations": [100], "device": "cuda"}
            train_seconds(cache_path, out, backbone, init, 200, **options)
            metrics = evaluate(out, cache_path, out / "predictions.h5", out / "metrics.csv", device="cuda")
            final = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == 200)].set_index("set")
            settings = json.loads((out / "settings.json").read_text())
            report[f"{backbone}/{init}"] = {
                "amp": settings["amp_dtype"],
                "normalised_error": final["normalised_error"].to_dict(),
                "pck": final["pck"].to_dict(),
            }
            save()
    if "hours" in parts:
        rows = []
        for backbone in PAPER[:2] if tiny else PAPER:
            seconds = device_seconds(bare_step(cache_path, backbone, "scratch", "cuda"), n // 2)
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
            "how": "measured bare-step seconds per iteration (bf16, channels_last, batch 8, 230x130 input) "
            "x iterations x 3 splits x 2 fractions; loader overhead and evaluation not included",
        }
        save()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=PARTS, help="measure only these parts")
    args = parser.parse_args()
    print(json.dumps(main(args.out, args.tiny, args.only), indent=2, default=str))
