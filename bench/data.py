"""Data targets: generating the default synthetic Horse-30 (<= 60 s on 2 cores), preparing its cache
(<= 60 s, cache <= 1.2x the raw uint8 images) and the peak resident memory of a training job on it
(<= 3 GB: the image cache is memory-mapped, not copied).

    python bench/data.py [--tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from oodpose.data.cache import Cache, prepare_cache  # noqa: E402
from oodpose.data.synthetic import generate  # noqa: E402
from oodpose.settings import DatasetSettings, SyntheticSettings  # noqa: E402


def main(tiny: bool) -> dict:
    frames = 150 if tiny else 8114
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        generate(root / "dataset", SyntheticSettings(n_individuals=30, n_frames=frames))
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        prepare_cache(root / "dataset", root / "cache", DatasetSettings())
        prepare_s = time.perf_counter() - start
        cache = Cache(root / "cache")
        raw = cache.images.size  # uint8: one byte per value
        size = sum(p.stat().st_size for p in (root / "cache").iterdir())
        command = [
            sys.executable,
            "-m",
            "oodpose",
            "train",
            str(root / "cache"),
            str(root / "cell"),
            "--backbone",
            "efficientnet_lite0",
            "--iterations",
            "3" if tiny else "20",
            "--device",
            "cpu",
            "--threads",
            "2",
        ]
        subprocess.run(command, check=True, capture_output=True)
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return {
        "benchmark": "data",
        "machine": machine(),
        "frames": frames,
        "generate_s": generate_s,
        "prepare_s": prepare_s,
        "cache_over_raw": size / raw,
        "train_peak_rss_gb": peak_gb,
        "targets": {"generate_s": 60, "prepare_s": 60, "cache_over_raw": 1.2, "train_peak_rss_gb": 3},
        "meets_targets": generate_s <= 60 and prepare_s <= 60 and size / raw <= 1.2 and peak_gb <= 3,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="150 frames (CI)")
    print(json.dumps(main(parser.parse_args().tiny), indent=2))
