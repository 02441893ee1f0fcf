"""The learning-schedule search: its grid, its validation horses, the choice, and the workflow around it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import job_counts, snakemake

from oodpose.data.cache import Cache
from oodpose.data.splits import validation_individuals
from oodpose.errors import InputError
from oodpose.evaluate import cell_sets
from oodpose.figures import heatmap_title
from oodpose.findings import schedule_note
from oodpose.schedule import Schedule, search_grid
from oodpose.search import choose
from oodpose.settings import TrainConfig, result_settings
from oodpose.study import OOD, SELECTED_ON, TRAIN, VALIDATION, WITHIN

A, B, C = (Schedule(ilr, 0.0, 1).name for ilr in (1e-3, 5e-4, 1e-4))


def scores(values: dict[str, list[float]], backbone: str = "resnet50") -> pd.DataFrame:
    """A search's per-split scores: schedule name: one score per split."""
    rows = [
        {
            "dataset": "d",
            "backbone": backbone,
            "init": "imagenet",
            "schedule": name,
            "split": split,
            "score": score,
            "diverged": "",
        }
        for name, per_split in values.items()
        for split, score in enumerate(per_split, start=1)
    ]
    return pd.DataFrame(rows)


TABLE = {("resnet50", "imagenet"): Schedule.parse(B)}


def test_a_known_best_schedule_is_chosen_and_told_apart_from_the_runner_up():
    # B is best on every split by a steady margin; each split has its own difficulty
    chosen = choose(scores({A: [3.0, 5.0, 4.0], B: [2.0, 4.1, 2.9], C: [6.0, 8.0, 7.0]}), TABLE, VALIDATION).iloc[0]
    assert chosen["schedule"] == B and chosen["ilr"] == 5e-4 and chosen["cycles"] == 1
    assert chosen["runner_up"] == A and chosen["distinguishable"]
    assert chosen["score"] == pytest.approx(3.0) and chosen["n_splits"] == 3
    assert chosen["table_rank"] == 1 and chosen["grid_size"] == 3


def test_a_tie_within_noise_is_not_distinguishable():
    chosen = choose(scores({A: [3.0, 5.0, 4.0], B: [3.2, 4.7, 4.2]}), TABLE, VALIDATION).iloc[0]
    assert chosen["schedule"] == A and not chosen["distinguishable"]
    assert chosen["difference_ci_low"] < 0 < chosen["difference_ci_high"]
    assert chosen["table_rank"] == 2  # the table's schedule B came second


def test_a_single_split_is_never_distinguishable_and_a_table_schedule_outside_the_grid_has_no_rank():
    chosen = choose(scores({A: [3.0], C: [9.0]}), TABLE, OOD).iloc[0]
    assert chosen["schedule"] == A and not chosen["distinguishable"]
    assert pd.isna(chosen["table_rank"]) and chosen["table_schedule"] == B


def test_oracle_selection_is_named_in_the_table_the_figure_and_the_findings():
    chosen = choose(scores({A: [3.0, 4.0], B: [2.0, 3.5]}), TABLE, OOD).iloc[0]
    assert chosen["selected_on"] == "oracle selection (test horses)" == SELECTED_ON[OOD]
    assert "oracle selection (test horses)" in heatmap_title(chosen)
    note = schedule_note(pd.DataFrame({"schedule_source": [f"searched: {SELECTED_ON[OOD]}"]}))
    assert "Oracle selection (test horses)" in note and "optimistic" in note
    validation = choose(scores({A: [3.0, 4.0], B: [2.0, 3.5]}), TABLE, VALIDATION).iloc[0]
    assert "oracle" not in heatmap_title(validation) + validation["selected_on"]


def test_schedule_names_give_the_schedule_back():
    for plan in (Schedule(1e-3, 0.0, 1), Schedule(7.5e-4, 1e-5, 3), Schedule(0.1, 1e-4, 1)):
        assert Schedule.parse(plan.name) == plan
    with pytest.raises(InputError, match="not a schedule name"):
        Schedule.parse("ilr0.001")


def test_a_grid_is_every_combination_and_a_backbone_grid_overrides_key_by_key():
    search = {
        "grid": {"ilr": [1e-3, 5e-4], "final_lr": [0.0, 1e-5], "cycles": [1]},
        "grids": {"resnet50": {"scratch": {"cycles": [1, 3]}}},
    }
    assert len(search_grid(search, "resnet50", "imagenet")) == 4
    scratch = search_grid(search, "resnet50", "scratch")
    assert len(scratch) == 8 and {p.cycles for p in scratch} == {1, 3} and {p.ilr for p in scratch} == {1e-3, 5e-4}


def test_a_final_rate_above_an_initial_rate_and_an_empty_grid_are_refused():
    with pytest.raises(InputError, match=r"search.grid: final_lr 0.01 is greater than ilr 0.001"):
        search_grid({"grid": {"ilr": [1e-3], "final_lr": [1e-2], "cycles": [1]}}, "resnet50", "imagenet")
    with pytest.raises(InputError, match=r"search.grid.ilr: the grid is empty"):
        search_grid({"grid": {"final_lr": [0.0], "cycles": [1]}}, "resnet50", "imagenet")


