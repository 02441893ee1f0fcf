"""Horse-C's cost: CPU time per frame of each corruption and severity at Horse-10's frame size (288x162), and
what that makes for Horse-10's 8,114 frames, corrupted once into a cache or on the fly in every cell.

    python bench/corruptions.py [--tiny] [--frames N]

Frames come from the synthetic Horse-30 at Horse-10's size; numba's one-off compilation (glass blur) is timed
apart from the per-frame cost. One process, one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, synthetic_cache  # noqa: E402

from oodpose.corruptions import corrupt, horse_c_rows  # noqa: E402
from oodpose.data.cache import Cache  # noqa: E402
from oodpose.study import CORRUPTIONS, SEVERITIES  # noqa: E402

HORSE10_FRAMES = 8114
PAPER_CELLS = 156


def frame_images(cache: Cache, n: int) -> list[np.ndarray]:
    rows = np.linspace(0, len(cache.index) - 1, n).astype(int)
    return [np.ascontiguousarray(cache.images[r, : cache.sizes[r][1], : cache.sizes[r][0]]) for r in rows]


def time_corruptions(images: list[np.ndarray], severities: tuple[int, ...]) -> tuple[dict, dict]:
    """Milliseconds per frame of each corruption at each severity, and each corruption's first-call seconds."""
    per_frame, first_call = {}, {}
    for corruption in CORRUPTIONS:
        start = time.perf_counter()
        corrupt(images[0], corruption, severities[0], 0)  # numba compiles glass blur here
        first_call[corruption] = round(time.perf_counter() - start, 3)
        per_frame[corruption] = {}
        for severity in severities:
            start = time.perf_counter()
            for i, image in enumerate(images):
                corrupt(image, corruption, severity, i)
            per_frame[corruption][severity] = round(1000 * (time.perf_counter() - start) / len(images), 2)
    return per_frame, first_call


def main(tiny: bool, n_frames: int) -> dict:
    severities = (1,) if tiny else SEVERITIES
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(synthetic_cache(Path(tmp), 60 if tiny else 300, individuals=30 if not tiny else 6))
        per_frame, first_call = time_corruptions(frame_images(cache, 2 if tiny else n_frames), severities)
        tested_share = len(horse_c_rows(cache)) / len(cache.index)
        cell_share = len(np.concatenate([cache.frames(1, 50, s) for s in ("test_within", "test_ood")])) / len(
            cache.index
        )
        frame_bytes = int(np.prod(cache.images.shape[1:]))
    seconds_all = (
        sum(ms for row in per_frame.values() for ms in row.values()) / 1000 * (len(SEVERITIES) / len(severities))
    )
    cache_hours = HORSE10_FRAMES * tested_share * seconds_all / 3600
    return {
        "benchmark": "corruptions",
        "machine": machine(),
        "frames_timed": 2 if tiny else n_frames,
        "ms_per_frame": per_frame,
        "first_call_s": first_call,
        "seconds_per_frame_all_75": round(seconds_all, 3),
        "horse10": {
            "frames": HORSE10_FRAMES,
            "share_of_frames_tested": round(tested_share, 3),
            "cache_cpu_hours_all_75": round(cache_hours, 2),
            "cache_gb_per_set": round(HORSE10_FRAMES * frame_bytes / 1e9, 2),
            "cache_gb_all_75": round(75 * HORSE10_FRAMES * frame_bytes / 1e9, 1),
            "on_the_fly_cpu_hours_per_cell": round(HORSE10_FRAMES * cell_share * seconds_all / 3600, 2),
            "on_the_fly_cpu_hours_paper_study": round(PAPER_CELLS * HORSE10_FRAMES * cell_share * seconds_all / 3600),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="2 frames, severity 1 (CI)")
    parser.add_argument("--frames", type=int, default=20, help="frames timed per corruption and severity")
    args = parser.parse_args()
    print(json.dumps(main(args.tiny, args.frames), indent=2))
