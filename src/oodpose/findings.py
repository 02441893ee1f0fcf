"""The paper's claims, each checked against one study's numbers, with the statistic behind each verdict.

A verdict is "supported" only when a 95 % confidence interval lies wholly on the claim's side of zero,
"contradicted" when it lies wholly on the other side, and "not resolvable at this n" otherwise, or when
the study lacks what the claim needs (one backbone, one init, no learning curve, not Horse-10).
Intervals are Student-t intervals of paired differences, or OLS intervals; errors are normalised errors
at each cell's last iteration unless the claim is about learning curves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from oodpose import paper
from oodpose.analysis import final, fit_on_top1, paired_errors
from oodpose.study import OOD, PRETRAINED, SCRATCH, WITHIN

SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "not resolvable at this n"
CLAIMS = {
    "a": "Pretrained networks have lower out-of-domain error than the same networks trained from scratch.",
    "b": "The pretrained-vs-scratch gap is larger out of domain than within domain.",
    "c": "From scratch, out-of-domain error plateaus or rises while within-domain error still falls.",
    "d1": "Out-of-domain error falls with ImageNet top-1.",
    "d2": "Out-of-domain error falls more steeply with ImageNet top-1 than within-domain error.",
    "e": "Table 1 (pretrained, 50 % data) is reproduced on Horse-10 within ±{margin:g} PCK points.",
}
COLUMNS = ["dataset", "fraction", "claim", "scope", "statement", "statistic", "estimate", "ci_low", "ci_high", "n",
           "verdict"]  # fmt: skip
TABLE1_MARGIN = 5.0  # PCK points; a tolerance chosen here (the paper gives none) for "reproduces Table 1"


def mean_ci(values) -> tuple[float, float, float, int]:
    """Mean and 95 % t-interval; NaN interval below two values."""
    values = pd.Series(values, dtype=float).dropna()
    n = len(values)
    if n < 2:
        return (values.mean() if n else np.nan), np.nan, np.nan, n
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return values.mean(), values.mean() - half, values.mean() + half, n


def verdict(low: float, high: float, sign: int) -> str:
    """The claim predicts an estimate of sign `sign` (+1 or -1)."""
    if np.isnan(low) or np.isnan(high) or low <= 0 <= high:
        return UNRESOLVED
    return SUPPORTED if (low > 0) == (sign > 0) else CONTRADICTED


def finding(claim: str, scope: str, statistic: str, estimate_ci: tuple, sign: int, **extra) -> dict:
    estimate, low, high, n = estimate_ci
    return {"claim": claim, "scope": scope, "statement": CLAIMS[claim].format(margin=TABLE1_MARGIN),
            "statistic": statistic, "estimate": estimate, "ci_low": low, "ci_high": high, "n": n,
            "verdict": verdict(low, high, sign)} | extra  # fmt: skip


def lacking(claim: str, why: str) -> dict:
    """A claim the study's design cannot test."""
    return finding(claim, "pooled", f"not testable: {why}", (np.nan, np.nan, np.nan, 0), 1)


def init_gaps(metrics: pd.DataFrame) -> pd.DataFrame:
    """Scratch minus pretrained final error, one row per backbone and split, one column per set (within, OOD)."""
    wide = paired_errors(metrics)
    if not {PRETRAINED, SCRATCH} <= set(wide.columns):
        return pd.DataFrame()
    gaps = (wide[SCRATCH] - wide[PRETRAINED]).unstack("set")
    return gaps[[s for s in (WITHIN, OOD) if s in gaps.columns]].dropna()


