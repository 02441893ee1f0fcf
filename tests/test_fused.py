"""Fused training (oodpose.fused): a job trains its cell with the unfinished cells of its group, and every cell
ends where it would alone."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from test_workflow import REPO, snakemake

from oodpose import device as device_module
from oodpose import fused
from oodpose import train as train_module
from oodpose.backbones import get_backbone
from oodpose.errors import InputError
from oodpose.fused import cell_lock, room_on, sibling_config, train_with_group
from oodpose.settings import TrainConfig, fusion_group
from oodpose.study import Cell, SearchCell
from oodpose.train import train

STUDY = {
    "study": {
        "datasets": ["synthetic"],
        "backbones": ["mobilenetv2_035"],
        "inits": ["scratch"],
        "splits": [1, 2],
        "fractions": [50, 20],
    },
    "search": {
        "backbones": ["mobilenetv2_035"],
        "inits": ["scratch"],
        "grid": {"ilr": [0.05, 0.01], "final_lr": [0.0], "cycles": [1]},
        "splits": [],
        "fraction": 50,
    },
}
OWN = Cell("synthetic", "mobilenetv2_035", "scratch", 1, 50)
GROUP = [dataclasses.replace(OWN, split=s, fraction=f) for s in (1, 2) for f in (50, 20)]
SEARCH_GROUP = [
    SearchCell(**OWN.as_dict(), selection="test_ood", schedule=f"ilr{r}_final0.0_cycles1") for r in (0.05, 0.01)
]


def cell_config(cache: Path, cell: Cell, **kw) -> TrainConfig:
    """MobileNetV2 from scratch trains its batch norm statistics: fused cells must keep theirs apart too."""
    base = dict(out=cell.folder, iterations=8, snapshot_every=4, batch_size=2, device="cpu", threads=2)
    return TrainConfig(cache=str(cache), **{**base, **kw}, **cell_fields(cell))


def cell_fields(cell: Cell) -> dict:
    return dict(backbone=cell.backbone, init=cell.init, split=cell.split, fraction=cell.fraction)


def final_weights(cell: Cell) -> dict:
    """The cell's final weights: its model.pt, else (a group cell whose own job has not run) its final snapshot."""
    folder = Path(cell.folder)
    path = folder / "model.pt" if (folder / "model.pt").exists() else folder / "snapshots" / "snapshot-0000008.pt"
    return torch.load(path, weights_only=False)["model"]


def losses(cell: Cell) -> pd.DataFrame:
    return pd.read_csv(Path(cell.folder) / "train_log.csv")[["iteration", "loss", "lr"]]


def assert_same(cell: Cell, alone_dir: Path) -> None:
    """Bitwise: the same kernels run on the same data in the same order, only interleaved with other cells'."""
    alone = torch.load(alone_dir / cell.folder / "model.pt", weights_only=False)["model"]
    fused = final_weights(cell)
    assert all(torch.equal(fused[k], alone[k]) for k in alone), cell
    pd.testing.assert_frame_equal(
        losses(cell), pd.read_csv(alone_dir / cell.folder / "train_log.csv")[losses(cell).columns]
    )


@pytest.fixture(scope="module")
def alone(synthetic_cache, tmp_path_factory) -> Path:
    """Each cell of the group trained alone, in its own job."""
    root = tmp_path_factory.mktemp("alone")
    for cell in GROUP:
        train(cell_config(synthetic_cache, cell, out=str(root / cell.folder)))
    return root


