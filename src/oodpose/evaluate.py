"""Evaluate one trained cell on its train, within-domain test and out-of-domain frames.

Metrics follow the official Horse-10 benchmark: per keypoint, the Euclidean error in pixels of
the original image, divided by the individual's scale (nose-to-eye distance); a set's normalised
error is the nanmean over all its (frame, bodypart) pairs, and PCK@0.3 is the share of labelled
keypoints whose normalised error is below 0.3. The final model's predictions are written in
DeepLabCut's format (pandas HDF, columns scorer / bodyparts / x, y, likelihood; rows = frame path).
The final model is also scored on the test frames of each corrupted set (Horse-C, `oodpose.corruptions`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from oodpose.atomic import atomic_file
from oodpose.backbones import get_backbone
from oodpose.corruptions import corrupted_view
from oodpose.data.cache import Cache
from oodpose.data.dataset import PoseDataset, resize_factors
from oodpose.device import Runtime, runtime
from oodpose.errors import InputError
from oodpose.models import PoseNet, build_model
from oodpose.settings import TEST_SCALE
from oodpose.study import OOD, SCRATCH, SETS, TRAIN, VALIDATION, WITHIN
from oodpose.targets import predict

PCK_THRESHOLD = 0.3
SCORER = "oodpose"


def load_trained(path: Path, settings: dict, n_joints: int) -> tuple[PoseNet, int]:
    """A trained network from a ``model.pt`` or learning-curve file, and its iteration."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or foreign files fail in many ways
        raise InputError(
            f"{path}: cannot read the trained weights ({type(err).__name__}: {err}); retrain the cell, or, for a "
            "learning-curve file (snapshots/weights-*.pt), delete it to drop that iteration from the curve"
        ) from err
    backbone = get_backbone(settings["backbone"], settings["backbones_table"])
    trained = settings.get("architecture", backbone.architecture)  # older cells lack it: their weights are checked
    if trained != backbone.architecture:
        raise InputError(
            f"{path}: the cell was trained as {trained}, but the row of {settings['backbone']!r} in "
            f"{settings['backbones_table']} gives {backbone.architecture}; retrain the cell, or restore the row"
        )
    model = build_model(backbone, n_joints, SCRATCH)  # architecture only; the weights come from `path`
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(
            f"{path}: these weights are not a {settings['backbone']!r} network with {n_joints} bodyparts, as its "
            f"settings.json says; retrain the cell (first lines of the mismatch: {str(err)[:300]})"
        ) from err
    return model, int(state["iteration"])


def read_settings(path: Path) -> dict:
    """A cell's training settings; a damaged file is named, with the way out."""
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"{path}: the cell's training settings are damaged ({type(err).__name__}: {err}); retrain the cell "
            "(e.g. `snakemake <the cell's metrics.csv> --forcerun train`)"
        ) from err
    if not isinstance(settings, dict) or "backbone" not in settings:
        raise InputError(f"{path}: not a cell's training settings (no backbone); retrain the cell")
    return settings


def check_same_cache(train_dir: Path, settings: dict, cache: Cache) -> None:
    """A model is evaluated only on the cache it was trained on: another one would call unseen frames 'train'."""
    trained_on = settings.get("cache_fingerprint")
    if trained_on != cache.fingerprint:
        raise InputError(
            f"{train_dir} was trained on a cache with fingerprint {trained_on}, but {cache.path} has "
            f"{cache.fingerprint} (another dataset, or one prepared again since): evaluate with the cache it "
            "was trained on, or retrain the cell"
        )
    if settings.get("bodyparts", cache.bodyparts) != cache.bodyparts:
        raise InputError(
            f"{train_dir} was trained on bodyparts {settings['bodyparts']}, but {cache.path} has {cache.bodyparts}"
        )


