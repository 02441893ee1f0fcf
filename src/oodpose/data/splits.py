"""Train / within-domain test / out-of-domain splits, frozen once per dataset.

A split ("shuffle") picks training individuals. At the 50% fraction, half of their frames train and
the other half are the within-domain test; every frame of the other individuals is out-of-domain
(OOD). A smaller fraction f takes a seeded subset of round(f/100 x frames of the training
individuals) from the 50% training frames, so it is nested in it; the test sets do not change with
the fraction, so results at both fractions are measured on the same frames.
Official split files are read as they are, and refused where their test is not held out.

A schedule search scored on validation horses holds some training individuals out of a split
(`validation_individuals`): their training frames are not trained on but scored, standing in for
unseen horses, so that choosing a schedule needs no test frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from oodpose.data.labels import Labels
from oodpose.errors import InputError
from oodpose.study import OOD, TRAIN, WITHIN

OFFICIAL_COLUMNS = {"trainIndices": TRAIN, "testIndices_withinDomain": WITHIN, "testIndices_acrossDomain": OOD}
BASE_FRACTION = 50
VALIDATION_SEED = 24  # keeps the validation draw apart from the fractions' subsets of the same split
WITHIN_DOMAIN, OUT_OF_DOMAIN = "within domain", "out of domain"  # an individual's side of a split
BOTH = "within and out of domain"  # a split that leaks an individual: its out-of-domain frames are not unseen


def side(roles: set[str]) -> str:
    """An individual's side of one split, from the roles its frames have there."""
    ood, within = OOD in roles, bool(roles & {TRAIN, WITHIN})
    return BOTH if ood and within else OUT_OF_DOMAIN if ood else WITHIN_DOMAIN


def official_split_files(root: Path) -> list[Path]:
    """The official ``TrainTestInfo_shuffle{k}.csv`` files of a dataset, ordered by k."""
    files = list(root.glob("TrainTestInfo_shuffle*.csv"))
    return sorted(files, key=lambda p: int("".join(c for c in p.stem.split("shuffle")[-1] if c.isdigit()) or 0))


def read_official_splits(files: list[Path], labels: Labels) -> pd.DataFrame:
    """The official 50% splits as a (split, frame, role) table, split numbered from 1 by file order."""
    known = set(labels.frames["frame"])
    individual = labels.frames.set_index("frame")["individual"]
    splits = []
    for split, path in enumerate(files, start=1):
        table = pd.read_csv(path, index_col=0)
        missing_cols = set(OFFICIAL_COLUMNS) - set(table.columns)
        if missing_cols:
            raise InputError(f"{path}: split file lacks columns {sorted(missing_cols)}")
        rows = []
        for column, role in OFFICIAL_COLUMNS.items():
            frames = table[column].dropna().astype(str).str.replace("\\", "/").tolist()
            unknown = [f for f in frames if f not in known]
            if unknown:
                raise InputError(
                    f"{path}: {len(unknown)} frames in column {column} are not in the labels, e.g. {unknown[:3]}"
                )
            rows.append(pd.DataFrame({"split": split, "frame": frames, "role": role, "column": column}))
        splits.append(check_held_out(path, pd.concat(rows, ignore_index=True), individual))
    return pd.concat(splits, ignore_index=True)


def check_held_out(path: Path, split: pd.DataFrame, individual: pd.Series) -> pd.DataFrame:
    """Refuses a split file whose sets are not what they claim: a frame listed twice (tested on what trains, or
    counted twice), an individual with frames on both sides (its out-of-domain frames would not be unseen), or
    one tested within domain that never trains."""
    repeated = split[split["frame"].duplicated(keep=False)]
    if not repeated.empty:
        frame = repeated["frame"].iloc[0]
        columns = repeated.loc[repeated["frame"] == frame, "column"].tolist()
        raise InputError(
            f"{path}: {repeated['frame'].nunique()} frames are listed more than once, e.g. {frame} in {columns}; "
            "list each frame in one column once"
        )
    roles = split.groupby(individual[split["frame"]].to_numpy())["role"].agg(set)
    both = roles[roles.map(side) == BOTH].index
    if len(both):
        raise InputError(
            f"{path}: individual {both[0]!r} has frames both in testIndices_acrossDomain and in the training "
            f"or within-domain columns ({len(both)} such individuals), so its out-of-domain frames are not unseen; "
            "put all of its frames on one side (if its folders show different animals, name them apart in the "
            "dataset's `individuals` file)"
        )
    untrained = roles[roles.map(lambda r: WITHIN in r and TRAIN not in r)].index
    if len(untrained):
        raise InputError(
            f"{path}: individual {untrained[0]!r} has within-domain test frames but no training frames "
            f"({len(untrained)} such individuals), so it is not within domain; move its frames to trainIndices or "
            "testIndices_acrossDomain"
        )
    return split.drop(columns="column")


