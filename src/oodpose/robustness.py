"""Horse-C's statistics: how each backbone and init holds up under the common corruptions.

Works on the cells' `metrics_corrupted.csv` (one row per cell, corruption, severity, set and bodypart), joined
to the backbone table like the clean metrics, bodypart 'all'. As in ImageNet-C, a corruption error sums the
error over severities and divides by a reference network's; the mean corruption error (mCE) averages that
ratio over corruptions. ImageNet-C's reference is AlexNet; here it is ResNet-50 pretrained where the study has
it, else the first of the study's backbones (by name) pretrained, and the table names it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from oodpose.analysis import REGRESSION_COLUMNS, fit_on_top1
from oodpose.study import CORRUPTIONS, OOD, PRETRAINED, SCRATCH, WITHIN

REFERENCE = "resnet50"
METRICS = ["normalised_error", "pck"]
KEYS = ["dataset", "backbone", "imagenet_top1", "backbones", "init", "fraction", "set"]


def overall(corrupted: pd.DataFrame) -> pd.DataFrame:
    """Bodypart 'all' of the within-domain and out-of-domain sets."""
    return corrupted[(corrupted["bodypart"] == "all") & corrupted["set"].isin([WITHIN, OOD])]


def severity_curves(corrupted: pd.DataFrame, clean: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per backbone, init, fraction, set and severity: the error averaged over corruptions and splits, with the
    clean final error (from `clean`, each cell's last iteration) as severity 0."""
    table = overall(corrupted)
    if clean is not None:
        clean = clean[(clean["bodypart"] == "all") & clean["set"].isin(table["set"].unique())]
        table = pd.concat([table, clean.assign(corruption="none", severity=0)], ignore_index=True)
    per_split = table.groupby([*KEYS, "severity", "split"], as_index=False)[METRICS].mean()
    grouped = per_split.groupby([*KEYS, "severity"])[METRICS]
    return grouped.mean().join(grouped.size().rename("n_splits")).reset_index()


def reference_backbone(corrupted: pd.DataFrame) -> str:
    """ResNet-50 where the study has it pretrained, else the first pretrained backbone by name."""
    pretrained = sorted(corrupted.loc[corrupted["init"] == PRETRAINED, "backbone"].unique())
    if not pretrained:
        return ""
    return REFERENCE if REFERENCE in pretrained else pretrained[0]


def corruption_errors(corrupted: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, init, fraction and set: the mean error over corruptions and severities, and the mCE
    relative to the reference backbone pretrained (NaN where the reference lacks that corruption)."""
    table = overall(corrupted)
    reference = reference_backbone(table)
    summed = (
        table.groupby([*KEYS, "corruption", "severity"], as_index=False)["normalised_error"]
        .mean()  # over splits
        .groupby([*KEYS, "corruption"], as_index=False)["normalised_error"]
        .agg(summed="sum", mean_error="mean")
    )
    base = summed[(summed["backbone"] == reference) & (summed["init"] == PRETRAINED)]
    base = base[["dataset", "fraction", "set", "corruption", "summed"]].rename(columns={"summed": "reference"})
    summed = summed.merge(base, on=["dataset", "fraction", "set", "corruption"], how="left")
    summed["ce"] = summed["summed"] / summed["reference"]
    out = summed.groupby(KEYS, as_index=False).agg(
        mean_corruption_error=("mean_error", "mean"), mce=("ce", "mean"), n_corruptions=("corruption", "nunique")
    )
    return out.assign(reference=f"{reference} ({PRETRAINED})" if reference else "")


def backbone_means(corrupted: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, init, fraction and set: the error averaged over corruptions, severities and splits."""
    return overall(corrupted).groupby(KEYS, as_index=False)["normalised_error"].mean()


def corruption_regressions(corrupted: pd.DataFrame) -> pd.DataFrame:
    """OLS of the mean corruption error (backbone means) on ImageNet top-1, per init, fraction and set."""
    rows = []
    for (dataset, init, fraction, set_), group in backbone_means(corrupted).groupby(
        ["dataset", "init", "fraction", "set"]
    ):
        row = {"dataset": dataset, "backbones": "all", "init": init, "fraction": fraction, "set": set_}
        fit = fit_on_top1(group[["imagenet_top1", "normalised_error"]], "normalised_error")
        rows.append(row | {"metric": "mean_corruption_error"} | fit)
    return pd.DataFrame(rows, columns=REGRESSION_COLUMNS)


def init_gaps(corrupted: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Scratch minus pretrained error, paired per backbone, split and set, averaged over what `by` leaves out
    of corruption and severity; one row per backbone, split, set and each key of `by`."""
    table = overall(corrupted)
    keys = ["dataset", "fraction", "backbone", "split", "set", *by]
    wide = table.pivot_table(index=keys, columns="init", values="normalised_error", aggfunc="mean")
    if not {PRETRAINED, SCRATCH} <= set(wide.columns):
        return pd.DataFrame(columns=[*keys, "gap"])
    return (wide[SCRATCH] - wide[PRETRAINED]).dropna().rename("gap").reset_index()


def gap_slopes(corrupted: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, split and set: the slope of the init gap (averaged over corruptions) on severity."""
    gaps = init_gaps(corrupted, ["severity"])
    rows = []
    for key, group in gaps.groupby(["dataset", "fraction", "backbone", "split", "set"]):
        if group["severity"].nunique() >= 2:
            slope = np.polyfit(group["severity"].astype(float), group["gap"], 1)[0]
            rows.append(dict(zip(["dataset", "fraction", "backbone", "split", "set"], key)) | {"slope": slope})
    return pd.DataFrame(rows, columns=["dataset", "fraction", "backbone", "split", "set", "slope"])


def corruption_tables_markdown(corrupted: pd.DataFrame) -> str:
    """One table per corruption: normalised error (mean over splits) per backbone, init and set, by severity."""
    table = overall(corrupted)
    lines = [
        "# Horse-C: normalised error per corruption",
        "",
        "Mean over splits of each cell's final normalised error, by severity (1-5); lower is better.",
        "",
    ]
    for corruption in [c for c in CORRUPTIONS if c in set(table["corruption"])]:
        group = table[table["corruption"] == corruption]
        wide = group.pivot_table(
            index=["fraction", "backbone", "init", "set"], columns="severity", values="normalised_error"
        )
        header = " | ".join(f"severity {s}" for s in wide.columns)
        lines += [f"## {corruption}", "", f"| fraction | backbone | init | set | {header} |"]
        lines.append("|---|---|---|---|" + "---:|" * len(wide.columns))
        for (fraction, backbone, init, set_), values in wide.iterrows():
            cells = " | ".join("–" if pd.isna(v) else f"{v:.3f}" for v in values)
            lines.append(f"| {fraction} | {backbone} | {init} | {set_} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def summarise_corruptions(corrupted: pd.DataFrame, clean: pd.DataFrame) -> dict[str, pd.DataFrame | str]:
    """Horse-C's tables, by file name (without .csv) under the summary's corruptions/ folder."""
    return {
        "corruptions/severity": severity_curves(corrupted, clean),
        "corruptions/mce": corruption_errors(corrupted),
        "corruptions/regressions": corruption_regressions(corrupted),
        "corruptions/tables.md": corruption_tables_markdown(corrupted),
    }
