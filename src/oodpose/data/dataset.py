"""A torch Dataset over a prepared cache: frames on a canvas, augmented as DeepLabCut's loaders do.

Every frame is resized by DeepLabCut's ``global_scale`` (0.8 in training; the test scale in
evaluation, 1.0 by default as DeepLabCut evaluates) onto the top-left of a canvas (the cache's
canvas times that scale, rounded up to 16 pixels) so that frames of different sizes batch
together; evaluation divides predictions by the same factors. Training augments with a preset of
`oodpose.data.augment`: the batch's scale jitter resizes the whole frame and its canvas grows with
it. Each sample carries its own seed and its batch's seed, so a batch is the same whichever worker
draws it and whether training was resumed or not.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from oodpose.data.augment import PRESETS, Augmentation, batch_scale, warp
from oodpose.data.cache import Cache
from oodpose.settings import GLOBAL_SCALE

CANVAS_MULTIPLE = 16  # canvases round up to this: the network's output stride, and few input shapes for a GPU


def canvas_size(cache: Cache, scale: float = GLOBAL_SCALE) -> tuple[int, int]:
    """(height, width) of the network input for a cache at `scale`: every frame fits whole.

    Training and evaluation alike round up to a multiple of 16 (padding at the bottom and right, so
    coordinates do not move): TensorFlow-'SAME' networks (timm's ``tf_`` EfficientNets) place their
    output grid by the input size modulo 16, and a network trained on one alignment and evaluated on
    another is off by pixels everywhere (measured: EfficientNet-Lite0, 1000 iterations, within-domain
    PCK@0.3 0.002 on 162-pixel-high frames, 0.80 on the same frames padded to 176).
    """
    h, w = cache.meta["canvas"]
    return tuple(int(math.ceil(math.ceil(n * scale) / CANVAS_MULTIPLE) * CANVAS_MULTIPLE) for n in (h, w))


def resize_factors(cache: Cache, rows: np.ndarray, scale: float) -> np.ndarray:
    """(frames, 2) x and y factors from original to network-input pixels (sizes round to whole pixels)."""
    size = cache.sizes[np.atleast_1d(rows)].astype(np.float64)
    return (np.round(size * scale) / size).astype(np.float32)


class PoseDataset(Dataset):
    """Frames `rows` of a cache; items are (uint8 CHW image, float32 (J, 2) keypoints, float32 scale, row).

    `scale` takes original-frame to network-input pixels (the global scale, the batch's jitter and any
    crop-and-pad): DeepLabCut sizes a joint's target disk by it. Index with a row position, or with
    (position, seed, batch seed) to augment; frames of one batch share its seed, its scale and canvas.
    """

    def __init__(self, cache: Cache, rows: np.ndarray, augmentation: str = "none", global_scale: float = GLOBAL_SCALE):
        self.cache, self.rows, self.global_scale = cache, np.asarray(rows), global_scale
        self.size = canvas_size(cache, global_scale)[::-1]  # (width, height), as OpenCV takes it
        self.factors = resize_factors(cache, self.rows, global_scale)
        self.preset = PRESETS[augmentation]
        self.augmentation = None if augmentation == "none" else Augmentation(self.preset)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        position, seed, batch_seed = (*item, None)[:3] if isinstance(item, tuple) else (item, None, None)
        row = int(self.rows[position])
        width, height = (int(v) for v in self.cache.sizes[row])
        image = np.ascontiguousarray(self.cache.images[row, :height, :width])
        keypoints = self.cache.keypoints[row]
        if self.augmentation is None:
            matrix = np.diag([*self.factors[position], 1.0])
            image, keypoints = warp(image, keypoints, matrix, self.size)
        else:
            scale = self.global_scale * batch_scale(self.preset, seed if batch_seed is None else batch_seed)
            matrix = np.diag([*resize_factors(self.cache, row, scale)[0], 1.0])
            size = canvas_size(self.cache, scale)[::-1]
            image, keypoints, matrix = self.augmentation(image, keypoints, matrix, size, seed)
        frame_scale = np.float32(math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, torch.from_numpy(keypoints), frame_scale, row