@torch.no_grad()
def predict_frames(
    model: PoseNet,
    cache: Cache,
    rows: np.ndarray,
    rt: Runtime,
    test_scale: float,
    batch_size: int = 32,
    batchnorm: str = "running",
) -> np.ndarray:
    """(frames, J, 3) predictions on frames resized by `test_scale`, x and y in the original image's pixels.

    `batchnorm` 'per_frame' normalises a network that trains its batch norm (MobileNetV2) by each frame's own
    statistics, as DeepLabCut's MobileNetV2 graph does at test time; 'running' uses the running statistics.
    """
    model = model.to(rt.device, memory_format=torch.channels_last).eval()
    per_frame = batchnorm == "per_frame" and model.train_batchnorm
    for module in model.backbone.modules() if per_frame else ():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()  # batch statistics, of one frame at a time
    loader = DataLoader(
        PoseDataset(cache, rows, global_scale=test_scale),
        batch_size=1 if per_frame else batch_size,
        num_workers=rt.workers,
        pin_memory=rt.pin_memory,
    )
    out = []
    for images, *_ in tqdm(loader, desc="predict", mininterval=5):
        images = images.to(rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with rt.autocast():
            scoremap, locref = model(images)
        out.append(predict(scoremap, locref).cpu().numpy())
    pred = np.concatenate(out) if out else np.zeros((0, len(cache.bodyparts), 3), np.float32)
    pred[..., :2] /= resize_factors(cache, rows, test_scale)[:, None, :]
    return pred


def keypoint_metrics(pred: np.ndarray, truth: np.ndarray, scale: np.ndarray, bodyparts: list[str]) -> pd.DataFrame:
    """Per bodypart and 'all': n labelled, mean pixel error, normalised error and PCK@0.3."""
    error = np.linalg.norm(pred[..., :2] - truth, axis=-1)  # NaN where not labelled
    normalised = error / scale[:, None]
    rows = []
    for name, e, ne in [(b, error[:, j], normalised[:, j]) for j, b in enumerate(bodyparts)] + [
        ("all", error.ravel(), normalised.ravel())
    ]:
        labelled = ~np.isnan(e)
        n = int(labelled.sum())
        rows.append(
            {
                "bodypart": name,
                "n": n,
                "pixel_error": float(e[labelled].mean()) if n else np.nan,
                "normalised_error": float(ne[labelled].mean()) if n else np.nan,
                "pck": float((ne[labelled] < PCK_THRESHOLD).mean()) if n else np.nan,
            }
        )
    return pd.DataFrame(rows)


def to_deeplabcut(pred: np.ndarray, frames: list[str], bodyparts: list[str], scorer: str = SCORER) -> pd.DataFrame:
    columns = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    return pd.DataFrame(pred.reshape(len(frames), -1).astype(np.float64), index=frames, columns=columns)


def cell_sets(cache: Cache, split: int, fraction: int, held_out: int) -> dict[str, np.ndarray]:
    """The sets a cell is scored on: its training and test sets, or for a search cell that holds out validation
    horses, its training and validation sets only, so that choosing its schedule never sees a test frame."""
    names = (TRAIN, VALIDATION) if held_out else SETS
    return {set_: cache.frames(split, fraction, set_, held_out=held_out) for set_ in names}


class PooledSets(NamedTuple):
    """A cell's sets as one batch to predict: the rows, their keypoints and scales, and each row's set."""

    rows: np.ndarray
    truth: np.ndarray
    scale: np.ndarray
    set_of: np.ndarray

    @classmethod
    def of(cls, cache: Cache, sets: dict[str, np.ndarray]) -> PooledSets:
        rows = np.concatenate(list(sets.values()))
        set_of = np.concatenate([[set_] * len(r) for set_, r in sets.items()])
        return cls(rows, cache.keypoints[rows], cache.index["scale"].to_numpy()[rows], set_of)

    def metrics(self, pred: np.ndarray, bodyparts: list[str]) -> dict[str, pd.DataFrame]:
        """`keypoint_metrics` of each set, from the batch's predictions."""
        chosen = {set_: self.set_of == set_ for set_ in dict.fromkeys(self.set_of)}
        return {s: keypoint_metrics(pred[c], self.truth[c], self.scale[c], bodyparts) for s, c in chosen.items()}


def open_cell(train_dir: Path, cache_path: str | Path) -> tuple[dict, Cache]:
    """A trained cell's settings and the cache it was trained on (checked to be that cache)."""
    settings_path = train_dir / "settings.json"
    if not (train_dir / "model.pt").exists() or not settings_path.exists():
        raise InputError(f"{train_dir}: no trained model (model.pt and settings.json); train the cell first")
    settings = read_settings(settings_path)
    cache = Cache(cache_path)
    check_same_cache(train_dir, settings, cache)
    return settings, cache


def cell_identity(settings: dict, test_scale: float, batchnorm: str) -> dict:
    """The columns that name a cell's metrics rows, and how its frames were predicted."""
    return {
        "backbone": settings["backbone"],
        "init": settings["init"],
        "split": int(settings["split"]),
        "fraction": int(settings["fraction"]),
        "test_scale": test_scale,  # provenance: the frames' scale at prediction
        "batchnorm": batchnorm,  # and the batch-norm statistics used
    }


def write_metrics(tables: list[pd.DataFrame], identity: dict, keys: list[str], path: str | Path) -> pd.DataFrame:
    result = pd.concat(tables, ignore_index=True).assign(**identity)
    result = result[list(identity) + keys + ["bodypart", "n", "pixel_error", "normalised_error", "pck"]]
    with atomic_file(path) as tmp:
        result.to_csv(tmp, index=False)
    return result


def evaluate(
    train_dir: str | Path,
    cache_path: str | Path,
    predictions: str | Path,
    metrics: str | Path,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 32,
    test_scale: float = TEST_SCALE,
    batchnorm: str = "running",
) -> pd.DataFrame:
    """Evaluate the final model and every learning-curve snapshot of a trained cell, on frames resized by
    `test_scale` (DeepLabCut evaluates at 1.0, the frame's own size, after training at global_scale 0.8)."""
    train_dir = Path(train_dir)
    settings, cache = open_cell(train_dir, cache_path)
    rt = runtime(device, threads)
    split, fraction = int(settings["split"]), int(settings["fraction"])
    sets = cell_sets(cache, split, fraction, int(settings.get("validation_individuals", 0)))
    batch = PooledSets.of(cache, sets)
    rows = batch.rows
    checkpoints = sorted(train_dir.glob("snapshots/weights-*.pt")) + [train_dir / "model.pt"]
    tables = []
    for path in checkpoints:
        model, iteration = load_trained(path, settings, len(cache.bodyparts))
        pred = predict_frames(model, cache, rows, rt, test_scale, batch_size, batchnorm)
        for set_, table in batch.metrics(pred, cache.bodyparts).items():
            tables.append(table.assign(iteration=iteration, set=set_))
    frames = cache.index["frame"].to_numpy()[rows].tolist()
    with atomic_file(predictions) as tmp:
        to_deeplabcut(pred, frames, cache.bodyparts, cache.meta.get("scorer", SCORER)).to_hdf(
            tmp, key="df_with_missing", mode="w"
        )
    return write_metrics(tables, cell_identity(settings, test_scale, batchnorm), ["iteration", "set"], metrics)


def evaluate_corrupted(
    train_dir: str | Path,
    cache_path: str | Path,
    corrupted: list[str | Path],
    metrics: str | Path,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 32,
    test_scale: float = TEST_SCALE,
    batchnorm: str = "running",
) -> pd.DataFrame:
    """Evaluate a cell's final model on its test frames (within domain and out of domain) in each corrupted
    set (`oodpose.corruptions`), one row per corruption, severity, set and bodypart."""
    if not corrupted:
        raise InputError("no corrupted sets to evaluate on; list some in evaluation.corruptions")
    train_dir = Path(train_dir)
    settings, cache = open_cell(train_dir, cache_path)
    if int(settings.get("validation_individuals", 0)):
        raise InputError(f"{train_dir}: a search cell is scored on validation horses, never on corrupted test frames")
    rt = runtime(device, threads)
    sets = {s: cache.frames(int(settings["split"]), int(settings["fraction"]), s) for s in (WITHIN, OOD)}
    batch = PooledSets.of(cache, sets)
    model, _ = load_trained(train_dir / "model.pt", settings, len(cache.bodyparts))
    tables = []
    for folder in map(Path, corrupted):
        view, meta = corrupted_view(cache, folder)
        pred = predict_frames(model, view, batch.rows, rt, test_scale, batch_size, batchnorm)
        for set_, table in batch.metrics(pred, cache.bodyparts).items():
            tables.append(table.assign(corruption=meta["corruption"], severity=int(meta["severity"]), set=set_))
    identity = cell_identity(settings, test_scale, batchnorm)
    return write_metrics(tables, identity, ["corruption", "severity", "set"], metrics)
