"""The backbone table's GPU minutes per 1k iterations from a GPU check's real loop, and the paper study's
GPU-hours they project.

`gpu_check.py` times the real training loop (cache, `paper` augmentation, loader workers, the step) of one
probe per family at loader workers 0, 2, 4 and 8, eager and graphed, and trains one full-length
EfficientNet-Lite0 cell, graphed, whose wall time also holds what the loop's median iteration does not
(start-up, cuDNN's autotuning, snapshots, logs). From its report:
- a probe's minutes: its fastest loop at the workers a job of `--cpus-per-gpu` CPUs starts (one CPU drives the
  GPU), times the cell's overhead (its minutes per 1k iterations / its median iteration); Lite0's graphed
  minutes are the cell's own;
- any other row: the table's minutes scaled by its family probe's measured / table ratio; the generic timm
  rows by ResNet-50's, from which `backbone_estimates.py` scaled them, never below MobileNetV2-0.35's;
- whether the loader keeps up: each probe's graphed loop at that worker count within 1.10x its bare graphed step;
- the mode a job runs by default: graphed if every `match` child's graphed-vs-eager loss difference is
  within its eager-vs-eager noise or 1e-3 relative, and the `resume` child's graphed run, stopped by SIGTERM
  and rerun, exited 143 and ended within its own noise or 1e-3 of an unbroken run; else eager.

With `--fused FUSED`, the report of `gpu_check.py --only fused`, also:
- each probe's GPU memory a cell: the most GPU memory any of its fused settings reserved (CUDA's caching
  allocator's peak) per cell, so K = 1 counts the job's fixed share whole; any other row's scaled as its
  minutes are. A fused job takes as many cells as its GPU's free memory holds at this figure
  (`oodpose.fused.room_on`);
- the paper study's GPU-hours fused: each row's eager real-loop minutes divided by its family probe's best
  fused gain over one eager cell (fused training's target: <= 1/10 of the eager real loop);
- whether the loader keeps K fused cells fed: for each probe and K that the `engines` part also measured, its
  bare graphed streams' steps/s (fixed canvas) / the fused real loop's, within 1.10;
- whether fusing left a cell's result its own: per probe, its first cell's losses fused with K - 1 others
  against alone, within alone against alone again (the GPU's own noise) or 1e-3 relative (`fused_unchanged`).

    python bench/gpu_minutes.py REPORT [--fused FUSED] [--table T] [--cpus-per-gpu 8] [--write]

REPORT is the check's report.json. Prints JSON: the match and resume verdicts, the overhead, each probe's and row's
minutes eager and graphed, and the paper study's training GPU-hours by the table, the eager real loop and the
graphed real loop (the GPU issue's target: graphed <= 1/4 of eager); with `--fused`, each row's GPU memory,
the fused loop's ratios, whether fused cells' losses stayed their own and the fused GPU-hours. `--write`
rewrites the table's `gpu_minutes_per_1k_iter` column, in the default mode's minutes, with `--fused` its
`gpu_mem_mb` column too, and nothing else of the file.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import FAMILY_PROBES, MATCH_TOLERANCE, study_gpu_hours

from oodpose.atomic import atomic_file
from oodpose.backbones import DEFAULT_TABLE, GENERIC_FAMILY, load_backbones

MODES = ("eager", "graphed")
CELL_BACKBONE = "efficientnet_lite0"  # gpu_check's full-length cell
MINUTES, MEMORY = "gpu_minutes_per_1k_iter", "gpu_mem_mb"
LOADER_RATIO = 1.10  # the real graphed loop / the bare graphed step, at most, for the loader to keep up
FAMILY_OF_ROWS = FAMILY_PROBES | {GENERIC_FAMILY: FAMILY_PROBES["resnet"]}  # the probe each family's rows scale by


def graphs_match(children: dict) -> dict[str, dict]:
    """Each match child's largest graphed-vs-eager and eager-vs-eager loss difference, and whether it passes."""
    verdicts = {}
    for name, child in children.items():
        if name.startswith("match-") and "result" in child:
            graphed = max(child["result"]["graphed_vs_eager_max_rel"].values())
            noise = max(child["result"]["eager_vs_eager_max_rel"].values())
            within = graphed <= max(noise, MATCH_TOLERANCE)
            verdicts[name] = {"graphed_vs_eager": graphed, "noise": noise, "within": within}
    return verdicts


