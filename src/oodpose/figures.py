"""The paper's figures, drawn with seaborn from the metrics table (PNG and PDF, at paper size).

A figure whose input lacks some cells draws what exists and says in its title what is missing.
Backbones the paper did not study are ringed by black diamonds in the figures against ImageNet top-1.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from oodpose.analysis import final, missing_cells, paired_errors  # noqa: E402
from oodpose.data.individuals import UNUSED, split_columns  # noqa: E402
from oodpose.data.splits import BOTH, OUT_OF_DOMAIN, WITHIN_DOMAIN  # noqa: E402
from oodpose.study import OOD, PRETRAINED, SCRATCH, TRAIN, WITHIN, Cell  # noqa: E402

SET_NAMES = {TRAIN: "train", WITHIN: "test", OOD: "out of domain"}
INIT_NAMES = {PRETRAINED: "pretrained", SCRATCH: "from scratch"}
PALETTE = {"train": "tab:blue", "test": "tab:red", "out of domain": "grey"}  # the paper's colours
DASHES = {"pretrained": (4, 2), "from scratch": ""}  # the paper: scratch solid, pretrained dashed
SIDE_LETTERS = {WITHIN_DOMAIN: "w", OUT_OF_DOMAIN: "o", BOTH: "w+o", UNUSED: "-"}  # Figure 2's titles


def readable(metrics: pd.DataFrame) -> pd.DataFrame:
    """Sets and inits under the names the paper's legends use."""
    return metrics.assign(set=metrics["set"].map(SET_NAMES), init=metrics["init"].map(INIT_NAMES))


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


def outside_legend(ax: plt.Axes) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False, fontsize=7, title_fontsize=7)


def mark_added(ax: plt.Axes, data: pd.DataFrame, by: list[str]) -> None:
    """Ring the mean points of backbones the paper did not study, so the two sets read apart."""
    added = data[data["backbones"] == "added"]
    if not added.empty:
        points = added.groupby(["backbone", "imagenet_top1", *by], as_index=False)["normalised_error"].mean()
        ax.scatter(
            points["imagenet_top1"],
            points["normalised_error"],
            s=70,
            marker="D",
            facecolors="none",
            edgecolors="k",
            lw=0.8,
            zorder=3,
        )


