"""Train one cell of the study: one backbone, init, split and training fraction.

One readable loop with explicit state. Adam, batch 8, iteration-based; the learning rate follows a
cosine from ILR to DT over the run (from scratch: cosine with warm restarts), as a pure function of
the iteration, so the iteration is the scheduler's whole state. Every `snapshot_every` iterations
the model, optimiser, RNG states and iteration are written atomically; a run that finds snapshots
resumes from the newest readable one, and the batches it then draws are the ones an uninterrupted
run would have drawn (each sample's order and augmentation seed derive from the seed and its
position in the run). SIGTERM (SLURM pre-emption) writes a snapshot before exiting.

Outputs in `out`: ``model.pt`` (final weights and settings), ``snapshots/`` (resume state and the
weights at `curve_iterations`, for learning curves), ``train_log.csv`` and ``settings.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from oodpose.atomic import atomic_file
from oodpose.backbones import DEFAULT_TABLE, get_backbone
from oodpose.data.cache import Cache
from oodpose.data.dataset import GLOBAL_SCALE, PoseDataset
from oodpose.device import cxx_compiler, runtime
from oodpose.errors import InputError
from oodpose.models import build_model
from oodpose.targets import LOCREF_WEIGHT, POS_DIST_THRESH, make_targets, pose_loss

log = logging.getLogger(__name__)
LOG_FIELDS = ["iteration", "loss", "scoremap_loss", "locref_loss", "lr", "seconds"]
KEEP_SNAPSHOTS = 2
LOG_EVERY = 100  # iterations between log writes (and the only host-device waits between snapshots)


@dataclass
class TrainConfig:
    """Everything that defines a training run; unset learning-rate fields come from the backbone table."""

    cache: str
    out: str
    backbone: str
    init: str = "imagenet"
    split: int = 1
    fraction: int = 50
    iterations: int = 30000
    ilr: float | None = None
    dt: float | None = None
    cycles: int | None = None  # cosine cycles (restarts + 1); from scratch the table's, else 1
    batch_size: int = 8
    snapshot_every: int = 5000
    curve_iterations: list[int] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    workers: int | None = None
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    compile: bool = False  # torch.compile the network: minutes of warm-up; measured gains in bench/README.md
    weights: str | None = None
    backbones_table: str = str(DEFAULT_TABLE)
    global_scale: float = GLOBAL_SCALE
    pos_dist_thresh: float = POS_DIST_THRESH
    locref_weight: float = LOCREF_WEIGHT

    def resolved(self) -> TrainConfig:
        """A copy with the schedule filled in from the backbone table."""
        b = get_backbone(self.backbone, self.backbones_table)
        scratch = self.init == "scratch"
        return dataclasses.replace(
            self,
            ilr=self.ilr if self.ilr is not None else (b.scratch_ilr if scratch else b.pretrained_ilr),
            dt=self.dt if self.dt is not None else (b.scratch_dt if scratch else b.pretrained_dt),
            cycles=self.cycles if self.cycles is not None else (int(b.scratch_cycles) if scratch else 1),
        )


def learning_rate(iteration: int, total: int, ilr: float, dt: float, cycles: int = 1) -> float:
    """Cosine decay from `ilr` to `dt`, restarted `cycles` times over `total` iterations."""
    length = math.ceil(total / cycles)
    progress = (iteration % length) / length
    return dt + 0.5 * (ilr - dt) * (1 + math.cos(math.pi * progress))


class RunSampler(Sampler):
    """Batches of (row position, augmentation seed) for iterations [start, stop).

    Sample k of the run (k = iteration x batch + slot) is position k mod n of a per-epoch seeded
    permutation, augmented with seed (seed, k): a resumed run draws exactly what an unbroken one would.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        for iteration in range(self.start, self.stop):
            yield [self.sample(k) for k in range(iteration * self.batch_size, (iteration + 1) * self.batch_size)]

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
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


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
        rows = [r for r in csv.DictReader(f) if int(r["iteration"]) < iteration]
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


