"""A torch Dataset over a prepared cache: frames on a fixed canvas, augmented as DeepLabCut does.

Every frame is resized by DeepLabCut's ``global_scale`` (0.8) onto the top-left of a fixed canvas
(the cache's canvas times ``global_scale``) so that frames of different sizes batch together;
evaluation divides predictions by the same factors. Training augments with
`oodpose.data.augment`. Each sample carries its own seed, so a batch is the same whichever worker
draws it and whether training was resumed or not.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from oodpose.data.augment import Augmentation, warp
from oodpose.data.cache import Cache
from oodpose.settings import GLOBAL_SCALE


def canvas_size(cache: Cache, global_scale: float = GLOBAL_SCALE) -> tuple[int, int]:
    """(height, width) of the network input for a cache."""
    h, w = cache.meta["canvas"]
    return int(round(h * global_scale)), int(round(w * global_scale))


def resize_factors(cache: Cache, rows: np.ndarray, global_scale: float) -> np.ndarray:
    """(frames, 2) x and y factors from original to network-input pixels (sizes round to whole pixels)."""
    size = cache.sizes[np.atleast_1d(rows)].astype(np.float64)
    return (np.round(size * global_scale) / size).astype(np.float32)


class PoseDataset(Dataset):
    """Frames `rows` of a cache; items are (uint8 CHW image, float32 (J, 2) keypoints, row).

    Index it with a row position, or with a (position, seed) pair to augment with that seed.
    """

    def __init__(self, cache: Cache, rows: np.ndarray, augment: bool, global_scale: float = GLOBAL_SCALE):
        self.cache, self.rows = cache, np.asarray(rows)
        self.size = canvas_size(cache, global_scale)[::-1]  # (width, height), as OpenCV takes it
        self.factors = resize_factors(cache, self.rows, global_scale)
        self.augmentation = Augmentation() if augment else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        position, seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.rows[position])
        width, height = (int(v) for v in self.cache.sizes[row])
        image = np.ascontiguousarray(self.cache.images[row, :height, :width])
        matrix = np.diag([*self.factors[position], 1.0])
        if self.augmentation is None:
            image, keypoints = warp(image, self.cache.keypoints[row], matrix, self.size)
        else:
            image, keypoints = self.augmentation(image, self.cache.keypoints[row], matrix, self.size, seed)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(keypoints), row