def test_validation_horses_are_seeded_per_split_and_stable():
    horses = [f"horse{i:02d}" for i in range(10)]
    draws = [validation_individuals(horses, 2, split, seed=0) for split in (1, 2, 3)]
    assert all(len(set(d)) == 2 and set(d) <= set(horses) for d in draws)
    assert len({tuple(d) for d in draws}) > 1  # the splits hold out different horses
    assert draws == [validation_individuals(list(reversed(horses)), 2, s, seed=0) for s in (1, 2, 3)]
    with pytest.raises(InputError, match="would hold out all 10 training individuals of split 1"):
        validation_individuals(horses, 10, 1, seed=0)


def test_a_search_cell_trains_and_is_scored_without_its_validation_horses_or_any_test_frame(synthetic_cache):
    cache = Cache(synthetic_cache)
    individuals = cache.index["individual"].to_numpy()
    for split in (1, 2, 3):
        held = cache.validation_individuals(split, 1)
        sets = cell_sets(cache, split, 50, held_out=1)
        assert set(sets) == {TRAIN, VALIDATION}  # no test set is even predicted
        train, validation = set(individuals[sets[TRAIN]]), set(individuals[sets[VALIDATION]])
        assert validation == set(held) and not train & validation
        test = np.concatenate([cache.frames(split, 50, role) for role in (WITHIN, OOD)])
        assert not set(sets[VALIDATION]) & set(test) and not set(sets[TRAIN]) & set(test)
        split_train = set(individuals[cache.frames(split, 50, TRAIN)])
        assert set(held) < split_train and train == split_train - set(held)
        assert cache.validation_individuals(split, 1) == held  # stable


def test_a_cell_that_holds_no_horse_out_defines_its_result_as_before():
    cell = TrainConfig("c", "o", "resnet50").resolved()
    assert "validation_individuals" not in result_settings(cell)  # cells trained before the search keep their params
    held = TrainConfig("c", "o", "resnet50", validation_individuals=2).resolved()
    assert result_settings(held)["validation_individuals"] == 2


@pytest.fixture
def workdir(tmp_path):
    from test_workflow import REPO

    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def test_the_papers_search_dry_runs_with_its_grid(workdir):
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "config/search.yaml").stdout)
    # pretrained: 22 ILR over six models x 2 decay targets; from scratch: 6 models x 4 ILR x 2 targets x 2 cycles
    assert counts["search_train"] == counts["search_evaluate"] == (22 * 2 + 6 * 4 * 2 * 2) * 3
    assert counts["select_schedules"] == 1 and counts["train"] == 156  # then the study, on the chosen schedules


def test_the_laptop_search_dry_runs(workdir):
    counts = job_counts(
        snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "config/search-laptop.yaml").stdout
    )
    assert counts["search_train"] == 2 * 3 * 2 * 3 and counts["select_schedules"] == 1


