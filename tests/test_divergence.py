"""A cell whose training diverged but stayed finite is named and kept out of every statistic."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_reliability import cell

from oodpose.cli import main
from oodpose.divergence import WINDOW, divergence
from oodpose.evaluate import evaluate
from oodpose.train import train


def training_log(losses) -> pd.DataFrame:
    return pd.DataFrame({"iteration": range(len(losses)), "loss": losses, "lr": 1e-3})


def healthy_losses(n: int = 300, seed: int = 0) -> np.ndarray:
    """A falling loss with batch-to-batch noise, as healthy cells log it."""
    noise = np.random.default_rng(seed).lognormal(0.0, 0.6, n)
    return 0.7 * np.exp(-np.arange(n) / 30) * noise + 0.02 * noise


def test_a_healthy_loss_and_a_single_bad_batch_are_not_divergence():
    assert divergence(training_log(healthy_losses())) == ""
    spiky = healthy_losses()
    spiky[150] = 1e6  # one batch, not a sustained stretch
    assert divergence(training_log(spiky)) == ""
    assert divergence(training_log([])) == ""


def test_a_loss_that_explodes_and_stays_finite_is_divergence_named_where():
    losses = healthy_losses()
    losses[100:] = 2e8
    said = divergence(training_log(losses))
    last = 100 + WINDOW // 2 - 1  # the first window whose median is exploded: half its iterations are
    assert said.startswith("diverged: median loss 1e+08") and f"over iterations {last - WINDOW + 1}-{last}," in said
    assert "(learning rate 0.001 at iteration" in said and "lower the initial learning rate" in said


def test_a_diverged_cell_is_named_and_left_out_of_the_statistics(synthetic_cache, tmp_path):
    """A learning rate of 10 drives the loss far above its start and stays finite; the summary must not count
    that cell (before: its normalised error entered every mean and claim)."""
    cells = {
        "healthy": cell(synthetic_cache, tmp_path / "healthy"),
        "wild": cell(synthetic_cache, tmp_path / "wild", split=2, ilr=10.0),
    }
    for name, settings in cells.items():
        train(settings)
        folder = tmp_path / name
        evaluate(folder, synthetic_cache, folder / "predictions.h5", folder / "metrics.csv", device="cpu")
    assert divergence(pd.read_csv(tmp_path / "wild" / "train_log.csv")).startswith("diverged: median loss")

    main(["aggregate", str(tmp_path / "summary"), str(tmp_path / "healthy"), str(tmp_path / "wild")])
    summary = tmp_path / "summary"
    diverged = pd.read_csv(summary / "diverged_cells.csv")
    assert diverged[["split", "fraction"]].values.tolist() == [[2, 50]]
    assert diverged["diverged"].iloc[0].startswith("diverged: median loss")
    assert set(pd.read_csv(summary / "metrics.csv")["split"]) == {1}  # the statistics see only the healthy cell
    assert pd.read_csv(summary / "missing_cells.csv").empty  # it has metrics: diverged, not missing
    findings = (summary / "findings.md").read_text()
    assert "1 cell(s) diverged and are left out of every statistic" in findings
    assert "mobilenetv2_035/scratch/split2_frac50: diverged: median loss" in findings
