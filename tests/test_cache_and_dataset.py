import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from oodpose.data.cache import Cache, prepare_cache
from oodpose.data.dataset import PoseDataset, canvas_size
from oodpose.errors import InputError
from oodpose.settings import DatasetSettings


def test_cache_contents(synthetic_dataset, synthetic_cache):
    cache = Cache(synthetic_cache)
    assert cache.images.shape == (150, 162, 288, 3) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap)
    original = np.asarray(Image.open(synthetic_dataset / cache.index["frame"].iat[7]).convert("RGB"))
    np.testing.assert_array_equal(cache.images[7], original)
    assert cache.keypoints.shape == (150, 22, 2) and cache.keypoints.dtype == np.float32
    assert cache.meta["splits"].startswith("official")
    train, ood = cache.frames(1, 50, "train"), cache.frames(1, 50, "test_ood")
    assert len(train) and len(ood) and not set(train) & set(ood)
    assert set(cache.frames(1, 5, "train")) <= set(train)
    with pytest.raises(InputError, match=r"no split 9; it has splits \[1, 2, 3\]"):
        cache.frames(9, 50, "train")


def test_mixed_image_sizes_are_padded(tmp_path):
    root = tmp_path / "mixed"
    rows = []
    for individual, size in (("a", (50, 40)), ("b", (30, 60))):
        folder = root / "labeled-data" / individual
        folder.mkdir(parents=True)
        for k in range(2):
            (Image.new("L", size, 200) if individual == "a" else Image.new("RGBA", size, (200, 200, 200, 255))).save(
                folder / f"{k}.png"
            )
            rows.append((f"labeled-data/{individual}/{k}.png", [5.0, 6.0, 10.0, 12.0]))
    columns = pd.MultiIndex.from_product([["s"], ["Nose", "Eye"], ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    pd.DataFrame([r[1] for r in rows], index=[r[0] for r in rows], columns=columns).to_hdf(
        root / "CollectedData_s.h5", key="df_with_missing"
    )
    cache = Cache(prepare_cache(root, tmp_path / "c", DatasetSettings(n_splits=1, n_train_individuals=1)))
    assert cache.images.shape == (4, 60, 50, 3)
    assert (cache.images[0, :40, :50] == 200).all() and (cache.images[0, 40:] == 0).all()
    assert (cache.images[2, :60, :30, :] == 200).all() and (cache.images[2, :, 30:] == 0).all()
    image, keypoints, scale, _ = PoseDataset(cache, np.arange(4), global_scale=0.8)[2]
    assert tuple(image.shape) == (3, *canvas_size(cache))
    np.testing.assert_allclose(keypoints[0].numpy(), [5 * 24 / 30, 6 * 48 / 60], rtol=1e-5)


def test_nothing_half_written_on_failure(synthetic_dataset, tmp_path):
    with pytest.raises(InputError):
        prepare_cache(synthetic_dataset, tmp_path / "c", DatasetSettings(official_splits=False, n_train_individuals=99))
    assert list(tmp_path.iterdir()) == []


def test_augmentation_is_deterministic_and_marks_lost_keypoints(synthetic_cache):
    cache = Cache(synthetic_cache)
    rows = cache.frames(1, 50, "train")
    dataset = PoseDataset(cache, rows, "imgaug")
    a, b, c = dataset[(0, 11)], dataset[(0, 11)], dataset[(0, 12)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    lost = 0
    for seed in range(30):
        image, kp, _, _ = dataset[(seed % len(rows), seed)]
        h, w = image.shape[1:]
        visible = ~torch.isnan(kp).any(-1)
        inside = kp[visible]
        assert ((inside >= 0).all(-1) & (inside[:, 0] < w) & (inside[:, 1] < h)).all()
        lost += int((~visible).sum())
    assert lost > 0  # rotation and crop push some joints out: they become NaN, not clipped
    plain = PoseDataset(cache, rows)
    assert torch.equal(plain[0][0], plain[0][0])