def search_config(workdir, study: dict | None = None, **search) -> str:
    """config/test.yaml with a search section (and study keys) set, without Horse-C (not the search's concern)."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config["study"] |= study or {}
    del config["evaluation"]["corruptions"]
    config["search"] = {"backbones": ["efficientnet_lite0"], "grid": {"ilr": [1e-3], "final_lr": [0.0]}} | search
    (workdir / "search.yaml").write_text(yaml.safe_dump(config))
    return "search.yaml"


@pytest.mark.parametrize(
    "search, study, message",
    [
        ({"grid": {"ilr": [], "final_lr": [0.0]}}, None, "config key search.grid.ilr: [] should be non-empty"),
        ({"grid": {"ilr": [-1e-3], "final_lr": [0.0]}}, None, "config key search.grid.ilr[0]: -0.001 is less than"),
        ({"grid": {"ilr": [1e-3], "final_lr": [0.1]}}, None, "final_lr 0.1 is greater than ilr 0.001"),
        ({"validation_individuals": 2}, None, "search.validation_individuals: 2 would hold out every one"),
        ({"backbones": []}, {"schedules": "searched"}, "config key study.schedules: `searched`, but the search has no"),
        ({"borrow": {"efficientnet_lite1": "resnet50"}}, None, "backbone(s) ['resnet50'] are not in"),
    ],
)
def test_bad_search_input_stops_the_workflow_in_one_sentence(workdir, search, study, message):
    result = snakemake(workdir, "-n", "--configfile", search_config(workdir, study, **search), check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.mark.slow
def test_a_study_switched_to_searched_schedules_retrains_only_the_cells_whose_schedule_changed(workdir):
    """Lite1's grid holds only its table schedule (so its choice is the table's); lite0's holds none of it."""
    study = {"backbones": ["efficientnet_lite0", "efficientnet_lite1"], "inits": ["imagenet"], "splits": [1]}
    search = {
        "backbones": study["backbones"],
        "splits": [1],
        "grid": {"ilr": [1e-3, 2e-4], "final_lr": [0.0]},
        "grids": {"efficientnet_lite1": {"imagenet": {"ilr": [5e-4], "final_lr": [1e-5]}}},
        "validation_individuals": 1,
    }
    snakemake(workdir, "--cores", "2", "--configfile", search_config(workdir, study, **search))
    folder = workdir / "results" / "synthetic" / "search" / "validation"
    chosen = pd.read_csv(folder / "schedules.tsv", sep="\t").set_index("backbone")
    assert chosen.loc["efficientnet_lite1", "schedule"] == chosen.loc["efficientnet_lite1", "table_schedule"]
    assert chosen.loc["efficientnet_lite0", "schedule"] != chosen.loc["efficientnet_lite0", "table_schedule"]
    assert (folder / "figures" / "efficientnet_lite0_imagenet.png").is_file()
    assert len(pd.read_csv(folder / "validation_horses.csv")) == 1  # one per split, recorded
    assert_the_command_line_selects_as_the_workflow_did(workdir, folder)

    configfile = search_config(workdir, study | {"schedules": "searched"}, **search)
    plan = snakemake(workdir, "-n", "--configfile", configfile).stdout
    retrained = {
        line.split("output: ")[1]
        for line in plan.splitlines()
        if line.strip().startswith("output: ") and line.strip().endswith("model.pt")
    }
    assert retrained == {"results/synthetic/efficientnet_lite0/imagenet/split1_frac50/model.pt"}
    snakemake(workdir, "--cores", "2", "--configfile", configfile)
    used = pd.read_csv(workdir / "results" / "synthetic" / "summary" / "schedules.csv").set_index("backbone")
    assert used.loc["efficientnet_lite0", "ilr"] == chosen.loc["efficientnet_lite0", "ilr"]
    assert used["schedule_source"].str.startswith("searched: validation horses").all()
    assert used.loc["efficientnet_lite0", "score"] == pytest.approx(chosen.loc["efficientnet_lite0", "score"])
    assert "distinguishable" in used
    summary = workdir / "results" / "synthetic" / "summary"
    assert (summary / "search" / "schedules.tsv").read_text() == (folder / "schedules.tsv").read_text()
    assert (summary / "search" / "efficientnet_lite0_imagenet.png").is_file()
    assert "Learning schedules: searched: validation horses" in (summary / "findings.md").read_text()


def assert_the_command_line_selects_as_the_workflow_did(workdir, folder):
    """`oodpose select-schedules` on the search's cell folders writes the select_schedules rule's very tables;
    cells of two searches (one holding a horse out, one not) are refused in one sentence."""
    from oodpose.cli import main, run

    cells = sorted(str(cell) for cell in folder.glob("*/*/*/split*_frac*"))
    by_hand, cache = workdir / "by_hand", str(workdir / "results" / "synthetic" / "cache")
    table = str(workdir / "config" / "backbones.tsv")
    main(
        [
            "select-schedules",
            str(by_hand),
            *cells,
            "--cache",
            cache,
            "--dataset",
            "synthetic",
            "--backbones-table",
            table,
        ]
    )
    for name in ("schedules.tsv", "scores.csv", "validation_horses.csv"):
        assert (by_hand / name).read_text() == (folder / name).read_text(), name
    assert (by_hand / "figures" / "efficientnet_lite0_imagenet.png").is_file()
    oracle = shutil.copytree(cells[0], workdir / "oracle_cell")
    settings = json.loads((oracle / "settings.json").read_text()) | {"validation_individuals": 0}
    (oracle / "settings.json").write_text(json.dumps(settings))
    options = {"out": str(workdir / "mixed"), "cells": [*cells, str(oracle)], "cache": cache, "dataset": "synthetic"}
    with pytest.raises(InputError, match=r"the cells hold out \[0, 1\] validation horses; give the cells of one"):
        run("select-schedules", options)
    options["cells"] = [*cells, cells[0]]  # a cell given twice would count twice in its schedule's score
    with pytest.raises(InputError, match=rf"{cells[0]} and {cells[0]} are the same cell \(efficientnet_lite0 "):
        run("select-schedules", options)
    assert not (workdir / "mixed").exists()


def test_the_slurm_profiles_send_search_jobs_where_the_study_jobs_go():
    from test_workflow import REPO

    for profile in ("slurm", "slurm-ci"):
        resources = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())["set-resources"]
        assert resources["search_train"] == resources["train"] and resources["search_evaluate"] == resources["evaluate"]


def test_selecting_schedules_by_hand_names_a_folder_that_is_no_scored_search_cell(tmp_path, capsys):
    from oodpose.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["select-schedules", str(tmp_path / "out"), str(tmp_path / "nocell"), "--cache", str(tmp_path)])
    message = capsys.readouterr().err
    assert stop.value.code == 2 and "nocell: no settings.json and metrics.csv; train and evaluate" in message
    assert not (tmp_path / "out").exists()
