"""Prepare a dataset once into a compact cache that training and evaluation jobs open instantly.

Layout of a cache folder:
- ``index.parquet``: one row per frame: frame, individual, width, height, scale;
- ``keypoints.npy``: float32 (frames, bodyparts, 2), NaN = not labelled;
- ``images.npy``: uint8 (frames, H, W, 3), every image at the top-left of an H x W canvas
  (H, W = the largest height and width), memory-mapped by readers so workers share one copy;
- ``splits.parquet``: split, fraction, frame (row number), role in {train, test_within, test_ood};
- ``meta.json``: bodyparts, scorer, where the splits came from and the settings used.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from oodpose.atomic import atomic_dir
from oodpose.data.coco import read_coco
from oodpose.data.labels import Labels, read_labels
from oodpose.data.scales import frame_scales
from oodpose.data.splits import ROLES, add_fractions, make_splits, official_split_files, read_official_splits
from oodpose.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSettings:
    """How a dataset is split and normalised; part of the cache so every cell sees the same."""

    fractions: tuple[int, ...] = (5, 50)
    scale_bodyparts: tuple[str, str] | None = None  # None: a nose- and an eye-like bodypart
    labels: str | None = None  # a COCO keypoint file (relative to the dataset) instead of DeepLabCut's
    individuals: str | None = None  # CSV folder,individual mapping several folders to one animal
    n_splits: int = 3
    n_train_individuals: int = 10
    seed: int = 0
    official_splits: bool = field(default=True)  # use TrainTestInfo_shuffle*.csv when present


def read_image(path: Path) -> np.ndarray:
    """An image as RGB uint8, whatever its channels (grayscale, RGBA)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: image listed in the labels is missing or unreadable")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frozen_splits(root: Path, labels: Labels, settings: DatasetSettings) -> tuple[pd.DataFrame, str]:
    """The (split, fraction, frame row, role) table and where its splits came from."""
    files = official_split_files(root) if settings.official_splits else []
    if files:
        base, source = read_official_splits(files, labels), f"official: {[f.name for f in files]}"
    else:
        base = make_splits(labels, settings.n_splits, settings.n_train_individuals, settings.seed)
        source = f"generated: {settings.n_splits} splits of {settings.n_train_individuals} individuals"
    table = add_fractions(base, labels, list(settings.fractions), settings.seed)
    row = pd.Series(np.arange(len(labels.frames)), index=labels.frames["frame"])
    table["frame"] = row[table["frame"]].to_numpy()
    return table, source


def prepare_cache(root: str | Path, out: str | Path, settings: DatasetSettings = DatasetSettings()) -> Path:
    """Read, split and decode the dataset at `root` into the cache folder `out` (atomically)."""
    root, out = Path(root), Path(out)
    if settings.labels:
        labels = read_coco(root / settings.labels, root)
    else:
        labels = read_labels(root, settings.individuals)
    scales = frame_scales(root, labels, settings.scale_bodyparts)
    splits, split_source = frozen_splits(root, labels, settings)
    n_ood = int((splits["role"] == "test_ood").sum())
    if n_ood == 0:
        log.warning("%s: every individual is a training individual, so the OOD sets are empty", root)
    canvas = (int(labels.frames["height"].max()), int(labels.frames["width"].max()))
    with atomic_dir(out) as tmp:
        index = labels.frames.assign(scale=scales)
        index.to_parquet(tmp / "index.parquet")
        np.save(tmp / "keypoints.npy", labels.keypoints)
        splits.to_parquet(tmp / "splits.parquet")
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(index), *canvas, 3)
        )

        def decode(i: int) -> None:
            image = read_image(root / labels.frames["frame"].iat[i])
            h, w = image.shape[:2]
            if (w, h) != (labels.frames["width"].iat[i], labels.frames["height"].iat[i]):
                raise InputError(f"{root / labels.frames['frame'].iat[i]}: size changed while reading")
            images[i, :h, :w] = image

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(decode, range(len(index))))
        images.flush()
        meta = {
            "source": str(root.resolve()),
            "bodyparts": list(labels.bodyparts),
            "scorer": labels.scorer,
            "canvas": list(canvas),
            "n_frames": len(index),
            "individuals": sorted(index["individual"].unique()),
            "splits": split_source,
            "settings": asdict(settings),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


class Cache:
    """A prepared dataset, opened read-only; images stay memory-mapped on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "meta.json").exists():
            raise InputError(f"{self.path}: not a prepared dataset cache (no meta.json); run `oodpose prepare`")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.index = pd.read_parquet(self.path / "index.parquet")
        self.keypoints = np.load(self.path / "keypoints.npy")
        self.splits = pd.read_parquet(self.path / "splits.parquet")
        self.bodyparts: list[str] = self.meta["bodyparts"]
        self.sizes = self.index[["width", "height"]].to_numpy()  # per frame, read once: items need it fast

    @cached_property
    def images(self) -> np.ndarray:
        return np.load(self.path / "images.npy", mmap_mode="r")

    def frames(self, split: int, fraction: int, role: str) -> np.ndarray:
        """Row numbers of the frames with `role` in one cell's split and fraction."""
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; use one of {ROLES}")
        table = self.splits[(self.splits["split"] == split) & (self.splits["fraction"] == fraction)]
        if table.empty:
            raise InputError(
                f"{self.path}: no split {split} at fraction {fraction}%; it has splits "
                f"{sorted(self.splits['split'].unique())} and fractions {sorted(self.splits['fraction'].unique())}"
            )
        return np.sort(table.loc[table["role"] == role, "frame"].to_numpy())