def figure1(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Normalised error vs ImageNet top-1, pretrained (dashed) and scratch (solid), per set; mean +- SEM."""
    data = readable(final(metrics))
    fraction = int(data["fraction"].max())
    data = data[data["fraction"] == fraction]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    sns.lineplot(
        data=data,
        x="imagenet_top1",
        y="normalised_error",
        hue="set",
        style="init",
        palette=PALETTE,
        dashes=DASHES,
        markers=True,
        errorbar="se",
        err_style="bars",
        ax=ax,
    )
    mark_added(ax, data, ["set", "init"])
    ax.set(
        xlabel="ImageNet top-1 accuracy (%)",
        ylabel="normalised error",
        title=f"{fraction}% training data{missing_note(missing)}",
    )
    outside_legend(ax)
    save(fig, path)


def figure3ab(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Per fraction: pretrained normalised error vs ImageNet top-1; faint line per split, bold mean."""
    data = readable(final(metrics))
    data = data[data["init"] == INIT_NAMES[PRETRAINED]]
    fractions = sorted(data["fraction"].unique()) or [0]
    fig, axes = plt.subplots(1, len(fractions), figsize=(3.6 * len(fractions), 3.0), squeeze=False, sharey=True)
    for ax, fraction in zip(axes[0], fractions):
        part = data[data["fraction"] == fraction]
        for (set_, _split), line in part.groupby(["set", "split"]):
            line = line.sort_values("imagenet_top1")
            ax.plot(line["imagenet_top1"], line["normalised_error"], color=PALETTE[set_], alpha=0.3, lw=0.8)
        sns.lineplot(
            data=part,
            x="imagenet_top1",
            y="normalised_error",
            hue="set",
            palette=PALETTE,
            errorbar=None,
            marker="o",
            ax=ax,
            legend=ax is axes[0, -1],
        )
        mark_added(ax, part, ["set"])
        ax.set(xlabel="ImageNet top-1 accuracy (%)", ylabel="normalised error", title=f"{fraction}% training data")
    outside_legend(axes[0, -1])
    fig.suptitle(f"Pretrained backbones{missing_note(missing)}", fontsize=9, y=1.02)
    save(fig, path)


def figure4_5a(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """Figures 4 and 5A: normalised error vs iteration, scratch solid, pretrained dashed; row per fraction."""
    data = readable(metrics[metrics["bodypart"] == "all"])
    grid = sns.relplot(
        data=data,
        x="iteration",
        y="normalised_error",
        hue="set",
        style="init",
        row="fraction",
        col="backbone",
        kind="line",
        palette=PALETTE,
        dashes=DASHES,
        errorbar="se",
        height=2.2,
        aspect=1.2,
        facet_kws={"sharey": False},
    )
    grid.set_titles("{col_name}, {row_name}% data", size=8)
    grid.figure.suptitle(f"Normalised error during training{missing_note(missing)}", fontsize=9, y=1.02)
    save(grid.figure, path)


def figure5b(metrics: pd.DataFrame, path: Path, missing: pd.DataFrame) -> None:
    """All backbones: final normalised error from scratch vs pretrained, per set and fraction."""
    wide = paired_errors(metrics).reset_index()
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    if {PRETRAINED, SCRATCH} <= set(wide.columns):
        wide["set"] = wide["set"].map(SET_NAMES)
        sns.scatterplot(data=wide, x=PRETRAINED, y=SCRATCH, hue="set", style="fraction", palette=PALETTE, ax=ax)
        top = np.nanmax(wide[[PRETRAINED, SCRATCH]].to_numpy()) * 1.05
        ax.plot([0, top], [0, top], color="k", lw=0.7, ls=":")
        outside_legend(ax)
    ax.set(
        xlabel="normalised error, pretrained",
        ylabel="normalised error, from scratch",
        title=f"All backbones{missing_note(missing)}",
    )
    save(fig, path)


def figure_corruptions(severity: pd.DataFrame, path: Path) -> None:
    """Horse-C as ImageNet-C draws it: error against severity (0 = clean), averaged over corruptions and
    splits, one line per backbone, dashed pretrained, solid scratch; a panel per set and fraction."""
    data = readable(severity)
    grid = sns.relplot(
        data=data,
        x="severity",
        y="normalised_error",
        hue="backbone",
        style="init",
        col="set",
        col_order=[SET_NAMES[s] for s in (WITHIN, OOD) if SET_NAMES[s] in set(data["set"])],
        row="fraction",
        kind="line",
        marker="o",
        dashes=DASHES,
        height=2.6,
        aspect=1.1,
        facet_kws={"sharey": False},
    )
    grid.set_titles("{col_name}, {row_name}% data", size=8)
    grid.set(xticks=sorted(data["severity"].unique()))
    grid.set_axis_labels("corruption severity (0 = clean)", "normalised error")
    grid.figure.suptitle("Horse-C: error under common corruptions, mean over corruptions", fontsize=9, y=1.03)
    save(grid.figure, path)


def ood_examples(metrics: pd.DataFrame, cache, predictions: dict[Cell, str], n_frames: int = 2) -> list:
    """Figure 3C's panels: `n_frames` OOD frames of the first split for the weakest and strongest pretrained
    backbone (by ImageNet top-1), as (title, image, labels, predictions); `predictions` maps a cell to its
    DeepLabCut predictions file."""
    cells = final(metrics)
    pretrained = cells[(cells["init"] == PRETRAINED) & (cells["fraction"] == cells["fraction"].max())]
    if pretrained.empty:
        return []
    pretrained = pretrained.sort_values("imagenet_top1")
    split, fraction = int(pretrained["split"].min()), int(pretrained["fraction"].max())
    ood = cache.frames(split, fraction, OOD)
    rows = ood[np.linspace(0, len(ood) - 1, n_frames).astype(int)] if len(ood) else []
    examples = []
    dataset = pretrained["dataset"].iloc[0]
    for backbone in dict.fromkeys([pretrained["backbone"].iloc[0], pretrained["backbone"].iloc[-1]]):
        table = pd.read_hdf(predictions[Cell(dataset, backbone, PRETRAINED, split, fraction)])
        for row in rows:
            frame = cache.index["frame"].iat[row]
            pred = table.loc[frame].to_numpy().reshape(-1, 3)[:, :2]
            width, height = cache.sizes[row]
            examples.append((f"{backbone}\n{frame}", cache.images[row, :height, :width], cache.keypoints[row], pred))
    return examples


def figure3c(examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path, missing: pd.DataFrame):
    """OOD frames: labels (circles) vs predictions (crosses); `examples` holds (title, image, labels, predictions)."""
    n = max(1, len(examples))
    columns = min(n, 2)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.1 * rows), squeeze=False)
    for ax, (title, image, truth, pred) in zip(axes.ravel(), examples):
        ax.imshow(image)
        ax.scatter(truth[:, 0], truth[:, 1], s=14, facecolors="none", edgecolors="lime", lw=0.8)
        ax.scatter(pred[:, 0], pred[:, 1], s=14, marker="x", color="magenta", lw=0.8)
        ax.set_xlim(0, image.shape[1])
        ax.set_ylim(image.shape[0], 0)
        ax.set_title(title, fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"Out-of-domain frames: labels (o) vs predictions (x){missing_note(missing)}", fontsize=9)
    save(fig, path)


