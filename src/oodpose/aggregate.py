"""One dataset's summary of a study: its cells' metrics, joined to the backbone table, into every table,
regression and the findings, written to one folder.

Backbone metadata (ImageNet top-1, family, whether the paper studied it) is joined here, from the backbone
table as it is at aggregation time; a cell's own metrics carry no copy that could disagree, so a corrected
top-1 reaches the regressions, Table 1 and the findings the next time the summary is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from oodpose import analysis, findings, robustness
from oodpose.atomic import atomic_file
from oodpose.backbones import METADATA
from oodpose.divergence import cell_divergence
from oodpose.errors import InputError
from oodpose.study import CELL, cell_label


def with_backbones(metrics: pd.DataFrame, metadata: list[dict]) -> pd.DataFrame:
    """`metrics` with the current metadata of each cell's backbone (any older copy in `metrics` replaced)."""
    table = pd.DataFrame(metadata, columns=["backbone", *METADATA])
    unknown = sorted(set(metrics["backbone"]) - set(table["backbone"]))
    if unknown:
        raise InputError(f"metrics of backbones {unknown} have no row in the backbone table; add their rows")
    joined = metrics.drop(columns=[c for c in METADATA if c in metrics])
    joined = joined.merge(table, on="backbone", how="left", validate="many_to_one")
    first = [c for c in ("dataset", "backbone", *METADATA) if c in joined]
    return joined[first + [c for c in joined if c not in first]]


def read_cell_metrics(paths: Iterable[str | Path], dataset: str) -> pd.DataFrame:
    """The cells' metrics files as one table, each row labelled with its dataset and, from the training log
    beside it, whether its cell diverged ('' or the sentence of oodpose.divergence)."""
    tables = [pd.read_csv(path).assign(diverged=cell_divergence(Path(path).parent)) for path in paths]
    if not tables:
        raise InputError(f"dataset {dataset!r}: no cell has metrics yet; evaluate some cells first")
    return pd.concat(tables, ignore_index=True).assign(dataset=dataset)


def read_corrupted(paths: list[str | Path], metrics: pd.DataFrame, metadata: list[dict]) -> pd.DataFrame | None:
    """The cells' Horse-C metrics (None: no corruption axis), joined like `metrics`. Every cell of `metrics` must
    have them, on the same corrupted sets: Horse-C's means and mCE would otherwise compare backbones on different
    corruptions, or leave some out unsaid."""
    if not paths:
        return None
    tables = {Path(path): pd.read_csv(path) for path in paths}
    scored = {path: sorted(set(zip(t["corruption"], t["severity"]))) for path, t in tables.items()}
    first = next(iter(scored))
    for path, sets in scored.items():
        if sets != scored[first]:
            raise InputError(
                f"{path} scores the corrupted sets {sets}, {first} {scored[first]}; evaluate every cell on the "
                "same corruptions and severities"
            )
    corrupted = pd.concat(tables.values(), ignore_index=True).assign(dataset=metrics["dataset"].iloc[0])
    cells = metrics[list(CELL)].drop_duplicates()
    unscored = cells.merge(corrupted[list(CELL)].drop_duplicates(), how="left", indicator=True)
    unscored = unscored[unscored.pop("_merge") == "left_only"]
    if len(unscored):
        names = [cell_label(row) for row in unscored.to_dict("records")]
        raise InputError(
            f"cells with metrics but no Horse-C scores (metrics_corrupted.csv): {', '.join(names)}; score them "
            "on the same corrupted sets (evaluate-corrupted), or leave them out"
        )
    return with_backbones(corrupted, metadata)


