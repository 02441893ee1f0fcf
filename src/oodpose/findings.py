"""The paper's claims, each checked against one study's numbers, with the statistic behind each verdict.

Each claim is one record of CLAIMS: its id, statement, the unit of its estimate, what a study needs to
test it, and the function that tests it; `findings.csv`, `findings.md` and docs/findings.md follow that list.
A verdict is "supported" only when a 95 % confidence interval lies wholly on the claim's side of zero,
"contradicted" when it lies wholly on the other side, and "not resolvable at this n" otherwise, or when
the study lacks what the claim needs (one backbone, one init, no learning curve, not Horse-10).
Intervals are Student-t intervals of paired differences, or OLS intervals; errors are normalised errors
at each cell's last iteration unless the claim is about learning curves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from oodpose import paper, robustness
from oodpose.analysis import final, fit_on_top1, paired_errors
from oodpose.study import OOD, PRETRAINED, SCRATCH, SELECTED_ON, WITHIN

SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "not resolvable at this n"
COLUMNS = [
    "dataset",
    "fraction",
    "claim",
    "scope",
    "statement",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
    "verdict",
]
TABLE1_MARGIN = 5.0  # PCK points; a tolerance chosen here (the paper gives none) for "reproduces Table 1"
SLOPE_SET_NAMES = {WITHIN: "within-domain", OOD: "OOD"}  # claims (d0) and (d1)
STRONG_FAMILIES, LIGHT_FAMILY = ("resnet", "efficientnet"), "mobilenetv2"  # claim (i), in the paper's words


@dataclass(frozen=True)
class Evidence:
    """What one dataset at one training fraction gives the claims' tests."""

    curves: pd.DataFrame  # every evaluated iteration of its cells
    final: pd.DataFrame  # each cell's last iteration, bodypart 'all'
    horse10: bool
    corrupted: pd.DataFrame  # its cells' final models on the corrupted sets (Horse-C); empty when not evaluated
    largest: pd.DataFrame | None  # the curves at the dataset's largest training fraction, None when this is it


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, as this pipeline tests it."""

    id: str
    statement: str
    unit: str  # of the estimate
    needs: str  # what a study must have for the claim to be testable
    test: Callable[[Evidence], list[dict]]  # its findings rows; `lacking(claim)` when the study cannot test it


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


def finding(claim: str, scope: str, statistic: str, estimate_ci: tuple, sign: int) -> dict:
    """One findings row of `claim`: its estimate, 95 % interval and n, and the verdict for a predicted `sign`."""
    estimate, low, high, n = estimate_ci
    return {
        "claim": claim,
        "scope": scope,
        "statement": CLAIM[claim].statement,
        "statistic": statistic,
        "estimate": estimate,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "verdict": verdict(low, high, sign),
    }


def lacking(claim: str) -> list[dict]:
    """A claim the study's design cannot test, saying what it needs."""
    return [finding(claim, "pooled", f"not testable: needs {CLAIM[claim].needs}", (np.nan, np.nan, np.nan, 0), 1)]


def init_gaps(curves: pd.DataFrame) -> pd.DataFrame:
    """Scratch minus pretrained final error, one row per backbone and split, one column per set (within, OOD)."""
    wide = paired_errors(curves)
    if not {PRETRAINED, SCRATCH} <= set(wide.columns):
        return pd.DataFrame()
    gaps = (wide[SCRATCH] - wide[PRETRAINED]).unstack("set")
    return gaps[[s for s in (WITHIN, OOD) if s in gaps.columns]].dropna()


def pretrained_beats_scratch(evidence: Evidence) -> list[dict]:
    """(a) pooled over backbones x splits, then per backbone (paired across splits)."""
    gaps = init_gaps(evidence.curves)
    if OOD not in gaps:
        return lacking("a")
    what = "scratch minus pretrained OOD normalised error, paired"
    rows = [finding("a", "pooled", f"{what} (backbones x splits)", mean_ci(gaps[OOD]), +1)]
    return rows + [
        finding("a", backbone, f"{what} across splits", mean_ci(group[OOD]), +1)
        for backbone, group in gaps.groupby(level="backbone")
    ]


def gap_larger_out_of_domain(evidence: Evidence) -> list[dict]:
    """(b) the OOD gap minus the within-domain gap, paired per backbone and split."""
    gaps = init_gaps(evidence.curves)
    if not {WITHIN, OOD} <= set(gaps):
        return lacking("b")
    what = "(scratch - pretrained) OOD minus the same within domain, normalised error, paired (backbones x splits)"
    return [finding("b", "pooled", what, mean_ci(gaps[OOD] - gaps[WITHIN]), +1)]


