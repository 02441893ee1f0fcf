"""The CUDA path, measured on one GPU: CUDA graphs, several cells per GPU, correctness, the loader
feed, torch.compile, and the projected GPU-hours of the paper's study.

- graphs: for MobileNetV2-0.35, ResNet-50 and EfficientNet-B3 (bf16, batch 8 on the 600-frame
  synthetic canvas): steps per second per GPU of the bare step eager (one cell) and replayed from CUDA
  graphs, for 1, 2, 4 and 8 cells at once, as separate processes (Snakemake's packed jobs) and, for
  comparison, as CUDA streams in one process;
- match: ResNet-50 from scratch, 200 iterations of the real loop, eager twice and graphed: the largest
  relative difference of the losses (graphed vs eager, and eager vs eager as the noise);
- cells: train + evaluate two cells (MobileNetV2-0.35 and ResNet-50 from scratch, 1000 iterations),
  eager and graphed;
- hours: the paper's 156 training jobs: each backbone's bare step, eager and graphed, x 30k
  (pretrained) or 180k (scratch) iterations x 3 splits x 2 fractions; and at the best packing measured
  for its family (gpu_hours.csv);
- loader, compile: the earlier single-cell loader ratio and torch.compile parts;
- fused: the real loop (loaders with their share of 8 workers, logs, graphed steps) training K = 1, 2, 6
  and 12 cells of MobileNetV2-0.35, ResNet-50 and EfficientNet-B3 in one process (`oodpose.fused`), each
  on its own CUDA stream, against one eager cell: steps/s per GPU, whether a cell's losses fused stay its
  losses alone, and the paper study's GPU-hours by the backbone table divided by each family's best fused
  gain (`bench/gpu_check.py --only fused` runs it in child processes within a time budget); `engines`,
  beside it (`--only engines` there): the bare steps of K cells as graphed streams vs as one vmapped step
  over stacked parameters.

The report is rewritten to OUT_DIR/report.json after each part, so a cut run keeps what it measured.
Durations on an H100: graphs 9 minutes (each process autotunes cuDNN for its network), hours over 3.

    python bench/gpu.py OUT_DIR [--tiny] [--only graphs hours match cells loader compile fused]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    FAMILY_PROBES,
    MATCH_TOLERANCE,
    bare_step,
    machine,
    paper_study,
    study_gpu_hours,
    synthetic_cache,
    train_seconds,
    vmap_gradient_difference,
    vmapped_step,
)

from oodpose import paper  # noqa: E402
from oodpose.atomic import atomic_file  # noqa: E402
from oodpose.evaluate import evaluate  # noqa: E402

PAPER = list(paper.BACKBONES)
CELLS = [2, 4, 8]
WINDOW_S = 4.0  # seconds every packed process steps in, all at once


def device_seconds(step, iterations: int, warmup: int = 5) -> float:
    """Wall seconds per call of a CUDA `step`, over `iterations` calls after `warmup`, waiting only at the ends."""
    wait = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None  # the CPU dry run waits for nothing
    for _ in range(warmup):
        step()
    wait()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    wait()
    return (time.perf_counter() - start) / iterations


def loop_seconds(cache_path: Path, out: Path, n: int, **options) -> float:
    """Wall seconds per iteration of the real ResNet-50 loop over iterations 20 .. 20 + n: after the warm-up,
    before the final snapshot (written every 5,000 iterations in a study)."""
    seconds = train_seconds(cache_path, out, "resnet50", "scratch", n + 21, snapshot_every=n + 21, **options)
    return sum(seconds[20 : 20 + n]) / n


def graphed_workers(cache_path: Path, backbone: str, n: int, folder: Path) -> float:
    """Steps per second per GPU of `n` processes, each stepping its own graphed bare step in one window."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, str(folder), "--worker", str(cache_path), backbone]
    procs = [subprocess.Popen([*command, str(i)]) for i in range(n)]
    failed = RuntimeError(f"a worker of {backbone} x {n} failed")
    while len(list(folder.glob("ready-*"))) < n:
        if any(p.poll() not in (None, 0) for p in procs):
            raise failed
        time.sleep(0.05)
    with atomic_file(folder / "go") as tmp:  # a worker never reads a half-written start time
        tmp.write_text(str(time.time() + 0.5))
    if any(p.wait() != 0 for p in procs):
        raise failed
    counts = [json.loads((folder / f"steps-{i}.json").read_text()) for i in range(n)]
    return sum(c["steps"] / c["seconds"] for c in counts)


