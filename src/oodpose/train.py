"""Train a cell of the study: one backbone, init, split and training fraction (or, fused, several at once).

A flat loop in labelled steps, as nanoGPT's: set up and resume (`start_cell`), then per iteration
(`advance`) the learning rate (a pure function of the iteration, `oodpose.schedule`), one
`train_step`, the log and the snapshots. `train_cells` runs that iteration for each of its cells in
turn (one cell, or a fused group: `oodpose.fused`). Every `snapshot_every` iterations the model,
optimiser, RNG states and iteration are written atomically; a run that finds snapshots resumes
from the newest readable one, and the batches it then draws are the ones an uninterrupted run
would have drawn (each sample's order and augmentation seed derive from the seed and its position
in the run). SIGTERM (SLURM pre-emption) writes a snapshot of every cell before exiting.

Outputs in `out`: ``model.pt`` (final weights and settings), ``snapshots/`` (resume state and the
weights at `curve_iterations`, for learning curves), ``train_log.csv`` and ``settings.json``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import errno
import functools
import itertools
import json
import logging
import math
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from oodpose.atomic import atomic_file, remove_stale_temporaries
from oodpose.backbones import Backbone, get_backbone
from oodpose.cuda_graphs import GraphedStep
from oodpose.data.cache import Cache
from oodpose.data.dataset import PoseDataset
from oodpose.device import Runtime, cxx_compiler, runtime
from oodpose.download import sha256_of
from oodpose.errors import InputError, NoSpaceError
from oodpose.models import PoseNet, build_model, weights_file
from oodpose.schedule import learning_rate
from oodpose.settings import TrainConfig, result_settings
from oodpose.study import EVALUATIONS, PRETRAINED, TRAIN, TRAIN_LOG
from oodpose.targets import make_targets, pose_loss

log = logging.getLogger(__name__)
LOG_FIELDS = ["iteration", "loss", "scoremap_loss", "locref_loss", "lr", "seconds"]
KEEP_SNAPSHOTS = 2
LOG_EVERY = 100  # iterations between log writes (and the only host-device waits between snapshots)


class RunSampler(Sampler):
    """Batches of (row position, augmentation seed, batch seed) for iterations [start, stop).

    Sample k of the run (k = iteration x batch + slot) is position k mod n of a per-epoch seeded
    permutation, augmented with seed (seed, k); the batch's scale comes from seed (seed, iteration, 1).
    A resumed run draws exactly what an unbroken one would.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        for iteration in range(self.start, self.stop):
            batch_seed = int(np.random.SeedSequence([self.seed, iteration, 1]).generate_state(1)[0])
            samples = range(iteration * self.batch_size, (iteration + 1) * self.batch_size)
            yield [(*self.sample(k), batch_seed) for k in samples]

    def sample(self, k: int) -> tuple[int, int]:
        epoch = k // self.n
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return int(self._order[k % self.n]), int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0])


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary; a full disk is said as such (torch reports it as 'unexpected pos')."""
    try:
        with atomic_file(path) as tmp:
            torch.save(obj, tmp)
    except (RuntimeError, OSError) as err:
        needed, free = tensor_bytes(obj), shutil.disk_usage(path.parent).free
        if free >= needed and getattr(err, "errno", None) != errno.ENOSPC:
            raise
        raise NoSpaceError(
            f"no space left on {path.parent}: {path.name} needs about {needed:,} bytes and {free:,} are free; "
            "free some space, then rerun the job to resume from its last snapshot"
        ) from None


def tensor_bytes(obj) -> int:
    """The bytes of every tensor in `obj` (nested dicts, lists and tuples): about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def latest_snapshot(folder: Path) -> dict | None:
    """The newest readable snapshot in `folder`; corrupted ones are reported and skipped."""
    snapshots = sorted(folder.glob("snapshot-*.pt"), reverse=True)
    for path in snapshots:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            state["path"] = str(path)
            return state
        except Exception as err:  # a truncated or corrupted file can fail in many ways
            log.warning("snapshot %s is corrupted (%s: %s); ignoring it", path, type(err).__name__, err)
    if snapshots:
        raise InputError(
            f"{folder}: every snapshot is corrupted ({[p.name for p in snapshots]}); delete them to restart"
        )
    return None


