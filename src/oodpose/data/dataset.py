"""A torch Dataset over a prepared cache, with DeepLabCut's default training augmentation.

Every image is first resized by DeepLabCut's ``global_scale`` (0.8) and placed at the top-left of a
fixed canvas (the cache's canvas times ``global_scale``) so that frames of different sizes batch
together; evaluation does the same and divides predictions by ``global_scale``. Training then
applies DeepLabCut's imgaug defaults (reference.md section 3) with albumentations. Each sample
carries its own augmentation seed, so a batch is the same whichever worker draws it and whether
training was resumed or not.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from oodpose.data.cache import Cache  # noqa: E402

GLOBAL_SCALE = 0.8


def deeplabcut_augmentation() -> A.Compose:
    """DeepLabCut's default augmentation: scale jitter, rotation, blur, dropout, elastic, CLAHE, crop-pad."""
    return A.Compose(
        [
            A.Affine(scale=(0.5, 1.25), p=1.0),
            A.Affine(rotate=(-25, 25), p=0.4),
            A.MotionBlur(blur_limit=(3, 7), p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 3), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), p=0.5
            ),
            A.ElasticTransform(alpha=20, sigma=5, p=0.5),
            A.OneOf([A.CLAHE(), A.Equalize()], p=0.1),
            A.CropAndPad(percent=(-0.15, 0.15), keep_size=True, p=0.4),
        ],
        keypoint_params=A.KeypointParams(format="xy", label_fields=["joint"], remove_invisible=False),
        seed=0,
    )


def canvas_size(cache: Cache, global_scale: float = GLOBAL_SCALE) -> tuple[int, int]:
    """(height, width) of the network input for a cache."""
    h, w = cache.meta["canvas"]
    return int(round(h * global_scale)), int(round(w * global_scale))


def resize_factors(cache: Cache, rows: np.ndarray, global_scale: float) -> np.ndarray:
    """(frames, 2) x and y factors from original to network-input pixels (sizes round to whole pixels)."""
    size = cache.sizes[np.atleast_1d(rows)].astype(np.float64)
    return (np.round(size * global_scale) / size).astype(np.float32)


def scaled_frame(cache: Cache, row: int, global_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame `row` resized by `global_scale` on the fixed canvas, with its keypoints scaled alike."""
    width, height = (int(v) for v in cache.sizes[row])
    factors = resize_factors(cache, row, global_scale)[0]
    size = (int(round(width * factors[0])), int(round(height * factors[1])))
    canvas = np.zeros((*canvas_size(cache, global_scale), 3), dtype=np.uint8)
    image = np.ascontiguousarray(cache.images[row, :height, :width])
    canvas[: size[1], : size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return canvas, cache.keypoints[row] * factors


class PoseDataset(Dataset):
    """Frames `rows` of a cache; items are (uint8 CHW image, float32 (J, 2) keypoints, row).

    Index it with a row position, or with a (position, seed) pair to augment with that seed.
    """

    def __init__(self, cache: Cache, rows: np.ndarray, augment: bool, global_scale: float = GLOBAL_SCALE):
        self.cache, self.rows, self.global_scale = cache, np.asarray(rows), global_scale
        self.transform = deeplabcut_augmentation() if augment else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        position, seed = item if isinstance(item, tuple) else (item, None)
        row = int(self.rows[position])
        image, keypoints = scaled_frame(self.cache, row, self.global_scale)
        if self.transform is not None:
            image, keypoints = self.augment(image, keypoints, seed)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(keypoints), row

    def augment(self, image: np.ndarray, keypoints: np.ndarray, seed: int | None):
        labelled = np.flatnonzero(~np.isnan(keypoints).any(axis=1))
        self.transform.set_random_seed(seed)
        out = self.transform(image=image, keypoints=keypoints[labelled], joint=labelled)
        moved = np.full_like(keypoints, np.nan)
        points = np.asarray(out["keypoints"], dtype=np.float32).reshape(-1, 2)
        joints = np.asarray(out["joint"], dtype=np.int64)
        h, w = out["image"].shape[:2]
        inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
        moved[joints[inside]] = points[inside]
        return out["image"], moved
