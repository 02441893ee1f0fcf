"""Read DeepLabCut label files (the format of Horse-10 and of any DeepLabCut project).

A dataset is a folder with ``labeled-data/<individual>/<frame>.png`` images and
``CollectedData_<scorer>.h5`` (or ``.csv``) labels, either one merged file (at the root or under
``training-datasets/iteration-*/UnaugmentedDataSet_*/``) or one file per ``labeled-data`` folder.
Rows are indexed by the frame path, as one string (older projects) or as a 3-level tuple
(DeepLabCut >= 2.3); both are normalised to the string ``labeled-data/<individual>/<frame>``.
"""

from __future__ import annotations

import csv
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from oodpose.data.project import CONFIG, read_project_config, video_folders
from oodpose.errors import InputError

log = logging.getLogger(__name__)
COORDS = {"x", "y", "likelihood"}
HOW_TO_GET_DATA = (
    "Generate the synthetic Horse-30 with `python -m oodpose synthesize <folder>`, "
    "or download Horse-10 (the Hugging Face dataset mwmathis/Horse-30) with the workflow's download_horse10 rule "
    "(`snakemake data/horse10`) or `oodpose.data.horse10.download_horse10`."
)


@dataclass(frozen=True)
class Labels:
    """All labelled frames of a dataset: one row of `frames` per row of `keypoints`."""

    frames: pd.DataFrame  # columns: frame, individual, width, height
    keypoints: np.ndarray  # (frames, bodyparts, 2) float32; NaN = not labelled
    bodyparts: tuple[str, ...]
    scorer: str


def find_label_files(root: Path) -> list[Path]:
    """The label files of a dataset, merged file first; h5 preferred over its csv twin."""
    merged = sorted(root.glob("CollectedData_*.h5")) or sorted(
        root.glob("training-datasets/iteration-*/UnaugmentedDataSet_*/CollectedData_*.h5")
    )
    if merged:
        return check_not_stale(merged[-1:])
    files = []
    order = video_folders(root)  # DeepLabCut merges the folders in its config's video order; the rest by name
    rank = {name: n for n, name in enumerate(order)}
    folders = (p for p in (root / "labeled-data").glob("*") if p.is_dir())
    for folder in sorted(folders, key=lambda p: (rank.get(p.name, len(order)), p.name)):
        h5 = sorted(folder.glob("CollectedData_*.h5"))
        files += h5 or sorted(folder.glob("CollectedData_*.csv"))
    if not files:
        files = sorted(root.glob("CollectedData_*.csv"))
    return check_not_stale(files)


def check_not_stale(files: list[Path]) -> list[Path]:
    """An h5 label file whose csv twin was edited after it would silently hide the edit: stop instead."""
    for h5 in (f for f in files if f.suffix == ".h5"):
        twin = h5.with_suffix(".csv")
        if twin.exists() and twin.stat().st_mtime > h5.stat().st_mtime:
            raise InputError(
                f"{twin} is newer than {h5}, which is the file read: convert the CSV to HDF "
                "(DeepLabCut's convertcsv2h5) or delete the stale one"
            )
    return files


def _frame_path(index_entry) -> str:
    parts = index_entry if isinstance(index_entry, tuple) else (index_entry,)
    return "/".join(str(p).replace("\\", "/") for p in parts)


def read_label_file(path: Path) -> pd.DataFrame:
    """One DeepLabCut label file as a frame-path-indexed table with (scorer, bodyparts, coords) columns."""
    if path.suffix == ".h5":
        try:
            df = pd.read_hdf(path)
        except (ValueError, KeyError, OSError) as err:
            raise InputError(f"{path}: not a readable DeepLabCut HDF label file ({err})") from err
    elif path.suffix == ".csv":
        df = read_label_csv(path)
    else:
        raise InputError(f"{path}: unknown label format; use DeepLabCut's CollectedData_<scorer>.h5 or .csv")
    if df.columns.nlevels != 3 or list(df.columns.names)[-2:] != ["bodyparts", "coords"]:
        raise InputError(
            f"{path}: expected columns (scorer, bodyparts, coords) as DeepLabCut writes them, "
            f"got levels {list(df.columns.names)} (multi-animal projects are not supported)"
        )
    if df.columns.get_level_values("bodyparts").empty:
        raise InputError(f"{path}: the label file has no bodyparts")
    df.index = [_frame_path(i) for i in df.index]
    return df


