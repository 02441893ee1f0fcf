"""Per-frame normalisation scales: the individual's nose-to-eye distance in pixels.

Errors are divided by a per-individual constant (as in the official Horse-10 benchmark), never by
a per-frame distance, so a frame where the nose or eye is not visible still has a scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from oodpose.data.labels import Labels
from oodpose.errors import InputError

SCALE_FILE = "Horsescale.h5"


def frame_scales(root: Path, labels: Labels, scale_bodyparts: tuple[str, str] | None = None) -> np.ndarray:
    """One scale per labelled frame, from ``Horsescale.h5`` when present, else from the labels
    (`scale_bodyparts`, by default a nose- and an eye-like bodypart)."""
    path = root / SCALE_FILE
    if path.exists():
        table = pd.read_hdf(path)
        if "scale" not in table.columns:
            raise InputError(f"{path}: expected a 'scale' column, found {list(table.columns)}")
        table.index = [str(i).replace("\\", "/") for i in table.index]
        scales = table["scale"].reindex(labels.frames["frame"]).to_numpy(dtype=np.float64)
        missing = labels.frames["frame"][np.isnan(scales)].tolist()
        if missing:
            raise InputError(f"{path}: no scale for {len(missing)} labelled frames, e.g. {missing[:3]}")
        unusable = ~(np.isfinite(scales) & (scales > 0))  # every error is divided by it
        if unusable.any():
            frame, value = labels.frames["frame"][unusable].iloc[0], scales[unusable][0]
            raise InputError(
                f"{path}: {int(unusable.sum())} frames have a scale that is not a positive number, e.g. {frame}: "
                f"{value}; give each frame its individual's nose-to-eye distance in pixels"
            )
        return scales
    per_individual = individual_scales(labels, scale_bodyparts or default_scale_bodyparts(labels.bodyparts))
    return labels.frames["individual"].map(per_individual).to_numpy(dtype=np.float64)


def default_scale_bodyparts(bodyparts: tuple[str, ...]) -> tuple[str, str]:
    """A nose-like and an eye-like bodypart (Horse-10's Nose and Eye), or a clear error asking for two."""
    lower = {b.lower(): b for b in bodyparts}
    nose = next((lower[n] for n in ("nose", "snout", "muzzle") if n in lower), None)
    eye = next((b for b in bodyparts if "eye" in b.lower()), None)
    if nose is None or eye is None:
        raise InputError(
            f"no nose- and eye-like bodyparts among {list(bodyparts)} to normalise errors by; "
            "name two bodyparts with `scale_bodyparts` in the dataset's config (--scale-bodyparts)"
        )
    return nose, eye


def individual_scales(labels: Labels, scale_bodyparts: tuple[str, str]) -> pd.Series:
    """Per individual, the median distance between the two scale bodyparts over its frames."""
    if scale_bodyparts[0] == scale_bodyparts[1]:
        raise InputError(
            f"scale bodyparts name {scale_bodyparts[0]!r} twice; a scale is the distance between two different "
            "bodyparts: set `scale_bodyparts` in the dataset's config to two of them"
        )
    missing = [b for b in scale_bodyparts if b not in labels.bodyparts]
    if missing:
        raise InputError(
            f"scale bodyparts {missing} are not among the dataset's bodyparts {list(labels.bodyparts)}; "
            "set `scale_bodyparts` in the dataset's config to two of them"
        )
    a, b = (labels.bodyparts.index(name) for name in scale_bodyparts)
    distance = np.linalg.norm(labels.keypoints[:, a] - labels.keypoints[:, b], axis=1)
    scales = pd.Series(distance).groupby(labels.frames["individual"].to_numpy()).median()
    unusable = scales[~(scales > 0)].index.tolist()
    if unusable:
        raise InputError(
            f"individual(s) {unusable} have no frame with both {scale_bodyparts[0]} and "
            f"{scale_bodyparts[1]} labelled, so no normalisation scale; label them or add {SCALE_FILE}"
        )
    return scales
