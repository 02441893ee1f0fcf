"""A dataset's individuals: its frames, its size in the frame and its side of every split, one row each.

For Horse-10 this is the extended paper's supplementary table (frames, nose-to-eye distance, within or out
of domain in each shuffle); for any other dataset it shows before any result whether the splits hold out
the individuals a user meant them to. Each row also names the frame that the paper's Figure 2 shows of it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oodpose.atomic import atomic_file
from oodpose.data.cache import Cache
from oodpose.data.splits import side

UNUSED = "unused"  # a split that leaves an individual's frames out


def split_column(split: int) -> str:
    return f"split{split}"


def individual_sides(index: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Per individual (rows) and split (columns `split<k>`): its side (`oodpose.data.splits.side`: within or out
    of domain, or both where a split leaks it), or unused where a split leaves its frames out; `index` as a
    cache's, `splits` its (split, frame row, role) table."""
    roles = splits.assign(individual=index["individual"].to_numpy()[splits["frame"].to_numpy()])
    sides = roles.groupby(["individual", "split"])["role"].agg(set).map(side).unstack("split")
    return sides.reindex(index["individual"].unique()).fillna(UNUSED).rename(columns=split_column)


def individual_table(index: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """One row per individual, in the dataset's order: its frames, its median scale in pixels (the error's
    unit: Horse-10's nose-to-eye distance), its median frame size, the middle one of its frames
    (`example_frame`) and its side of each split."""
    by_individual = index.groupby("individual", sort=False)
    table = pd.DataFrame(
        {
            "frames": by_individual.size(),
            "scale_px": by_individual["scale"].median(),
            "width": by_individual["width"].median().astype(int),
            "height": by_individual["height"].median().astype(int),
            "example_frame": by_individual["frame"].agg(lambda frames: sorted(frames)[len(frames) // 2]),
        }
    )
    return table.join(individual_sides(index, splits)).rename_axis("individual").reset_index()


def split_columns(table: pd.DataFrame) -> list[str]:
    """The table's `split<k>` columns, by k."""
    return sorted((c for c in table.columns if c.startswith("split")), key=lambda c: int(c.removeprefix("split")))


def write_individuals(cache_path: str | Path, table: str | Path, figure: str | Path) -> pd.DataFrame:
    """A prepared dataset's individual table (CSV, atomically) and its Figure 2 (PNG and PDF)."""
    from oodpose.figures import figure2  # matplotlib, only where a figure is drawn

    cache = Cache(cache_path)
    individuals = individual_table(cache.index, cache.splits)
    with atomic_file(table) as tmp:
        individuals.to_csv(tmp, index=False)
    figure2(individuals, cache, Path(figure))
    return individuals
