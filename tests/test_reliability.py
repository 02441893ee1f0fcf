"""Results are never silently wrong, no command deletes what it did not make, and bad input gets one sentence."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_train_evaluate import config

from oodpose.backbones import DEFAULT_TABLE
from oodpose.cli import main
from oodpose.data.cache import Cache, prepare_cache
from oodpose.data.labels import read_labels
from oodpose.data.synthetic import generate
from oodpose.errors import InputError, NoSpaceError
from oodpose.evaluate import evaluate
from oodpose.settings import DatasetSettings, SyntheticSettings, TrainConfig
from oodpose.train import train

BODYPARTS = ["Nose", "Eye", "Hip"]


def make_project(root: Path, fmt: str = "csv", rows: list[list] | None = None) -> Path:
    """A DeepLabCut project of two animals, three 40x30 frames each, labels in one merged file."""
    frames = []
    for animal in ("a", "b"):
        (root / "labeled-data" / animal).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (40, 30), (20 * k, 50, 90)).save(root / "labeled-data" / animal / f"{k}.png")
            frames.append(f"labeled-data/{animal}/{k}.png")
    columns = pd.MultiIndex.from_product([["me"], BODYPARTS, ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    values = rows or [[10.0 + i, 10.0, 14.0 + i, 12.0, 30.0, 20.0] for i in range(len(frames))]
    table = pd.DataFrame(values, index=frames, columns=columns)
    if fmt == "h5":
        table.to_hdf(root / "CollectedData_me.h5", key="df_with_missing")
    else:
        table.to_csv(root / "CollectedData_me.csv")
    return root


SMALL = DatasetSettings(n_splits=1, n_train_individuals=1)


def cell(cache, out, **changes) -> TrainConfig:
    """test_train_evaluate's small CPU cell, shorter."""
    return config(cache, out, **{"iterations": 6, "snapshot_every": 3} | changes)


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=False)["model"]


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --- 1. a rerun after a settings change retrains --------------------------------------------------------------


def test_changed_settings_start_over_instead_of_resuming(synthetic_cache, tmp_path, caplog):
    first = weights(train(cell(synthetic_cache, tmp_path / "cell")))
    rerun = weights(train(cell(synthetic_cache, tmp_path / "cell", ilr=0.01)))
    fresh = weights(train(cell(synthetic_cache, tmp_path / "fresh", ilr=0.01)))
    assert not same(rerun, first) and same(rerun, fresh)
    assert "settings.ilr changed since the snapshots were made; starting over" in caplog.text
    log = pd.read_csv(tmp_path / "cell" / "train_log.csv")
    assert list(log["iteration"]) == list(range(6)) and (log["lr"].iloc[0] == 0.01)


def test_a_new_start_leaves_no_learning_curve_weights_of_the_old_model(synthetic_cache, tmp_path):
    """With its resume snapshots deleted (to free disk), a cell still holds its old model's curve weights; a
    retrain with other curve points must not leave them to be evaluated as its own."""
    out = tmp_path / "cell"
    train(cell(synthetic_cache, out, curve_iterations=(2, 4)))
    for old in (out / "snapshots").glob("snapshot-*.pt"):
        old.unlink()
    train(cell(synthetic_cache, out, curve_iterations=(3,), ilr=0.01))
    assert sorted(p.name for p in (out / "snapshots").glob("weights-*.pt")) == ["weights-0000003.pt"]


def test_an_edited_label_starts_training_over(tmp_path, caplog):
    project = make_project(tmp_path / "project")
    cache = prepare_cache(project, tmp_path / "cache", SMALL)
    first = weights(train(cell(cache, tmp_path / "cell")))
    labels = pd.read_csv(project / "CollectedData_me.csv", header=[0, 1, 2], index_col=0)
    labels.iloc[:, 0] += 5.0  # every Nose moved 5 px to the right
    labels.to_csv(project / "CollectedData_me.csv")
    edited = prepare_cache(project, tmp_path / "cache", SMALL)
    assert (
        Cache(edited).fingerprint != json.loads((tmp_path / "cell" / "settings.json").read_text())["cache_fingerprint"]
    )
    rerun = weights(train(cell(edited, tmp_path / "cell")))
    fresh = weights(train(cell(edited, tmp_path / "fresh")))
    assert not same(rerun, first) and same(rerun, fresh)
    assert "cache changed since the snapshots were made; starting over" in caplog.text