def pretrained_beats_scratch(metrics: pd.DataFrame) -> list[dict]:
    """(a) pooled over backbones x splits, then per backbone (paired across splits); (b) OOD gap minus within."""
    gaps = init_gaps(metrics)
    if OOD not in gaps:
        return [lacking("a", "needs both inits evaluated out of domain"), lacking("b", "needs both inits")]
    what = "scratch minus pretrained OOD normalised error, paired"
    rows = [finding("a", "pooled", f"{what} (backbones x splits)", mean_ci(gaps[OOD]), +1)]
    rows += [finding("a", backbone, f"{what} across splits", mean_ci(group[OOD]), +1)
             for backbone, group in gaps.groupby(level="backbone")]  # fmt: skip
    if WITHIN not in gaps:
        return rows + [lacking("b", "needs both inits evaluated within domain")]
    what = "(scratch - pretrained) OOD minus the same within domain, normalised error, paired (backbones x splits)"
    return rows + [finding("b", "pooled", what, mean_ci(gaps[OOD] - gaps[WITHIN]), +1)]


def curve_changes(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per scratch cell and set: relative change (%) of error from the curve point nearest mid-run to the last."""
    curves = metrics[(metrics["bodypart"] == "all") & (metrics["init"] == SCRATCH)]
    rows = []
    for key, cell in curves.groupby(["backbone", "split", "set"]):
        errors = cell.groupby("iteration")["normalised_error"].mean()
        middle = errors.index[np.abs(errors.index - errors.index.max() / 2).argmin()]
        if middle != errors.index.max():
            change = 100 * (errors.iloc[-1] / errors[middle] - 1)
            rows.append(dict(zip(["backbone", "split", "set"], key)) | {"change": change})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).pivot_table(index=["backbone", "split"], columns="set", values="change")


def scratch_plateaus(metrics: pd.DataFrame) -> list[dict]:
    """(c) within-domain error still falls late in training (change < 0), and OOD error falls less (difference > 0)."""
    changes = curve_changes(metrics)
    if changes.empty or not {WITHIN, OOD} <= set(changes.columns):
        return [lacking("c", "needs scratch learning curves with two or more evaluated iterations in both sets")]
    changes = changes.dropna()
    within = mean_ci(changes[WITHIN])
    interval = "no CI at n = 1" if np.isnan(within[1]) else f"CI {within[1]:+.1f} to {within[2]:+.1f}"
    row = finding("c", "pooled", "relative change (%) of error from mid-run to the end, OOD minus within, paired "
                  f"(scratch cells); within-domain change {within[0]:+.1f}% ({interval})",
                  mean_ci(changes[OOD] - changes[WITHIN]), +1)  # fmt: skip
    if row["verdict"] == SUPPORTED and verdict(within[1], within[2], -1) != SUPPORTED:
        row["verdict"] = UNRESOLVED  # OOD lags, but within-domain error is not shown to be still falling
    return [row]


def slopes(table: pd.DataFrame) -> list[dict]:
    """(d1) the OOD slope alone, as `regressions.csv` fits it; (d2) OOD minus within slope, from one OLS with an
    interaction (a common residual variance for both sets); both on backbone means, in % per ImageNet point."""
    means = table[table["init"] == PRETRAINED].groupby(["backbone", "imagenet_top1", "set"], as_index=False)[
        "normalised_error"].mean()  # fmt: skip
    means = means[means["set"].isin([WITHIN, OOD])].assign(error=lambda d: 100 * d["normalised_error"])
    if means["imagenet_top1"].nunique() < 3 or means["set"].nunique() < 2:
        why = "needs pretrained cells of 3 or more backbones with distinct ImageNet top-1, in both sets"
        return [lacking("d1", why), lacking("d2", why)]
    n = means["backbone"].nunique()
    ood = fit_on_top1(means.loc[means["set"] == OOD, ["imagenet_top1", "error"]], "error")
    d1 = (ood["slope"], ood["slope_ci_low"], ood["slope_ci_high"], n)
    fit = smf.ols("error ~ imagenet_top1 * ood", data=means.assign(ood=(means["set"] == OOD).astype(float))).fit()
    low, high = fit.conf_int(0.05).loc["imagenet_top1:ood"]
    d2 = (fit.params["imagenet_top1:ood"], low, high, n)
    return [
        finding("d1", "pooled", "OOD normalised-error slope, % per ImageNet point (OLS on backbone means)", d1, -1),
        finding("d2", "pooled", "OOD minus within-domain slope, % per ImageNet point (OLS interaction)", d2, -1),
    ]


def table1_reproduced(table: pd.DataFrame) -> list[dict]:
    """(e) mean PCK difference to the paper's Table 1 across its backbones: an equivalence test at ±TABLE1_MARGIN."""
    mine = table[(table["init"] == PRETRAINED) & (table["fraction"] == 50) & table["backbone"].isin(paper.TABLE1)]
    rows = []
    for index, set_ in enumerate((WITHIN, OOD)):
        pck = mine[mine["set"] == set_].groupby("backbone")["pck"].mean() * 100
        difference = pck - [paper.TABLE1[backbone][index] for backbone in pck.index]
        what = "study minus paper PCK@0.3 (%), mean over the paper's backbones"
        row = finding("e", set_, what, mean_ci(difference), 1)
        low, high = row["ci_low"], row["ci_high"]
        inside, outside = -TABLE1_MARGIN <= low and high <= TABLE1_MARGIN, low > TABLE1_MARGIN or high < -TABLE1_MARGIN
        row["verdict"] = SUPPORTED if inside else CONTRADICTED if outside else UNRESOLVED  # NaN compares False
        rows.append(row)
    return rows


def findings(metrics: pd.DataFrame, horse10: bool) -> pd.DataFrame:
    """Every claim, per dataset and training fraction (Table 1 at 50 % only, and only on Horse-10)."""
    table = final(metrics)
    rows = []
    for (dataset, fraction), group in table.groupby(["dataset", "fraction"]):
        curves = metrics[(metrics["dataset"] == dataset) & (metrics["fraction"] == fraction)]
        claims = pretrained_beats_scratch(curves) + scratch_plateaus(curves) + slopes(group)
        if fraction == 50:
            claims += table1_reproduced(group) if horse10 else [lacking("e", "the dataset is not Horse-10")]
        rows += [{"dataset": dataset, "fraction": fraction} | row for row in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def findings_markdown(table: pd.DataFrame) -> str:
    """The findings as Markdown: one line per claim, then the per-backbone tests of claim (a)."""
    lines = ["# Findings: the paper's claims, checked against this study", "",
             "Verdicts: *supported* or *contradicted* when the 95 % confidence interval lies wholly on one side "
             "of zero, else *not resolvable at this n*. Each statistic names its unit; claims (a) and (b) "
             "are in normalised error (error / scale), (c) in %, (d) in % per ImageNet point, (e) in PCK points.",
             ""]  # fmt: skip
    head = ["| claim | verdict | statistic | estimate (95 % CI) | n |", "|---|---|---|---|---:|"]
    for (dataset, fraction), group in table.groupby(["dataset", "fraction"]):
        lines += [f"## {dataset}, {fraction} % training data", ""] + head
        per_backbone = (group["claim"] == "a") & (group["scope"] != "pooled")
        pooled, per_backbone = group[~per_backbone], group[per_backbone]
        lines += [table_row(f"({r.claim}) {r.statement}" + ("" if r.scope == "pooled" else f" [{r.scope}]"), r)
                  for r in pooled.itertuples()]  # fmt: skip
        if len(per_backbone):
            lines += ["", "Claim (a) per backbone, paired across splits:", ""] + head
            lines += [table_row(f"(a) {r.scope}", r) for r in per_backbone.itertuples()]
        lines.append("")
    return "\n".join(lines)


def table_row(label: str, r) -> str:
    interval = "–" if pd.isna(r.estimate) else f"{r.estimate:+.3g}" + (
        "" if pd.isna(r.ci_low) else f" ({r.ci_low:+.3g} to {r.ci_high:+.3g})")  # fmt: skip
    return f"| {label} | **{r.verdict}** | {r.statistic} | {interval} | {r.n} |"