def keep_recent_snapshots(folder: Path) -> None:
    for old in sorted(folder.glob("snapshot-*.pt"))[:-KEEP_SNAPSHOTS]:
        old.unlink()


def rewind_log(path: Path, iteration: int) -> None:
    """Drop log rows at or after `iteration` (they were written after the snapshot we resume from)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        logged = list(csv.DictReader(f))
    rows = [r for r in logged if int(r["iteration"]) < iteration]
    if len(rows) == len(logged):
        return  # a finished cell's log stays as it is
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


class StopRequest:
    """Turns SIGTERM (SLURM pre-emption, a killed job) into a request honoured between iterations."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGTERM, self.handle)

    def handle(self, signum, frame):
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self.previous)


@dataclass
class Run:
    """What a training step works on: the network, its optimiser and loss scaler, and the runtime."""

    model: PoseNet
    network: torch.nn.Module  # the model, or its torch.compile'd wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    rt: Runtime
    lr: torch.Tensor | None  # on CUDA, the rate Adam reads on the device (a CUDA graph reads it there too)
    weights: Path | None  # the ImageNet weights file a pretrained cell started from
    weights_sha256: str | None  # its contents, which define the cell's result as much as its settings do
    architecture: dict  # the backbone row's columns that define the network (`Backbone.architecture`)


def build_run(cfg: TrainConfig, n_joints: int, backbone: Backbone | None = None) -> Run:
    """The network on its device in channels_last, Adam and, for fp16, a loss scaler.

    On CUDA, Adam is fused and capturable, with its rate in a device tensor, in eager and graphed
    loops alike, so that the two run the same arithmetic.
    """
    rt = runtime(cfg.device, cfg.threads, cfg.workers, cfg.amp)
    if cfg.compile and rt.device.type == "cpu" and not shutil.which(cxx_compiler()):
        raise InputError(
            f"compile on CPU needs a C++ compiler: {cxx_compiler()!r} ($CXX, else g++) is not on PATH; "
            "install one, or train without --compile (config: training: compile: false)"
        )
    backbone = backbone or get_backbone(cfg.backbone, cfg.backbones_table)
    weights = weights_file(backbone, cfg.weights) if cfg.init == PRETRAINED else None
    model = build_model(backbone, n_joints, cfg.init, weights, cfg.seed, cfg.input_normalisation)
    model = model.to(rt.device, memory_format=torch.channels_last)
    cuda = rt.device.type == "cuda"
    lr = torch.tensor(cfg.ilr, dtype=torch.float32, device=rt.device) if cuda else None
    return Run(
        model=model,
        network=torch.compile(model, dynamic=False) if cfg.compile else model,  # one graph per canvas size
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg.ilr if lr is None else lr, fused=cuda, capturable=cuda),
        scaler=torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16),
        rt=rt,
        lr=lr,
        weights=weights,
        weights_sha256=None if weights is None else sha256_of(weights),
        architecture=backbone.architecture,
    )


def graphs_blocked(run: Run, cfg: TrainConfig) -> str | None:
    """Why CUDA graphs cannot replay this run's steps, if they cannot."""
    if run.rt.device.type != "cuda":
        return f"the device is {run.rt.device}, and graphs need CUDA"
    if cfg.compile:
        return "torch.compile is on"
    if run.scaler.is_enabled():
        return "fp16 needs a loss scaler"
    return None


def step_function(run: Run, cfg: TrainConfig):
    """`step(images, keypoints, scales) -> losses`: replayed from CUDA graphs where they apply, else eager.

    Graphs need CUDA, an uncompiled network (torch.compile brings its own) and no fp16 loss scaler
    (its skipped steps are decided on the host).
    """
    step = functools.partial(train_step, run, cfg)
    if not cfg.cuda_graphs:
        return step
    why_not = graphs_blocked(run, cfg)
    if why_not:
        log.warning("CUDA graphs off: %s; training eagerly (settings.json: cuda_graphs_used false)", why_not)
        return step
    return GraphedStep(step)


