"""Train a cell with the cells of its group that need training in one process (config: `training: fuse`).

At the paper's batch of 8 small frames a GPU mostly waits for the host to launch kernels
(bench/README.md). A study's cells of one backbone and init differ only in split and fraction, a
search's cells in one split only in their schedule: one process can keep the GPU busy with several,
each cell's step on its own CUDA stream (replayed from its own CUDA graphs where those are on) while
the host launches the next cell's. Every cell keeps its own network, optimiser, learning rate,
snapshots and log, and its own batches (one loader feeds the cells that draw the same ones); nothing
couples them, so each ends where it would alone (bitwise on CPU, tested).

A training job asks for its own cell. With fusion on it also takes the cells of its group
(`oodpose.settings.fusion_group`) that need training and that no other job is training: those with
neither a model nor a final snapshot, and those whose model and final snapshot were trained to other
settings (a changed schedule reruns every cell of a backbone: they retrain together, not one after
another). On a GPU it takes no more cells than the GPU's free memory holds at the backbone table's
`gpu_mem_mb` a cell; the group's other cells wait for their own jobs, which fuse in turn. A lock per
cell folder (flock, released by the kernel when a job dies) keeps two jobs off one cell, and a job
whose cell another is training waits for it. A job writes only its own cell's ``model.pt``; the other
cells' jobs then find their final snapshots and write theirs in seconds. So each cell stays its own
Snakemake job (rerun alone, retrained when its params change, resumed after pre-emption), and a cell
that diverges stops alone: the job goes on with the others, and that cell's own job fails with the
reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
from pathlib import Path

import torch

from oodpose.backbones import Backbone, get_backbone
from oodpose.device import job_workers, runtime
from oodpose.errors import InputError, first_line
from oodpose.schedule import Schedule
from oodpose.settings import TrainConfig, fusion_group
from oodpose.study import Cell, SearchCell
from oodpose.train import (
    CellTraining,
    batch_source,
    open_batches,
    params_record,
    save_model,
    set_up_cell,
    snapshot_path,
    train_cells,
    trained_for,
)

log = logging.getLogger(__name__)
LOCK = ".train.lock"  # in a cell's folder: held by the job that trains the cell


def train_with_group(config: TrainConfig, cell: Cell, study_config: dict) -> Path:
    """Train `cell` (its settings `config`) with the cells of its group that need training; returns its
    ``model.pt``."""
    group = fusion_group(study_config, cell)
    siblings = [sibling_config(config, c) for c in group if c != cell]
    backbone = get_backbone(config.backbone, config.backbones_table)  # the group's
    rt = runtime(config.device, config.threads, config.workers, config.amp)
    with contextlib.ExitStack() as locks:
        locks.enter_context(cell_lock(Path(config.out)))
        taken = take_siblings(siblings, backbone, room_on(rt.device, backbone), locks)
        if taken:
            log.info("fused: training %s with %s", cell.folder, ", ".join(c.out for c in taken))
        try:
            cells = start_cells([config, *taken], config.workers)
            train_cells(cells)
        except torch.OutOfMemoryError as err:
            if not taken:
                raise
            raise InputError(too_many_cells(rt.device, 1 + len(taken), backbone, err)) from err
        for other in cells[1:]:
            if other.error:
                log.error("%s stopped (%s); its own job will say so", other.out, other.error)
        if cells[0].error:
            raise FloatingPointError(cells[0].error)
        return save_model(cells[0])


def too_many_cells(device: torch.device, n: int, backbone: Backbone, err: Exception) -> str:
    """What to change when a fused job's cells did not fit its GPU: the backbone table's memory a cell."""
    return (
        f"{device} ran out of memory training {n} {backbone.name} cells at once ({first_line(err)}); raise "
        f"{backbone.name}'s gpu_mem_mb ({backbone.gpu_mem_mb} MB a cell) in a copy of the backbone table, so that "
        "fewer share a GPU, or set training: fuse: false; each cell resumes from any snapshot it wrote"
    )


def sibling_config(config: TrainConfig, cell: Cell) -> TrainConfig:
    """A group cell's settings: this job's, in its split, fraction, folder and, a search cell, schedule (a group
    shares all the rest)."""
    schedule = Schedule.parse(cell.schedule).__dict__ if isinstance(cell, SearchCell) else {}
    return dataclasses.replace(config, split=cell.split, fraction=cell.fraction, out=cell.folder, **schedule)


def take_siblings(
    siblings: list[TrainConfig], backbone: Backbone, room: int | None, locks: contextlib.ExitStack
) -> list[TrainConfig]:
    """The siblings this job trains beside its own cell, each locked in `locks`: those that need training and
    that no other job holds, as many as `room` cells leave (None: all). The rest wait for their own jobs, each
    of which takes the group's untrained cells in turn."""
    taken = []
    for sibling in siblings:
        if not needs_training(sibling, backbone):
            continue
        if room is not None and len(taken) + 1 >= room:
            log.info(
                "fused: room for %d %s cells (gpu_mem_mb %d each); the others wait for their own jobs",
                room,
                backbone.name,
                backbone.gpu_mem_mb,
            )
            break
        if locks.enter_context(cell_lock(Path(sibling.out), False)):
            taken.append(sibling)
    return taken


