"""Evaluation throughput: frames per second of the evaluation path (cache to predictions) vs bare
batched inference of the same model on in-memory tensors (target: >= 0.9x). CPU, 2 threads.

    python bench/eval_throughput.py [--tiny]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, synthetic_cache  # noqa: E402

from oodpose.backbones import get_backbone  # noqa: E402
from oodpose.data.cache import Cache  # noqa: E402
from oodpose.data.dataset import PoseDataset  # noqa: E402
from oodpose.device import runtime  # noqa: E402
from oodpose.evaluate import predict_frames  # noqa: E402
from oodpose.models import build_model  # noqa: E402
from oodpose.targets import predict  # noqa: E402


def main(tiny: bool, backbone: str = "efficientnet_lite0", batch_size: int = 32) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(synthetic_cache(Path(tmp), 64 if tiny else 480))
        rows = np.arange(len(cache.index))
        rt = runtime("cpu", threads=2)
        model = build_model(get_backbone(backbone), len(cache.bodyparts), "imagenet")
        model = model.to(memory_format=torch.channels_last).eval()
        predict_frames(model, cache, rows[:batch_size], rt, 0.8, batch_size)  # warm-up
        start = time.perf_counter()
        predict_frames(model, cache, rows, rt, 0.8, batch_size)
        path_fps = len(rows) / (time.perf_counter() - start)
        dataset = PoseDataset(cache, rows)
        images = torch.stack([dataset[i][0] for i in range(len(rows))]).contiguous(memory_format=torch.channels_last)
        start = time.perf_counter()
        with torch.no_grad():
            for batch in images.split(batch_size):
                predict(*model(batch))
        bare_fps = len(rows) / (time.perf_counter() - start)
    ratio = path_fps / bare_fps
    return {
        "benchmark": "eval_throughput",
        "machine": machine(),
        "backbone": backbone,
        "frames": len(rows),
        "batch": batch_size,
        "evaluation_path_fps": path_fps,
        "bare_inference_fps": bare_fps,
        "ratio": ratio,
        "target_ratio": 0.9,
        "meets_target": ratio >= 0.9,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few frames (CI)")
    print(json.dumps(main(parser.parse_args().tiny), indent=2))
