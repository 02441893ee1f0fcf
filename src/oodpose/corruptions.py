"""Horse-C: a dataset's test frames under the 15 ImageNet-C common corruptions at severities 1-5.

The WACV 2021 version of the paper added Horse-C, Horse-10 under ImageNet-C's corruptions (Hendrycks and
Dietterich, ICLR 2019), to test robustness to a second kind of shift. The corruptions come from
imagecorruptions-imaug, the maintained fork of the reference `imagecorruptions` (Michaelis et al., 2019), which
current scikit-image and numpy 2 break. Each (frame, corruption, severity) is corrupted under its own seed,
derived from the three, so every run and machine draws the same noise: two runs give the same pixels, and
machines differ at most where their floating point rounds a filter differently. A dataset is corrupted once, into
one folder per corruption and severity beside its cache: corrupting inside every cell's evaluation would
repeat the same CPU-hours per cell (bench/corruptions.py measures both costs).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from oodpose.atomic import atomic_dir
from oodpose.data.cache import Cache
from oodpose.errors import InputError
from oodpose.study import CORRUPTIONS, OOD, SEVERITIES, WITHIN

LIBRARY = "imagecorruptions-imaug"
OWN_GENERATOR = {"impulse_noise", "glass_blur"}  # these draw from their own generator, seeded by argument
MIN_SIZE = 32  # the library's smallest width and height


def corruption_library():
    """The corruption library, or one sentence on how to install it."""
    try:
        import imagecorruptions
    except ImportError as err:
        raise InputError(
            f"Horse-C needs {LIBRARY}: install oodpose with its extra (pip install -e '.[horse-c]'; its OpenCV "
            "needs libGL, e.g. apt-get install libgl1), or run Snakemake with --use-conda"
        ) from err
    return imagecorruptions


def check_corruption(corruption: str, severity: int) -> None:
    if corruption not in CORRUPTIONS:
        raise InputError(f"unknown corruption {corruption!r}; use one of {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise InputError(f"corruption severity {severity!r} is not one of {list(SEVERITIES)}")


def frame_seed(frame: str, corruption: str, severity: int) -> int:
    """The seed of one (frame, corruption, severity): the same on every machine, and different for each."""
    digest = hashlib.sha256(f"{frame}\0{corruption}\0{severity}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """`image` (uint8 HxWx3) under one corruption, drawn from `seed` alone; numpy's global generator, which the
    library draws from, is restored afterwards."""
    library = corruption_library()
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        extra = {"seed": seed} if corruption in OWN_GENERATOR else {}
        return library.corrupt(image, severity=severity, corruption_name=corruption, **extra)
    finally:
        np.random.set_state(state)


def horse_c_rows(cache: Cache) -> np.ndarray:
    """The frames that some split of the cache tests, within domain or out of domain: Horse-C's frames."""
    tested = cache.splits["role"].isin([WITHIN, OOD])
    return np.unique(cache.splits.loc[tested, "frame"].to_numpy())


def _corrupt_rows(cache_path: str, images_path: str, corruption: str, severity: int, rows: np.ndarray) -> None:
    """Corrupt `rows` into the shared output array, each frame at its own size (the canvas' padding stays 0)."""
    cache = Cache(cache_path)
    out = np.load(images_path, mmap_mode="r+")
    frames = cache.index["frame"].to_numpy()
    for row in rows:
        width, height = (int(v) for v in cache.sizes[row])
        image = np.ascontiguousarray(cache.images[row, :height, :width])
        out[row, :height, :width] = corrupt(image, corruption, severity, frame_seed(frames[row], corruption, severity))
    out.flush()


def corrupt_cache(cache_path: str | Path, out: str | Path, corruption: str, severity: int, workers: int = 1) -> Path:
    """Write the cache's test frames under one corruption and severity into the folder `out` (atomically):
    ``images.npy`` shaped as the cache's (frames it never tests stay zero) and ``meta.json``."""
    check_corruption(corruption, severity)
    corruption_library()  # before any work: a missing library is one sentence
    cache = Cache(cache_path)
    rows = horse_c_rows(cache)
    small = rows[(cache.sizes[rows] < MIN_SIZE).any(axis=1)]
    if len(small):
        raise InputError(
            f"{cache.path}: frame {cache.index['frame'].iat[small[0]]} is smaller than {MIN_SIZE} pixels, the "
            f"corruptions' smallest size; drop evaluation.corruptions for this dataset"
        )
    with atomic_dir(out, made_by="corrupt") as tmp:
        np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=cache.images.shape).flush()
        job = partial(_corrupt_rows, str(cache.path), str(tmp / "images.npy"), corruption, severity)
        chunks = np.array_split(rows, max(1, min(len(rows), 4 * workers)))
        start = time.perf_counter()
        if workers > 1:  # processes: the library draws from numpy's global generator, which threads would share
            with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
                list(pool.map(job, chunks))
        else:
            for chunk in chunks:
                job(chunk)
        seconds = time.perf_counter() - start
        meta = {
            "corruption": corruption,
            "severity": severity,
            "library": f"{LIBRARY} {metadata.version(LIBRARY)}",
            "seed": "sha256 of 'frame\\0corruption\\0severity', first 4 bytes, little-endian",
            "cache_fingerprint": cache.fingerprint,
            "n_frames": len(rows),
            "workers": workers,
            "seconds": round(seconds, 3),
            "cpu_seconds_per_frame": round(seconds * workers / max(len(rows), 1), 5),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return Path(out)


def corrupted_view(cache: Cache, folder: str | Path) -> tuple[Cache, dict]:
    """`cache` with its images replaced by one corrupted set's, and that set's meta.json; a set made from
    another cache is refused."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{folder}: not a corrupted set (no readable meta.json); delete it and rerun") from err
    if meta.get("cache_fingerprint") != cache.fingerprint:
        raise InputError(
            f"{folder} was corrupted from a cache with fingerprint {meta.get('cache_fingerprint')}, but {cache.path} "
            f"has {cache.fingerprint}: delete {folder} and rerun, so that it is corrupted from this cache"
        )
    view = copy.copy(cache)
    view.images = np.load(folder / "images.npy", mmap_mode="r")
    if view.images.shape != cache.images.shape:
        raise InputError(f"{folder}/images.npy has shape {view.images.shape}, not the cache's; delete it and rerun")
    return view, meta
