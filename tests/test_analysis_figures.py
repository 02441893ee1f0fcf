import numpy as np
import pandas as pd
import pytest

from oodpose import analysis, figures
from oodpose.aggregate import with_backbones
from oodpose.cli import main
from oodpose.data.cache import Cache
from oodpose.data.individuals import individual_table
from oodpose.data.splits import WITHIN_DOMAIN
from oodpose.errors import InputError
from oodpose.study import CELL, SETS

TOP1 = {"mobilenetv2_035": 60.3, "resnet50": 76.13, "efficientnet_b0": 77.1, "efficientnet_b6": 84.0}


def metadata(top1: dict[str, float]) -> list[dict]:
    return [dict(backbone=b, imagenet_top1=t, family="x", backbones="paper") for b, t in top1.items()]


def metrics_table(slope=-0.01, noise=0.0, seed=0) -> pd.DataFrame:
    """A small study's metrics: error = 1 + slope * top1 (+ per-split noise) for every cell and set."""
    rng = np.random.default_rng(seed)
    rows = []
    for backbone, top1 in TOP1.items():
        for init in ("imagenet", "scratch"):
            for split in (1, 2, 3):
                for fraction in (5, 50):
                    for iteration in (100, 200):
                        for k, set_ in enumerate(SETS):
                            error = 1 + slope * top1 + 0.1 * k + (init == "scratch") * 0.2 + noise * rng.normal()
                            error *= 2 if iteration == 100 else 1
                            for bodypart in ("Nose", "all"):
                                rows.append(
                                    dict(
                                        dataset="toy",
                                        backbone=backbone,
                                        init=init,
                                        split=split,
                                        fraction=fraction,
                                        iteration=iteration,
                                        set=set_,
                                        bodypart=bodypart,
                                        n=10,
                                        pixel_error=error * 20,
                                        normalised_error=error,
                                        pck=1 - error / 2,
                                    )
                                )
    return with_backbones(pd.DataFrame(rows), metadata(TOP1))


def test_the_statistics_take_top1_from_the_current_table_not_from_the_cells():
    stale = metrics_table(slope=-0.01).assign(imagenet_top1=50.0)  # a copy a cell once carried
    corrected = with_backbones(stale, metadata(TOP1 | {"resnet50": 80.0}))
    assert set(corrected.loc[corrected["backbone"] == "resnet50", "imagenet_top1"]) == {80.0}
    table = analysis.table1(corrected).set_index("backbone")
    assert table.loc["resnet50", "imagenet_top1"] == 80.0
    with pytest.raises(InputError, match=r"backbones \['resnet50'\] have no row in the backbone table"):
        with_backbones(stale, metadata({b: t for b, t in TOP1.items() if b != "resnet50"}))


def test_regression_recovers_a_known_slope():
    table = analysis.regressions(metrics_table(slope=-0.01))
    row = table[
        (table["init"] == "imagenet")
        & (table["fraction"] == 50)
        & (table["set"] == "test_ood")
        & (table["metric"] == "normalised_error")
    ].iloc[0]
    assert row["slope"] == pytest.approx(-0.01) and row["r2"] == pytest.approx(1.0)
    assert row["slope_percent_per_point"] == pytest.approx(-1.0)  # the paper's unit: % per ImageNet point
    assert row["intercept"] == pytest.approx(1.2) and row["n_backbones"] == 4
    noisy = analysis.regressions(metrics_table(slope=-0.01, noise=0.05, seed=1))
    row = noisy[(noisy["set"] == "test_ood") & (noisy["metric"] == "normalised_error")].iloc[0]
    assert row["slope_ci_low"] < -0.01 < row["slope_ci_high"] and 0 < row["p_value"] < 0.2


def test_summary_uses_final_iteration_and_sem_across_splits():
    summary = analysis.summary(metrics_table(noise=0.1))
    assert (summary["n_splits"] == 3).all() and summary["normalised_error_sem"].gt(0).all()
    clean = analysis.summary(metrics_table())
    row = clean[(clean["backbone"] == "resnet50") & (clean["init"] == "imagenet") & (clean["set"] == "train")]
    assert row["normalised_error"].iloc[0] == pytest.approx(1 - 0.01 * 76.13)  # iteration 200, not 100


def test_pretrained_vs_scratch_is_paired():
    paired = analysis.pretrained_vs_scratch(metrics_table(noise=0.01))
    assert paired["mean_difference"].between(0.15, 0.25).all() and (paired["n_splits"] == 3).all()
    assert (paired["p_value"] < 0.01).all()


