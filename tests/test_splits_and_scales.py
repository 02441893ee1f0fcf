import numpy as np
import pandas as pd
import pytest

from oodpose.data.labels import Labels, read_labels
from oodpose.data.scales import frame_scales, individual_scales
from oodpose.data.splits import make_splits, official_split_files, read_official_splits, training_subset
from oodpose.errors import InputError

OFFICIAL_SIZES = {1: (1470, 1459, 5185), 2: (1564, 1432, 5118), 3: (1386, 1329, 5399)}


def horse10_labels(shared_data) -> Labels:
    """Labels standing in for Horse-10's: every frame named in Horsescale.h5, no keypoints needed."""
    scales = pd.read_hdf(shared_data / "horse10-benchmark" / "Horsescale.h5")
    frames = pd.DataFrame({"frame": scales.index.astype(str)})
    frames["individual"] = frames["frame"].str.split("/").str[1]
    frames["width"], frames["height"] = 288, 162
    keypoints = np.zeros((len(frames), 2, 2), np.float32)
    return Labels(frames, keypoints, ("Nose", "Eye"), "x")


def test_official_splits_and_scales(shared_data):
    root = shared_data / "horse10-benchmark"
    labels = horse10_labels(shared_data)
    splits = read_official_splits(official_split_files(root), labels)
    for split, sizes in OFFICIAL_SIZES.items():
        table = splits[splits["split"] == split]
        assert tuple((table["role"] == r).sum() for r in ("train", "test_within", "test_ood")) == sizes
    scales = frame_scales(root, labels, ("Nose", "Eye"))
    assert len(scales) == 8114 and 10.0 <= scales.min() and scales.max() <= 35.7
    assert labels.frames.assign(s=scales).groupby("individual")["s"].nunique().eq(1).all()
    assert labels.frames["individual"].nunique() == 30


def test_split_file_with_unknown_frames_lists_them(shared_data):
    labels = horse10_labels(shared_data)
    labels = Labels(labels.frames.iloc[100:].reset_index(drop=True), labels.keypoints[100:], labels.bodyparts, "x")
    with pytest.raises(InputError, match=r"TrainTestInfo_shuffle1.csv: \d+ frames in column .* e.g. \['labeled-data/"):
        read_official_splits(official_split_files(shared_data / "horse10-benchmark"), labels)


def toy_labels(n_individuals=6, frames_each=20, seed=0) -> Labels:
    rng = np.random.default_rng(seed)
    names = [f"h{i}" for i in range(n_individuals) for _ in range(frames_each)]
    frames = pd.DataFrame(
        {
            "frame": [f"labeled-data/{n}/{k:04d}.png" for k, n in enumerate(names)],
            "individual": names,
            "width": 100,
            "height": 80,
        }
    )
    keypoints = rng.uniform(0, 80, (len(names), 2, 2)).astype(np.float32)
    return Labels(frames, keypoints, ("Nose", "Eye"), "x")


def test_generated_splits_properties():
    labels = toy_labels()
    base = make_splits(labels, n_splits=3, n_train_individuals=2, seed=7)
    assert base.equals(make_splits(labels, 3, 2, 7))
    individual = dict(zip(labels.frames["frame"], labels.frames["individual"]))
    for _, cell in base.groupby("split"):
        roles = {r: set(cell.loc[cell["role"] == r, "frame"]) for r in ("train", "test_within", "test_ood")}
        assert not (roles["train"] & roles["test_within"]) and not (roles["train"] & roles["test_ood"])
        assert set().union(*roles.values()) == set(labels.frames["frame"])
        train_ids = {individual[f] for f in roles["train"]}
        assert train_ids.isdisjoint({individual[f] for f in roles["test_ood"]})
        assert {individual[f] for f in roles["test_within"]} == train_ids
        assert len(roles["train"]) == 20  # half of 2 individuals x 20 frames
    assert base.groupby("split").apply(lambda t: frozenset(t[t.role == "train"].frame)).nunique() > 1


def test_smaller_fractions_are_nested_seeded_per_split_and_need_no_other_fraction():
    train = np.arange(100, 140)
    five = training_subset(train, 80, split=2, fraction=5, seed=7)
    ten = training_subset(train, 80, split=2, fraction=10, seed=7)
    assert len(five) == round(0.05 * 80) and len(ten) == 8 and set(five) <= set(ten) <= set(train)
    assert np.array_equal(five, training_subset(train, 80, 2, 5, 7))  # a pure function of split, fraction, seed
    assert not np.array_equal(five, training_subset(train, 80, 3, 5, 7))
    assert np.array_equal(training_subset(train, 80, 2, 50, 7), train)
    with pytest.raises(InputError, match="training fraction 80 is outside"):
        training_subset(train, 80, 2, 80, 7)


def test_too_many_training_individuals():
    with pytest.raises(InputError, match="n_train_individuals=9 but the dataset has only 6 individuals"):
        make_splits(toy_labels(), 1, 9, 0)


def test_single_individual_has_empty_ood():
    labels = toy_labels(n_individuals=1)
    base = make_splits(labels, 1, 1, 0)
    assert (base["role"] == "test_ood").sum() == 0 and (base["role"] == "train").sum() == 10


def test_scale_from_labels_is_per_individual_median():
    labels = toy_labels(n_individuals=2)
    d = np.linalg.norm(labels.keypoints[:, 0] - labels.keypoints[:, 1], axis=1)
    scales = individual_scales(labels, ("Nose", "Eye"))
    assert scales["h0"] == pytest.approx(np.median(d[:20])) and scales["h1"] == pytest.approx(np.median(d[20:]))


def test_individual_without_scale_pair_is_named():
    labels = toy_labels(n_individuals=2)
    labels.keypoints[20:, 1] = np.nan
    with pytest.raises(InputError, match=r"\['h1'\] have no frame with both Nose and Eye"):
        individual_scales(labels, ("Nose", "Eye"))
    with pytest.raises(InputError, match="scale bodyparts \\['Snout'\\] are not among"):
        individual_scales(labels, ("Snout", "Eye"))


def test_real_project_scales_need_named_bodyparts(shared_data):
    labels = read_labels(shared_data / "dlc-openfield")
    with pytest.raises(InputError, match="set `scale_bodyparts`"):
        individual_scales(labels, ("Nose", "Eye"))
    assert individual_scales(labels, ("leftear", "rightear"))["m4s1"] > 0