def make_splits(labels: Labels, n_splits: int, n_train_individuals: int, seed: int) -> pd.DataFrame:
    """Seeded 50% splits for a dataset without official ones, as a (split, frame, role) table."""
    individuals = sorted(labels.frames["individual"].unique())
    if n_train_individuals > len(individuals):
        raise InputError(
            f"n_train_individuals={n_train_individuals} but the dataset has only {len(individuals)} "
            f"individuals ({individuals[:5]}...); lower it in the dataset's config"
        )
    rng = np.random.default_rng(seed)
    frames = labels.frames
    rows = []
    for split in range(1, n_splits + 1):
        train_ids = set(rng.choice(individuals, size=n_train_individuals, replace=False).tolist())
        for individual, group in frames.groupby("individual", sort=True):
            names = group["frame"].to_numpy()
            if individual not in train_ids:
                rows.append(pd.DataFrame({"split": split, "frame": names, "role": OOD}))
                continue
            order = rng.permutation(len(names))
            half = max(int(round(len(names) / 2)), 1)  # one frame at least: a horse tested within domain trains
            role = np.where(np.isin(np.arange(len(names)), order[:half]), TRAIN, WITHIN)
            rows.append(pd.DataFrame({"split": split, "frame": names, "role": role}))
    return pd.concat(rows, ignore_index=True)


def training_subset(train: np.ndarray, n_individual_frames: int, split: int, fraction: int, seed: int) -> np.ndarray:
    """The training frames of one split at `fraction` %, from its 50 % training frames `train` (in split-table
    order): a seeded prefix of one permutation per split, so every fraction is nested in the larger ones and
    does not depend on which other fractions a study has."""
    if not 0 < fraction <= BASE_FRACTION:
        raise InputError(f"training fraction {fraction} is outside (0, {BASE_FRACTION}] percent")
    if fraction == BASE_FRACTION:
        return train
    order = np.random.default_rng([seed, int(split)]).permutation(len(train))
    n = int(round(fraction / 100 * n_individual_frames))
    return train[np.sort(order[: max(n, 1)])]


def validation_individuals(train_individuals: list[str], n: int, split: int, seed: int) -> list[str]:
    """The `n` training individuals of a split held out as validation horses: a seeded draw per split (so the
    splits hold out different horses), the same on every run and machine."""
    individuals = sorted(train_individuals)
    if n >= len(individuals):
        raise InputError(
            f"validation_individuals: {n} would hold out all {len(individuals)} training individuals of split "
            f"{split}; lower search.validation_individuals to at most {len(individuals) - 1}"
        )
    order = np.random.default_rng([seed, int(split), VALIDATION_SEED]).permutation(len(individuals))
    return sorted(individuals[i] for i in order[:n])


def splits_to_official(splits: pd.DataFrame, folder: Path) -> list[Path]:
    """Write 50% splits in the official ``TrainTestInfo_shuffle{k}.csv`` format."""
    paths = []
    for split, table in splits.groupby("split", sort=True):
        columns = {
            col: table[table["role"] == role]["frame"].reset_index(drop=True) for col, role in OFFICIAL_COLUMNS.items()
        }
        path = folder / f"TrainTestInfo_shuffle{split}.csv"
        pd.DataFrame(columns).to_csv(path)
        paths.append(path)
    return paths
