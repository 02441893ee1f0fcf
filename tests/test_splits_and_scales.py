from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oodpose.data.cache import Cache
from oodpose.data.individuals import UNUSED, individual_table
from oodpose.data.labels import Labels, read_labels
from oodpose.data.scales import frame_scales, individual_scales
from oodpose.data.splits import (
    BOTH,
    OUT_OF_DOMAIN,
    WITHIN_DOMAIN,
    make_splits,
    official_split_files,
    read_official_splits,
    splits_to_official,
    training_subset,
)
from oodpose.errors import InputError
from oodpose.study import OOD, TRAIN, WITHIN

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


def official_files_with(tmp_path: Path, labels: Labels, move: dict[str, str]) -> list[Path]:
    """Split files made from generated splits, with each frame in `move` put in another role as well (a
    repeated frame) or, for a role prefixed by "only:", instead."""
    splits = make_splits(labels, n_splits=1, n_train_individuals=2, seed=7)
    extra = []
    for frame, role in move.items():
        if role.startswith("only:"):
            splits.loc[splits["frame"] == frame, "role"] = role.removeprefix("only:")
        else:
            extra.append(pd.DataFrame({"split": [1], "frame": [frame], "role": [role]}))
    return splits_to_official(pd.concat([splits, *extra], ignore_index=True), tmp_path)


def test_a_split_file_that_tests_a_frame_it_lists_twice_is_refused(tmp_path):
    labels = toy_labels()
    files = official_files_with(tmp_path, labels, {})
    trained = pd.read_csv(files[0])["trainIndices"].iloc[0]
    files = official_files_with(tmp_path, labels, {trained: WITHIN})
    with pytest.raises(
        InputError, match=rf"shuffle1.csv: 1 frames .* e.g. {trained} in \['trainIndices', 'testIndices_withinDomain'\]"
    ):
        read_official_splits(files, labels)


def test_a_split_file_with_an_individual_on_both_sides_is_refused(tmp_path):
    """Its out-of-domain frames would not be unseen: every OOD statistic of the split would be silently wrong."""
    labels = toy_labels()
    trained = pd.read_csv(official_files_with(tmp_path, labels, {})[0])["trainIndices"].iloc[0]
    files = official_files_with(tmp_path, labels, {trained: f"only:{OOD}"})
    horse = trained.split("/")[1]
    with pytest.raises(
        InputError, match=rf"shuffle1.csv: individual '{horse}' has frames both in testIndices_acrossDomain"
    ):
        read_official_splits(files, labels)
    assert len(read_official_splits(official_files_with(tmp_path, labels, {}), labels)) == len(labels.frames)


def test_a_split_file_that_tests_within_domain_an_individual_it_never_trains_is_refused(tmp_path):
    labels = toy_labels()
    table = pd.read_csv(official_files_with(tmp_path, labels, {})[0])
    horse = table["trainIndices"].iloc[0].split("/")[1]
    own = [f for f in table["trainIndices"].dropna() if f.split("/")[1] == horse]
    files = official_files_with(tmp_path, labels, dict.fromkeys(own, f"only:{WITHIN}"))
    with pytest.raises(InputError, match=rf"shuffle1.csv: individual '{horse}' has within-domain test frames but no"):
        read_official_splits(files, labels)


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


def test_a_generated_training_individual_with_one_frame_trains_on_it(tmp_path):
    """Half of one frame rounds to none: it was tested within domain without ever training, which the split
    files it was written to then failed to read."""
    labels = toy_labels(n_individuals=4, frames_each=1)
    splits = make_splits(labels, n_splits=3, n_train_individuals=2, seed=7)
    assert set(splits["role"]) == {TRAIN, OOD}
    read_official_splits(splits_to_official(splits, tmp_path), labels)


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


@pytest.mark.parametrize("bad", [0.0, -3.0, np.inf])
def test_a_scale_file_whose_scale_is_not_a_positive_number_is_refused(tmp_path, bad):
    """Every error is divided by the frame's scale: a zero, negative or infinite one would make its errors
    infinite, negative or zero, silently."""
    labels = toy_labels(n_individuals=2)
    scales = pd.DataFrame({"scale": 15.0}, index=labels.frames["frame"].tolist())
    scales.iloc[7, 0] = bad
    scales.to_hdf(tmp_path / "Horsescale.h5", key="df_with_missing")
    frame = labels.frames["frame"].iloc[7]
    with pytest.raises(InputError, match=rf"Horsescale.h5: 1 frames .* not a positive number, e.g. {frame}: {bad}"):
        frame_scales(tmp_path, labels)
    scales.iloc[7, 0] = 15.0
    scales.to_hdf(tmp_path / "Horsescale.h5", key="df_with_missing")
    assert (frame_scales(tmp_path, labels) == 15.0).all()