def without_diverged(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metrics of the cells that did not diverge, and the diverged cells (CELL and the sentence why)."""
    diverged = metrics["diverged"] != ""
    cells = metrics[diverged].drop_duplicates(list(CELL))[[*CELL, "diverged"]].reset_index(drop=True)
    if diverged.all():
        raise InputError(f"every cell diverged, so there is nothing to summarise: {cells['diverged'].iloc[0]}")
    return metrics[~diverged].drop(columns="diverged"), cells


SCHEDULE_COLUMNS = ["backbone", "init", "ilr", "final_lr", "cycles", "schedule_source"]


def summarise(
    metrics: pd.DataFrame,
    cells: pd.DataFrame,
    horse10: bool,
    schedules: list[dict],
    corrupted: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame | str]:
    """Every summary table (by its file's name, without .csv) and the Markdown of Table 1 and the findings;
    `metrics` joined by `with_backbones`, `cells` the cells the summary expects (so missing ones are listed),
    `schedules` each backbone and init's learning schedule and where it came from (SCHEDULE_COLUMNS, then for a
    searched study the search's score of it), `corrupted` the cells' Horse-C metrics, joined alike, if any."""
    missing = analysis.missing_cells(cells, metrics)  # a diverged cell has metrics: it is listed apart
    metrics, diverged_cells = without_diverged(metrics)
    if corrupted is not None:  # a diverged cell is left out of Horse-C's statistics too
        corrupted = corrupted.merge(diverged_cells[list(CELL)], on=list(CELL), how="left", indicator=True)
        corrupted = corrupted[corrupted.pop("_merge") == "left_only"]
    schedule_table = pd.DataFrame(schedules)
    schedule_table = schedule_table.reindex(
        columns=[*SCHEDULE_COLUMNS, *schedule_table.columns.difference(SCHEDULE_COLUMNS)]
    )
    regressions = analysis.regressions(metrics)
    fraction = int(max(metrics["fraction"]))
    table1 = analysis.table1(metrics, fraction=fraction)
    claims = findings.findings(metrics, horse10, corrupted)
    horse_c = {} if corrupted is None else robustness.summarise_corruptions(corrupted, analysis.final(metrics))
    return {
        "metrics": metrics,
        "summary": analysis.summary(metrics),
        "regressions": regressions,
        "pretrained_vs_scratch": analysis.pretrained_vs_scratch(metrics),
        "missing_cells": missing,
        "diverged_cells": diverged_cells,
        "schedules": schedule_table,
        "table1": table1,
        "findings": claims,
        "table1.md": analysis.table1_markdown(table1, regressions, fraction),
        "findings.md": findings.findings_markdown(claims, schedule_table, diverged_cells),
        **horse_c,
    }


def write_summary(outputs: dict[str, pd.DataFrame | str], folder: str | Path) -> list[Path]:
    """Write `summarise`'s outputs into `folder` (tables as CSV), each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in outputs.items():
        path = folder / (name if name.endswith(".md") else f"{name}.csv")
        path.parent.mkdir(exist_ok=True)
        with atomic_file(path) as tmp:
            value.to_csv(tmp, index=False) if isinstance(value, pd.DataFrame) else Path(tmp).write_text(value)
        written.append(path)
    return written


def aggregate(
    metric_files: Iterable[str | Path],
    dataset: str,
    metadata: list[dict],
    schedules: list[dict],
    cells: pd.DataFrame | None,
    horse10: bool,
    out: str | Path,
    corrupted_files: Iterable[str | Path] = (),
) -> dict[str, pd.DataFrame | str]:
    """Read, join, summarise and write one dataset's summary; `cells` None: the cells found are all expected;
    `corrupted_files` the cells' Horse-C metrics (none: the study has no corruption axis)."""
    metrics = with_backbones(read_cell_metrics(metric_files, dataset), metadata)
    if cells is None:
        cells = metrics[list(CELL)].drop_duplicates()
    corrupted = read_corrupted(list(corrupted_files), metrics, metadata)
    outputs = summarise(metrics, cells, horse10, schedules, corrupted)
    for name, listed in (("without metrics", outputs["missing_cells"]), ("diverged", outputs["diverged_cells"])):
        if len(listed):
            print(f"cells {name} ({len(listed)}), out of the statistics:\n{listed.to_string(index=False)}")
    write_summary(outputs, out)
    return outputs
