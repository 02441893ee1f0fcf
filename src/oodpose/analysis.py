"""Turn the cells' metrics into the paper's results: summaries, regressions, paired tests, Table 1.

Everything works on the long table that evaluation writes (one row per cell, iteration, set and
bodypart), joined to the backbone table's metadata (`oodpose.aggregate.with_backbones`: ImageNet top-1,
family, and whether the paper studied it); 'final' means each cell's last iteration, and cell-level
numbers use bodypart 'all'.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from oodpose import paper
from oodpose.study import CELL, OOD, PRETRAINED, SCRATCH, WITHIN

METRICS = ["normalised_error", "pck"]
REGRESSION_COLUMNS = [
    "dataset",
    "backbones",
    "init",
    "fraction",
    "set",
    "metric",
    "n_backbones",
    "slope",
    "intercept",
    "r2",
    "p_value",
    "slope_ci_low",
    "slope_ci_high",
    "slope_percent_per_point",
    "ci_low_percent_per_point",
    "ci_high_percent_per_point",
]


def final(metrics: pd.DataFrame) -> pd.DataFrame:
    """Each cell's last iteration, bodypart 'all'."""
    overall = metrics[metrics["bodypart"] == "all"]
    last = overall.groupby(list(CELL))["iteration"].transform("max")
    return overall[overall["iteration"] == last].reset_index(drop=True)