def worker(cache_path: Path, backbone: str, folder: Path, index: int) -> None:
    """One packed process: ready a graphed bare step, wait for the common start, step for `WINDOW_S`."""
    step = bare_step(cache_path, backbone, "scratch", "cuda", cuda_graphs=True)
    for _ in range(3):  # eager, capture, replay
        step()
    torch.cuda.synchronize()
    (folder / f"ready-{index}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
    start = float((folder / "go").read_text())
    while time.time() < start:
        pass
    steps = 0
    while time.time() < start + WINDOW_S:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        steps += 5
    (folder / f"steps-{index}.json").write_text(json.dumps({"steps": steps, "seconds": time.time() - start}))


def graphed_streams(cache_path: Path, backbone: str, n: int, iterations: int, device: str = "cuda") -> float:
    """Steps per second per GPU of `n` graphed bare steps in this process, each on its own CUDA stream (on the
    CPU, for the dry run: eager steps in turn)."""
    cuda = device == "cuda"
    steps = [bare_step(cache_path, backbone, "scratch", device, cuda_graphs=cuda) for _ in range(n)]
    streams = [torch.cuda.Stream() if cuda else None for _ in range(n)]

    def all_cells():
        for step, stream in zip(steps, streams):
            with torch.cuda.stream(stream):
                step()

    return n / device_seconds(all_cells, iterations, warmup=3)


def packing(cache_path: Path, root: Path, backbone: str, n: int) -> dict:
    """Steps per second per GPU: one cell eager and graphed, then 2, 4, 8 graphed cells as processes and streams."""
    eager = 1 / device_seconds(bare_step(cache_path, backbone, "scratch", "cuda"), n)
    graphed = 1 / device_seconds(bare_step(cache_path, backbone, "scratch", "cuda", cuda_graphs=True), n)
    result = {"eager_1": eager, "graphed_1": graphed}
    for cells in CELLS:
        folder = root / f"workers-{backbone}-{cells}"
        result[f"processes_{cells}"] = graphed_workers(cache_path, backbone, cells, folder)
        result[f"streams_{cells}"] = graphed_streams(cache_path, backbone, cells, n)
    return result


def loss_match(
    cache_path: Path, root: Path, iterations: int, backbone: str = "resnet50", init: str = "scratch", device="cuda"
) -> dict:
    """The real loop's losses: graphed vs eager, and eager vs eager (the noise)."""
    losses = {}
    for name, graphs in (("eager", False), ("eager_again", False), ("graphed", True)):
        out = root / f"match-{name}"
        options = dict(snapshot_every=iterations, device=device, cuda_graphs=graphs)
        train_seconds(cache_path, out, backbone, init, iterations, **options)
        losses[name] = pd.read_csv(out / "train_log.csv")["loss"]
    firsts = [10, 50, iterations]
    return {
        "graphed_vs_eager_max_rel": {n: largest_rel(losses["graphed"], losses["eager"], n) for n in firsts},
        "eager_vs_eager_max_rel": {n: largest_rel(losses["eager_again"], losses["eager"], n) for n in firsts},
        "target_rel": MATCH_TOLERANCE,
    }


def largest_rel(a: pd.Series, b: pd.Series, first: int | None = None) -> float:
    """The largest relative difference of losses `a` from `b` over their first `first` iterations (all)."""
    return float(((a - b).abs() / b.abs()).head(first).max())


def family_gain(backbone: str, gains: dict[str, float]) -> float:
    """The gain measured for the backbone's family (a paper backbone's name starts with it), else none."""
    return next((gain for family, gain in gains.items() if backbone.startswith(family)), 1.0)


def projection(backbones: list[str], cache_path: Path, n: int, measured: dict, gains: dict) -> pd.DataFrame:
    """GPU-hours of the paper's 156 training jobs: eager (today), graphed, and graphed at the family's best packing.
    Backbones the `graphs` part measured (steps/s in `measured`) are not stepped again."""
    rows = []
    iterations_by_init, cells = paper_study()[1:]
    for backbone in backbones:
        if backbone in measured:
            eager, graphed = 1 / measured[backbone]["eager_1"], 1 / measured[backbone]["graphed_1"]
        else:
            eager = device_seconds(bare_step(cache_path, backbone, "scratch", "cuda"), n)
            graphed = device_seconds(bare_step(cache_path, backbone, "scratch", "cuda", cuda_graphs=True), n)
        gain = family_gain(backbone, gains)
        for init, iterations in iterations_by_init.items():
            hours = iterations * cells / 3600
            rows.append(
                {
                    "backbone": backbone,
                    "init": init,
                    "iterations": iterations,
                    "cells": cells,
                    "s_per_iter_eager": eager,
                    "s_per_iter_graphed": graphed,
                    "packing_gain": gain,
                    "gpu_hours_eager": eager * hours,
                    "gpu_hours_graphed": graphed * hours,
                    "gpu_hours_best": graphed / gain * hours,
                }
            )
    return pd.DataFrame(rows)


def graphs_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    report["steps_per_s_per_gpu"] = {}
    for backbone in list(FAMILY_PROBES.values())[: 1 if tiny else 3]:
        report["steps_per_s_per_gpu"][backbone] = packing(cache_path, root, backbone, n)


def hours_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    measured = report.get("steps_per_s_per_gpu", {})
    gains = {}
    for family, probe in FAMILY_PROBES.items():
        if probe in measured:
            best = max(v for k, v in measured[probe].items() if k.startswith("processes_"))
            gains[family] = max(1.0, best / measured[probe]["graphed_1"])
    table = projection(PAPER[:2] if tiny else PAPER, cache_path, n // 2, measured, gains)
    table.to_csv(root / "gpu_hours.csv", index=False)
    report["paper_study_gpu_hours"] = {
        column: float(table[f"gpu_hours_{column}"].sum()) for column in ("eager", "graphed", "best")
    } | {
        "packing_gain_by_family": gains,
        "how": "measured bare-step seconds per iteration (bf16, channels_last, batch 8, the synthetic canvas) "
        "x iterations x 3 splits x 2 fractions; best: graphed, divided by the family's best gain from packing "
        "cells as processes; loader and evaluation not included",
    }


def match_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    report["loss_match_resnet50"] = loss_match(cache_path, root, 200)


def cells_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    for backbone in ("mobilenetv2_035", "resnet50"):
        for graphs in (False, True):
            out = root / f"{backbone}-{'graphed' if graphs else 'eager'}"
            options = {"snapshot_every": 500, "curve_iterations": [500], "device": "cuda", "cuda_graphs": graphs}
            seconds = train_seconds(cache_path, out, backbone, "scratch", 1000, **options)
            metrics = evaluate(out, cache_path, out / "predictions.h5", out / "metrics.csv", device="cuda")
            final = metrics[(metrics["bodypart"] == "all") & (metrics["iteration"] == 1000)].set_index("set")
            report[f"{backbone}/scratch/{'graphed' if graphs else 'eager'}"] = {
                "train_s": sum(seconds),
                "normalised_error": final["normalised_error"].to_dict(),
                "pck": final["pck"].to_dict(),
            }


def loader_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    bare = device_seconds(bare_step(cache_path, "resnet50", "scratch", "cuda"), n)
    real = loop_seconds(cache_path, root / "loop", n, device="cuda")
    report["resnet50_loader"] = {"real_loop_s": real, "bare_step_on_device_s": bare, "ratio": real / bare}


def compile_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    """Needs Triton and a C compiler on the GPU machine."""
    for amp in (True, False):
        start = time.perf_counter()
        step = bare_step(cache_path, "resnet50", "scratch", "cuda", compile=True, amp=amp)
        step()
        torch.cuda.synchronize()
        warmup = time.perf_counter() - start
        bare = device_seconds(step, n)
        real = loop_seconds(cache_path, root / f"loop-compiled-{amp}", n, device="cuda", compile=True, amp=amp)
        report[f"resnet50_compiled_{'bf16' if amp else 'fp32'}"] = {
            "first_step_s": warmup,
            "bare_step_on_device_s": bare,
            "real_loop_s": real,
            "ratio": real / bare,
        }


FUSED = [1, 2, 6, 12]  # cells per process
ALONE_AGAIN = "fused_1_again"  # one cell alone once more: the noise floor of a cell's losses on the GPU
FUSED_CELLS = [(split, fraction) for fraction in (50, 20, 10, 5) for split in (1, 2, 3)]  # 12 cells of one group


def fused_steps_per_s(
    cache_path: Path, root: Path, backbone: str, k: int, graphs: bool, rounds: tuple[int, int], device: str = "cuda"
) -> tuple[float, dict]:
    """Steps per second per GPU of the real loop training `k` cells of `backbone` from scratch in one process,
    over `rounds` = (warm-up, measured) rounds of every cell's iteration, timed between two device waits, and
    the memory it held then (`memory_held`). The warm-up captures each cell's graphs for most canvas sizes;
    no snapshot falls in the measured rounds."""
    from oodpose.device import runtime
    from oodpose.fused import start_cells
    from oodpose.settings import TrainConfig
    from oodpose.train import StopRequest, train_round, write_log

    warmup, measured = rounds
    iterations = warmup + measured + 1
    workers = None if device == "cuda" else 0  # a fused job's own: its allocation's, shared by its cells' loaders
    options = dict(iterations=iterations, snapshot_every=iterations, device=device, workers=workers, cuda_graphs=graphs)
    cells = start_cells(
        [
            TrainConfig(str(cache_path), str(root / f"split{s}_frac{f}"), backbone, "scratch", s, f, **options)
            for s, f in FUSED_CELLS[:k]
        ],
        runtime(device, workers=workers).workers,  # 8 on 9 CPUs or more: a fused job's of 9 CPUs, whatever K
    )
    wait = torch.cuda.synchronize if device == "cuda" else lambda: None

    stop = StopRequest()

    def run(n: int) -> None:
        for _ in range(n):
            train_round(cells, stop)
        wait()

    if device == "cuda":
        gc.collect()  # the previous setting's cells and graphs: their memory is not this setting's
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run(warmup)
    start = time.perf_counter()
    run(measured)
    rate = k * measured / (time.perf_counter() - start)
    for cell in cells:  # every round's losses in the cells' logs, after the timing
        if cell.pending:
            write_log(cell)
    return rate, memory_held(device)


def memory_held(device: str) -> dict:
    """GiB held: the resident memory of this process and its loader workers, and on CUDA the peaks, since the
    last reset, of the GPU memory its tensors took and of what the caching allocator reserved for them (what a
    fused job's `mem_mb` and GPU must hold)."""
    import psutil

    process = psutil.Process()
    rss = sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    held = {"host_rss_gib": rss / 2**30}
    if device == "cuda":
        held["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        held["gpu_reserved_peak_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return held


def fused_measurements(cache_path: Path, root: Path, backbone: str, ks: list[int], rounds, device="cuda") -> dict:
    """One eager cell, then `ks` graphed cells per process (K = 1 among them), then one graphed cell alone again:
    steps/s per GPU, each K's gain over the eager cell, the memory each setting held (`memory`), and whether
    fusing left a cell's result its own (`unchanged`)."""
    result, memory = {}, {}
    settings = [("eager_1", 1, False), *((f"fused_{k}", k, True) for k in ks), (ALONE_AGAIN, 1, True)]
    for key, k, graphs in settings:
        rate, held = fused_steps_per_s(cache_path, root / key.replace("_", "-"), backbone, k, graphs, rounds, device)
        result[key], memory[key] = rate, held
    result["best_gain"] = max(v for key, v in result.items() if key.startswith("fused_")) / result["eager_1"]
    return result | {"memory": memory, "unchanged": fused_losses_unchanged(root, [k for k in ks if k > 1])}


def fused_losses_unchanged(root: Path, ks: list[int]) -> dict:
    """The first cell's losses, fused with K - 1 others against alone (K = 1), beside alone against alone again,
    the noise of the GPU's own arithmetic (cuDNN's kernels need not be deterministic): the largest relative
    differences, and whether fusing changed the cell's losses by no more than that noise, or `MATCH_TOLERANCE`."""

    def losses(key: str) -> pd.Series:
        split, fraction = FUSED_CELLS[0]
        return pd.read_csv(root / key.replace("_", "-") / f"split{split}_frac{fraction}" / "train_log.csv")["loss"]

    alone = losses("fused_1")
    noise = largest_rel(losses(ALONE_AGAIN), alone)
    fused = {f"fused_{k}": largest_rel(losses(f"fused_{k}"), alone) for k in ks}
    within = all(v <= max(noise, MATCH_TOLERANCE) for v in fused.values())
    return {"alone_vs_alone_max_rel": noise, "fused_vs_alone_max_rel": fused, "logged": len(alone), "within": within}


ENGINE_PROBES = ["resnet50", "efficientnet_b3"]  # frozen batch norm: vmap cannot keep MobileNetV2's statistics
ENGINE_CELLS = [6, 12]


def engines(cache_path: Path, backbone: str, ks: list[int], iterations: int, device: str = "cuda") -> dict:
    """Fused training's two candidate engines on bare steps of `ks` cells per process: each cell graphed on its
    own CUDA stream (what `oodpose.fused` runs) and all cells as one vmapped step (graphed where its capture
    works): steps/s per GPU; and how far vmap's gradients are from each cell's own (`vmap_max_rel_grad`)."""
    result = {"vmap_max_rel_grad": vmap_gradient_difference(cache_path, backbone, 2, device)}
    for k in ks:
        result[f"streams_{k}"] = graphed_streams(cache_path, backbone, k, iterations, device)
        try:
            step = vmapped_step(cache_path, backbone, k, device, cuda_graphs=True)[0]
            result[f"vmap_{k}"] = k / device_seconds(step, iterations, warmup=3)
        except Exception as err:  # a capture vmap does not support: measure it eager, and say why
            result[f"vmap_{k}_graphs_error"] = f"{type(err).__name__}: {str(err)[:300]}"
            eager = vmapped_step(cache_path, backbone, k, device)[0]
            result[f"vmap_{k}"] = k / device_seconds(eager, iterations, warmup=3)
    return result


def fused_projection(gains: dict[str, float]) -> dict:
    """The paper study's GPU-hours by the backbone table (today's eager figures), and divided by each backbone's
    family's best fused gain: the issue's target is a tenth or less."""
    from oodpose.backbones import load_backbones

    minutes = {name: row.gpu_minutes_per_1k_iter for name, row in load_backbones().items()}
    fused = {b: m / family_gain(b, gains) for b, m in minutes.items()}
    today, best = study_gpu_hours(minutes), study_gpu_hours(fused)
    return {"table_eager_gpu_hours": today, "fused_gpu_hours": best, "ratio": best / today, "target_ratio": 0.1}


def fused_part(report: dict, cache_path: Path, root: Path, n: int, tiny: bool) -> None:
    gains = {}
    for family, probe in list(FAMILY_PROBES.items())[: 1 if tiny else 3]:
        ks = FUSED[:2] if tiny else FUSED
        measured = fused_measurements(cache_path, root / f"fused-{probe}", probe, ks, (n // 2, n))
        report.setdefault("fused_steps_per_s_per_gpu", {})[probe] = measured
        gains[family] = measured["best_gain"]
    report["fused_paper_study"] = fused_projection(gains)


PARTS = {  # in the order they run; "hours" reuses what "graphs" measured
    "graphs": graphs_part,
    "hours": hours_part,
    "match": match_part,
    "cells": cells_part,
    "loader": loader_part,
    "compile": compile_part,
    "fused": fused_part,
}


def main(root: Path, tiny: bool, parts: list[str]) -> dict:
    """Run the chosen parts, writing the report after each, so a cut run still says what it measured."""
    root.mkdir(parents=True, exist_ok=True)
    cache_path = synthetic_cache(root, 600)
    report = {"benchmark": "gpu", "machine": machine(), "bf16_supported": torch.cuda.is_bf16_supported()}
    for name, part in PARTS.items():
        if name in parts:
            part(report, cache_path, root, 20 if tiny else 100, tiny)
            (root / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS), help="measure only these parts")
    parser.add_argument("--worker", nargs=3, metavar=("CACHE", "BACKBONE", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], args.out, int(args.worker[2]))
    else:
        print(json.dumps(main(args.out, args.tiny, args.only), indent=2, default=str))
