"""DeepLabCut's default training augmentation (reference.md section 3), fast and with exact keypoints.

Geometry (global scale x scale jitter, rotation, crop-and-pad, then the elastic deformation) is
composed into one map and applied in one resampling of the original frame, instead of one per
transform; keypoints move by the very same map. Appearance (motion blur, coarse dropout, CLAHE or
histogram equalisation) follows with albumentations and moves no keypoint. Each transform keeps
DeepLabCut's parameters and probabilities; the order differs from imgaug's (blur and dropout
before the elastic deformation, crop-and-pad last): here dropout holes stay rectangles and blur
is not warped.
"""

from __future__ import annotations

import functools
import os
import random

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

SCALE_JITTER = (0.5, 1.25)
ROTATION_DEGREES, ROTATION_P = 25.0, 0.4
ELASTIC_ALPHA, ELASTIC_SIGMA, ELASTIC_P = 20.0, 5.0, 0.5
CROP_PAD_FRACTION, CROP_PAD_P = 0.15, 0.4
FIXED_POINT_STEPS, FIXED_POINT_DAMPING = 8, 0.7

# Frames are augmented one at a time (in the training process or one per loader worker); OpenCV's
# own thread pool would only compete with torch's threads for the same cores.
cv2.setNumThreads(1)


def appearance() -> A.Compose:
    """Motion blur, coarse dropout, CLAHE or equalisation; draws from the generator set on it."""
    return A.Compose(
        [
            A.MotionBlur(blur_limit=(3, 7), p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 3), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), p=0.5
            ),
            A.OneOf([A.CLAHE(), A.Equalize()], p=0.1),
        ],
        seed=0,
    )


def about(linear: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 3x3 matrix that applies the 2x2 `linear` map about `centre`."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - matrix[:2, :2] @ centre
    return matrix


def affine_jitter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Scale jitter, rotation and crop-and-pad on a width x height canvas, as one 3x3 matrix."""
    centre = np.array([width, height]) / 2
    matrix = about(np.eye(2) * rng.uniform(*SCALE_JITTER), centre)
    if rng.random() < ROTATION_P:
        angle = np.deg2rad(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
        matrix = about(np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]), centre) @ matrix
    if rng.random() < CROP_PAD_P:
        # each side cropped (> 0) or padded (< 0) by up to 15%, the result resized back to the canvas
        left, top, right, bottom = rng.uniform(-CROP_PAD_FRACTION, CROP_PAD_FRACTION, 4) * ([width, height] * 2)
        sx, sy = width / (width - left - right), height / (height - top - bottom)
        matrix = np.array([[sx, 0, -left * sx], [0, sy, -top * sy], [0, 0, 1]]) @ matrix
    return matrix


def imgaug_blur_ksize(sigma: float) -> int:
    """imgaug's Gaussian kernel size: about 95-99% of the weight, odd, at least 5."""
    ksize = int(max(sigma * (3.3 if sigma < 3 else 2.9 if sigma < 5 else 2.6), 5))
    return ksize + 1 - ksize % 2


def elastic_displacement(
    rng: np.random.Generator, width: int, height: int, alpha: float = ELASTIC_ALPHA, sigma: float = ELASTIC_SIGMA
) -> np.ndarray:
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
    about 1 at DeepLabCut's alpha 20, sigma 5), so the iteration is damped:
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


class Augmentation:
    """DeepLabCut's augmentation of one frame, every draw from that frame's own seed."""

    def __init__(self):
        self.appearance = appearance()

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, matrix: np.ndarray, size: tuple[int, int], seed: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`image` moved by `matrix` (3x3, e.g. the global scale) onto a canvas of `size` (w, h), augmented.

        Keypoints that leave the canvas become NaN (not labelled), as DeepLabCut drops them.
        """
        rng = np.random.default_rng(seed)
        matrix = affine_jitter(rng, *size) @ matrix
        displacement = elastic_displacement(rng, *size) if rng.random() < ELASTIC_P else None
        image, keypoints = warp(image, keypoints, matrix, size, displacement)
        # one generator drawn in turn by every transform (Compose.set_random_seed would give each
        # transform its own generator with the same seed, so all would fire together or not at all)
        self.appearance.set_random_state(rng, random.Random(seed))
        image = self.appearance(image=image)["image"]
        keypoints[(keypoints < 0).any(axis=1) | (keypoints >= size).any(axis=1)] = np.nan
        return image, keypoints
