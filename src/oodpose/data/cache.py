"""Prepare a dataset once into a compact cache that training and evaluation jobs open instantly.

Layout of a cache folder:
- ``index.parquet``: one row per frame: frame, individual, width, height, scale;
- ``keypoints.npy``: float32 (frames, bodyparts, 2), NaN = not labelled;
- ``images.npy``: uint8 (frames, H, W, 3), every image at the top-left of an H x W canvas
  (H, W = the largest height and width), memory-mapped by readers so workers share one copy;
- ``splits.parquet``: split, frame (row number), role in {train, test_within, test_ood}, at 50 % training
  data; a smaller fraction is drawn from it when a cell asks (`Cache.frames`), so adding a fraction to a
  study leaves the cache, and every cell trained on it, as they are;
- ``meta.json``: bodyparts, scorer, where the splits came from, the settings used and, for a downloaded
  dataset, its download record (files and sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from oodpose.atomic import atomic_dir
from oodpose.data.coco import read_coco
from oodpose.data.horse10 import DOWNLOAD_RECORD
from oodpose.data.labels import Labels, drop_labels_outside, find_label_files, read_labels
from oodpose.data.scales import SCALE_FILE, frame_scales
from oodpose.data.splits import (
    make_splits,
    official_split_files,
    read_official_splits,
    training_subset,
    validation_individuals,
)
from oodpose.errors import InputError
from oodpose.settings import DatasetSettings
from oodpose.study import OOD, SETS, TRAIN, VALIDATION

log = logging.getLogger(__name__)
CONTENT_FILES = ("index.parquet", "keypoints.npy", "splits.parquet", "images.npy")


def dataset_files(root: str | Path, settings: DatasetSettings) -> list[Path]:
    """The files inside a dataset folder that define its cache (labels, splits, scales, project config), so
    the workflow can prepare it again when one is edited; the images are read only when preparing."""
    root = Path(root)
    labels = [root / settings.labels] if settings.labels else find_label_files(root)
    twins = [f.with_suffix(".csv") for f in labels if f.suffix == ".h5" and f.with_suffix(".csv").exists()]
    extra = [root / name for name in (SCALE_FILE, "config.yaml") if (root / name).exists()]
    return sorted({*labels, *twins, *official_split_files(root), *extra})


def read_image(path: Path) -> np.ndarray:
    """An image as RGB uint8, whatever its channels (grayscale, RGBA)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: image listed in the labels is missing or unreadable")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def frozen_splits(root: Path, labels: Labels, settings: DatasetSettings) -> tuple[pd.DataFrame, str]:
    """The (split, frame row, role) table at 50 % training data and where its splits came from."""
    files = official_split_files(root) if settings.official_splits else []
    if files:
        base, source = read_official_splits(files, labels), f"official: {[f.name for f in files]}"
    else:
        base = make_splits(labels, settings.n_splits, settings.n_train_individuals, settings.seed)
        source = f"generated: {settings.n_splits} splits of {settings.n_train_individuals} individuals"
    row = pd.Series(np.arange(len(labels.frames)), index=labels.frames["frame"])
    base["frame"] = row[base["frame"]].to_numpy()
    return base[["split", "frame", "role"]], source


def prepare_cache(root: str | Path, out: str | Path, settings: DatasetSettings | None = None) -> Path:
    """Read, split and decode the dataset at `root` into the cache folder `out` (atomically)."""
    root, out, settings = Path(root), Path(out), settings or DatasetSettings()
    if root.resolve() == out.resolve() or out.resolve() in root.resolve().parents:
        raise InputError(f"the cache folder {out} would replace the dataset {root}; choose another output folder")
    if settings.labels:
        labels = read_coco(root / settings.labels, root)
    else:
        labels = read_labels(root, settings.individuals)
    drop_labels_outside(root, labels)
    unlabelled = [b for j, b in enumerate(labels.bodyparts) if np.isnan(labels.keypoints[:, j]).all()]
    if unlabelled:
        log.warning("%s: bodyparts %s have no label in any frame; their metrics will have n = 0", root, unlabelled)
    scales = frame_scales(root, labels, settings.scale_bodyparts)
    splits, split_source = frozen_splits(root, labels, settings)
    n_ood = int((splits["role"] == OOD).sum())
    if n_ood == 0:
        log.warning("%s: every individual is a training individual, so the OOD sets are empty", root)
    canvas = (int(labels.frames["height"].max()), int(labels.frames["width"].max()))
    with atomic_dir(out, made_by="prepare") as tmp:
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
            "fingerprint": fingerprint(tmp),
        }
        if (root / DOWNLOAD_RECORD).is_file():  # a downloaded dataset: what was fetched, with its sha256
            meta["download"] = json.loads((root / DOWNLOAD_RECORD).read_text())
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def fingerprint(folder: Path) -> str:
    """A digest of a cache's content (frames, scales, labels, splits, pixels): trained models record it, so a
    model is never resumed or evaluated on a cache that has changed since."""
    digest = hashlib.sha256()
    for name in CONTENT_FILES:
        with open(folder / name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


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
        if "fraction" in self.splits:
            raise InputError(f"{self.path}: a cache in an older layout (fractions baked in); prepare it again")
        self.bodyparts: list[str] = self.meta["bodyparts"]
        self.sizes = self.index[["width", "height"]].to_numpy()  # per frame, read once: items need it fast
        self.fingerprint: str | None = self.meta.get("fingerprint")

    @cached_property
    def images(self) -> np.ndarray:
        return np.load(self.path / "images.npy", mmap_mode="r")

    def frames(self, split: int, fraction: int, role: str, held_out: int = 0) -> np.ndarray:
        """Row numbers of the frames with `role` in one cell's split and fraction; with `held_out` validation
        individuals, their training frames are the VALIDATION set and leave the training and within sets."""
        if role not in (*SETS, VALIDATION):
            raise InputError(f"unknown set {role!r}; use one of {(*SETS, VALIDATION)}")
        table = self.splits[self.splits["split"] == split]
        if table.empty:
            known = sorted(self.splits["split"].unique().tolist())
            raise InputError(f"{self.path}: no split {split}; it has splits {known}")
        individuals = self.index["individual"].to_numpy()
        rows = table.loc[table["role"] == role, "frame"].to_numpy()
        if held_out:  # validation: the held-out horses' training frames, so that no test frame is ever scored
            validation = np.isin(individuals, self.validation_individuals(split, held_out))
            own = table.loc[table["role"] == TRAIN, "frame"].to_numpy()
            rows = own[validation[own]] if role == VALIDATION else rows[~validation[rows]]
        elif role == VALIDATION:
            raise InputError("the validation set exists only for a cell that holds out validation individuals")
        if role == TRAIN:
            n_individual_frames = int(np.isin(individuals, individuals[rows]).sum())
            rows = training_subset(rows, n_individual_frames, split, fraction, self.meta["settings"]["seed"])
        return np.sort(rows)

    def validation_individuals(self, split: int, n: int) -> list[str]:
        """The training individuals of `split` that a search cell holds out (oodpose.data.splits)."""
        table = self.splits[(self.splits["split"] == split) & (self.splits["role"] == TRAIN)]
        train = sorted(set(self.index["individual"].to_numpy()[table["frame"].to_numpy()]))
        return validation_individuals(train, n, split, self.meta["settings"]["seed"])
