"""The learning-schedule search of the paper's section 5.3: score every schedule of a grid on every split, and
choose per backbone and init the one with the lowest mean normalised error.

The paper chose on the out-of-domain test horses, which in the domain-generalisation literature is oracle
(test-domain) selection (Gulrajani and Lopez-Paz, ICLR 2021); by default a search scores validation horses
instead: training individuals held out of each split (oodpose.data.splits.validation_individuals). Whether
the winner beats the runner-up is judged on the same splits, paired, so the split's own difficulty cancels.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from oodpose.atomic import atomic_file
from oodpose.data.cache import Cache
from oodpose.divergence import cell_divergence
from oodpose.figures import schedule_heatmap
from oodpose.schedule import Schedule
from oodpose.study import SELECTED_ON, VALIDATION, SearchCell

SCORE = "normalised_error"  # lower is better; the paper's selection criterion
KEYS = ["dataset", "backbone", "init"]


def split_scores(metrics: pd.DataFrame, selection: str) -> pd.DataFrame:
    """One row per search cell (KEYS, schedule, split): its final model's error on the set the selection scores."""
    rows = metrics[(metrics["bodypart"] == "all") & (metrics["set"] == selection)]
    last = rows.groupby([*KEYS, "schedule", "split"])["iteration"].transform("max")
    rows = rows[rows["iteration"] == last]
    columns = [*KEYS, "schedule", "split", SCORE, "diverged"]
    return rows[columns].rename(columns={SCORE: "score"}).reset_index(drop=True)


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t interval over splits; NaN bounds for a single split."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.975, len(values) - 1) * stats.sem(values)
    return mean, mean - half, mean + half


def grid_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, init and schedule: the mean score over splits with its 95 % CI, n and rank (1 = best)."""
    rows = []
    for (*key, schedule), group in scores.groupby([*KEYS, "schedule"]):
        mean, low, high = mean_ci(group["score"].to_numpy())
        plan = Schedule.parse(schedule)
        rows.append(
            dict(zip(KEYS, key), schedule=schedule, ilr=plan.ilr, final_lr=plan.final_lr, cycles=plan.cycles)
            | {"score": mean, "score_ci_low": low, "score_ci_high": high, "n_splits": len(group)}
            | {"diverged_splits": int((group["diverged"] != "").sum())}
        )
    table = pd.DataFrame(rows)
    ranked = table["score"].where(table["diverged_splits"] == 0, np.inf)  # a schedule that diverged comes last
    table["rank"] = ranked.groupby([table[k] for k in KEYS]).rank(method="min").astype(int)
    return table.sort_values([*KEYS, "rank"]).reset_index(drop=True)


def paired_difference(scores: pd.DataFrame, best: str, other: str) -> tuple[float, float]:
    """95 % CI of `other` minus `best` over the splits both ran (paired); NaN with fewer than two."""
    wide = scores.pivot(index="split", columns="schedule", values="score")[[best, other]].dropna()
    _, low, high = mean_ci((wide[other] - wide[best]).to_numpy())
    return low, high


def choose(scores: pd.DataFrame, table: dict[tuple[str, str], Schedule], selection: str) -> pd.DataFrame:
    """schedules.tsv: per backbone and init the best schedule, its score, whether the runner-up is worse beyond
    noise (the paired CI of their difference excludes zero), and where the table's own schedule ranks."""
    ranked = grid_scores(scores)
    rows = []
    for key, group in ranked.groupby(KEYS, sort=True):
        best, runner_up = group.iloc[0], group.iloc[1] if len(group) > 1 else None
        own = scores[(scores[KEYS] == pd.Series(dict(zip(KEYS, key)))).all(axis=1)]
        low, high = (np.nan, np.nan) if runner_up is None else paired_difference(own, best.schedule, runner_up.schedule)
        table_schedule = table[(key[1], key[2])].name
        in_grid = group[group["schedule"] == table_schedule]
        rows.append(
            best[
                [*KEYS, "schedule", "ilr", "final_lr", "cycles", "score", "score_ci_low", "score_ci_high", "n_splits"]
                + ["diverged_splits"]
            ].to_dict()
            | {
                "selection": selection,
                "selected_on": SELECTED_ON[selection],
                "runner_up": None if runner_up is None else runner_up.schedule,
                "runner_up_score": np.nan if runner_up is None else runner_up.score,
                "difference_ci_low": low,
                "difference_ci_high": high,
                "distinguishable": bool(low > 0),  # NaN (one split, one schedule) compares False
                "table_schedule": table_schedule,
                "table_rank": int(in_grid["rank"].iloc[0]) if len(in_grid) else None,
                "grid_size": len(group),
            }
        )
    return pd.DataFrame(rows)


def read_search_metrics(paths: Iterable[str | Path], cells: Iterable[SearchCell]) -> pd.DataFrame:
    """The search cells' metrics files as one table, each row labelled with its cell's dataset and schedule, and
    whether its training diverged (oodpose.divergence)."""
    tables = [
        pd.read_csv(path).assign(
            dataset=cell.dataset, schedule=cell.schedule, diverged=cell_divergence(Path(path).parent)
        )
        for path, cell in zip(paths, cells, strict=True)
    ]
    return pd.concat(tables, ignore_index=True)


def select_schedules(
    metric_files: Iterable[str | Path],
    cells: list[SearchCell],
    table: dict[tuple[str, str], Schedule],
    cache: Cache,
    held_out: int,
    folder: str | Path,
) -> pd.DataFrame:
    """Score, choose and write one search into `folder`: schedules.tsv (`choose`), scores.csv (`grid_scores`),
    validation_horses.csv (split, individual) and figures/<backbone>_<init>.png; returns schedules.tsv's table."""
    folder, selection = Path(folder), cells[0].selection
    scores = split_scores(read_search_metrics(metric_files, cells), selection)
    chosen, grid = choose(scores, table, selection), grid_scores(scores)
    held = [
        {"split": split, "individual": horse}
        for split in sorted({c.split for c in cells})
        for horse in (cache.validation_individuals(split, held_out) if selection == VALIDATION else [])
    ]
    for name, frame, sep in (
        ("schedules.tsv", chosen, "\t"),
        ("scores.csv", grid.assign(selected_on=SELECTED_ON[selection]), ","),
        ("validation_horses.csv", pd.DataFrame(held, columns=["split", "individual"]), ","),
    ):
        with atomic_file(folder / name) as tmp:
            frame.to_csv(tmp, sep=sep, index=False)
    for _, row in chosen.iterrows():
        own = grid[(grid["backbone"] == row["backbone"]) & (grid["init"] == row["init"])]
        schedule_heatmap(own, row, folder / "figures" / f"{row['backbone']}_{row['init']}.png")
    return chosen