def check_csv_header(path: Path) -> None:
    """DeepLabCut's three header rows (scorer, bodyparts, coords) must open the file, for one animal."""
    with open(path, newline="") as f:
        rows = list(itertools.islice(csv.reader(f), 6))
    first = [row[0] if row else "" for row in rows]
    if first[1:2] == ["individuals"]:
        raise InputError(
            f"{path}: a multi-animal DeepLabCut file (its second header row is 'individuals'); "
            "multi-animal projects are not supported"
        )
    cells = [{v for v in row[1:] if v} for row in rows]
    coords = [i for i, values in enumerate(cells) if values and values <= COORDS]
    if coords[:1] != [2]:
        where = f"line {coords[0] + 1}" if coords else "nowhere in the first lines"
        opening = rows[0][:3] if rows else []
        raise InputError(
            f"{path}: DeepLabCut's three header rows (scorer, bodyparts, coords) must be lines 1-3, but the "
            f"coords row (x, y) is {where}; remove any extra header or comment line (line 1: {opening})"
        )


def read_label_csv(path: Path) -> pd.DataFrame:
    """A DeepLabCut CSV label file, every coordinate checked to be a number."""
    check_csv_header(path)
    with open(path, newline="") as f:
        widths = [len(row) for row in csv.reader(f)]
    uneven = next((i for i, width in enumerate(widths) if width not in (0, widths[0])), None)
    if uneven is not None:
        raise InputError(
            f"{path}: line {uneven + 1} has {widths[uneven]} fields but the header {widths[0]}; a decimal comma "
            "splits a number in two: use '.' as the decimal separator"
        )
    df = pd.read_csv(path, header=[0, 1, 2])
    leading = [c for c in df.columns if c[2] not in COORDS]
    df = df.set_index(leading)
    df.index = df.index if len(leading) > 1 else df.index.get_level_values(0)
    df.columns = df.columns.set_names(["scorer", "bodyparts", "coords"])  # csv keeps no level names
    numbers = df.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() & df.notna()
    if bad.any(axis=None):
        row, column = next((r, c) for r, c in zip(*np.nonzero(bad.to_numpy())))
        raise InputError(
            f"{path}, row {df.index[row]}, column {'/'.join(map(str, df.columns[column][1:]))}: "
            f"{df.iat[row, column]!r} is not a number; labels must be numbers with '.' as the decimal separator"
        )
    return numbers.astype(np.float64)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, read from its header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError as err:
        raise InputError(f"{path}: image listed in the labels is missing") from err
    except OSError as err:
        raise InputError(f"{path}: image listed in the labels is unreadable ({err})") from err


def read_individuals(path: str | Path, folders: set[str]) -> dict[str, str]:
    """A folder -> individual mapping (CSV with columns folder, individual), for videos of one animal."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str)
        mapping = dict(zip(table["folder"], table["individual"]))
    except (OSError, ValueError, KeyError) as err:
        raise InputError(
            f"{path}: expected a CSV with columns folder,individual ({type(err).__name__}: {err})"
        ) from err
    unknown = sorted(set(mapping) - folders)
    if unknown:
        raise InputError(
            f"{path}: names folders that are not in labeled-data/: {unknown[:5]}; known: {sorted(folders)[:5]}"
        )
    return mapping


def check_project_bodyparts(root: Path, bodyparts: tuple[str, ...]) -> None:
    """A DeepLabCut project's config.yaml and its label files must list the same bodyparts."""
    listed = (read_project_config(root) or {}).get("bodyparts")
    if not isinstance(listed, list):  # multi-animal projects say "MULTI!"; no list to compare
        return
    if list(listed) != list(bodyparts):
        only_config = [b for b in listed if b not in bodyparts]
        only_labels = [b for b in bodyparts if b not in listed]
        raise InputError(
            f"{root / CONFIG}: bodyparts disagree with the CollectedData files: only in config.yaml {only_config}, "
            f"only in the labels {only_labels}" + ("" if only_config or only_labels else " (same names, other order)")
        )


