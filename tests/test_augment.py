"""DeepLabCut's augmentation: keypoints follow the pixels, transforms fire at their own rates."""

import cv2
import numpy as np
import pytest

from oodpose.data.augment import PRESETS, Draw, batch_scale, coarse_dropout, draw, elastic_displacement, geometry, warp


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
    choice = Draw(rng.uniform(-25, 25), tuple(rng.uniform(-0.15, 0.15, 4)), None, False, False, False, False)
    matrix = geometry(choice, 230, 130) @ np.diag([230 / 288, 130 / 162, 1.0])
    displacement = elastic_displacement(rng, *size, alpha=20.0) if elastic else None
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


def rates(preset: str, n: int = 600) -> dict:
    draws = [draw(PRESETS[preset], np.random.default_rng(seed)) for seed in range(n)]
    return {
        "rotation": np.mean([d.angle is not None for d in draws]),
        "angle": max((abs(d.angle) for d in draws if d.angle is not None), default=0.0),
        "crop_pad": np.mean([d.crop_pad is not None for d in draws]),
        "crop_pad_max": max((np.abs(d.crop_pad).max() for d in draws if d.crop_pad), default=0.0),
        "elastic": np.mean([d.elastic_alpha is not None for d in draws]),
        "alpha": [d.elastic_alpha for d in draws if d.elastic_alpha is not None] or [0.0],
        "motion_blur": np.mean([d.motion_blur for d in draws]),
        "dropout": np.mean([d.dropout for d in draws]),
        "histeq": np.mean([d.histeq for d in draws]),
        "clahe": np.mean([d.clahe for d in draws]),
        "both_contrasts": np.mean([d.histeq and d.clahe for d in draws]),
        "scales": np.array([batch_scale(PRESETS[preset], seed) for seed in range(n)]),
    }


def near(measured: float, p: float, n: int = 600) -> bool:
    return abs(measured - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_todays_deeplabcut_preset_draws_deeplabcuts_rates_and_ranges():
    """datasets/pose_imgaug.py with the pose_cfg.yaml template of DeepLabCut >= 2.2."""
    r = rates("imgaug")
    assert near(r["rotation"], 0.4) and 20 < r["angle"] <= 25
    assert near(r["crop_pad"], 0.4) and 0.13 < r["crop_pad_max"] <= 0.15
    assert near(r["elastic"], 0.5) and 0 <= min(r["alpha"]) and 35 < max(r["alpha"]) <= 40
    assert near(r["motion_blur"], 0.5) and near(r["dropout"], 0.5)
    assert near(r["histeq"], 0.1) and near(r["clahe"], 0.1) and near(r["both_contrasts"], 0.01)  # independent
    assert 0.5 <= r["scales"].min() < 0.53 and 1.22 < r["scales"].max() <= 1.25


def test_the_papers_preset_draws_deeplabcut_2_1s_rates_and_ranges():
    """dataset/pose_dataset_imgaug.py of DeepLabCut v2.1.8.2 with that release's pose_cfg.yaml template."""
    r = rates("paper")
    assert near(r["crop_pad"], 0.4) and 0.13 < r["crop_pad_max"] <= 0.15
    assert r["rotation"] == r["elastic"] == r["motion_blur"] == r["dropout"] == r["histeq"] == r["clahe"] == 0
    assert 0.375 <= r["scales"].min() < 0.4 and 1.53 < r["scales"].max() <= 1.5625
    assert rates("none")["scales"].tolist() == [1.0] * 600 and rates("none")["crop_pad"] == 0


def test_coarse_dropout_drops_two_percent_in_blocks():
    image = np.full((300, 300, 3), 255, np.uint8)
    kept = np.stack([coarse_dropout(image, np.random.default_rng(s), PRESETS["imgaug"]) for s in range(40)]) > 0
    assert 0.015 < 1 - kept.mean() < 0.025
    edges = np.diff(kept[..., 0].astype(int), axis=2) != 0  # both ends of every dropped run along x
    assert 2.5 < (~kept[..., 0]).sum() / max(edges.sum() / 2, 1) < 4.5  # runs about 1 / 0.3 px long
    per_channel = [not (k[..., :1] == k).all() for k in kept]
    assert 0.25 < np.mean(per_channel) < 0.75
