"""Training augmentation as DeepLabCut's loaders ran it, as named presets, fast and with exact keypoints.

Presets (`training: augmentation:` in the config):
- ``paper``: the loader of the paper's time. DeepLabCut 2.1.x (v2.1.8.2, May 2020) trains batches
  of more than one frame only with its imgaug loader (``dataset/pose_dataset_imgaug.py``); with
  the ``pose_cfg.yaml`` template of that release it scales each batch by global_scale x
  uniform(0.75 x 0.5, 1.25 x 1.25) (``get_scale``) and, with probability ``cropratio`` 0.4, crops
  or pads each side by up to 15 % and resizes back (``build_augmentation_pipeline``); every other
  transform is off unless pose_cfg.yaml names it.
- ``imgaug``: today's DeepLabCut imgaug loader (``datasets/pose_imgaug.py``, since 2.2, August
  2020, after the paper) with its template's values: global_scale x uniform(0.5, 1.25) per batch;
  rotation +-25 deg with p 0.4; motion blur (kernel 7), coarse dropout (2 % of pixels in blocks of
  1/0.3 px, per channel half the time) and elastic deformation (sigma 5, alpha uniform(0, 40)) each
  with p 0.5; histogram equalisation and CLAHE each with p 0.1, drawn independently; crop-and-pad
  +-15 % with p 0.4; no mirroring.
- ``none``: the frame at global_scale only.

As DeepLabCut does, the scale is drawn once per batch and resizes the whole frame (about its
top-left corner, onto a canvas that grows with the scale), so no frame loses its edges. The frame's
geometry (scale, rotation about the frame's centre, crop-and-pad, then the elastic deformation) is
composed into one map and applied in one resampling; keypoints move by the very same map.
Appearance transforms follow and move no keypoint (so dropout holes stay rectangles and blur is not
warped, where imgaug applies them before the elastic step and the crop).
"""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

FIXED_POINT_STEPS, FIXED_POINT_DAMPING = 8, 0.7

# Frames are augmented one at a time (in the training process or one per loader worker); OpenCV's
# own thread pool would only compete with torch's threads for the same cores.
cv2.setNumThreads(1)


@dataclass(frozen=True)
class Preset:
    """One augmentation recipe: DeepLabCut's ranges and probabilities (all off by default)."""

    scale_jitter: tuple[float, float] = (1.0, 1.0)  # times global_scale, one draw per batch
    rotation: float = 0.0  # degrees, uniform in +-rotation
    rotation_p: float = 0.0
    crop_pad: float = 0.0  # each side cropped (> 0) or padded (< 0) by up to this fraction, then resized back
    crop_pad_p: float = 0.0
    elastic_p: float = 0.0
    elastic_alpha: tuple[float, float] = (0.0, 40.0)  # imgaug's default range, as DeepLabCut leaves it
    elastic_sigma: float = 5.0
    motion_blur_p: float = 0.0
    motion_blur_kernel: int = 7
    dropout_p: float = 0.0
    dropout_fraction: float = 0.02  # of the pixels
    dropout_size_percent: float = 0.3  # the mask's resolution relative to the frame: blocks of about 3 px
    dropout_per_channel_p: float = 0.5
    histeq_p: float = 0.0
    clahe_p: float = 0.0


PRESETS = {
    "paper": Preset(scale_jitter=(0.75 * 0.5, 1.25 * 1.25), crop_pad=0.15, crop_pad_p=0.4),
    "imgaug": Preset(
        scale_jitter=(0.5, 1.25),
        rotation=25.0,
        rotation_p=0.4,
        crop_pad=0.15,
        crop_pad_p=0.4,
        elastic_p=0.5,
        motion_blur_p=0.5,
        dropout_p=0.5,
        histeq_p=0.1,
        clahe_p=0.1,
    ),
    "none": Preset(),
}