def set_learning_rate(run: Run, lr: float) -> None:
    """Outside any graph: on CUDA into the device tensor Adam reads, else into the optimiser's groups."""
    if run.lr is not None:
        run.lr.fill_(lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr if run.lr is None else run.lr  # a resumed optimiser brings its own copy


def train_step(
    run: Run, cfg: TrainConfig, images: torch.Tensor, keypoints: torch.Tensor, scales: torch.Tensor
) -> torch.Tensor:
    """One optimisation step at the rate last set, on a batch (images, keypoints, frame scales) already on
    the device; returns (loss, scoremap, locref) on the device."""
    with run.rt.autocast():
        scoremap_logits, locref_pred = run.network(images)
    targets = make_targets(keypoints, scoremap_logits.shape[-2:], cfg.pos_dist_thresh * scales)
    loss, scoremap_loss, locref_loss = pose_loss(scoremap_logits, locref_pred, *targets, cfg.locref_weight)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return torch.stack([loss, scoremap_loss, locref_loss]).detach()


def resume(run: Run, snapshots: Path, identity: dict, defines: dict) -> int:
    """Load the newest readable snapshot of this cell into `run`; the iteration to go on from (0: none).

    Snapshots of another cell are refused; snapshots of this cell made with other settings, another network,
    other ImageNet weights, in another precision or from another cache (`defines`) are deleted and training
    starts over, so a rerun never passes old weights off as new, nor a hybrid of two precisions as either; a new
    start removes an earlier model of the cell, its learning-curve weights and its evaluation, which no longer
    describe the cell.
    """
    state = latest_snapshot(snapshots)
    if state is None:
        remove_old_results(snapshots.parent)
        return 0
    written_for = state.get("identity", identity)
    if written_for != identity:
        raise InputError(
            f"{state['path']} was written for {written_for}, not {identity}; use another output folder "
            "or delete its snapshots"
        )
    if state.get("defines") != defines:
        changed = differences(state.get("defines") or {}, defines)
        log.warning("%s: %s changed since the snapshots were made; starting over", snapshots, ", ".join(changed))
        for old in snapshots.glob("snapshot-*.pt"):
            old.unlink()
        remove_old_results(snapshots.parent)
        return 0
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    log.info("resuming from %s at iteration %d", state["path"], state["iteration"])
    return state["iteration"]


def differences(old: dict, new: dict) -> list[str]:
    """The names of what differs between two `defines` records, e.g. ['settings.ilr', 'cache']."""
    names = []
    for key in sorted(set(old) | set(new)):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            names += [f"{key}.{name}" for name in differences(old[key], new[key])]
        elif old.get(key) != new.get(key):
            names.append(key)
    return names


def snapshot_path(snapshots: Path, iteration: int) -> Path:
    return snapshots / f"snapshot-{iteration:07d}.pt"


def save_snapshot(run: Run, done: int, identity: dict, defines: dict, snapshots: Path) -> None:
    """Everything a resumed run needs to go on exactly; only the newest `KEEP_SNAPSHOTS` stay."""
    state = {
        "iteration": done,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng_state(),
        "identity": identity,
        "defines": defines,
    }
    save_atomic(state, snapshot_path(snapshots, done))
    keep_recent_snapshots(snapshots)


def write_settings(cfg: TrainConfig, run: Run, cache: Cache, path: Path, graphed: bool) -> dict:
    """The run's settings, with what they resolved to on this machine, as evaluation and readers need them:
    the ImageNet weights by their file's sha256, which pins a hub tag's or a package's revision too."""
    rt = run.rt
    settings = {
        **dataclasses.asdict(cfg),
        "backbones_table": str(Path(cfg.backbones_table).resolve()),  # evaluation may run from another folder
        "cache_fingerprint": cache.fingerprint,
        "bodyparts": cache.bodyparts,
        "device_resolved": str(rt.device),
        "amp_dtype": str(rt.amp_dtype),  # what `amp` resolved to on this device
        "cuda_graphs_used": graphed,  # what `cuda_graphs` resolved to
        "validation_horses": cache.validation_individuals(cfg.split, cfg.validation_individuals)
        if cfg.validation_individuals
        else [],
        "torch": torch.__version__,
        "weights_file": None if run.weights is None else str(run.weights),
        "weights_sha256": run.weights_sha256,
        "architecture": run.architecture,  # evaluation builds this network, and refuses a table that changed it
    }
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=2))
    return settings