def larger_gap_for_stronger_families(evidence: Evidence) -> list[dict]:
    """(i) each backbone's OOD gap, its mean over splits; ResNets and EfficientNets minus MobileNetV2s, a Welch
    interval over backbones (the paper: 'not the case for the lightweight models, i.e. MobileNetV2s')."""
    gaps = init_gaps(evidence.curves)
    if OOD not in gaps or "family" not in evidence.final:  # metrics not joined to the backbone table
        return lacking("i")
    per_backbone = gaps[OOD].groupby(level="backbone").mean()
    family = evidence.final.drop_duplicates("backbone").set_index("backbone")["family"].reindex(per_backbone.index)
    strong, light = per_backbone[family.isin(STRONG_FAMILIES)], per_backbone[family == LIGHT_FAMILY]
    if len(strong) < 2 or len(light) < 2:
        return lacking("i")
    low, high = stats.ttest_ind(strong, light, equal_var=False).confidence_interval(0.95)
    what = (
        "scratch minus pretrained OOD normalised error, mean over splits per backbone: ResNets and EfficientNets "
        "minus MobileNetV2s (Welch, backbones)"
    )
    return [finding("i", "pooled", what, (strong.mean() - light.mean(), low, high, len(strong) + len(light)), +1)]


def advantage_larger_with_less_data(evidence: Evidence) -> list[dict]:
    """(j) the within-domain gap at this, the dataset's smallest fraction, minus the gap at its largest, paired per
    backbone and split (the paper: scratch 'could closely match' pretrained given enough data, not at 5 %)."""
    here = init_gaps(evidence.curves)
    rich = pd.DataFrame() if evidence.largest is None else init_gaps(evidence.largest)
    if WITHIN not in here or WITHIN not in rich:
        return lacking("j")
    difference = (here[WITHIN].droplevel("fraction") - rich[WITHIN].droplevel("fraction")).dropna()
    fractions = [int(curves["fraction"].iloc[0]) for curves in (evidence.curves, evidence.largest)]
    what = "(scratch - pretrained) within-domain normalised error at {} % minus at {} %, paired (backbones x splits)"
    return [finding("j", "pooled", what.format(*fractions), mean_ci(difference), +1)]


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


def scratch_plateaus(evidence: Evidence) -> list[dict]:
    """(c) within-domain error still falls late in training (change < 0), and OOD error falls less (difference > 0)."""
    changes = curve_changes(evidence.curves)
    if changes.empty or not {WITHIN, OOD} <= set(changes.columns):
        return lacking("c")
    changes = changes.dropna()
    within = mean_ci(changes[WITHIN])
    interval = "no CI at n = 1" if np.isnan(within[1]) else f"CI {within[1]:+.1f} to {within[2]:+.1f}"
    row = finding(
        "c",
        "pooled",
        "relative change (%) of error from mid-run to the end, OOD minus within, paired "
        f"(scratch cells); within-domain change {within[0]:+.1f}% ({interval})",
        mean_ci(changes[OOD] - changes[WITHIN]),
        +1,
    )
    if row["verdict"] == SUPPORTED and verdict(within[1], within[2], -1) != SUPPORTED:
        row["verdict"] = UNRESOLVED  # OOD lags, but within-domain error is not shown to be still falling
    return [row]


def backbone_means(evidence: Evidence, inits=(PRETRAINED,), sets=(WITHIN, OOD)) -> pd.DataFrame | None:
    """Backbone means of final error (`error`, in %) per init and set; None unless each init has 3 or more distinct
    ImageNet top-1 values in each set."""
    table = evidence.final
    chosen = table[table["init"].isin(inits) & table["set"].isin(sets)]
    means = chosen.groupby(["backbone", "imagenet_top1", "init", "set"], as_index=False)["normalised_error"].mean()
    counts = means.groupby(["init", "set"])["imagenet_top1"].nunique()
    if len(counts) < len(inits) * len(sets) or (counts < 3).any():
        return None
    return means.assign(error=lambda d: 100 * d["normalised_error"])


