"""GPU estimates for backbone rows that no GPU has measured yet, scaled from ResNet-50's measured row.

For every row (or those named), counts on the meta device - no weights, no compute - the floating-point
operations of one training step (forward and backward, batch 8, the paper's 230x130 canvas) and the bytes
it holds (activations saved for backward, plus weights, gradients and Adam's two moments, in fp32), and
scales ResNet-50's row (`gpu_minutes_per_1k_iter`, `gpu_mem_mb`) by those ratios, never below MobileNetV2-0.35's
row: a launch-bound GPU is no faster for smaller networks. A starting point for the SLURM limits only:
replace a row's figures by `bench/gpu.py` measurements when a GPU can be had. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from common import machine
from torch.utils.flop_counter import FlopCounterMode

from oodpose.backbones import load_backbones
from oodpose.models import FAMILIES, PoseNet, create_backbone

REFERENCE, FLOOR = "resnet50", "mobilenetv2_035"
BATCH, HEIGHT, WIDTH = 8, 130, 230


def step_cost(backbone) -> tuple[float, float]:
    """GFLOPs and GB held by one training step of the whole pose network at the paper's batch and canvas."""
    saved = []

    def keep(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.device("meta"):
        net = PoseNet(create_backbone(backbone), 22, (0.5,) * 3, (0.5,) * 3, generic=FAMILIES[backbone.family].generic)
        with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            scoremap, locref = net(torch.zeros(BATCH, 3, HEIGHT, WIDTH))
            (scoremap.sum() + locref.sum()).backward()
    state = 4 * sum(p.numel() * p.element_size() for p in net.parameters())
    return counter.get_total_flops() / 1e9, (sum(saved) + state) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="backbone rows (default: all)")
    args = parser.parse_args()
    table = load_backbones()
    reference, floor = table[REFERENCE], table[FLOOR]
    reference_gflops, reference_gb = step_cost(reference)
    rows = {}
    for name in args.names or list(table):
        gflops, gb = step_cost(table[name])
        rows[name] = {
            "step_gflops": round(gflops, 1),
            "step_gb": round(gb, 2),
            "gpu_minutes_per_1k_iter": max(
                floor.gpu_minutes_per_1k_iter, round(reference.gpu_minutes_per_1k_iter * gflops / reference_gflops, 2)
            ),
            "gpu_mem_mb": max(floor.gpu_mem_mb, int(math.ceil(reference.gpu_mem_mb * gb / reference_gb / 500) * 500)),
        }
    report = {
        "benchmark": "backbone_estimates",
        "machine": machine(),
        "reference": REFERENCE,
        "floor": FLOOR,
        "batch": BATCH,
        "canvas": [WIDTH, HEIGHT],
        "rows": rows,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
