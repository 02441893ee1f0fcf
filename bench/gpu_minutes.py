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
  within its eager-vs-eager noise or 1e-3 relative, else eager.

    python bench/gpu_minutes.py REPORT [--table T] [--cpus-per-gpu 8] [--write]

REPORT is the check's report.json. Prints JSON: the match verdict, the overhead, each probe's and row's
minutes eager and graphed, and the paper study's training GPU-hours by the table, the eager real loop and the
graphed real loop (the GPU issue's target: graphed <= 1/4 of eager). `--write` rewrites the table's
`gpu_minutes_per_1k_iter` column, in the default mode's minutes, and nothing else of the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import FAMILY_PROBES, study_gpu_hours

from oodpose.atomic import atomic_file
from oodpose.backbones import DEFAULT_TABLE, GENERIC_FAMILY, load_backbones

MODES = ("eager", "graphed")
CELL_BACKBONE = "efficientnet_lite0"  # gpu_check's full-length cell
MATCH_TOLERANCE = 1e-3  # relative: graphed vs eager losses may differ by this, or by eager's own noise
COLUMN = "gpu_minutes_per_1k_iter"
LOADER_RATIO = 1.10  # the real graphed loop / the bare graphed step, at most, for the loader to keep up


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


def row_minutes(table: dict, probes: dict, cell_minutes: float) -> dict[str, dict]:
    """Every row's minutes per mode: measured for a probe (and Lite0 graphed), else scaled from its family's probe."""
    by_family = FAMILY_PROBES | {GENERIC_FAMILY: FAMILY_PROBES["resnet"]}
    floor = probes[FAMILY_PROBES["mobilenetv2"]]
    rows = {}
    for name, row in table.items():
        probe = by_family[row.family]
        ratio = {mode: probes[probe][mode] / table[probe].gpu_minutes_per_1k_iter for mode in MODES}
        minutes = {mode: row.gpu_minutes_per_1k_iter * ratio[mode] for mode in MODES}
        if row.family == GENERIC_FAMILY:
            minutes = {mode: max(minutes[mode], floor[mode]) for mode in MODES}
        if name == CELL_BACKBONE:
            minutes["graphed"] = cell_minutes
        rows[name] = {"table": row.gpu_minutes_per_1k_iter, **minutes}
    return rows


def write_column(path: Path, minutes: dict[str, float]) -> None:
    """Rewrite one column of the tab-separated table in place, every other byte as it was."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split("\t")
    name, column = header.index("name"), header.index(COLUMN)
    for i, line in enumerate(lines[1:], start=1):
        fields = line.rstrip("\n").split("\t")
        if fields[name] in minutes:
            fields[column] = f"{minutes[fields[name]]:.3g}"
            lines[i] = "\t".join(fields) + "\n"
    with atomic_file(path) as tmp:
        Path(tmp).write_text("".join(lines))


def main(report_path: Path, table_path: Path, cpus_per_gpu: int, write: bool) -> dict:
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
    mode = "graphed" if match and all(v["within"] for v in match.values()) else "eager"
    hours = {"table": study_gpu_hours({n: r["table"] for n, r in rows.items()})}
    hours |= {f"{m}_real_loop": study_gpu_hours({n: r[m] for n, r in rows.items()}) for m in MODES}
    if write:
        write_column(table_path, {n: r[mode] for n, r in rows.items()})
    return {
        "benchmark": "gpu_minutes",
        "report": str(report_path),
        "measured_on": {"machine": report.get("machine"), "device": report.get("device")},
        "graphs_match": match,
        "mode": mode,
        "workers_at_most": cpus_per_gpu - 1,
        "overhead": overhead,
        "probes": probes,
        "minutes_per_1k_iter": rows,
        "paper_study_gpu_hours": hours
        | {"graphed_to_eager": hours["graphed_real_loop"] / hours["eager_real_loop"], "target": 0.25},
        "written": str(table_path) if write else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--cpus-per-gpu", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(args.report, args.table, args.cpus_per_gpu, args.write), indent=2))