@dataclass(frozen=True)
class Draw:
    """What one frame's augmentation chose; None or False where a transform did not fire."""

    angle: float | None  # degrees
    crop_pad: tuple[float, float, float, float] | None  # left, top, right, bottom, as fractions of the frame
    elastic_alpha: float | None
    motion_blur: bool
    dropout: bool
    histeq: bool
    clahe: bool


def batch_scale(preset: Preset, batch_seed: int | None) -> float:
    """The jitter of one batch (a uniform draw from the preset's range)."""
    low, high = preset.scale_jitter
    return float(np.random.default_rng(batch_seed).uniform(low, high)) if high > low else low


def draw(preset: Preset, rng: np.random.Generator) -> Draw:
    """One frame's choices, each transform with its own chance, in a fixed order of draws."""

    def fires(p: float) -> bool:
        return bool(rng.random() < p)

    angle = float(rng.uniform(-preset.rotation, preset.rotation)) if fires(preset.rotation_p) else None
    crop = tuple(rng.uniform(-preset.crop_pad, preset.crop_pad, 4)) if fires(preset.crop_pad_p) else None
    alpha = float(rng.uniform(*preset.elastic_alpha)) if fires(preset.elastic_p) else None
    flags = [fires(p) for p in (preset.motion_blur_p, preset.dropout_p, preset.histeq_p, preset.clahe_p)]
    return Draw(angle, crop, alpha, *flags)


def about(linear: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 3x3 matrix that applies the 2x2 `linear` map about `centre`."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - matrix[:2, :2] @ centre
    return matrix


def geometry(choice: Draw, width: float, height: float) -> np.ndarray:
    """Rotation about the frame's centre and crop-and-pad of a width x height frame, as one 3x3 matrix."""
    matrix = np.eye(3)
    if choice.angle is not None:
        angle = np.deg2rad(choice.angle)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = about(rotation, np.array([width, height]) / 2)
    if choice.crop_pad is not None:  # crop (> 0) or pad (< 0) each side, then resize back to the frame's size
        left, top, right, bottom = np.array(choice.crop_pad) * [width, height, width, height]
        sx, sy = width / (width - left - right), height / (height - top - bottom)
        matrix = np.array([[sx, 0, -left * sx], [0, sy, -top * sy], [0, 0, 1]]) @ matrix
    return matrix


def imgaug_blur_ksize(sigma: float) -> int:
    """imgaug's Gaussian kernel size: about 95-99% of the weight, odd, at least 5."""
    ksize = int(max(sigma * (3.3 if sigma < 3 else 2.9 if sigma < 5 else 2.6), 5))
    return ksize + 1 - ksize % 2


def elastic_displacement(rng: np.random.Generator, width: int, height: int, alpha: float = 20.0, sigma: float = 5.0):
    """(height, width, 2) imgaug elastic displacement: alpha x Gaussian-blurred uniform(-1, 1) noise.

    As imgaug, the noise extends one kernel beyond the border so edges are as smooth as the middle.
    """
    ksize = imgaug_blur_ksize(sigma)
    noise = rng.random((height + 2 * ksize, width + 2 * ksize, 2), dtype=np.float32)
    noise = cv2.GaussianBlur(noise * 2 - 1, (ksize, ksize), sigma)[ksize:-ksize, ksize:-ksize]
    return np.ascontiguousarray(noise * alpha)


@functools.cache
def pixel_grid(width: int, height: int) -> np.ndarray:
    """(height, width, 2) x, y coordinates of every pixel."""
    return np.dstack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)))