def probe_minutes(loop: dict, overhead: float, most_workers: int) -> dict:
    """A probe's minutes per 1k iterations per mode at its fastest allowed worker count, that count, and whether
    the loader keeps up there: the graphed loop within `LOADER_RATIO` of the bare graphed step."""
    probe = {}
    for mode in MODES:
        timed = {int(k[len("workers") :].split("_")[0]): v["loop_s"] for k, v in loop.items() if k.endswith(f"_{mode}")}
        workers = min((n for n in timed if n <= most_workers), key=timed.get)
        probe[mode], probe[f"workers_{mode}"] = timed[workers] * overhead * 1000 / 60, workers
        if mode == "graphed":
            probe["loader_ratio"] = timed[workers] / loop["bare_graphed_step_s"]
            probe["loader_keeps_up"] = probe["loader_ratio"] <= LOADER_RATIO
    return probe


def scaled_rows(table: dict, column: str, measured: dict[str, float]) -> dict[str, float]:
    """Every row's `column`: a probe's measured, any other row's scaled by its family probe's measured / table
    ratio (the generic timm rows by ResNet-50's, never below MobileNetV2-0.35's measured figure)."""
    floor = measured[FAMILY_PROBES["mobilenetv2"]]
    rows = {}
    for name, row in table.items():
        probe = FAMILY_OF_ROWS[row.family]
        value = getattr(row, column) * measured[probe] / getattr(table[probe], column)
        rows[name] = max(value, floor) if row.family == GENERIC_FAMILY else value
    return rows


def row_minutes(table: dict, probes: dict, cell_minutes: float) -> dict[str, dict]:
    """Every row's minutes per mode: measured for a probe (and Lite0 graphed), else scaled from its family's probe."""
    rows = {name: {"table": row.gpu_minutes_per_1k_iter} for name, row in table.items()}
    for mode in MODES:
        for name, minutes in scaled_rows(table, MINUTES, {p: v[mode] for p, v in probes.items()}).items():
            rows[name][mode] = minutes
    if CELL_BACKBONE in rows:
        rows[CELL_BACKBONE]["graphed"] = cell_minutes
    return rows


def fused_children(report_path: Path) -> dict[str, dict]:
    """The children of a `gpu_check.py --only fused` report, refused unless every probe's fused run recorded GPU
    memory."""
    children = json.loads(report_path.read_text())["children"]
    missing = [f"fused-{p}" for p in FAMILY_PROBES.values() if "result" not in children.get(f"fused-{p}", {})]
    if missing:
        raise SystemExit(f"{report_path}: no result for {', '.join(missing)}; run gpu_check.py --only fused")
    held = [v for p in FAMILY_PROBES.values() for v in children[f"fused-{p}"]["result"]["memory"].values()]
    if any("gpu_reserved_peak_gib" not in v for v in held):
        raise SystemExit(f"{report_path}: its fused runs recorded no GPU memory (a CPU dry run?); give a GPU run's")
    return children


def fused_figures(report_path: Path, table: dict, rows: dict[str, dict]) -> dict:
    """What the fused command's report adds: each row's GPU memory a cell, the fused loop's ratio to bare graphed
    streams, whether fusing changed a cell's losses, and the paper study's fused GPU-hours (`hours`)."""
    children = fused_children(report_path)
    fused = {p: children[f"fused-{p}"]["result"] for p in FAMILY_PROBES.values()}
    memory = scaled_rows(table, MEMORY, {p: cell_memory_mb(f) for p, f in fused.items()})
    return {
        "fused_report": str(report_path),
        "gpu_mem_mb": {n: {"table": table[n].gpu_mem_mb, "fused_run": mb} for n, mb in memory.items()},
        "fused_loop_ratio": fused_loop_ratios(children),
        "fused_unchanged": {p: f["unchanged"] for p, f in fused.items()},
        "hours": fused_hours(rows, table, fused),
    }


def fused_loop_ratios(children: dict) -> dict[str, dict]:
    """For each probe and K that both the `engines` and the `fused` part measured: the bare graphed streams' steps/s
    (fixed canvas) / the fused real loop's, and whether the loop, its cells' loaders sharing the job's workers,
    keeps K cells fed (within `LOADER_RATIO`)."""
    ratios = {}
    for name, child in children.items():
        if not name.startswith("engines-"):
            continue
        probe = name.removeprefix("engines-")
        loop = children.get(f"fused-{probe}", {}).get("result", {})
        for key, bare in child.get("result", {}).items():
            k = key.removeprefix("streams_")
            if key.startswith("streams_") and f"fused_{k}" in loop:
                ratio = bare / loop[f"fused_{k}"]
                ratios.setdefault(probe, {})[k] = {"ratio": ratio, "keeps_up": ratio <= LOADER_RATIO}
    return ratios