def test_an_unchanged_rerun_still_resumes(synthetic_cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "cell"
    train(cell(synthetic_cache, out))
    (out / "model.pt").unlink()
    train(cell(synthetic_cache, out))
    assert "resuming from" in caplog.text and "starting over" not in caplog.text


# --- 2. the files that define a dataset; a stale label file -----------------------------------------------------


def test_the_files_that_define_a_dataset(tmp_path):
    from oodpose.data.cache import dataset_files

    project = make_project(tmp_path / "p", fmt="h5")
    (project / "config.yaml").write_text("bodyparts: [Nose, Eye, Hip]\n")
    (project / "TrainTestInfo_shuffle1.csv").write_text("x\n")
    names = [p.name for p in dataset_files(project, DatasetSettings())]
    assert names == ["CollectedData_me.h5", "TrainTestInfo_shuffle1.csv", "config.yaml"]


def test_a_newer_csv_beside_the_h5_is_named(tmp_path):
    project = make_project(tmp_path / "p", fmt="h5")
    pd.read_hdf(project / "CollectedData_me.h5").to_csv(project / "CollectedData_me.csv")
    h5 = project / "CollectedData_me.h5"
    os.utime(h5, (h5.stat().st_mtime - 60, h5.stat().st_mtime - 60))
    with pytest.raises(InputError, match="CollectedData_me.csv is newer than .*CollectedData_me.h5, which is the file"):
        read_labels(project)


# --- 3 and 11. evaluation checks what it is given ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_cell(synthetic_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "cell"
    train(cell(synthetic_cache, out, iterations=2, snapshot_every=2, curve_iterations=(1,)))
    return out


def test_evaluating_on_another_cache_is_refused(trained_cell, tmp_path):
    other = prepare_cache(make_project(tmp_path / "p"), tmp_path / "cache", SMALL)
    with pytest.raises(InputError, match="was trained on a cache with fingerprint .* evaluate with the cache it"):
        evaluate(trained_cell, other, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")


def test_evaluation_runs_from_another_folder(trained_cell, synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    metrics = evaluate(trained_cell, synthetic_cache, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")
    assert set(metrics["iteration"]) == {1, 2}


def test_weights_of_another_backbone_are_named(trained_cell, synthetic_cache, tmp_path):
    copy = Path(shutil.copytree(trained_cell, tmp_path / "cell"))
    settings = json.loads((copy / "settings.json").read_text())
    del settings["architecture"]  # as a cell trained before it was recorded: the weights themselves are checked
    (copy / "settings.json").write_text(json.dumps({**settings, "backbone": "efficientnet_lite0"}))
    with pytest.raises(InputError, match="not a 'efficientnet_lite0' network with 22 bodyparts, as its settings"):
        evaluate(copy, synthetic_cache, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")


def test_a_truncated_curve_file_says_how_to_recover(trained_cell, synthetic_cache, tmp_path):
    copy = Path(shutil.copytree(trained_cell, tmp_path / "cell"))
    curve = copy / "snapshots" / "weights-0000001.pt"
    curve.write_bytes(curve.read_bytes()[:100])
    with pytest.raises(
        InputError, match="weights-0000001.pt: cannot read .* retrain the cell, or, for a learning-curve"
    ):
        evaluate(copy, synthetic_cache, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")


# --- 5. labels outside the image, schedule and batch checks ----------------------------------------------------------


def test_labels_outside_the_image_are_unlabelled_everywhere(tmp_path, caplog):
    rows = [[10.0 + i, 10.0, 14.0 + i, 12.0, 30.0, 20.0] for i in range(6)]
    rows[1][4], rows[4][1] = 45.0, -2.0  # Hip beyond the 40 px width; Nose above the frame
    cache = Cache(prepare_cache(make_project(tmp_path / "p", rows=rows), tmp_path / "cache", SMALL))
    assert np.isnan(cache.keypoints[1, 2]).all() and np.isnan(cache.keypoints[4, 0]).all()
    assert np.isfinite(cache.keypoints[1, :2]).all()
    assert "2 labels lie outside their image and count as unlabelled, in 2 frames: labeled-data/a/1.png" in caplog.text


def test_curve_iterations_beyond_the_run_and_a_large_batch(synthetic_cache, tmp_path, caplog):
    with pytest.raises(InputError, match=r"curve_iterations: \[6, 9\] must be below iterations \(6\)"):
        cell(synthetic_cache, tmp_path, curve_iterations=(3, 6, 9))
    small = prepare_cache(make_project(tmp_path / "p"), tmp_path / "cache", SMALL)
    train(cell(small, tmp_path / "cell", batch_size=8, iterations=1, snapshot_every=1))
    n = len(Cache(small).frames(1, 50, "train"))
    assert f"batch size 8 is larger than the {n} training frames of split 1 at 50%" in caplog.text


# --- 6 and 7. outputs never delete inputs; stale temporaries go ------------------------------------------------------


def test_prepare_never_replaces_a_folder_it_did_not_make(synthetic_dataset, tmp_path, capsys):
    results = tmp_path / "results"
    (results / "horse10" / "resnet50").mkdir(parents=True)
    (results / "horse10" / "resnet50" / "model.pt").write_bytes(b"weeks of training")
    with pytest.raises(SystemExit):
        main(["prepare", str(synthetic_dataset), str(results)])
    assert "results already exists and was not made by `oodpose prepare`" in capsys.readouterr().err
    assert (results / "horse10" / "resnet50" / "model.pt").read_bytes() == b"weeks of training"
    with pytest.raises(InputError, match="would replace the dataset"):
        prepare_cache(synthetic_dataset, synthetic_dataset)
    with pytest.raises(InputError, match="would replace the dataset"):
        prepare_cache(synthetic_dataset, synthetic_dataset.parent)
    assert (synthetic_dataset / "config.yaml").exists() and (synthetic_dataset / "labeled-data").is_dir()


def test_a_command_replaces_only_what_it_made(tmp_path):
    project = make_project(tmp_path / "project")
    with pytest.raises(InputError, match="project already exists and was not made by `oodpose synthesize`"):
        generate(project, SyntheticSettings(n_individuals=2, n_frames=4, n_train_individuals=1))
    assert (project / "CollectedData_me.csv").exists()
    prepare_cache(project, tmp_path / "cache", SMALL)
    again = prepare_cache(project, tmp_path / "cache", SMALL)  # its own earlier output: replaced
    with pytest.raises(InputError, match="cache already exists and was not made by `oodpose synthesize`"):
        generate(again, SyntheticSettings(n_individuals=2, n_frames=4, n_train_individuals=1))


def test_temporaries_of_a_killed_job_are_removed_next_time(synthetic_cache, tmp_path):
    project = make_project(tmp_path / "project")
    (tmp_path / ".cache.abc123.tmp").mkdir()
    (tmp_path / ".cache.abc123.tmp" / "images.npy").write_bytes(b"half written")
    (tmp_path / ".other.abc123.tmp").mkdir()
    prepare_cache(project, tmp_path / "cache", SMALL)
    assert not (tmp_path / ".cache.abc123.tmp").exists() and (tmp_path / ".other.abc123.tmp").exists()
    snapshots = tmp_path / "cell" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / ".snapshot-0000005.pt.xyz.tmp").write_bytes(b"half written")
    train(cell(synthetic_cache, tmp_path / "cell", iterations=1, snapshot_every=1))
    assert not list(snapshots.glob(".*.tmp"))


def test_a_full_disk_is_said_as_such_and_leaves_no_half_written_snapshot(synthetic_cache, tmp_path, monkeypatch):
    """torch says a full disk as 'unexpected pos' (before: that RuntimeError, with no word of space)."""
    import shutil as shutil_module

    import oodpose.train as training

    def full(obj, path):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(training.torch, "save", full)
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(training.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(
        NoSpaceError,
        match=r"no space left on .*snapshots: snapshot-0000003.pt needs about [\d,]+ bytes and 1,000 are free",
    ):
        train(cell(synthetic_cache, tmp_path / "cell"))
    assert not list((tmp_path / "cell" / "snapshots").iterdir())  # the temporary went
    monkeypatch.setattr(training.shutil, "disk_usage", lambda path: usage._replace(free=10**12))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with room to spare, torch's own error stands
        train(cell(synthetic_cache, tmp_path / "cell"))


# --- 10. one sentence per bad input -----------------------------------------------------------------------------------


def csv_lines(project: Path) -> list[str]:
    return (project / "CollectedData_me.csv").read_text().splitlines()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: ["# labelled by me", *lines], "the coords row \\(x, y\\) is line 4; remove any extra header"),
        (lambda lines: [lines[0], *lines], "the coords row \\(x, y\\) is line 4; remove any extra header"),
        (
            lambda lines: [*lines[:4], lines[4].replace(",11.0,", ",abc,", 1), *lines[5:]],
            "row labeled-data/a/1.png, column Nose/x: 'abc' is not a number",
        ),
        (
            lambda lines: [*lines[:4], lines[4].replace(",11.0,", ",11,5,", 1), *lines[5:]],
            "line 5 has 8 fields but the header 7; a decimal comma splits a number in two",
        ),
        (
            lambda lines: [lines[0], "individuals,m1,m1,m1,m1,m1,m1", *lines[1:]],
            "a multi-animal DeepLabCut file \\(its second header row is 'individuals'\\)",
        ),
    ],
)
def test_bad_label_csv_gets_one_sentence(tmp_path, edit, message):
    project = make_project(tmp_path / "p")
    (project / "CollectedData_me.csv").write_text("\n".join(edit(csv_lines(project))) + "\n")
    with pytest.raises(InputError, match=message):
        read_labels(project)


def test_other_bad_inputs_get_one_sentence(tmp_path):
    empty = make_project(tmp_path / "empty", rows=[[np.nan] * 6] * 6)
    with pytest.raises(InputError, match="none of the 6 frames in \\['CollectedData_me.csv'\\] has a label"):
        read_labels(empty)
    with pytest.raises(InputError, match="scale bodyparts name 'Nose' twice"):
        prepare_cache(make_project(tmp_path / "p"), tmp_path / "c", DatasetSettings(scale_bodyparts=("Nose", "Nose")))
    coco = {
        "images": [{"id": 1, "file_name": "labeled-data/a/0.png"}],
        "annotations": [{"image_id": 1, "keypoints": [1, 2, 2, 3, 4]}],
        "categories": [{"keypoints": ["Nose", "Eye"]}],
    }
    (tmp_path / "p" / "coco.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match="has 5 keypoint values, not \\(x, y, v\\) triplets"):
        prepare_cache(tmp_path / "p", tmp_path / "c2", DatasetSettings(labels="coco.json"))


# --- 12. the command line checks the schema's ranges --------------------------------------------------------------


TRAIN = ["train", "cache", "out", "--backbone", "resnet50"]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([*TRAIN, "--iterations", "0"], "iterations: 0 is less than the minimum of 1"),
        ([*TRAIN, "--batch-size", "0"], "batch_size: 0 is less than the minimum of 1"),
        ([*TRAIN, "--snapshot-every", "0"], "snapshot_every: 0 is less than the minimum of 1"),
        (["prepare", "d", "o", "--n-splits", "0"], "n_splits: 0 is less than the minimum of 1"),
        ([*TRAIN, "--fraction", "80"], "fraction: 80 is greater than the maximum of 50"),
    ],
)
def test_cli_refuses_what_the_schema_refuses(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_a_text_file_as_weights_is_named(synthetic_cache, tmp_path):
    text = tmp_path / "weights.pth"
    text.write_text("not weights")
    with pytest.raises(InputError, match="weights.pth: not a file of network weights"):
        train(cell(synthetic_cache, tmp_path / "cell", init="imagenet", weights=str(text)))


def test_evaluation_refuses_a_table_that_changed_the_trained_network(synthetic_cache, tmp_path):
    table = pd.read_csv(DEFAULT_TABLE, sep="\t", keep_default_na=False)
    edited = tmp_path / "backbones.tsv"
    table.to_csv(edited, sep="\t", index=False)
    train(cell(synthetic_cache, tmp_path / "cell", iterations=2, backbones_table=str(edited)))
    table.loc[table["name"] == "mobilenetv2_035", "family"] = "resnet"  # the same weights' names and shapes
    table.to_csv(edited, sep="\t", index=False)
    changed = r"trained as .*'family': 'mobilenetv2'.*, but the row of 'mobilenetv2_035' in .* gives .*'resnet'"
    with pytest.raises(InputError, match=changed):
        evaluate(tmp_path / "cell", synthetic_cache, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")


def test_a_damaged_settings_file_is_named_with_the_way_out(tmp_path):
    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    (cell_dir / "model.pt").write_bytes(b"")
    (cell_dir / "settings.json").write_text('{"backbone": "resnet50", "split": ')  # cut mid-write
    with pytest.raises(
        InputError, match=r"settings.json: the cell's training settings are damaged .* retrain the cell"
    ):
        evaluate(cell_dir, tmp_path / "cache", tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")


def test_a_bodypart_with_no_label_at_all_is_named_when_preparing(tmp_path, caplog):
    rows = [[10.0 + i, 10.0, 14.0 + i, 12.0, float("nan"), float("nan")] for i in range(6)]  # Hip never labelled
    project = make_project(tmp_path / "project", rows=rows)
    with caplog.at_level(logging.WARNING):
        prepare_cache(project, tmp_path / "cache", SMALL)
    assert "bodyparts ['Hip'] have no label in any frame; their metrics will have n = 0" in caplog.text


def test_cuda_graphs_asked_for_on_a_cpu_are_said_off_and_recorded(synthetic_cache, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train(cell(synthetic_cache, tmp_path / "cell", iterations=2, snapshot_every=2, cuda_graphs=True))
    assert "CUDA graphs off: the device is cpu, and graphs need CUDA" in caplog.text
    settings = json.loads((tmp_path / "cell" / "settings.json").read_text())
    assert settings["cuda_graphs"] is True and settings["cuda_graphs_used"] is False


def test_a_failed_retrain_leaves_no_evaluation_of_the_old_model(synthetic_cache, tmp_path):
    """The cell's old model and its metrics, Horse-C's included, must not outlive a retrain as its result (a
    fused job retrains cells whose own job has not run, so Snakemake has not removed their model.pt)."""
    out = tmp_path / "cell"
    train(cell(synthetic_cache, out, iterations=2, snapshot_every=2))
    evaluations = ("metrics.csv", "predictions.h5", "metrics_corrupted.csv")
    for name in evaluations:  # what evaluating that model wrote
        (out / name).write_text("of the first model")
    with pytest.raises(FloatingPointError, match="loss is"):
        train(cell(synthetic_cache, out, iterations=2, snapshot_every=2, ilr=1e30))  # diverges to NaN
    assert not [name for name in ("model.pt", *evaluations) if (out / name).exists()]
    assert json.loads((out / "settings.json").read_text())["ilr"] == 1e30  # the settings of the run that failed