def train(config: TrainConfig) -> Path:
    """Train (or resume) one cell; returns the path of the final ``model.pt``."""
    cfg = config.resolved()
    out = Path(cfg.out)
    snapshots = out / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    rt = runtime(cfg.device, cfg.threads, cfg.workers, cfg.amp)
    cache = Cache(cfg.cache)
    rows = cache.frames(cfg.split, cfg.fraction, "train")
    if len(rows) == 0:
        raise InputError(f"{cfg.cache}: split {cfg.split} at fraction {cfg.fraction}% has no training frames")
    backbone = get_backbone(cfg.backbone, cfg.backbones_table)
    model = build_model(backbone, len(cache.bodyparts), cfg.init, cfg.weights, cfg.seed)
    model = model.to(rt.device, memory_format=torch.channels_last)
    if cfg.compile and rt.device.type == "cpu" and not shutil.which(cxx_compiler()):
        raise InputError(
            f"compile on CPU needs a C++ compiler: {cxx_compiler()!r} ($CXX, else g++) is not on PATH; "
            "install one, or train without --compile (config: training: compile: false)"
        )
    network = torch.compile(model) if cfg.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.ilr, fused=rt.device.type == "cuda")  # one kernel
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)

    start = 0
    state = latest_snapshot(snapshots)
    identity = {"backbone": cfg.backbone, "init": cfg.init, "split": cfg.split, "fraction": cfg.fraction}
    if state is not None:
        written_for = state.get("identity", identity)
        if written_for != identity:
            raise InputError(
                f"{state['path']} was written for {written_for}, not {identity}; use another output folder "
                "or delete its snapshots"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start = state["iteration"]
        log.info("resuming from %s at iteration %d", state["path"], start)
        print(f"resuming from {state['path']} at iteration {start}", flush=True)
    log_path = out / "train_log.csv"
    rewind_log(log_path, start)
    settings = {
        **dataclasses.asdict(cfg),
        "device_resolved": str(rt.device),
        "amp": str(rt.amp_dtype),
        "imagenet_top1": backbone.imagenet_top1,
        "torch": torch.__version__,
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=2))

    dataset = PoseDataset(cache, rows, augment=True, global_scale=cfg.global_scale)
    loader = DataLoader(
        dataset,
        batch_sampler=RunSampler(len(rows), cfg.batch_size, cfg.seed, start, cfg.iterations),
        num_workers=rt.workers,
        pin_memory=rt.pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if rt.workers else None,
    )
    stop = StopRequest()
    pending: list[dict] = []
    model.train()
    progress = tqdm(
        total=cfg.iterations,
        initial=start,
        desc=f"train {cfg.backbone}/{cfg.init}",
        mininterval=5,
        unit="it",
        dynamic_ncols=False,
    )
    tick = time.perf_counter()
    try:
        for iteration, (images, keypoints, _) in enumerate(loader, start=start):
            lr = learning_rate(iteration, cfg.iterations, cfg.ilr, cfg.dt, cfg.cycles)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            keypoints = keypoints.to(rt.device, non_blocking=True)
            with rt.autocast():
                scoremap_logits, locref_pred = network(images)
            targets = make_targets(keypoints, scoremap_logits.shape[-2:], cfg.pos_dist_thresh)
            loss, scoremap_loss, locref_loss = pose_loss(scoremap_logits, locref_pred, *targets, cfg.locref_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            now = time.perf_counter()
            losses = torch.stack([loss, scoremap_loss, locref_loss]).detach()
            pending.append({"iteration": iteration, "lr": lr, "seconds": now - tick, "losses": losses})
            tick = now
            progress.update(1)
            done = iteration + 1
            snapshot_due = done % cfg.snapshot_every == 0 or done == cfg.iterations or stop.requested
            if snapshot_due or done % LOG_EVERY == 0 or done in cfg.curve_iterations:
                rows = log_rows(pending)
                append_log(log_path, rows)  # the log shows the losses up to a failure, too
                pending = []
                check_finite(rows)  # before any snapshot: NaN weights are never saved
                progress.set_postfix(loss=f"{rows[-1]['loss']:.4f}", refresh=False)
            if done in cfg.curve_iterations:
                save_atomic({"iteration": done, "model": model.state_dict()}, snapshots / f"weights-{done:07d}.pt")
            if snapshot_due:
                save_atomic(
                    {
                        "iteration": done,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "rng": rng_state(),
                        "identity": identity,
                    },
                    snapshots / f"snapshot-{done:07d}.pt",
                )
                keep_recent_snapshots(snapshots)
            if stop.requested:
                print(f"SIGTERM: snapshot written at iteration {done}; rerun to resume", flush=True)
                raise SystemExit(143)
    finally:
        progress.close()
        stop.restore()
    final = out / "model.pt"
    save_atomic({"iteration": cfg.iterations, "model": model.state_dict(), "settings": settings}, final)
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


def check_finite(rows: list[dict]) -> None:
    """Stop at the first non-finite loss, naming its iteration and learning rate."""
    for row in rows:
        if not math.isfinite(row["loss"]):
            raise FloatingPointError(
                f"loss is {row['loss']} at iteration {row['iteration']} (learning rate {row['lr']:g}); "
                "lower the initial learning rate (--ilr) or check the labels"
            )


def append_log(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)