def test_table1_sits_beside_the_paper():
    table = analysis.table1(metrics_table())
    resnet = table.set_index("backbone").loc["resnet50"]
    assert resnet["paper_within_domain"] == 99.8 and resnet["paper_out_of_domain"] == 81.3
    assert resnet["within_domain"] == pytest.approx(100 * (1 - (1 - 0.7613 + 0.1) / 2))
    assert resnet["difference_ood"] == pytest.approx(resnet["out_of_domain"] - 81.3)
    markdown = analysis.table1_markdown(table, analysis.regressions(metrics_table()), 50)
    assert markdown.split("\n\n")[0].count("\n") == 1 + 4 and "| resnet50 | 76.1 |" in markdown
    assert "out of domain: -1.00% per ImageNet point" in markdown and "paper: -0.93%" in markdown


def test_a_study_without_pretrained_cells_has_an_empty_table1():
    scratch_only = metrics_table().query("init == 'scratch'")
    table = analysis.table1(scratch_only)
    assert table.empty and "too few backbones" in analysis.table1_markdown(table, analysis.regressions(scratch_only))


def test_added_backbones_are_fitted_with_the_paper_ones_and_apart():
    added = metrics_table().assign(backbone=lambda d: d["backbone"] + "_new", backbones="added")
    metrics = pd.concat([metrics_table(), added])
    table = analysis.regressions(metrics)
    assert set(table["backbones"]) == {"all", "paper", "added"}
    counts = table.groupby("backbones")["n_backbones"].max()
    assert (counts["all"], counts["paper"], counts["added"]) == (8, 4, 4)
    assert set(analysis.regressions(metrics_table())["backbones"]) == {"all"}  # the paper's study: one fit


def test_missing_cells_are_listed():
    metrics = metrics_table()
    expected = metrics[list(CELL)].drop_duplicates()
    partial = metrics[~((metrics["backbone"] == "resnet50") & (metrics["split"] == 2))]
    missing = analysis.missing_cells(expected, partial)
    assert len(missing) == 4 and set(missing["backbone"]) == {"resnet50"}


def test_figures_render_and_name_missing_cells(tmp_path, monkeypatch):
    metrics = metrics_table(noise=0.05)
    missing = analysis.missing_cells(metrics[list(CELL)].drop_duplicates().assign(split=4), metrics)
    titles = []

    def keep_titles(fig, path):
        titles.append([t.get_text() for t in fig.texts] + [a.get_title() for a in fig.axes])
        figures.plt.close(fig)

    monkeypatch.setattr(figures, "save", keep_titles)
    figures.figure1(metrics, tmp_path / "f1", missing)
    assert any("missing" in str(t) for t in titles[-1])
    monkeypatch.undo()
    figures.figure1(metrics, tmp_path / "f1", missing[:0])
    figures.figure3ab(metrics, tmp_path / "f3ab", missing)
    figures.figure4_5a(metrics, tmp_path / "curves", missing)
    figures.figure5b(metrics, tmp_path / "f5b", missing)
    image = np.zeros((30, 40, 3), np.uint8)
    figures.figure3c([("a", image, np.ones((2, 2)), np.ones((2, 2)) * 3)] * 3, tmp_path / "f3c", missing)
    for name in ("f1", "f3ab", "curves", "f5b", "f3c"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000 and (tmp_path / f"{name}.pdf").exists()


def test_figure2_shows_each_individuals_frame_the_first_splits_within_domain_ones_first(
    synthetic_cache, tmp_path, monkeypatch
):
    cache = Cache(synthetic_cache)
    table = individual_table(cache.index, cache.splits)
    panels = []

    def keep_panels(fig, path):
        panels.extend((ax.get_title(), ax.get_images()[0].get_array().shape) for ax in fig.axes if ax.get_images())
        figures.plt.close(fig)

    monkeypatch.setattr(figures, "save", keep_panels)
    figures.figure2(table, cache, tmp_path / "f2")
    within = table[table["split1"] == WITHIN_DOMAIN]
    order = [*within.itertuples(), *table[table["split1"] != WITHIN_DOMAIN].itertuples()]
    assert len(within) == 2 and len(panels) == len(table) == 5
    for (title, shape), individual in zip(panels, order):
        sides = " ".join("w" if individual[i] == WITHIN_DOMAIN else "o" for i in (-3, -2, -1))  # split1..3
        row = cache.index["frame"].tolist().index(individual.example_frame)
        assert (title, shape) == (f"{individual.individual}\n{sides}", (*cache.sizes[row][::-1], 3))
    monkeypatch.undo()
    main(["individuals", str(synthetic_cache), str(tmp_path / "summary")])  # the individuals rule's work
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary" / "individuals.csv"), table)
    figure = tmp_path / "summary" / "figures" / "figure2.png"
    assert figure.stat().st_size > 5000 and figure.with_suffix(".pdf").exists()