def missing_cells(expected: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """The expected cells (rows of CELL columns) that have no metrics."""
    found = metrics[list(CELL)].drop_duplicates()
    merged = expected.merge(found, on=list(CELL), how="left", indicator=True)
    return merged[merged["_merge"] == "left_only"][list(CELL)].reset_index(drop=True)


def summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, backbone, init, fraction and set: mean and SEM across splits."""
    table = final(metrics)
    keys = ["dataset", "backbone", "imagenet_top1", "backbones", "init", "fraction", "set"]
    grouped = table.groupby(keys)[METRICS]
    out = grouped.mean().join(grouped.sem().add_suffix("_sem")).join(grouped.size().rename("n_splits"))
    return out.reset_index()


def regressions(metrics: pd.DataFrame) -> pd.DataFrame:
    """OLS of each metric (backbone means across splits) on ImageNet top-1, per init x fraction x set.

    Fitted over all backbones ('all'), and over the paper's and the added ones apart when a study has both.
    """
    means = summary(metrics)
    groups = [("all", means)]
    if means["backbones"].nunique() > 1:
        groups += list(means.groupby("backbones"))
    rows = []
    for backbones, subset in groups:
        for (dataset, init, fraction, set_), group in subset.groupby(["dataset", "init", "fraction", "set"]):
            for metric in METRICS:
                row = {
                    "dataset": dataset,
                    "backbones": backbones,
                    "init": init,
                    "fraction": fraction,
                    "set": set_,
                    "metric": metric,
                }
                rows.append(row | fit_on_top1(group[["imagenet_top1", metric]].dropna(), metric))
    return pd.DataFrame(rows, columns=REGRESSION_COLUMNS)


def fit_on_top1(data: pd.DataFrame, metric: str) -> dict:
    """Slope, intercept, R², p and 95 % CI of `metric` on ImageNet top-1 (just n when under 3 points or one top-1)."""
    if len(data) < 3 or data["imagenet_top1"].nunique() < 2:
        return {"n_backbones": len(data)}
    fit = sm.OLS(data[metric], sm.add_constant(data["imagenet_top1"])).fit()
    low, high = fit.conf_int(0.05).loc["imagenet_top1"]
    return {
        "n_backbones": len(data),
        "slope": fit.params["imagenet_top1"],
        "intercept": fit.params["const"],
        "r2": fit.rsquared,
        "p_value": fit.pvalues["imagenet_top1"],
        "slope_ci_low": low,
        "slope_ci_high": high,
        # the paper's unit: the metric in % (normalised error x 100, PCK in %) per ImageNet point
        "slope_percent_per_point": 100 * fit.params["imagenet_top1"],
        "ci_low_percent_per_point": 100 * low,
        "ci_high_percent_per_point": 100 * high,
    }


def paired_errors(metrics: pd.DataFrame) -> pd.DataFrame:
    """Final normalised error with one column per init: a row per dataset, backbone, fraction, set and split."""
    return final(metrics).pivot_table(
        index=["dataset", "backbone", "fraction", "set", "split"], columns="init", values="normalised_error"
    )


def pretrained_vs_scratch(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, fraction and set: scratch minus pretrained, paired across splits, with a paired t-test."""
    wide = paired_errors(metrics).dropna()
    if not {PRETRAINED, SCRATCH} <= set(wide.columns):
        return pd.DataFrame(
            columns=["dataset", "backbone", "fraction", "set", "n_splits", "mean_difference", "p_value"]
        )
    rows = []
    for key, group in wide.groupby(level=[0, 1, 2, 3]):
        diff = group[SCRATCH] - group[PRETRAINED]
        p = stats.ttest_rel(group[SCRATCH], group[PRETRAINED]).pvalue if len(group) >= 2 else np.nan
        rows.append(
            dict(zip(["dataset", "backbone", "fraction", "set"], key))
            | {"n_splits": len(group), "mean_difference": diff.mean(), "p_value": p}
        )
    return pd.DataFrame(rows)


def table1(metrics: pd.DataFrame, fraction: int = 50) -> pd.DataFrame:
    """Average PCK@0.3 (%) within domain and OOD per backbone (pretrained), beside the paper's numbers."""
    means = summary(metrics)
    chosen = means[(means["init"] == PRETRAINED) & (means["fraction"] == fraction)]
    pck = chosen.pivot_table(index=["backbone", "imagenet_top1"], columns="set", values="pck") * 100
    pck = pck.reindex(columns=[WITHIN, OOD]).reset_index().sort_values("imagenet_top1")
    pck.columns = ["backbone", "imagenet_top1", "within_domain", "out_of_domain"]
    published = np.array([paper.TABLE1.get(b, (np.nan, np.nan)) for b in pck["backbone"]], dtype=float).reshape(-1, 2)
    pck["paper_within_domain"], pck["paper_out_of_domain"] = published[:, 0], published[:, 1]
    pck["difference_within"] = pck["within_domain"] - pck["paper_within_domain"]
    pck["difference_ood"] = pck["out_of_domain"] - pck["paper_out_of_domain"]
    return pck.reset_index(drop=True)


def table1_markdown(table: pd.DataFrame, regressions: pd.DataFrame | None = None, fraction: int = 50) -> str:
    """Table 1 as Markdown, with notes: the units, and the normalised-error slopes in the paper's unit."""
    head = "| backbone | ImageNet top-1 | within domain | paper | difference | out of domain | paper | difference |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        cells = [
            r.imagenet_top1,
            r.within_domain,
            r.paper_within_domain,
            r.difference_within,
            r.out_of_domain,
            r.paper_out_of_domain,
            r.difference_ood,
        ]
        lines.append(f"| {r.backbone} | " + " | ".join("–" if pd.isna(c) else f"{c:.1f}" for c in cells) + " |")
    lines += [
        "",
        f"PCK@0.3 in %, pretrained, {fraction}% training data; the paper's numbers are Table 1 of Mathis et al.",
    ]
    for set_, slope in paper.SLOPES.items():
        lines.append(slope_note(regressions, set_, fraction, slope))
    return "\n".join(lines) + "\n"


def slope_note(regressions: pd.DataFrame | None, set_: str, fraction: int, paper: float) -> str:
    """One line: the pretrained normalised-error slope on ImageNet top-1 for `set_`, in % per point."""
    name = {OOD: "out of domain", WITHIN: "within domain"}[set_]
    chosen = dict(backbones="all", init=PRETRAINED, fraction=fraction, set=set_, metric="normalised_error")
    rows = (
        pd.DataFrame()
        if regressions is None
        else regressions[(regressions[list(chosen)] == pd.Series(chosen)).all(axis=1)]
    )
    if rows.empty or pd.isna(rows["slope_percent_per_point"].iloc[0]):
        return f"Normalised error vs ImageNet top-1, {name}: too few backbones to fit (paper: {paper:+.2f}% per point)."
    r = rows.iloc[0]
    return (
        f"Normalised error vs ImageNet top-1, {name}: {r.slope_percent_per_point:+.2f}% per ImageNet point "
        f"(95% CI {r.ci_low_percent_per_point:+.2f} to {r.ci_high_percent_per_point:+.2f}, R² {r.r2:.2f}, "
        f"{r.n_backbones} backbones; paper: {paper:+.2f}%)."
    )
