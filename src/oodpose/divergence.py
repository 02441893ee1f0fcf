"""Whether a cell's training diverged: its loss far above where it started, for a sustained stretch, yet finite.

A non-finite loss stops training (oodpose.train.first_non_finite); a loss that explodes but stays finite does not,
and such a cell's errors (normalised errors of 1e8 and more) would enter every mean, regression and claim.
The rule: the median loss over any WINDOW consecutive iterations above FACTOR times the loss at iteration 0,
the untrained network's. Measured on 48 healthy cells (the demo's 12, the laptop search's 36, 100-450
iterations each), that ratio peaked at 0.25; a pretrained Lite0 at learning rate 10 passes it at once.
A median, so a single bad batch (healthy cells have single iterations 4-12x their neighbours) flags nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from oodpose.study import TRAIN_LOG

WINDOW = 20
FACTOR = 10.0


def divergence(log: pd.DataFrame) -> str:
    """'' for a healthy training log (iteration, loss, lr rows); else one sentence naming where it diverged."""
    if log.empty:
        return ""
    window = min(WINDOW, len(log))
    start = float(log["loss"].iloc[0])
    medians = log["loss"].rolling(window).median()
    above = medians > FACTOR * start
    if not above.any():
        return ""
    end = above.idxmax()  # the first window that is past the rule
    first, last = log.loc[end - window + 1, "iteration"], log.loc[end, "iteration"]
    return (
        f"diverged: median loss {medians[end]:.3g} over iterations {first}-{last}, "
        f"{medians[end] / start:.3g}x the starting loss {start:.3g} (learning rate {log.loc[end, 'lr']:g} "
        f"at iteration {last}); lower the initial learning rate and retrain the cell"
    )


def cell_divergence(folder: str | Path) -> str:
    """`divergence` of the training log in a cell's folder; '' where the folder has none to judge."""
    path = Path(folder) / TRAIN_LOG
    return divergence(pd.read_csv(path)) if path.exists() else ""