def top1_slope(claim: str, set_: str, evidence: Evidence) -> list[dict]:
    """(d0) within domain, (d1) out of domain: the set's slope alone, as `regressions.csv` fits it, on backbone
    means of the pretrained cells."""
    means = backbone_means(evidence)
    if means is None:
        return lacking(claim)
    fit = fit_on_top1(means.loc[means["set"] == set_, ["imagenet_top1", "error"]], "error")
    estimate = (fit["slope"], fit["slope_ci_low"], fit["slope_ci_high"], means["backbone"].nunique())
    what = f"{SLOPE_SET_NAMES[set_]} normalised-error slope, % per ImageNet point (OLS on backbone means)"
    return [finding(claim, "pooled", what, estimate, -1)]


def steeper_out_of_domain(evidence: Evidence) -> list[dict]:
    """(d2) OOD minus within slope, from one OLS with an interaction (a common residual variance for both sets)."""
    means = backbone_means(evidence)
    if means is None:
        return lacking("d2")
    fit = smf.ols("error ~ imagenet_top1 * ood", data=means.assign(ood=(means["set"] == OOD).astype(float))).fit()
    low, high = fit.conf_int(0.05).loc["imagenet_top1:ood"]
    estimate = (fit.params["imagenet_top1:ood"], low, high, means["backbone"].nunique())
    return [
        finding("d2", "pooled", "OOD minus within-domain slope, % per ImageNet point (OLS interaction)", estimate, -1)
    ]


def steeper_when_pretrained(evidence: Evidence) -> list[dict]:
    """(d3) the pretrained minus the from-scratch OOD slope, from one OLS with an interaction over both inits'
    backbone means (the paper: better ImageNet networks generalise better "if they are first pretrained")."""
    means = backbone_means(evidence, (PRETRAINED, SCRATCH), (OOD,))
    if means is None:
        return lacking("d3")
    fit = smf.ols("error ~ imagenet_top1 * pretrained", data=means.assign(pretrained=means["init"] == PRETRAINED)).fit()
    term = "imagenet_top1:pretrained[T.True]"
    low, high = fit.conf_int(0.05).loc[term]
    estimate = (fit.params[term], low, high, means["backbone"].nunique())
    what = "pretrained minus from-scratch OOD slope, % per ImageNet point (OLS interaction)"
    return [finding("d3", "pooled", what, estimate, -1)]


def table1_reproduced(evidence: Evidence) -> list[dict]:
    """(e) mean PCK difference to the paper's Table 1 across its backbones: an equivalence test at ±TABLE1_MARGIN."""
    if not evidence.horse10:
        return lacking("e")
    table = evidence.final
    mine = table[(table["init"] == PRETRAINED) & table["backbone"].isin(paper.TABLE1)]
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


def corrupted_sets(evidence: Evidence) -> list[str]:
    return [s for s in (WITHIN, OOD) if s in set(evidence.corrupted.get("set", []))]


def pretrained_beats_scratch_corrupted(evidence: Evidence) -> list[dict]:
    """(f) per set: scratch minus pretrained error under corruption, averaged over corruptions and severities,
    paired per backbone and split."""
    gaps = robustness.init_gaps(evidence.corrupted, []) if len(evidence.corrupted) else pd.DataFrame()
    if gaps.empty:
        return lacking("f")
    what = "scratch minus pretrained normalised error under corruption (mean over corruptions and severities), paired"
    return [
        finding("f", set_, f"{what} (backbones x splits)", mean_ci(gaps.loc[gaps["set"] == set_, "gap"]), +1)
        for set_ in corrupted_sets(evidence)
    ]


def gap_grows_with_severity(evidence: Evidence) -> list[dict]:
    """(g) per set: the slope of that gap on severity, one slope per backbone and split."""
    slopes = robustness.gap_slopes(evidence.corrupted) if len(evidence.corrupted) else pd.DataFrame()
    if slopes.empty:
        return lacking("g")
    what = "slope on severity of the scratch-minus-pretrained error (mean over corruptions), per backbone x split"
    return [
        finding("g", set_, what, mean_ci(slopes.loc[slopes["set"] == set_, "slope"]), +1)
        for set_ in corrupted_sets(evidence)
    ]