def figure2(table: pd.DataFrame, cache, path: Path, columns: int = 6) -> None:
    """The paper's Figure 2: a frame of each individual, the first split's within-domain individuals first;
    `table` as `oodpose.data.individuals.individual_table`'s, each title giving the individual's side of every
    split (w = within domain, o = out of domain) in the paper's colours for the first split's."""
    splits = split_columns(table)
    table = table.sort_values(splits[0], key=lambda side: side != WITHIN_DOMAIN, kind="stable")
    rows = pd.Series(np.arange(len(cache.index)), index=cache.index["frame"])[table["example_frame"]].to_numpy()
    columns = min(columns, len(table))
    n_rows = -(-len(table) // columns)
    size = (max(1.7 * columns, 4.0), 1.25 * n_rows + 0.4)
    fig, axes = plt.subplots(n_rows, columns, figsize=size, squeeze=False, layout="constrained")
    for ax, row, (_, individual) in zip(axes.ravel(), rows, table.iterrows()):
        width, height = cache.sizes[row]
        ax.imshow(cache.images[row, :height, :width])
        sides = " ".join(SIDE_LETTERS[individual[s]] for s in splits)
        colour = PALETTE["test" if individual[splits[0]] == WITHIN_DOMAIN else "out of domain"]
        ax.set_title(f"{individual['individual']}\n{sides}", fontsize=6, color=colour)
    for ax in axes.ravel():
        ax.axis("off")
    within = int((table[splits[0]] == WITHIN_DOMAIN).sum())
    numbers = [s.removeprefix("split") for s in splits]
    fig.suptitle(
        f"One frame of each individual: the {within} within domain in split {numbers[0]} (red) first, then the "
        f"others (grey);\nunder each name, w or o: within or out of domain in splits {', '.join(numbers)}",
        fontsize=7,
    )
    save(fig, path)


def draw_figures(metrics: pd.DataFrame, cells: pd.DataFrame, cache, predictions: dict[Cell, str], folder: Path):
    """Every figure of one summary into `folder`; `metrics` as the summary's metrics.csv (backbone metadata
    joined), `cells` the cells it expects, so that each figure names the missing ones."""
    folder, missing = Path(folder), missing_cells(cells, metrics)
    figure1(metrics, folder / "figure1.png", missing)
    figure3ab(metrics, folder / "figure3ab.png", missing)
    figure4_5a(metrics, folder / "figure4_5a.png", missing)
    figure5b(metrics, folder / "figure5b.png", missing)
    figure3c(ood_examples(metrics, cache, predictions), folder / "figure3c.png", missing)


def schedule_heatmap(grid: pd.DataFrame, chosen: pd.Series, path: Path) -> None:
    """A search's mean selection error over its grid for one backbone and init (ILR x final LR, one panel per
    cycles value): the chosen schedule boxed, the backbone table's (the paper's, for its 13) ringed."""
    cycles = sorted(grid["cycles"].unique())
    fig, axes = plt.subplots(1, len(cycles), figsize=(3.2 * len(cycles) + 1, 2.8), squeeze=False)
    vmin, vmax = grid["score"].min(), grid["score"].max()
    for ax, cycle in zip(axes[0], cycles):
        table = grid[grid["cycles"] == cycle].pivot(index="ilr", columns="final_lr", values="score")
        table = table.sort_index(ascending=False)
        sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis_r", vmin=vmin, vmax=vmax, ax=ax, cbar=ax is axes[0, -1])
        ax.set(title=f"{cycle} cosine cycle{'s' if cycle > 1 else ''}", xlabel="final LR", ylabel="initial LR")
        for schedule, marker in ((chosen["schedule"], "box"), (chosen["table_schedule"], "ring")):
            hit = grid[(grid["schedule"] == schedule) & (grid["cycles"] == cycle)]
            if hit.empty:
                continue
            x, y = list(table.columns).index(hit["final_lr"].iloc[0]), list(table.index).index(hit["ilr"].iloc[0])
            if marker == "box":
                ax.add_patch(plt.Rectangle((x, y), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
            else:
                ax.add_patch(plt.Circle((x + 0.5, y + 0.5), 0.4, fill=False, edgecolor="black", linewidth=1.5, ls="--"))
    fig.suptitle(heatmap_title(chosen), fontsize=8, y=1.1)
    save(fig, path)


def heatmap_title(chosen: pd.Series) -> str:
    """What a search heatmap shows, naming what was scored (an oracle selection as such) and how sure it is."""
    return (
        f"{chosen['backbone']}, {INIT_NAMES[chosen['init']]}: normalised error on {chosen['selected_on']}\n"
        f"chosen boxed (red), {'' if chosen['distinguishable'] else 'not '}distinguishable from the runner-up; "
        f"the table's schedule ringed (dashed); n = {int(chosen['n_splits'])} splits"
    )