def test_fused_cells_end_as_each_alone(synthetic_cache, alone, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    assert (tmp_path / OWN.folder / "model.pt").exists()
    for cell in GROUP:
        assert_same(cell, alone)
    last = " ".join(f"{losses(c)['loss'].iloc[-1]:.4f}" for c in GROUP)
    assert f"loss={last}]" in capsys.readouterr().err  # the progress bar shows each cell's latest loss
    assert not any((tmp_path / c.folder / "model.pt").exists() for c in GROUP[1:])  # their own jobs write them

    other = GROUP[3]  # its own job then finds its final snapshot and trains nothing
    train_with_group(cell_config(synthetic_cache, other), other, STUDY)
    assert list(losses(other)["iteration"]) == list(range(8))
    assert_same(other, alone)


def kill():
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "at_call, interrupt, stops_with, exit_code, snapshot",
    [
        (4 * 5 + 3, kill, KeyboardInterrupt, None, 4),  # killed in round 6, after every cell's snapshot at 4
        (4 * 2 + 2, lambda: signal.raise_signal(signal.SIGTERM), SystemExit, 143, 3),  # mid-round 3: 2 of 4 stepped
    ],
    ids=["killed", "sigterm"],
)
def test_an_interrupted_fused_job_resumes_every_cell_bitwise(
    synthetic_cache, alone, tmp_path, monkeypatch, at_call, interrupt, stops_with, exit_code, snapshot
):
    """Killed, every cell resumes from its last snapshot; on SIGTERM every cell writes one at its iteration first."""
    monkeypatch.chdir(tmp_path)
    real_loss, calls = train_module.pose_loss, {"n": 0}

    def interrupted_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            interrupt()
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "pose_loss", interrupted_loss)
    with pytest.raises(stops_with) as stopped:
        train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    assert getattr(stopped.value, "code", None) == exit_code
    monkeypatch.setattr(train_module, "pose_loss", real_loss)
    for cell in GROUP:
        snapshots = [p.name for p in (tmp_path / cell.folder / "snapshots").glob("snapshot-*")]
        assert snapshots == [f"snapshot-{snapshot:07d}.pt"]
    train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    for cell in GROUP:
        assert_same(cell, alone)


def test_a_diverging_cell_stops_alone(synthetic_cache, alone, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    diverging = GROUP[2]
    real_step_function = train_module.step_function

    def step_function(run, cfg):
        step = real_step_function(run, cfg)
        if (cfg.split, cfg.fraction) != (diverging.split, diverging.fraction):
            return step
        return lambda *batch: step(*batch) * float("nan")

    monkeypatch.setattr(train_module, "step_function", step_function)
    train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    assert f"{diverging.folder} stopped (loss is nan at iteration 0" in caplog.text
    assert not list((tmp_path / diverging.folder / "snapshots").glob("*.pt"))  # NaN weights are never saved
    for cell in GROUP:
        if cell != diverging:
            assert_same(cell, alone)
    with pytest.raises(FloatingPointError, match="iteration 0"):  # its own job fails, with the reason
        train_with_group(cell_config(synthetic_cache, diverging), diverging, STUDY)


def test_a_partly_finished_group_trains_only_its_missing_cells(synthetic_cache, alone, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cell in GROUP[:2]:  # finished earlier: one with its model, one with its final snapshot
        shutil.copytree(alone / cell.folder, tmp_path / cell.folder)
    (tmp_path / GROUP[1].folder / "model.pt").unlink()
    before = {c: (tmp_path / c.folder / "train_log.csv").stat().st_mtime_ns for c in GROUP[:2]}
    with cell_lock(tmp_path / GROUP[3].folder):  # another job is training this one
        train_with_group(cell_config(synthetic_cache, GROUP[1]), GROUP[1], STUDY)
    assert {c: (tmp_path / c.folder / "train_log.csv").stat().st_mtime_ns for c in GROUP[:2]} == before
    assert_same(GROUP[1], alone)
    assert_same(GROUP[2], alone)  # the one missing cell no other job held
    assert not (tmp_path / GROUP[3].folder / "snapshots").exists()


def test_a_gpus_room_is_its_free_memory_over_the_tables_memory_a_cell(monkeypatch):
    backbone = get_backbone("resnet50")
    assert room_on(torch.device("cpu"), backbone) is None  # on a CPU the cells take turns: no limit
    mib = 2**20

    def free(mb):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(mb * mib), 80_000 * mib))

    free(3.5 * backbone.gpu_mem_mb)
    assert room_on(torch.device("cuda"), backbone) == 3
    free(0.5 * backbone.gpu_mem_mb)
    assert room_on(torch.device("cuda"), backbone) == 1  # its own cell, whatever the estimate