def corruption_slope(evidence: Evidence) -> list[dict]:
    """(h) per set: the slope of the mean corruption error (pretrained backbone means, in %) on ImageNet top-1."""
    if evidence.corrupted.empty:
        return lacking("h")
    means = robustness.backbone_means(evidence.corrupted)
    means = means[means["init"] == PRETRAINED].assign(error=lambda d: 100 * d["normalised_error"])
    if means["imagenet_top1"].nunique() < 3:
        return lacking("h")
    rows = []
    for set_ in corrupted_sets(evidence):
        fit = fit_on_top1(means.loc[means["set"] == set_, ["imagenet_top1", "error"]], "error")
        n = int((means["set"] == set_).sum())
        estimate = (fit.get("slope", np.nan), fit.get("slope_ci_low", np.nan), fit.get("slope_ci_high", np.nan), n)
        what = "mean corruption error slope, % per ImageNet point (OLS on pretrained backbone means)"
        rows.append(finding("h", set_, what, estimate, -1))
    return rows


CLAIMS = (
    Claim(
        "a",
        "Pretrained networks have lower out-of-domain error than the same networks trained from scratch.",
        "normalised error",
        "both inits evaluated out of domain",
        pretrained_beats_scratch,
    ),
    Claim(
        "b",
        "The pretrained-vs-scratch gap is larger out of domain than within domain.",
        "normalised error",
        "both inits evaluated within and out of domain",
        gap_larger_out_of_domain,
    ),
    Claim(
        "c",
        "From scratch, out-of-domain error plateaus or rises while within-domain error still falls.",
        "% change",
        "scratch learning curves with two or more evaluated iterations in both sets",
        scratch_plateaus,
    ),
    Claim(
        "d0",
        "Within-domain error falls with ImageNet top-1.",
        "% per ImageNet point",
        "pretrained cells of 3 or more backbones with distinct ImageNet top-1, in both sets",
        functools.partial(top1_slope, "d0", WITHIN),
    ),
    Claim(
        "d1",
        "Out-of-domain error falls with ImageNet top-1.",
        "% per ImageNet point",
        "pretrained cells of 3 or more backbones with distinct ImageNet top-1, in both sets",
        functools.partial(top1_slope, "d1", OOD),
    ),
    Claim(
        "d2",
        "Out-of-domain error falls more steeply with ImageNet top-1 than within-domain error.",
        "% per ImageNet point",
        "pretrained cells of 3 or more backbones with distinct ImageNet top-1, in both sets",
        steeper_out_of_domain,
    ),
    Claim(
        "d3",
        "ImageNet top-1 predicts out-of-domain error only when pretrained: the slope is steeper pretrained than "
        "from scratch.",
        "% per ImageNet point",
        "both inits evaluated out of domain for 3 or more backbones with distinct ImageNet top-1",
        steeper_when_pretrained,
    ),
    Claim(
        "e",
        f"Table 1 (pretrained, 50 % data) is reproduced on Horse-10 within ±{TABLE1_MARGIN:g} PCK points.",
        "PCK points",
        "the dataset to be Horse-10, at 50 % training data",
        table1_reproduced,
    ),
    Claim(
        "f",
        "Under common corruptions (Horse-C), pretrained networks have lower error than the same networks trained "
        "from scratch.",
        "normalised error",
        "both inits evaluated on corrupted sets (evaluation.corruptions)",
        pretrained_beats_scratch_corrupted,
    ),
    Claim(
        "g",
        "The pretrained-vs-scratch gap under corruption grows with severity.",
        "normalised error per severity level",
        "both inits evaluated on corrupted sets at 2 or more severities",
        gap_grows_with_severity,
    ),
    Claim(
        "h",
        "Error under corruption falls with ImageNet top-1.",
        "% per ImageNet point",
        "pretrained cells of 3 or more backbones with distinct ImageNet top-1 evaluated on corrupted sets",
        corruption_slope,
    ),
    Claim(
        "i",
        "Pretraining's out-of-domain advantage is larger for ResNets and EfficientNets than for the lightweight "
        "MobileNetV2s.",
        "normalised error",
        "both inits evaluated out of domain for 2 or more MobileNetV2s and 2 or more ResNets or EfficientNets",
        larger_gap_for_stronger_families,
    ),
    Claim(
        "j",
        "Pretraining's within-domain advantage is larger with less training data: from scratch catches up only "
        "given enough data.",
        "normalised error",
        "both inits evaluated within domain at 2 or more training fractions",
        advantage_larger_with_less_data,
    ),
)
CLAIM = {claim.id: claim for claim in CLAIMS}
PAPER_FRACTION = {"e": 50}  # a claim about one training fraction is checked only there
ACROSS_FRACTIONS = {"j"}  # a claim comparing fractions is checked once, at the smallest, against the largest


