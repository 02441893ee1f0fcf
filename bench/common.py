"""Shared helpers of the benchmarks: the machine description and running the workflow in a scratch folder."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "config" / "config.yaml"  # the paper's study: what its GPU-hours are projected for
FAMILY_PROBES = {"mobilenetv2": "mobilenetv2_035", "resnet": "resnet50", "efficientnet": "efficientnet_b3"}  # on GPU
MATCH_TOLERANCE = 1e-3  # relative: two runs' losses agree within this, or within a run's noise against itself


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_arguments(parser, published: str):
    """The --tiny, --keep and --publish options of a benchmark that runs the workflow and may publish the run
    (`published`: what --publish copies); parsed, with a dry run that asks to publish refused by name."""
    parser.add_argument("--tiny", action="store_true", help="dry run: plan the jobs, run none (CI)")
    parser.add_argument("--keep", help="run in this folder and keep its results")
    parser.add_argument("--publish", help=f"a folder for the run's {published} and report; DEST.md: its page")
    args = parser.parse_args()
    if args.publish and args.tiny:
        parser.error(f"--publish {args.publish}: a --tiny dry run has nothing to publish; drop one of the two")
    return args


def publish_run(files: list[Path], report: dict, dest: Path, page) -> None:
    """Copy a run's `files` into the folder `dest` with the report that says how they were made (run.json), then
    write its page `dest`.md with `page(dest)`, so that page, files and numbers change together."""
    import json

    from oodpose.atomic import atomic_file

    for path in files:
        with atomic_file(dest / path.name) as tmp:
            shutil.copyfile(path, tmp)
    with atomic_file(dest / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(dest.with_suffix(".md")) as tmp:
        Path(tmp).write_text(page(dest))


def paper_study() -> tuple[list[str], dict[str, int], int]:
    """The paper study's backbones, iterations per init, and cells per backbone and init (splits x fractions)."""
    from oodpose.paper import study_backbones

    config = yaml.safe_load(PAPER_CONFIG.read_text())
    study = config["study"]
    backbones = study_backbones(study["backbones"])
    return backbones, config["training"]["iterations"], len(study["splits"]) * len(study["fractions"])


def study_gpu_hours(minutes_per_1k_iter: dict[str, float]) -> float:
    """The paper study's training GPU-hours at each backbone's minutes per 1k iterations."""
    backbones, iterations, cells = paper_study()
    return sum(minutes_per_1k_iter[b] * n / 1000 * cells / 60 for b in backbones for n in iterations.values())