def read_labels(root: str | Path, individuals: str | Path | None = None) -> Labels:
    """Read every labelled frame of the dataset at `root` into one `Labels`.

    Individuals are the ``labeled-data`` folders, or what the `individuals` mapping file makes of them.
    Frames with no label at all are skipped (and counted in the log).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist. {HOW_TO_GET_DATA}")
    files = find_label_files(root)
    if not files:
        raise InputError(
            f"{root}: no CollectedData_<scorer>.h5/.csv label file found at the root, under "
            f"training-datasets/, or in labeled-data/<folder>/. {HOW_TO_GET_DATA}"
        )
    tables = [read_label_file(f) for f in files]
    df = pd.concat(tables) if len(tables) > 1 else tables[0]
    scorer = str(df.columns.get_level_values(0)[0])
    df = df.droplevel(0, axis=1)
    bodyparts = tuple(dict.fromkeys(df.columns.get_level_values("bodyparts")))
    xy = df.reindex(columns=pd.MultiIndex.from_product([bodyparts, ["x", "y"]]))
    keypoints = xy.to_numpy(dtype=np.float32).reshape(len(df), len(bodyparts), 2)
    check_project_bodyparts(root, bodyparts)
    labelled = ~np.isnan(keypoints).all(axis=(1, 2))
    if not labelled.all():
        log.info("%s: skipped %d frames with no labels at all", root, int((~labelled).sum()))
    if not labelled.any():
        raise InputError(f"{root}: none of the {len(labelled)} frames in {[f.name for f in files]} has a label")
    df, keypoints = df[labelled], keypoints[labelled]
    frames = pd.DataFrame({"frame": df.index.astype(str)})
    if frames["frame"].duplicated().any():
        dup = frames["frame"][frames["frame"].duplicated()].tolist()[:5]
        raise InputError(f"{root}: frames labelled more than once: {dup}")
    frames["individual"] = [f.split("/")[-2] if f.count("/") >= 1 else "" for f in frames["frame"]]
    if individuals:
        mapping = read_individuals(individuals, set(frames["individual"]))
        frames["individual"] = frames["individual"].map(lambda folder: mapping.get(folder, folder))
    sizes = [image_size(root / f) for f in frames["frame"]]
    frames["width"] = np.array([s[0] for s in sizes], dtype=np.int32)
    frames["height"] = np.array([s[1] for s in sizes], dtype=np.int32)
    return Labels(frames=frames, keypoints=keypoints, bodyparts=bodyparts, scorer=scorer)


def drop_labels_outside(root: Path, labels: Labels) -> None:
    """Labels outside their image (or negative) become unlabelled (NaN), so training and evaluation both skip them."""
    frames, keypoints = labels.frames, labels.keypoints
    size = frames[["width", "height"]].to_numpy(np.float32)[:, None, :]
    with np.errstate(invalid="ignore"):
        outside = ((keypoints < 0) | (keypoints > size)).any(axis=-1)
    if outside.any():
        named = frames["frame"].to_numpy()[outside.any(axis=1)]
        log.warning(
            "%s: %d labels lie outside their image and count as unlabelled, in %d frames: %s%s",
            root,
            int(outside.sum()),
            len(named),
            ", ".join(named[:5]),
            " ..." if len(named) > 5 else "",
        )
        keypoints[outside] = np.nan


def label_table(labels: Labels, tuple_rows: bool = False) -> pd.DataFrame:
    """`labels` as DeepLabCut's CollectedData table: (scorer, bodyparts, coords) columns, rows by the frame path,
    as one string or (`tuple_rows`, as DeepLabCut >= 2.3 writes them) as ('labeled-data', folder, image)."""
    columns = pd.MultiIndex.from_product(
        [[labels.scorer], labels.bodyparts, ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    paths = labels.frames["frame"].to_list()
    index = pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in paths]) if tuple_rows else paths
    return pd.DataFrame(labels.keypoints.reshape(len(paths), -1).astype(np.float64), index=index, columns=columns)


def write_label_file(labels: Labels, path: Path, tuple_rows: bool = False) -> None:
    """Write `labels` as a DeepLabCut ``CollectedData`` HDF file, in pandas' fixed format as DeepLabCut writes them.

    Not the table format: pandas 3 no longer stamps a table with its format version, and pandas 2
    (DeepLabCut's) then takes it for a pre-0.10.1 file and fails ('NoneType' object has no attribute
    'startswith').
    """
    label_table(labels, tuple_rows).to_hdf(path, key="df_with_missing", mode="w")


def write_project_labels(labels: Labels, root: Path) -> list[str]:
    """One ``CollectedData_<scorer>.h5`` and ``.csv`` per ``labeled-data`` folder, as DeepLabCut writes them;
    returns the folders in the order of `labels`. The csv goes first, so that it is never newer than its h5."""
    of_frame = labels.frames["frame"].str.split("/").str[1].to_numpy()
    folders = list(dict.fromkeys(of_frame))
    for folder in folders:
        mine = of_frame == folder
        part = Labels(
            labels.frames[mine].reset_index(drop=True), labels.keypoints[mine], labels.bodyparts, labels.scorer
        )
        base = root / "labeled-data" / folder / f"CollectedData_{labels.scorer}"
        label_table(part, tuple_rows=True).to_csv(base.with_suffix(".csv"))
        write_label_file(part, base.with_suffix(".h5"), tuple_rows=True)
    return folders
