"""The paper's figures, drawn with seaborn from the metrics table (PNG and PDF, at paper size).

A figure whose input lacks some cells draws what exists and says in its title what is missing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from oodpose.analysis import final  # noqa: E402

SET_COLOURS = {"train": "tab:blue", "test_within": "tab:red", "test_ood": "grey"}
SET_NAMES = {"train": "train", "test_within": "test (within domain)", "test_ood": "out of domain"}
INIT_STYLES = {"imagenet": (4, 2), "scratch": ""}


def save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=200, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


def missing_note(missing: pd.DataFrame) -> str:
    if missing.empty:
        return ""
    shown = ", ".join("/".join(str(v) for v in row) for row in missing.head(3).itertuples(index=False))
    return f"\nmissing {len(missing)} cells: {shown}{' ...' if len(missing) > 3 else ''}"


def figure1(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Normalised error vs ImageNet top-1, pretrained (dashed) and scratch (solid), per set; mean +- SEM."""
    data = final(metrics)
    data = data[data["fraction"] == data["fraction"].max()]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    sns.lineplot(data=data, x="imagenet_top1", y="normalised_error", hue="set", style="init", palette=SET_COLOURS,
                 dashes=INIT_STYLES, markers=True, errorbar="se", ax=ax, hue_order=list(SET_COLOURS))  # fmt: skip
    ax.set(xlabel="ImageNet top-1 (%)", ylabel="normalised error",
           title=f"{int(data['fraction'].max())}% training data{missing_note(missing)}")  # fmt: skip
    save(fig, path)


def figure3ab(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Per fraction: pretrained normalised error vs ImageNet top-1; faint line per split, bold mean."""
    data = final(metrics)
    data = data[data["init"] == "imagenet"]
    fractions = sorted(data["fraction"].unique())
    fig, axes = plt.subplots(1, max(1, len(fractions)), figsize=(4.2 * max(1, len(fractions)), 3.4), squeeze=False)
    for ax, fraction in zip(axes[0], fractions):
        part = data[data["fraction"] == fraction]
        for (set_, _split), line in part.groupby(["set", "split"]):
            line = line.sort_values("imagenet_top1")
            ax.plot(line["imagenet_top1"], line["normalised_error"], color=SET_COLOURS[set_], alpha=0.3, lw=0.8)
        sns.lineplot(data=part, x="imagenet_top1", y="normalised_error", hue="set", palette=SET_COLOURS,
                     errorbar=None, marker="o", ax=ax, hue_order=list(SET_COLOURS))  # fmt: skip
        ax.set(xlabel="ImageNet top-1 (%)", ylabel="normalised error", title=f"{fraction}% training data")
    fig.suptitle(f"Pretrained backbones{missing_note(missing)}", fontsize=9)
    save(fig, path)


def learning_curves(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Figures 4 and 5A: normalised error vs iteration, scratch solid, pretrained dashed; row per fraction."""
    data = metrics[metrics["bodypart"] == "all"]
    grid = sns.relplot(data=data, x="iteration", y="normalised_error", hue="set", style="init", row="fraction",
                       col="backbone", kind="line", palette=SET_COLOURS, dashes=INIT_STYLES, errorbar="se",
                       height=2.4, aspect=1.2, facet_kws={"sharey": False}, hue_order=list(SET_COLOURS))  # fmt: skip
    grid.figure.suptitle(f"Learning curves{missing_note(missing)}", fontsize=9, y=1.02)
    save(grid.figure, path)


def figure5b(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """All backbones: final normalised error from scratch vs pretrained, per set and fraction."""
    data = final(metrics)
    wide = data.pivot_table(index=["backbone", "fraction", "set", "split"], columns="init",
                            values="normalised_error").reset_index()  # fmt: skip
    fig, ax = plt.subplots(figsize=(4, 4))
    if {"imagenet", "scratch"} <= set(wide.columns):
        sns.scatterplot(data=wide, x="imagenet", y="scratch", hue="set", style="fraction", palette=SET_COLOURS, ax=ax,
                        hue_order=list(SET_COLOURS))  # fmt: skip
        top = np.nanmax(wide[["imagenet", "scratch"]].to_numpy()) * 1.05
        ax.plot([0, top], [0, top], color="k", lw=0.7, ls=":")
    ax.set(xlabel="normalised error, pretrained", ylabel="normalised error, from scratch",
           title=f"Scratch vs pretrained{missing_note(missing)}")  # fmt: skip
    save(fig, path)


def figure3c(examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path, missing: pd.DataFrame):
    """OOD frames, ground truth (circles) vs prediction (crosses), one row per (backbone, frame, truth, pred)."""
    n = max(1, len(examples))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.2), squeeze=False)
    for ax, (title, image, truth, pred) in zip(axes[0], examples):
        ax.imshow(image)
        ax.scatter(truth[:, 0], truth[:, 1], s=12, facecolors="none", edgecolors="lime", lw=0.8)
        ax.scatter(pred[:, 0], pred[:, 1], s=12, marker="x", color="magenta", lw=0.8)
        ax.set_title(title, fontsize=8)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle(f"Out-of-domain frames: labels (o) vs predictions (x){missing_note(missing)}", fontsize=9)
    save(fig, path)