def workflow_dir(root: Path) -> Path:
    """A scratch working directory holding a copy of the project's config and profiles."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in ("config", "profiles"):
        shutil.copytree(REPO / folder, root / folder, dirs_exist_ok=True)
    return root


def timed_snakemake(workdir: Path, *args: str) -> float:
    """Wall seconds of one Snakemake run (which must succeed)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def synthetic_cache(root: Path, frames: int, individuals: int = 12) -> Path:
    """A prepared synthetic Horse-30 of `frames` frames at 288x162 (reused when already there), drawn on every
    core: on a lent GPU machine, the GPU check's 8,100-frame cell waits for it."""
    from oodpose.data.cache import prepare_cache
    from oodpose.data.synthetic import generate
    from oodpose.device import allocated_cpus
    from oodpose.settings import DatasetSettings, SyntheticSettings

    cache = root / f"cache-{frames}"
    if not (cache / "meta.json").exists():
        dataset = generate(
            root / f"dataset-{frames}",
            SyntheticSettings(n_individuals=individuals, n_frames=frames, n_train_individuals=max(1, individuals // 3)),
            workers=allocated_cpus(),
        )
        prepare_cache(dataset, cache, DatasetSettings(n_train_individuals=max(1, individuals // 3)))
    return cache


def train_seconds(cache: Path, out: Path, backbone: str, init: str, iterations: int, **options) -> list[float]:
    """Train one cell with `oodpose.train` and return its logged seconds per iteration."""
    import pandas as pd

    from oodpose.settings import TrainConfig
    from oodpose.train import train

    train(TrainConfig(cache=str(cache), out=str(out), backbone=backbone, init=init, iterations=iterations, **options))
    return pd.read_csv(out / "train_log.csv")["seconds"].tolist()


def bare_step(
    cache_path: Path,
    backbone: str,
    init: str,
    device: str = "cpu",
    threads: int = 2,
    channels_last: bool = True,
    compile: bool = False,
    amp: bool = True,
    cuda_graphs: bool = False,
    loop_canvases: int = 0,
):
    """One bare training step as a function: the training loop's own step (forward, targets, loss, backward,
    Adam; replayed from a CUDA graph with `cuda_graphs`) on batches of 8 already on `device`, without data
    loading, logging or snapshots.

    By default every call steps on one batch of the fixed `none` canvas. With `loop_canvases` = n, call k
    steps on the loop's own batch k mod n (split 1, 50 %, the default preset and seed), so that the step
    meets the same sequence of canvas sizes as the real loop: a like-for-like comparison with it.
    """
    from oodpose.data.cache import Cache
    from oodpose.settings import TrainConfig
    from oodpose.train import batches, build_run, set_learning_rate, step_function, training_rows

    options = dict(device=device, threads=threads, compile=compile, amp=amp, cuda_graphs=cuda_graphs, workers=0)
    cfg = TrainConfig(str(cache_path), "", backbone, init, iterations=max(1, loop_canvases), **options).resolved()
    cache = Cache(cache_path)
    run = build_run(cfg, len(cache.bodyparts))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    run.model.to(memory_format=fmt).train()
    if loop_canvases:
        loader = batches(cache, training_rows(cache, cfg), cfg, run.rt, 0, run.rt.workers)
    else:  # the canvas every batch of 'none' has
        loader = [first_batch(cache, cfg)]
    on_device = [
        (images.to(run.rt.device).contiguous(memory_format=fmt), keypoints.to(run.rt.device), scales.to(run.rt.device))
        for images, keypoints, scales, _ in loader
    ]
    set_learning_rate(run, cfg.ilr)
    step = step_function(run, cfg)
    source = itertools.cycle(on_device)
    return lambda: step(*next(source))


def first_batch(cache, cfg) -> tuple:
    """The first batch of 8 of the cell's training frames, unaugmented: (images, keypoints, scales, rows)."""
    from oodpose.data.dataset import PoseDataset
    from oodpose.train import training_rows

    return next(iter(torch.utils.data.DataLoader(PoseDataset(cache, training_rows(cache, cfg)), batch_size=8)))


def scratch_config(cache_path: Path, backbone: str, device: str):
    """The settings of the vmapped cells and of each cell's own step, which `vmap_gradient_difference` compares."""
    from oodpose.settings import TrainConfig

    return TrainConfig(str(cache_path), "", backbone, "scratch", device=device, workers=0).resolved()


def vmapped_step(cache_path: Path, backbone: str, k: int, device: str = "cpu", cuda_graphs: bool = False):
    """`k` cells' bare steps (`bare_step`, from scratch, seeds 0 .. k-1) as one, PyTorch's "model ensembling":
    the cells' parameters stacked (`torch.func.stack_module_state`), the network called under `vmap` (its
    convolutions become grouped ones), one Adam over the stacked tensors (elementwise, so each cell's update
    stays its own; one rate for all here). Returns (step, stacked parameters, the cells' runs before any step).

    Frozen batch norm only: under vmap, trained running statistics (MobileNetV2) are not each cell's own
    (PyTorch's "Patching Batch Norm" page; `vmap_gradient_difference` measures it)."""
    import copy
    import dataclasses

    from torch.func import functional_call, stack_module_state, vmap

    from oodpose.cuda_graphs import GraphedStep
    from oodpose.data.cache import Cache
    from oodpose.targets import make_targets, pose_loss
    from oodpose.train import build_run

    cfg = scratch_config(cache_path, backbone, device)
    cache = Cache(cache_path)
    runs = [build_run(dataclasses.replace(cfg, seed=seed), len(cache.bodyparts)) for seed in range(k)]
    for run in runs:
        run.model.train()
    alone = copy.deepcopy(runs)
    params, buffers = stack_module_state([run.model for run in runs])
    network, rt, cuda = copy.deepcopy(runs[0].model).to("meta"), runs[0].rt, device == "cuda"
    lr = torch.tensor(cfg.ilr, device=rt.device) if cuda else cfg.ilr
    optimizer = torch.optim.Adam(params.values(), lr=lr, fused=cuda, capturable=cuda)
    images, keypoints, scales, _ = first_batch(cache, cfg)
    with torch.no_grad():
        map_size = runs[0].model(images.to(rt.device))[0].shape[-2:]
    batch = [torch.stack([t] * k).to(rt.device) for t in (images, keypoints, scales)]  # each cell its own copy

    def cell_loss(p, b, x, scoremap, locref, mask):
        with rt.autocast():
            logits, pred = functional_call(network, (p, b), (x,))
        return pose_loss(logits, pred, scoremap, locref, mask, cfg.locref_weight)[0]

    def step(x, kp, sc):
        targets = make_targets(kp.flatten(0, 1), map_size, cfg.pos_dist_thresh * sc.flatten(0, 1))
        losses = vmap(cell_loss)(params, buffers, x, *(t.unflatten(0, (k, -1)) for t in targets))
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        return losses.detach()

    stepped = GraphedStep(step) if cuda_graphs and cuda else step
    return (lambda: stepped(*batch)), params, alone


def vmap_gradient_difference(cache_path: Path, backbone: str, k: int, device: str = "cpu") -> float:
    """The largest relative difference between a cell's gradients in one vmapped step and in its own step
    (max |g_vmap - g_alone| / max |g_alone|, over its parameter tensors and the `k` cells)."""
    from oodpose.data.cache import Cache
    from oodpose.train import set_learning_rate, train_step

    step, params, alone = vmapped_step(cache_path, backbone, k, device)
    step()
    cfg = scratch_config(cache_path, backbone, device)
    images, keypoints, scales, _ = first_batch(Cache(cache_path), cfg)
    worst = 0.0
    for cell, run in enumerate(alone):
        set_learning_rate(run, cfg.ilr)
        train_step(run, cfg, *(t.to(run.rt.device) for t in (images, keypoints, scales)))
        for name, p in run.model.named_parameters():
            scale = p.grad.abs().max().clamp(min=1e-30)
            worst = max(worst, ((params[name].grad[cell] - p.grad).abs().max() / scale).item())
    return worst


def step_seconds(step, iterations: int) -> list[float]:
    """Seconds of each of `iterations` calls of a CPU `step` (the first holds any compilation)."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def bare_step_seconds(cache_path: Path, backbone: str, init: str, iterations: int, threads: int, **options):
    """Seconds of each bare CPU training step (`bare_step`)."""
    return step_seconds(bare_step(cache_path, backbone, init, "cpu", threads, **options), iterations)


def loader_seconds(cache_path: Path, backbone: str, init: str, iterations: int, threads: int) -> list[float]:
    """Seconds the training loop's loader takes for each of its first `iterations` batches, without any step."""
    from oodpose.data.cache import Cache
    from oodpose.device import runtime
    from oodpose.settings import TrainConfig
    from oodpose.train import batches, training_rows

    cfg = TrainConfig(str(cache_path), "", backbone, init, iterations=iterations, threads=threads, workers=0)
    cache = Cache(cache_path)
    loader = iter(batches(cache, training_rows(cache, cfg), cfg, runtime("cpu", threads, 0), 0, 0))
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        next(loader)
        times.append(time.perf_counter() - start)
    return times


def in_fresh_process(function, *args, **kwargs):
    """`function(*args, **kwargs)` in a new Python process, whose caches (oneDNN's plan per input shape, the
    allocator's blocks) start empty, as a training job's do; `function` must be importable."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()