def cell_memory_mb(fused: dict) -> float:
    """A probe's GPU memory a cell: the most that any of its settings (`eager_1`, `fused_<K>`) reserved per cell."""
    held = fused["memory"]
    return max(v["gpu_reserved_peak_gib"] * 1024 / int(setting.split("_")[1]) for setting, v in held.items())


def fused_hours(rows: dict[str, dict], table: dict, fused: dict[str, dict]) -> dict:
    """The paper study's GPU-hours with each row's cells fused: its eager real-loop minutes divided by its family
    probe's best fused gain over one eager cell."""
    gain = {name: fused[FAMILY_OF_ROWS[row.family]]["best_gain"] for name, row in table.items()}
    return {"fused_real_loop": study_gpu_hours({n: r["eager"] / gain[n] for n, r in rows.items()})}


def write_columns(path: Path, columns: dict[str, dict[str, str]]) -> None:
    """Rewrite the named columns' values (column -> row name -> text) of the tab-separated table in place, every
    other byte as it was."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split("\t")
    name, index = header.index("name"), {column: header.index(column) for column in columns}
    for i, line in enumerate(lines[1:], start=1):
        fields = line.rstrip("\n").split("\t")
        for column, values in columns.items():
            if fields[name] in values:
                fields[index[column]] = values[fields[name]]
        lines[i] = "\t".join(fields) + "\n"
    with atomic_file(path) as tmp:
        Path(tmp).write_text("".join(lines))


def main(report_path: Path, table_path: Path, cpus_per_gpu: int, write: bool, fused_path: Path | None = None) -> dict:
    report = json.loads(report_path.read_text())
    children = report["children"]
    needed = ["cell", *(f"loop-{p}" for p in FAMILY_PROBES.values())]
    missing = [c for c in needed if "result" not in children.get(c, {})]
    if missing:
        raise SystemExit(f"{report_path}: no result for {', '.join(missing)}; run those parts of gpu_check.py")
    cell = children["cell"]["result"]
    overhead = cell["minutes_per_1k_iterations"] * 60 / 1000 / cell["median_iteration_s"]
    probes = {
        p: probe_minutes(children[f"loop-{p}"]["result"], overhead, cpus_per_gpu - 1) for p in FAMILY_PROBES.values()
    }
    table = load_backbones(table_path)
    rows = row_minutes(table, probes, cell["minutes_per_1k_iterations"])
    match = graphs_match(children)
    resumes = children.get("resume", {}).get("result", {})  # a graphed job stopped by SIGTERM, then rerun
    graphed = match and all(v["within"] for v in match.values()) and resumes.get("within", False)
    mode = "graphed" if graphed else "eager"
    hours = {"table": study_gpu_hours({n: r["table"] for n, r in rows.items()})}
    hours |= {f"{m}_real_loop": study_gpu_hours({n: r[m] for n, r in rows.items()}) for m in MODES}
    hours |= {"graphed_to_eager": hours["graphed_real_loop"] / hours["eager_real_loop"], "target": 0.25}
    columns = {MINUTES: {n: f"{r[mode]:.3g}" for n, r in rows.items()}}
    fused = {}
    if fused_path is not None:
        fused = fused_figures(fused_path, table, rows)
        hours |= fused.pop("hours")
        hours |= {"fused_to_eager": hours["fused_real_loop"] / hours["eager_real_loop"], "fused_target": 0.1}
        memory = fused["gpu_mem_mb"]
        columns[MEMORY] = {n: str(math.ceil(m["fused_run"] / 100) * 100) for n, m in memory.items()}  # 100 MB, up
    if write:
        write_columns(table_path, columns)
    return {
        "benchmark": "gpu_minutes",
        "report": str(report_path),
        "measured_on": {"machine": report.get("machine"), "device": report.get("device")},
        "graphs_match": match,
        "graphs_resume": resumes,
        "mode": mode,
        "workers_at_most": cpus_per_gpu - 1,
        "overhead": overhead,
        "probes": probes,
        "minutes_per_1k_iter": rows,
        "paper_study_gpu_hours": hours,
        **fused,
        "written": str(table_path) if write else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--fused", type=Path, help="gpu_check.py --only fused's report.json: GPU memory a cell")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--cpus-per-gpu", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(args.report, args.table, args.cpus_per_gpu, args.write, args.fused), indent=2))