def needs_training(config: TrainConfig, backbone: Backbone) -> bool:
    """Neither a model nor a final snapshot, or only ones trained to other settings or another network than
    `config` and `backbone` give now: what Snakemake reruns its job for (not the precision: a cell finished on
    another kind of device stays finished). A cell with one of unknown record (a model.pt from before models
    recorded it) is its own job's to finish or retrain, as is one trained to the current settings."""
    out = Path(config.out)
    finished = [p for p in (out / "model.pt", snapshot_path(out / "snapshots", config.iterations)) if p.exists()]
    now = params_record(config.resolved(backbone), backbone)
    records = [trained_for(path) for path in finished]
    return all(r is not None and {key: r.get(key) for key in now} != now for r in records)


def room_on(device: torch.device, backbone: Backbone) -> int | None:
    """How many of `backbone`'s cells one process may train on `device`: on CUDA, as many as the GPU's free
    memory holds at the backbone table's `gpu_mem_mb` a cell (its own cell at least); elsewhere, where the cells
    take turns, no limit (None)."""
    if device.type != "cuda":
        return None
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return max(1, free_bytes // (backbone.gpu_mem_mb * 2**20))


def start_cells(configs: list[TrainConfig], workers: int | None) -> list[CellTraining]:
    """Each cell set up; cells that draw the very same batches (a search's schedules in one split) read them from
    one loader, and the loaders share the job's `workers` (`loader_shares`; None: as many as its allocation gives
    that many loaders, `oodpose.device.job_workers`)."""
    cells = [set_up_cell(c) for c in configs]
    sources = [batch_source(c) for c in cells]  # known once each cell has found where it resumes
    shares = loader_shares(sources, job_workers(cells[0].run.rt.device, workers, len(set(sources))))
    loaders = {}
    for cell, source in zip(cells, sources, strict=True):
        open_batches(cell, shares[source], loaders)
    return cells


def loader_shares(keys: list[tuple], workers: int) -> dict[tuple, int]:
    """Each distinct loader's workers: `workers` spread as evenly as they go, so that none idles (7 over 4
    loaders: 2, 2, 2, 1), and one at least while there are any, since a loader without workers makes the
    process that launches every cell's steps augment its batches too."""
    distinct = list(dict.fromkeys(keys))
    each, extra = divmod(workers, len(distinct))
    return {key: max(1, each + (i < extra)) if workers else 0 for i, key in enumerate(distinct)}


@contextlib.contextmanager
def cell_lock(folder: Path, wait: bool = True):
    """Hold a cell folder's lock for the block; yields whether it is held (with `wait`, after waiting for it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.info("%s: another job is training this cell; waiting for it", folder)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