def checked_at(claim: str, fraction: int, smallest: int) -> bool:
    """Whether `claim` is checked at `fraction` of a dataset whose smallest training fraction is `smallest`."""
    if claim in ACROSS_FRACTIONS:
        return fraction == smallest
    return PAPER_FRACTION.get(claim, fraction) == fraction


def at_fraction(table: pd.DataFrame, dataset: str, fraction: int) -> pd.DataFrame:
    return table[(table["dataset"] == dataset) & (table["fraction"] == fraction)]


def findings(metrics: pd.DataFrame, horse10: bool, corrupted: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every claim, per dataset and training fraction; `corrupted` the cells' Horse-C metrics, if evaluated."""
    corrupted = pd.DataFrame(columns=["dataset", "fraction"]) if corrupted is None else corrupted

    rows, finals = [], final(metrics)
    smallest, largest = (finals.groupby("dataset")["fraction"].agg(end) for end in ("min", "max"))
    for (dataset, fraction), group in finals.groupby(["dataset", "fraction"]):
        richest = None if largest[dataset] == fraction else at_fraction(metrics, dataset, largest[dataset])
        evidence = Evidence(
            at_fraction(metrics, dataset, fraction), group, horse10, at_fraction(corrupted, dataset, fraction), richest
        )
        for claim in CLAIMS:
            if checked_at(claim.id, fraction, smallest[dataset]):
                rows += [{"dataset": dataset, "fraction": fraction} | row for row in claim.test(evidence)]
    return pd.DataFrame(rows, columns=COLUMNS)


def findings_markdown(table: pd.DataFrame, schedules: pd.DataFrame, diverged: pd.DataFrame) -> str:
    """The findings as Markdown: where the learning schedules came from, the cells left out because their
    training diverged, one line per claim, then the per-backbone tests of claim (a)."""
    units = "; ".join(f"({claim.id}) in {claim.unit}" for claim in CLAIMS)
    lines = [
        "# Findings: the paper's claims, checked against this study",
        "",
        "Verdicts: *supported* or *contradicted* when the 95 % confidence interval lies wholly on one side "
        f"of zero, else *not resolvable at this n*. Each statistic names its unit: {units}.",
        "",
        schedule_note(schedules),
        "",
        *diverged_note(diverged),
    ]
    head = ["| claim | verdict | statistic | estimate (95 % CI) | n |", "|---|---|---|---|---:|"]
    for (dataset, fraction), group in table.groupby(["dataset", "fraction"]):
        lines += [f"## {dataset}, {fraction} % training data", ""] + head
        per_backbone = (group["claim"] == "a") & (group["scope"] != "pooled")
        pooled, per_backbone = group[~per_backbone], group[per_backbone]
        lines += [
            table_row(f"({r.claim}) {r.statement}" + ("" if r.scope == "pooled" else f" [{r.scope}]"), r)
            for r in pooled.itertuples()
        ]
        if len(per_backbone):
            lines += ["", "Claim (a) per backbone, paired across splits:", ""] + head
            lines += [table_row(f"(a) {r.scope}", r) for r in per_backbone.itertuples()]
        lines.append("")
    return "\n".join(lines)


def diverged_note(diverged: pd.DataFrame) -> list[str]:
    """The lines naming each diverged cell and why; none when no cell diverged."""
    if diverged.empty:
        return []
    lines = [f"**{len(diverged)} cell(s) diverged and are left out of every statistic** (diverged_cells.csv):", ""]
    for cell in diverged.itertuples():
        lines.append(f"- {cell.backbone}/{cell.init}/split{cell.split}_frac{cell.fraction}: {cell.diverged}")
    return [*lines, ""]


def schedule_note(schedules: pd.DataFrame) -> str:
    """One sentence on the learning schedules; an oracle selection says that it saw the test horses."""
    sources = sorted(schedules["schedule_source"].unique())
    note = f"Learning schedules: {'; '.join(sources)}."
    if any(SELECTED_ON[OOD] in source for source in sources):
        note += (
            f" **{SELECTED_ON[OOD].capitalize()}**: the schedules were chosen on the out-of-domain test horses "
            "that these findings report, as the paper chose them, so their out-of-domain errors are optimistic."
        )
    return note


def table_row(label: str, r) -> str:
    interval = (
        "–"
        if pd.isna(r.estimate)
        else f"{r.estimate:+.3g}" + ("" if pd.isna(r.ci_low) else f" ({r.ci_low:+.3g} to {r.ci_high:+.3g})")
    )
    return f"| {label} | **{r.verdict}** | {r.statistic} | {interval} | {r.n} |"