def warp(
    image: np.ndarray,
    keypoints: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    displacement: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Move `image` by the 3x3 `matrix` onto a canvas of `size` (w, h), then deform it by `displacement`.

    Output pixel q shows the affine-moved image at q + d(q). A keypoint that the affine map takes
    to p therefore ends at the q with q + d(q) = p. d is smooth but not gentle (its slope reaches
    about 1 at alpha 20, sigma 5), so the iteration is damped:
    q <- q - 0.7 (q + d(q) - p) leaves |q + d(q) - p| < 0.1 px for 4,400 keypoints out of 4,400
    (albumentations rasterises keypoints: whole pixels, and one pixel too high).
    Keypoints are (J, 2) pixels, NaN where unlabelled.
    """
    moved = (keypoints @ matrix[:2, :2].T + matrix[:2, 2]).astype(np.float32)
    if displacement is None:
        return cv2.warpAffine(image, matrix[:2], size, flags=cv2.INTER_LINEAR), moved
    inverse = np.linalg.inv(matrix)[:2].astype(np.float32)
    maps = cv2.transform(pixel_grid(*size) + displacement, inverse)
    image = cv2.remap(image, maps, None, cv2.INTER_LINEAR)
    labelled = ~np.isnan(moved).any(axis=1)
    if labelled.any():
        target = moved[labelled]
        points = target.copy()
        for _ in range(FIXED_POINT_STEPS):
            shift = cv2.remap(
                displacement, points[None, :, 0], points[None, :, 1], cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE
            )
            points -= FIXED_POINT_DAMPING * (points + shift.reshape(-1, 2) - target)
        moved[labelled] = points
    return image, moved


def coarse_dropout(image: np.ndarray, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """imgaug's CoarseDropout: a keep-mask drawn at `dropout_size_percent` of the frame's resolution, enlarged
    (nearest neighbour) onto the frame; per channel with probability `dropout_per_channel_p`, else shared."""
    h, w, channels = image.shape
    small = (max(1, round(h * preset.dropout_size_percent)), max(1, round(w * preset.dropout_size_percent)))
    per_channel = rng.random() < preset.dropout_per_channel_p
    keep = rng.random((*small, channels if per_channel else 1)) >= preset.dropout_fraction
    mask = cv2.resize(keep.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, -1)
    return image * mask


class Augmentation:
    """A preset's augmentation of one frame, every draw from that frame's own seed."""

    def __init__(self, preset: Preset):
        self.preset = preset
        self.blur = A.MotionBlur(blur_limit=(preset.motion_blur_kernel,) * 2, p=1.0)
        self.histeq, self.clahe = A.Equalize(by_channels=True, p=1.0), A.CLAHE(p=1.0)

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, matrix: np.ndarray, size: tuple[int, int], seed: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`image` moved by `matrix` (3x3: the frame's scale) onto a canvas of `size` (w, h), augmented.

        Returns the image, the keypoints (those that leave the canvas become NaN, as DeepLabCut drops
        them) and the full geometric map, whose scale sizes the targets.
        """
        rng = np.random.default_rng(seed)
        choice = draw(self.preset, rng)
        height, width = image.shape[:2]
        matrix = geometry(choice, width * matrix[0, 0], height * matrix[1, 1]) @ matrix
        field = None
        if choice.elastic_alpha is not None:
            field = elastic_displacement(rng, *size, choice.elastic_alpha, self.preset.elastic_sigma)
        image, keypoints = warp(image, keypoints, matrix, size, field)
        if choice.motion_blur:
            image = self.apply(self.blur, image, rng, seed)
        if choice.dropout:
            image = coarse_dropout(image, rng, self.preset)
        if choice.histeq:
            image = self.apply(self.histeq, image, rng, seed)
        if choice.clahe:
            image = self.apply(self.clahe, image, rng, seed)
        keypoints[(keypoints < 0).any(axis=1) | (keypoints >= size).any(axis=1)] = np.nan
        return image, keypoints, matrix

    @staticmethod
    def apply(transform: A.BasicTransform, image: np.ndarray, rng: np.random.Generator, seed: int | None):
        """An albumentations transform, its own random parameters (e.g. the blur's angle) drawn from `rng`."""
        transform.set_random_state(rng, random.Random(seed))
        return transform(image=image)["image"]
