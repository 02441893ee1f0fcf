"""DeepLabCut's augmentation: keypoints follow the pixels, transforms fire at their own rates."""

import cv2
import numpy as np
import pytest

from oodpose.data.augment import Augmentation, affine_jitter, elastic_displacement, warp


def sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of `image` at (N, 2) x, y points."""
    return cv2.remap(image, points[None, :, 0], points[None, :, 1], cv2.INTER_LINEAR)[0]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("elastic", [False, True])
def test_keypoints_land_where_their_pixels_go(seed, elastic):
    """Warp an image whose pixels hold their own coordinates: at each moved keypoint it must read the keypoint."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:162, :288].astype(np.float32)
    frame = np.dstack([xs, ys, np.zeros_like(xs)])
    keypoints = (rng.random((22, 2)) * [288, 162]).astype(np.float32)
    size = (230, 130)
    matrix = affine_jitter(rng, *size) @ np.diag([230 / 288, 130 / 162, 1.0])
    displacement = elastic_displacement(rng, *size) if elastic else None
    image, moved = warp(frame, keypoints, matrix, size, displacement)
    # away from the frame's and canvas's borders, where pixels blend with the black fill
    source_inside = ((keypoints > 3) & (keypoints < [285, 159])).all(axis=1)
    canvas_inside = ((moved > 3) & (moved < [227, 127])).all(axis=1)
    check = source_inside & canvas_inside
    assert check.sum() >= 5
    np.testing.assert_allclose(sample(image, moved[check])[:, :2], keypoints[check], atol=0.1)


def test_unlabelled_keypoints_stay_unlabelled():
    points = np.array([[10.0, 10.0], [np.nan, np.nan]], dtype=np.float32)
    field = elastic_displacement(np.random.default_rng(0), 64, 48)
    _, moved = warp(np.zeros((48, 64, 3), np.uint8), points, np.eye(3), (64, 48), field)
    assert np.isfinite(moved[0]).all() and np.isnan(moved[1]).all()


def test_geometry_fires_at_deeplabcuts_rates():
    n = 2000
    matrices = [affine_jitter(np.random.default_rng(seed), 230, 130) for seed in range(n)]
    rotated = np.mean([abs(m[0, 1]) > 1e-9 for m in matrices])
    anisotropic = np.mean([abs(abs(m[0, 0]) - abs(m[1, 1])) > 1e-9 or abs(m[0, 1]) > 1e-9 for m in matrices])
    scales = np.array([np.sqrt(abs(np.linalg.det(m[:2, :2]))) for m in matrices])
    assert 0.36 < rotated < 0.44
    assert anisotropic > rotated  # crop-and-pad (p 0.4) stretches axes unequally, with or without rotation
    assert scales.min() > 0.5 * 0.7 and scales.max() < 1.25 / 0.7  # jitter x at most 15% crop or pad per side


class Recorder:
    """Stands in for the appearance Compose and records which transforms it applied."""

    def __init__(self, compose):
        self.compose, self.applied = compose, []
        compose.save_applied_params = True

    def set_random_state(self, *generators):
        self.compose.set_random_state(*generators)

    def __call__(self, **data):
        out = self.compose(**data)
        self.applied.append({name for name, _ in out["applied_transforms"]})
        return out


def test_appearance_transforms_fire_independently():
    """Each transform draws its own chance: blur and dropout (p 0.5 each) come together a quarter of the time."""
    augmentation = Augmentation()
    recorder = Recorder(augmentation.appearance)
    augmentation.appearance = recorder
    image, points = np.full((130, 230, 3), 128, np.uint8), np.array([[100.0, 60.0]], np.float32)
    for seed in range(400):
        augmentation(image, points.copy(), np.eye(3), (230, 130), seed)
    blur = np.array(["MotionBlur" in a for a in recorder.applied])
    dropout = np.array(["CoarseDropout" in a for a in recorder.applied])
    assert 0.4 < blur.mean() < 0.6 and 0.4 < dropout.mean() < 0.6
    assert 0.17 < (blur & dropout).mean() < 0.33