def remove_old_results(out: Path) -> None:
    """An earlier model in a cell's folder (its model.pt and learning-curve weights) and what evaluating it wrote,
    removed as a new model starts, so a retrain that fails leaves the cell missing, never another model's results."""
    curve = sorted((out / "snapshots").glob("weights-*.pt"))
    old = [path for path in (out / "model.pt", *curve, *(out / name for name in EVALUATIONS)) if path.exists()]
    if old:
        names = ", ".join(str(path.relative_to(out)) for path in old)
        log.warning("%s: %s made for an earlier model of this cell; removed before training a new one", out, names)
    for path in old:
        path.unlink()


def trained_for(path: Path) -> dict | None:
    """What a cell's model.pt or snapshot records it was trained for (its `defines`), read without its tensors;
    None for a model.pt from before it recorded that, or a file that cannot be read (its own job says why)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("defines")
    except Exception:  # a truncated or corrupted file fails in many ways
        return None


def training_rows(cache: Cache, cfg: TrainConfig) -> np.ndarray:
    """The cell's training frames; none is an error, fewer than a batch a warning."""
    rows = cache.frames(cfg.split, cfg.fraction, TRAIN, held_out=cfg.validation_individuals)
    if len(rows) == 0:
        raise InputError(f"{cfg.cache}: split {cfg.split} at fraction {cfg.fraction}% has no training frames")
    if cfg.batch_size > len(rows):
        log.warning(
            "batch size %d is larger than the %d training frames of split %d at %d%%: every batch repeats frames",
            cfg.batch_size,
            len(rows),
            cfg.split,
            cfg.fraction,
        )
    return rows


def batches(cache: Cache, rows: np.ndarray, cfg: TrainConfig, rt: Runtime, start: int, workers: int) -> DataLoader:
    """The run's augmented batches from iteration `start` on, as the seed orders them (so a resumed run
    sees the batches it would have seen)."""
    return DataLoader(
        PoseDataset(cache, rows, cfg.augmentation, global_scale=cfg.global_scale),
        batch_sampler=RunSampler(len(rows), cfg.batch_size, cfg.seed, start, cfg.iterations),
        num_workers=workers,
        pin_memory=rt.pin_memory,
        prefetch_factor=4 if workers else None,
    )


@dataclass
class CellTraining:
    """One cell's training in progress: its run, where it is, and what it has not logged yet. A job trains one
    or, fused (`oodpose.fused`), several; nothing here is shared between cells."""

    cfg: TrainConfig
    run: Run
    step: Callable
    identity: dict
    defines: dict
    settings: dict
    cache: Cache
    rows: np.ndarray  # its training frames in the cache: what its batches are drawn from
    iteration: int  # the next iteration to run
    stream: torch.cuda.Stream | None  # on CUDA, the cell's own stream, so that fused cells overlap
    batches: Iterator | None = None  # from `open_batches`, once the cell knows where it resumes
    pending: list[dict] = dataclasses.field(default_factory=list)
    saved_at: int = -1  # the iteration of its newest resume snapshot
    error: str | None = None  # why it stopped early: its loss was not finite
    last_loss: float | None = None  # its latest logged loss, for the progress bar
    tick: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def finished(self) -> bool:
        return self.iteration >= self.cfg.iterations


def start_cell(config: TrainConfig) -> CellTraining:
    """Set up one cell (`set_up_cell`) and open its batches with its runtime's loader workers."""
    cell = set_up_cell(config)
    open_batches(cell, cell.run.rt.workers, {})
    return cell


def set_up_cell(config: TrainConfig) -> CellTraining:
    """One cell's data, network and optimiser, resumed from its newest snapshot if it has one. Its batches are
    opened apart (`open_batches`): a fused job shares its loader workers among the loaders its cells read, and
    which loader a cell reads depends on where it resumes."""
    backbone = get_backbone(config.backbone, config.backbones_table)  # the job reads its row once
    cfg = config.resolved(backbone)
    out, snapshots = Path(cfg.out), Path(cfg.out) / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(snapshots)  # snapshots a killed job was writing
    cache = Cache(cfg.cache)
    rows = training_rows(cache, cfg)
    run = build_run(cfg, len(cache.bodyparts), backbone)
    identity = {"backbone": cfg.backbone, "init": cfg.init, "split": cfg.split, "fraction": cfg.fraction}
    defines = {
        **params_record(cfg, backbone),
        "weights_sha256": run.weights_sha256,
        "precision": run.rt.precision,  # a device of another kind (bf16, fp16, TF32, CPU) starts over
        "cache": cache.fingerprint,
    }
    start = resume(run, snapshots, identity, defines)
    rewind_log(out / TRAIN_LOG, start)
    step = step_function(run, cfg)
    settings = write_settings(cfg, run, cache, out / "settings.json", graphed=isinstance(step, GraphedStep))
    run.model.train()
    return CellTraining(cfg, run, step, identity, defines, settings, cache, rows, start, own_stream(run.rt))