def test_a_job_takes_no_more_cells_than_its_gpu_holds(synthetic_cache, alone, tmp_path, monkeypatch, caplog):
    """The others wait for their own jobs, which take the group's untrained cells in turn."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fused, "room_on", lambda device, backbone: 2)
    with caplog.at_level(logging.INFO, logger="oodpose.fused"):
        train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    assert [c for c in GROUP if (tmp_path / c.folder / "snapshots").exists()] == GROUP[:2]
    assert "room for 2 mobilenetv2_035 cells" in caplog.text
    train_with_group(cell_config(synthetic_cache, GROUP[2]), GROUP[2], STUDY)
    for cell in GROUP:
        assert_same(cell, alone)


def test_a_group_that_does_not_fit_its_gpu_says_which_number_to_change(synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "pose_loss", out_of_memory)
    with pytest.raises(InputError, match=r"4 mobilenetv2_035 cells at once \(CUDA out of memory.*gpu_mem_mb"):
        train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)
    monkeypatch.setattr(fused, "room_on", lambda device, backbone: 1)  # alone, the error is the device's own
    with pytest.raises(torch.OutOfMemoryError):
        train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)


NEW_RATE = 0.02  # the group's schedule after an edit of its backbone row (the table's rate is 0.05)


@pytest.fixture(scope="module")
def alone_at_new_rate(synthetic_cache, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("alone_new_rate")
    for cell in GROUP:
        train(cell_config(synthetic_cache, cell, out=str(root / cell.folder), ilr=NEW_RATE))
    return root


def test_a_changed_schedule_retrains_the_group_fused(synthetic_cache, alone, alone_at_new_rate, tmp_path, monkeypatch):
    """Snakemake reruns every cell of the group; the first job retrains them together, removing each old model and
    its evaluation (their own jobs, which would have removed them, have not run yet)."""
    monkeypatch.chdir(tmp_path)
    for cell in GROUP:
        shutil.copytree(alone / cell.folder, tmp_path / cell.folder)
        (tmp_path / cell.folder / "metrics.csv").write_text("of the old model")
    (tmp_path / OWN.folder / "model.pt").unlink()  # Snakemake removes the output of the job it starts
    train_with_group(cell_config(synthetic_cache, OWN, ilr=NEW_RATE), OWN, STUDY)
    for cell in GROUP[1:]:
        assert not any((tmp_path / cell.folder / name).exists() for name in ("model.pt", "metrics.csv"))
    for cell in GROUP:
        assert_same(cell, alone_at_new_rate)
    train_with_group(cell_config(synthetic_cache, GROUP[3], ilr=NEW_RATE), GROUP[3], STUDY)  # its own job, later
    assert_same(GROUP[3], alone_at_new_rate)


def test_a_cell_finished_on_another_device_or_of_unknown_record_is_left_to_its_own_job(
    synthetic_cache, alone, tmp_path, monkeypatch
):
    """Snakemake does not rerun a cell for its device (precision is not a param), and a model.pt from before models
    recorded their settings cannot say it is stale: a fused job leaves both to their own jobs."""
    monkeypatch.chdir(tmp_path)
    for cell in GROUP:
        shutil.copytree(alone / cell.folder, tmp_path / cell.folder)
    other_device, unknown = tmp_path / GROUP[1].folder, tmp_path / GROUP[2].folder
    for path in (other_device / "model.pt", *(other_device / "snapshots").glob("snapshot-*.pt")):
        state = torch.load(path, weights_only=False)
        state["defines"]["precision"] = "bfloat16"
        torch.save(state, path)
    state = torch.load(unknown / "model.pt", weights_only=False)
    del state["defines"]
    torch.save(state, unknown / "model.pt")
    shutil.rmtree(unknown / "snapshots")

    def trained_at() -> dict:
        return {c: (tmp_path / c.folder / "train_log.csv").stat().st_mtime_ns for c in GROUP[1:]}

    before = trained_at()
    shutil.rmtree(tmp_path / OWN.folder)
    train_with_group(cell_config(synthetic_cache, OWN), OWN, STUDY)  # the settings they were trained to
    assert trained_at() == before and (other_device / "model.pt").exists()

    shutil.rmtree(tmp_path / OWN.folder)
    train_with_group(cell_config(synthetic_cache, OWN, ilr=NEW_RATE), OWN, STUDY)  # a new schedule
    after = trained_at()
    assert after[GROUP[2]] == before[GROUP[2]] and (unknown / "model.pt").exists()
    assert after[GROUP[1]] != before[GROUP[1]] and not (other_device / "model.pt").exists()  # recorded: stale


def test_rerunning_one_cell_of_a_fused_group(synthetic_cache, alone, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cell in GROUP:
        shutil.copytree(alone / cell.folder, tmp_path / cell.folder)
    shutil.rmtree(tmp_path / GROUP[2].folder)  # the user's rerun of one cell
    train_with_group(cell_config(synthetic_cache, GROUP[2]), GROUP[2], STUDY)
    assert_same(GROUP[2], alone)


def set_up_without_training(monkeypatch, device: str = "cpu", iterations: tuple[int, ...] = ()) -> list[int]:
    """`fused.start_cells` on cells that are only their settings (resumed at `iterations`, else at 0), on `device`;
    returns the workers each loader it opens is given."""
    resumed_at = iter(iterations)
    rt = SimpleNamespace(device=torch.device(device))

    def set_up_cell(config):
        return SimpleNamespace(cfg=config, iteration=next(resumed_at, 0), run=SimpleNamespace(rt=rt))

    given = []
    monkeypatch.setattr(fused, "set_up_cell", set_up_cell)
    monkeypatch.setattr(fused, "open_batches", lambda cell, workers, loaders: given.append(workers))
    return given


def test_the_jobs_loader_workers_spread_over_its_loaders_none_idle(monkeypatch):
    given = set_up_without_training(monkeypatch)
    four = [cell_config(Path("cache.npz"), cell) for cell in GROUP]
    fused.start_cells(four, 7)
    assert given == [2, 2, 2, 1]  # not 1 each with 3 CPUs idle
    given.clear()
    fused.start_cells(four + four[:1], 3)  # more loaders than workers: one each; the same batches: one loader
    assert given == [1, 1, 1, 1, 1]
    given.clear()
    fused.start_cells(four, None)  # a CPU job's default: no workers, every loader in the process
    assert given == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "cells, resumed_at, cpus, workers",
    [
        (GROUP, (), 64, [8, 8, 8, 8]),  # 2 splits x 2 fractions: 4 loaders of at most 8
        (GROUP, (), 9, [2, 2, 2, 2]),  # the allocation's CPUs but one
        (GROUP[:2], (), 64, [8, 8]),  # the cells this job took, not all of its group
        (SEARCH_GROUP, (), 64, [8, 8]),  # a search's schedules in one split draw the same batches: one loader
        (SEARCH_GROUP, (4, 0), 9, [4, 4]),  # but resumed at two iterations they draw from two
    ],
)
def test_a_fused_jobs_default_workers_are_capped_per_loader_its_cells_read(
    monkeypatch, cells, resumed_at, cpus, workers
):
    given = set_up_without_training(monkeypatch, "cuda", resumed_at)
    monkeypatch.setattr(device_module, "allocated_cpus", lambda: cpus)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    configs = [sibling_config(cell_config(Path("cache.npz"), OWN), cell) for cell in cells]
    fused.start_cells(configs, None)
    assert given == workers


def test_search_cells_resumed_at_different_iterations_share_the_jobs_workers(synthetic_cache, tmp_path, monkeypatch):
    """Each resume point is a loader of its own: the job's workers are spread over both (2, 1), where each took
    them all (3, 3); and each cell still ends as it would alone."""
    monkeypatch.chdir(tmp_path)
    alone = tmp_path / "alone"
    configs = [sibling_config(cell_config(synthetic_cache, OWN), cell) for cell in SEARCH_GROUP]
    for config in configs:
        train(dataclasses.replace(config, out=str(alone / config.out)))
    shutil.copytree(alone / configs[0].out, configs[0].out)  # stopped after its snapshot at 4
    for name in ("model.pt", "snapshots/snapshot-0000008.pt"):
        (Path(configs[0].out) / name).unlink()
    real_batches, workers = train_module.batches, []

    def batches(cache, rows, cfg, rt, start, n_workers):
        workers.append((start, n_workers))
        return real_batches(cache, rows, cfg, rt, start, 0)  # the same batches (tested): no processes to start

    monkeypatch.setattr(train_module, "batches", batches)
    cells = fused.start_cells(configs, 3)
    assert workers == [(4, 2), (0, 1)]
    train_module.train_cells(cells)
    for cell in SEARCH_GROUP:
        assert_same(cell, alone)


def test_the_fusion_group_is_the_cells_that_share_the_network():
    assert fusion_group(STUDY, OWN) == GROUP
    outside = dataclasses.replace(OWN, fraction=10)
    assert fusion_group(STUDY, outside) == [outside]
    assert fusion_group(STUDY, dataclasses.replace(OWN, backbone="resnet_50")) == [
        dataclasses.replace(OWN, backbone="resnet_50")
    ]
    assert fusion_group(STUDY, SEARCH_GROUP[1]) == SEARCH_GROUP  # a search's schedules, in one split


def test_a_searchs_schedules_train_fused_from_one_loader_each_at_its_own_rate(synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    alone = tmp_path / "alone"
    configs = [sibling_config(cell_config(synthetic_cache, OWN), cell) for cell in SEARCH_GROUP]
    for config in configs:
        train(dataclasses.replace(config, out=str(alone / config.out)))
    train_with_group(configs[0], SEARCH_GROUP[0], STUDY)
    for cell, ilr in zip(SEARCH_GROUP, (0.05, 0.01)):
        assert losses(cell)["lr"].iloc[0] == ilr
        assert_same(cell, alone)


def fused_workdir(path: Path, fuse: bool) -> Path:
    """The test study's one backbone from scratch in two splits, trained with or without fusion."""
    shutil.copytree(REPO / "config", path / "config")
    config = yaml.safe_load((path / "config" / "test.yaml").read_text())
    config["study"] |= {"backbones": ["efficientnet_lite0"], "inits": ["scratch"]}
    config["training"]["fuse"] = fuse
    del config["evaluation"]["corruptions"]
    (path / "config" / "fused.yaml").write_text(yaml.safe_dump(config))
    return path