def test_real_project_scales_need_named_bodyparts(shared_data):
    labels = read_labels(shared_data / "dlc-openfield")
    with pytest.raises(InputError, match="set `scale_bodyparts`"):
        individual_scales(labels, ("Nose", "Eye"))
    assert individual_scales(labels, ("leftear", "rightear"))["m4s1"] > 0


# The extended paper's supplementary table 1 (WACV 2021): per horse, its labelled frames, its nose-to-eye
# distance in pixels, and within (w) or out of domain (o) in shuffles 1, 2 and 3.
HORSE10_INDIVIDUALS = """
BrownHorseinShadow 308 22.3 oow
BrownHorseintoshadow 289 17.4 ooo
Brownhorselight 306 15.57 owo
Brownhorseoutofshadow 341 16.22 oww
ChestnutHorseLight 318 35.55 wwo
Chestnuthorseongrass 376 12.9 oww
GreyHorseLightandShadow 356 14.41 wwo
GreyHorseNoShadowBadLight 286 16.46 wow
TwoHorsesinvideobothmoving 181 13.84 oow
Twohorsesinvideoonemoving 252 16.51 www
Sample1 174 24.78 ooo
Sample2 330 16.5 ooo
Sample3 342 16.08 ooo
Sample4 305 18.51 oow
Sample5 295 16.89 woo
Sample6 376 12.3 ooo
Sample7 262 18.52 woo
Sample8 388 12.5 wwo
Sample9 359 12.43 ooo
Sample10 235 25.18 ooo
Sample11 256 19.16 owo
Sample12 288 17.86 wow
Sample13 244 25.78 www
Sample14 168 25.55 ooo
Sample15 154 26.53 ooo
Sample16 212 15.43 ooo
Sample17 240 10.04 woo
Sample18 159 29.55 owo
Sample19 134 13.44 oow
Sample20 180 28.57 ooo
"""


def test_horse10s_individuals_are_the_extended_papers_supplementary_table(shared_data):
    """The official split files and scales, read as a cache holds them, give every horse the paper's frames,
    nose-to-eye distance and side of each shuffle."""
    root = shared_data / "horse10-benchmark"
    labels = horse10_labels(shared_data)
    index = labels.frames.assign(scale=frame_scales(root, labels, ("Nose", "Eye")))
    splits = read_official_splits(official_split_files(root), labels)
    splits["frame"] = pd.Series(range(len(index)), index=index["frame"])[splits["frame"]].to_numpy()
    table = individual_table(index, splits).set_index("individual")
    side = {"w": WITHIN_DOMAIN, "o": OUT_OF_DOMAIN}
    for line in HORSE10_INDIVIDUALS.strip().splitlines():
        horse, frames, scale, sides = line.split()
        row = table.loc[horse]
        assert (row["frames"], row["scale_px"]) == (int(frames), pytest.approx(float(scale), abs=0.0051))  # 2 dp
        assert [row[f"split{k}"] for k in (1, 2, 3)] == [side[s] for s in sides], horse
    assert len(table) == 30 and table["example_frame"].str.split("/").str[1].eq(table.index).all()


def test_each_individual_is_on_the_side_of_each_split_its_cells_see(synthetic_cache):
    cache = Cache(synthetic_cache)
    table = individual_table(cache.index, cache.splits)
    assert table["individual"].tolist() == cache.index["individual"].unique().tolist()
    assert table["frames"].sum() == len(cache.index)
    individuals = cache.index["individual"].to_numpy()
    for split in sorted(cache.splits["split"].unique()):
        within = {*individuals[cache.frames(split, 50, TRAIN)], *individuals[cache.frames(split, 50, WITHIN)]}
        ood = set(individuals[cache.frames(split, 50, OOD)])
        sides = table.set_index("individual")[f"split{split}"]
        assert set(sides[sides == WITHIN_DOMAIN].index) == within and len(within) == 2  # n_train_individuals
        assert set(sides[sides == OUT_OF_DOMAIN].index) == ood


def test_a_split_that_leaks_or_leaves_out_an_individual_says_so():
    index = pd.DataFrame(
        {"frame": list("abcdef"), "individual": ["h1", "h1", "h2", "h2", "h3", "h3"], "scale": 10.0}
    ).assign(width=288, height=162)
    splits = pd.DataFrame(
        {
            "split": [1] * 6 + [2] * 4,
            "frame": [*range(6), 0, 1, 2, 3],
            "role": [TRAIN, OOD, WITHIN, TRAIN, OOD, OOD] + [TRAIN, WITHIN, OOD, OOD],
        }
    )
    table = individual_table(index, splits).set_index("individual")
    assert table["split1"].tolist() == [BOTH, WITHIN_DOMAIN, OUT_OF_DOMAIN]
    assert table["split2"].tolist() == [WITHIN_DOMAIN, OUT_OF_DOMAIN, UNUSED]