def batch_source(cell: CellTraining) -> tuple:
    """What decides the batches a cell draws from its next iteration on: cells alike (a search's schedules in
    one split, resumed at one iteration) draw the very same ones."""
    cfg = cell.cfg
    return (cfg.cache, cfg.split, cfg.fraction, cfg.validation_individuals, *data_settings(cfg), cell.iteration)


def open_batches(cell: CellTraining, workers: int, loaders: dict) -> None:
    """Give `cell` its batches: where a cell in `loaders` draws the very same ones, a copy of that cell's tee (it
    gets every batch that one gets); else a new loader of `workers` workers, kept in `loaders` by its source."""
    source = batch_source(cell)
    if source in loaders:
        cell.batches = copy.copy(loaders[source])
    else:
        loader = batches(cell.cache, cell.rows, cell.cfg, cell.run.rt, cell.iteration, workers)
        cell.batches = loaders[source] = itertools.tee(loader, 1)[0]


def params_record(cfg: TrainConfig, backbone: Backbone) -> dict:
    """The part of a cell's record (`defines`) that its training job's params give (resolved `cfg`, its backbone):
    changed, Snakemake reruns the job. The rest (weights, precision, cache) comes from the machine and inputs."""
    return {"settings": result_settings(cfg), "architecture": backbone.architecture}


def data_settings(cfg: TrainConfig) -> tuple:
    """What, besides the frames, decides a cell's batches (`batches`, RunSampler)."""
    return cfg.batch_size, cfg.seed, cfg.iterations, cfg.augmentation, cfg.global_scale


def own_stream(rt: Runtime) -> torch.cuda.Stream | None:
    """On CUDA, a stream for one cell's work, after everything queued so far (its weights' copies, its resume)."""
    if rt.device.type != "cuda":
        return None
    stream = torch.cuda.Stream(rt.device)
    stream.wait_stream(torch.cuda.current_stream(rt.device))
    return stream


def train(config: TrainConfig) -> Path:
    """Train (or resume) one cell; returns the path of the final ``model.pt``."""
    cell = start_cell(config)
    train_cells([cell])
    if cell.error:
        raise FloatingPointError(cell.error)
    return save_model(cell)


def train_cells(cells: list[CellTraining]) -> None:
    """Train `cells` to their last iteration, each in turn at every round (on CUDA, each on its own stream, so
    that one cell's kernels run while the host launches the next's). A cell whose loss is not finite stops
    there, with its reason in `cell.error`, and the others go on; SIGTERM snapshots every cell, then exits."""
    stop = StopRequest()
    active = [c for c in cells if not c.finished]
    total = sum(c.cfg.iterations for c in cells)
    names = ", ".join(f"split{c.cfg.split}_frac{c.cfg.fraction}" for c in cells)
    desc = f"train {cells[0].cfg.backbone}/{cells[0].cfg.init}" + (f" ({names})" if len(cells) > 1 else "")
    progress = tqdm(total=total, initial=sum(c.iteration for c in cells), desc=desc, mininterval=5)
    try:
        while active:
            train_round(active, stop)
            progress.update(len(active))
            show_losses(progress, cells)
            active = [c for c in active if not (c.finished or c.error)]
            if stop.requested:
                for cell in active:
                    with stream_of(cell):
                        snapshot(cell)
                log.warning("SIGTERM: snapshots written at iteration %s; rerun to resume", names_at(active))
                raise SystemExit(143)
    finally:
        progress.close()
        stop.restore()


def show_losses(progress: tqdm, cells: list[CellTraining]) -> None:
    """Each cell's latest logged loss beside the bar (in the rule log when it closes); no device wait."""
    shown = [f"{c.last_loss:.4f}" for c in cells if c.last_loss is not None]
    if shown:
        progress.set_postfix_str("loss=" + " ".join(shown), refresh=False)