FUSED_CONFIG = "config/fused.yaml"
WORKFLOW_CELLS = [Cell("synthetic", "efficientnet_lite0", "scratch", split, 50) for split in (1, 2)]


def train_log(workdir: Path, cell: Cell) -> Path:
    return workdir / "results" / "logs" / cell.folder.removeprefix("results/") / "train.log"


def new_logs(workdir: Path, cells: list[Cell], *args: str) -> list[str]:
    """The cells' train logs of one Snakemake run (the earlier ones removed first: Snakemake may or may not)."""
    for cell in cells:
        train_log(workdir, cell).unlink(missing_ok=True)
    snakemake(workdir, *args)
    return [train_log(workdir, cell).read_text() for cell in cells]


@pytest.mark.slow
def test_the_workflow_trains_a_group_fused_and_each_cell_stays_its_own(tmp_path):
    targets = [f"{cell.folder}/model.pt" for cell in WORKFLOW_CELLS]
    runs = {}
    for fuse in (False, True):
        workdir = fused_workdir(tmp_path / f"fuse_{fuse}", fuse)
        snakemake(workdir, *targets, "--cores", "1", "--configfile", FUSED_CONFIG)
        runs[fuse] = workdir
    fused = runs[True]
    logs = [train_log(fused, cell).read_text() for cell in WORKFLOW_CELLS]
    assert sum("fused: training" in log for log in logs) == 1  # whichever job ran first trained both
    assert sum("at iteration 4" in log for log in logs) == 1  # the other found its final snapshot
    for cell in WORKFLOW_CELLS:
        alone, together = (torch.load(runs[f] / cell.folder / "model.pt", weights_only=False)["model"] for f in runs)
        assert all(torch.equal(alone[k], together[k]) for k in alone), cell

    rerun = WORKFLOW_CELLS[1]  # rerunning one cell of the group trains it alone: the other is finished
    shutil.rmtree(fused / rerun.folder)
    (new_lines,) = new_logs(fused, [rerun], f"{rerun.folder}/model.pt", "--cores", "1", "--configfile", FUSED_CONFIG)
    assert "fused: training" not in new_lines and "resuming" not in new_lines
    again, alone = (
        torch.load(r / rerun.folder / "model.pt", weights_only=False)["model"] for r in (fused, runs[False])
    )
    assert all(torch.equal(again[k], alone[k]) for k in alone)

    # a changed schedule: Snakemake reruns both cells; the first job retrains both, the other writes its model
    table = pd.read_csv(fused / "config" / "backbones.tsv", sep="\t", keep_default_na=False)
    table.loc[table["name"] == "efficientnet_lite0", "scratch_ilr"] = 0.002
    table.to_csv(fused / "config" / "changed.tsv", sep="\t", index=False)
    config = yaml.safe_load((fused / FUSED_CONFIG).read_text()) | {"backbones_table": "config/changed.tsv"}
    (fused / "config" / "changed.yaml").write_text(yaml.safe_dump(config))
    new_lines = new_logs(fused, WORKFLOW_CELLS, *targets, "--cores", "1", "--configfile", "config/changed.yaml")
    assert sum("fused: training" in lines for lines in new_lines) == 1
    assert sum("at iteration 4" in lines for lines in new_lines) == 1
    for cell in WORKFLOW_CELLS:
        assert json.loads((fused / cell.folder / "settings.json").read_text())["ilr"] == 0.002
        assert pd.read_csv(fused / cell.folder / "train_log.csv")["lr"].iloc[0] == 0.002
