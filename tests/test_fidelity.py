"""Where the paper and DeepLabCut are explicit: the target disk follows the frame's scale, evaluation runs
at the frame's own size, and scale jitter resizes the whole frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from oodpose.data.augment import PRESETS, batch_scale, draw
from oodpose.data.cache import Cache, prepare_cache
from oodpose.data.dataset import PoseDataset, resize_factors
from oodpose.settings import POS_DIST_THRESH, DatasetSettings
from oodpose.targets import STRIDE, cell_centres, make_targets, predict


def disk_radius(keypoint: torch.Tensor, scoremap: torch.Tensor) -> tuple[float, float]:
    """The farthest positive and the nearest negative cell centre from a joint, in input pixels."""
    h, w = scoremap.shape
    ys, xs = torch.meshgrid(cell_centres(h), cell_centres(w), indexing="ij")
    distance = ((xs - keypoint[0]) ** 2 + (ys - keypoint[1]) ** 2).sqrt()
    return distance[scoremap > 0].max().item(), distance[scoremap == 0].min().item()


def test_the_disk_is_17_original_pixels_whatever_the_frames_scale(synthetic_cache):
    cache = Cache(synthetic_cache)
    dataset = PoseDataset(cache, cache.frames(1, 50, "train"), "paper")
    scales = []
    for seed in range(12):
        image, keypoints, scale, _ = dataset[(seed, seed, seed)]
        map_size = (image.shape[1] // STRIDE, image.shape[2] // STRIDE)
        scoremap = make_targets(keypoints[None], map_size, POS_DIST_THRESH * torch.tensor([scale]))[0][0]
        radius = POS_DIST_THRESH * float(scale)
        for joint in np.flatnonzero(~torch.isnan(keypoints).any(-1).numpy())[:3]:
            inner, outer = disk_radius(keypoints[joint], scoremap[joint])
            assert radius - STRIDE <= inner <= radius and radius < outer <= radius + STRIDE * 1.5
        scales.append(float(scale))
    assert max(scales) - min(scales) > 0.4  # the batch's jitter (0.375-1.5625 x 0.8) and crop-and-pad


def test_predictions_at_test_scale_one_are_in_original_pixels_and_round_trip(synthetic_cache):
    cache = Cache(synthetic_cache)
    rows = cache.frames(1, 50, "test_ood")[:4]
    dataset = PoseDataset(cache, rows, global_scale=1.0)
    images, keypoints, scales, _ = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert tuple(images.shape[2:]) == tuple(-(-n // 16) * 16 for n in cache.meta["canvas"])  # padded, not resized
    assert torch.allclose(scales, torch.ones(4))
    np.testing.assert_allclose(keypoints.numpy(), cache.keypoints[rows], rtol=1e-6)  # original pixels
    scoremap, locref, _ = make_targets(keypoints, (images.shape[2] // STRIDE, images.shape[3] // STRIDE))
    decoded = predict((scoremap * 2 - 1) * 20, locref)[..., :2].numpy()
    decoded /= resize_factors(cache, rows, 1.0)[:, None, :]
    labelled = ~np.isnan(cache.keypoints[rows]).any(-1)
    assert np.abs(decoded[labelled] - cache.keypoints[rows][labelled]).max() < 0.5


@pytest.mark.parametrize("augmentation, global_scale", [("paper", 0.8), ("none", 0.8), ("none", 1.0), ("none", 0.7)])
def test_training_and_evaluation_canvases_are_padded_alike(synthetic_cache, augmentation, global_scale):
    """Every network input, in training and at any test scale, is padded to whole multiples of 16 at the bottom and
    right: TensorFlow-'SAME' networks place their output grid by the input size modulo 16, so a canvas padded one
    way in training and another in evaluation shifts every prediction (162-pixel frames: PCK@0.3 0.80 -> 0.002)."""
    cache = Cache(synthetic_cache)
    assert cache.meta["canvas"][0] % 16  # the synthetic frames are not a multiple of 16 high
    dataset = PoseDataset(cache, cache.frames(1, 50, "train")[:4], augmentation, global_scale)
    for seed in range(4):
        image, keypoints, _, _ = dataset[(seed, seed, seed)] if augmentation != "none" else dataset[seed]
        assert image.shape[1] % 16 == 0 and image.shape[2] % 16 == 0
    image, _, _, _ = PoseDataset(cache, cache.frames(1, 50, "train")[:1], "none", global_scale)[0]
    height, width = (round(n * global_scale) for n in cache.sizes[cache.frames(1, 50, "train")[0]][::-1])
    assert (image[:, height:] == 0).all() and (image[:, :, width:] == 0).all()  # the frame at the top-left, black pad


@pytest.fixture
def mixed_sizes(tmp_path) -> Cache:
    """Frames of 60x40 and 36x72 px, every bodypart labelled near the frame's far corner."""
    root, rows = tmp_path / "mixed", []
    for animal, (w, h) in (("a", (60, 40)), ("b", (36, 72))):
        (root / "labeled-data" / animal).mkdir(parents=True)
        for k in range(4):
            Image.new("RGB", (w, h), (90, 60, 30)).save(root / "labeled-data" / animal / f"{k}.png")
            rows.append((f"labeled-data/{animal}/{k}.png", [w - 2.0, h - 2.0, w / 2, h / 2]))
    columns = pd.MultiIndex.from_product([["s"], ["Nose", "Eye"], ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    labels = pd.DataFrame([r[1] for r in rows], index=[r[0] for r in rows], columns=columns)
    labels.to_hdf(root / "CollectedData_s.h5", key="df_with_missing")
    return Cache(prepare_cache(root, tmp_path / "cache", DatasetSettings(n_splits=1, n_train_individuals=1)))


def test_scale_jitter_resizes_the_whole_frame(mixed_sizes):
    dataset = PoseDataset(mixed_sizes, np.arange(8), "paper")
    enlarged = 0
    for seed in range(60):
        if batch_scale(PRESETS["paper"], seed) <= 1 or draw(PRESETS["paper"], np.random.default_rng(seed)).crop_pad:
            continue
        for position in range(8):
            image, keypoints, scale, _ = dataset[(position, seed, seed)]
            assert not torch.isnan(keypoints).any(), "a keypoint inside the frame left the canvas"
            assert (keypoints[0] <= torch.tensor([image.shape[2], image.shape[1]])).all()
            enlarged += 1
    assert enlarged >= 40


def test_deeplabcuts_input_normalisation_is_a_switch_evaluation_keeps(synthetic_cache, tmp_path):
    """DeepLabCut 2.x feeds 0-255 pixels minus its mean pixel; the trained network keeps its normalisation."""
    import json

    from oodpose.backbones import get_backbone
    from oodpose.evaluate import load_trained
    from oodpose.models import DEEPLABCUT_MEAN_PIXEL, build_model
    from oodpose.settings import TrainConfig
    from oodpose.train import train

    net = build_model(get_backbone("mobilenetv2_035"), 22, "scratch", input_normalisation="deeplabcut")
    assert torch.allclose(net.mean.flatten(), torch.tensor(DEEPLABCUT_MEAN_PIXEL)) and torch.allclose(
        net.std, torch.ones(1, 3, 1, 1)
    )
    out = tmp_path / "cell"
    train(
        TrainConfig(
            str(synthetic_cache),
            str(out),
            "mobilenetv2_035",
            "scratch",
            iterations=1,
            snapshot_every=1,
            batch_size=2,
            device="cpu",
            threads=2,
            input_normalisation="deeplabcut",
        )
    )
    settings = json.loads((out / "settings.json").read_text())
    trained, _ = load_trained(out / "model.pt", settings, 22)
    assert settings["input_normalisation"] == "deeplabcut" and torch.equal(trained.mean, net.mean)


@pytest.mark.parametrize("backbone, differs", [("mobilenetv2_035", True), ("efficientnet_lite0", False)])
def test_per_frame_batchnorm_at_evaluation_is_deeplabcuts_mobilenet_graph(synthetic_cache, backbone, differs):
    from oodpose.backbones import get_backbone
    from oodpose.device import runtime
    from oodpose.evaluate import predict_frames
    from oodpose.models import build_model

    cache = Cache(synthetic_cache)
    rows = cache.frames(1, 50, "test_ood")[:3]
    model = build_model(get_backbone(backbone), 22, "scratch")
    running = predict_frames(model, cache, rows, runtime("cpu", 2), 1.0)
    per_frame = predict_frames(model, cache, rows, runtime("cpu", 2), 1.0, batchnorm="per_frame")
    assert (not np.allclose(running, per_frame)) == differs