def train_round(cells: list[CellTraining], stop: StopRequest) -> None:
    """One iteration of each cell, in turn, each on its own stream."""
    for cell in cells:
        with stream_of(cell):
            advance(cell, stop)


def stream_of(cell: CellTraining):
    return torch.cuda.stream(cell.stream) if cell.stream is not None else contextlib.nullcontext()


def names_at(cells: list[CellTraining]) -> str:
    return ", ".join(f"{c.iteration} ({c.out})" for c in cells)


def advance(cell: CellTraining, stop: StopRequest) -> None:
    """One iteration of one cell: the step, then its log, learning-curve weights and snapshot when due."""
    cfg, run = cell.cfg, cell.run
    iteration = cell.iteration
    images, keypoints, scales, _ = next(cell.batches)
    lr = learning_rate(iteration, cfg.iterations, cfg.ilr, cfg.final_lr, cfg.cycles)
    images = images.to(run.rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    set_learning_rate(run, lr)
    losses = cell.step(images, *(t.to(run.rt.device, non_blocking=True) for t in (keypoints, scales)))
    now = time.perf_counter()
    cell.pending.append({"iteration": iteration, "lr": lr, "seconds": now - cell.tick, "losses": losses})
    cell.tick, cell.iteration = now, iteration + 1
    done = cell.iteration
    snapshot_due = done % cfg.snapshot_every == 0 or done == cfg.iterations or stop.requested
    if snapshot_due or done % LOG_EVERY == 0 or done in cfg.curve_iterations:
        write_log(cell)
        if cell.error:
            return
    # snapshots: learning-curve weights, then resume state
    if done in cfg.curve_iterations:
        weights = {"iteration": done, "model": run.model.state_dict()}
        save_atomic(weights, cell.out / "snapshots" / f"weights-{done:07d}.pt")
    if snapshot_due:
        snapshot(cell)


def write_log(cell: CellTraining) -> None:
    """The log rows of the iterations not logged yet (their losses reach the host only here, in one transfer);
    a non-finite loss stops the cell, before any snapshot, so NaN weights are never saved."""
    logged = log_rows(cell.pending)
    append_log(cell.out / TRAIN_LOG, logged)  # the log shows the losses up to a failure, too
    cell.pending = []
    cell.last_loss = logged[-1]["loss"]
    cell.error = first_non_finite(logged)
    if cell.error:
        log.error("%s: %s", cell.out, cell.error)
        cell.batches = iter(())  # a stopped reader of a shared loader must not hold its batches


def snapshot(cell: CellTraining) -> None:
    """The cell's resume state at its iteration, after its log (a log row never goes missing on a resume)."""
    if cell.pending:
        write_log(cell)
    if not cell.error and cell.saved_at != cell.iteration:
        save_snapshot(cell.run, cell.iteration, cell.identity, cell.defines, cell.out / "snapshots")
        cell.saved_at = cell.iteration


def save_model(cell: CellTraining) -> Path:
    """The cell's final weights and settings, which evaluation reads."""
    final = cell.out / "model.pt"
    with stream_of(cell):  # after the cell's last step
        model = {
            "iteration": cell.cfg.iterations,
            "model": cell.run.model.state_dict(),
            "settings": cell.settings,
            "defines": cell.defines,
        }
        save_atomic(model, final)
    return final


def log_rows(pending: list[dict]) -> list[dict]:
    """Log rows of the iterations in `pending`; their losses reach the host in one transfer.

    Reading each loss as it is computed would make the host wait for the device every iteration.
    """
    values = torch.stack([p["losses"] for p in pending]).tolist()
    return [
        {**p, "loss": loss, "scoremap_loss": scoremap_loss, "locref_loss": locref_loss}
        for p, (loss, scoremap_loss, locref_loss) in zip(pending, values)
    ]


def first_non_finite(rows: list[dict]) -> str | None:
    """Why training must stop at the first non-finite loss, naming its iteration and learning rate; else None."""
    for row in rows:
        if not math.isfinite(row["loss"]):
            return (
                f"loss is {row['loss']} at iteration {row['iteration']} (learning rate {row['lr']:g}); "
                "lower the initial learning rate (--ilr) or check the labels"
            )
    return None


def append_log(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)
