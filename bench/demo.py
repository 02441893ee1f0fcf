"""A small study (the demo, or the laptop study) end to end from a clean results/ on 2 cores: wall time and
what it learned.

Targets, at each pretrained cell's last iteration:
- config/demo.yaml: <= 15 min wall, within-domain PCK@0.3 >= 0.5;
- config/laptop.yaml: <= 2 h wall, within-domain PCK@0.3 >= 0.7.

python bench/demo.py [--config C] [--tiny] [--keep DIR] [--publish DEST]
  --tiny: a dry run (plans the jobs, runs none, for CI)
  --keep: run in DIR and keep its results/
  --publish: copy the run's figures and findings.md into the folder DEST with this report (run.json), and
             write the results page DEST.md from them, e.g. docs/results/laptop (not with --tiny, which has
             no figures)
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, machine, publish_run, run_arguments, timed_snakemake, workflow_dir  # noqa: E402

from oodpose.study import OOD, PRETRAINED, WITHIN  # noqa: E402

SUMMARY = Path("results", "synthetic", "summary")  # the study's summary, in the run's folder
PUBLISHED = (  # in SUMMARY
    "figures/figure2.png",
    "figures/figure1.png",
    "figures/figure4_5a.png",
    "figures/figure5b.png",
    "findings.md",
)
HORSE_C_PUBLISHED = ("figures/corruptions.png", "corruptions/mce.csv")  # in SUMMARY, when the study has Horse-C
HORSE_C_JOBS = ("corrupt", "evaluate_corrupted")
TARGETS = {"config/demo.yaml": (900, 0.5), "config/laptop.yaml": (7200, 0.7)}  # wall s, pretrained within PCK
TITLES = {"config/demo.yaml": "The demo", "config/laptop.yaml": "The laptop study"}
FIGURES = {
    "figure2.png": "Figure 2: a frame of each horse, split 1's within-domain horses (red) first",
    "figure1.png": "Figure 1: normalised error against ImageNet top-1, per set and init",
    "figure4_5a.png": "Figures 4 and 5A: normalised error during training, per backbone",
    "figure5b.png": "Figure 5B: final normalised error, from scratch against pretrained",
    "corruptions.png": "Horse-C: normalised error against corruption severity, mean over corruptions",
}


def final_pck(workdir: Path) -> dict[str, dict[str, float]]:
    """Each cell's final PCK@0.3 within domain and out of domain, by 'backbone/init/split'."""
    metrics = pd.read_csv(workdir / SUMMARY / "metrics.csv")
    metrics = metrics[(metrics["bodypart"] == "all") & metrics["set"].isin([WITHIN, OOD])]
    last = metrics[metrics["iteration"] == metrics.groupby(["backbone", "init", "split"])["iteration"].transform("max")]
    table = last.pivot_table(index=["backbone", "init", "split"], columns="set", values="pck").round(3)
    return {"/".join(map(str, key)): {"within": r[WITHIN], "ood": r[OOD]} for key, r in table.iterrows()}


def main(config: str, tiny: bool, keep: str | None, publish_to: str | None) -> dict:
    dry_run = ["-n"] if tiny else []
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    about = {"benchmark": "demo", "machine": machine(), "config": config, "dry_run": tiny}
    about |= {"date": time.strftime("%Y-%m-%d")}
    about |= {"commit": commit.stdout.strip(), "command": shlex.join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = workflow_dir(Path(keep or tmp))
        start = time.time()
        seconds = timed_snakemake(workdir, "--cores", "2", "--configfile", config, *dry_run)
        cells = {} if tiny else final_pck(workdir)
        report = about | verdict(seconds, cells, *TARGETS[config]) | {"job_s": job_seconds(workdir, start)}
        if publish_to:
            horse_c = [name for name in HORSE_C_PUBLISHED if (workdir / SUMMARY / name).exists()]
            files = [workdir / SUMMARY / name for name in (*PUBLISHED, *horse_c)]
            publish_run(files, report, Path(publish_to), results_page)
    return report


def job_seconds(workdir: Path, since: float) -> dict[str, float]:
    """Seconds of every job this run ran (benchmark files written since `since`), summed per rule."""
    seconds: dict[str, float] = {}
    for path in (workdir / "results" / "benchmarks").rglob("*.tsv"):
        if path.stat().st_mtime < since:
            continue  # a job of an earlier run in a kept folder
        rule = "corrupt" if "corrupted" in path.parts else path.stem
        seconds[rule] = round(seconds.get(rule, 0.0) + float(pd.read_csv(path, sep="\t")["s"].sum()), 1)
    return dict(sorted(seconds.items()))


def horse_c_lines(report: dict) -> list[str]:
    """What Horse-C's jobs cost in the run, when it had any."""
    spent = {rule: report.get("job_s", {}).get(rule) for rule in HORSE_C_JOBS}
    if not all(spent.values()):
        return []
    total = sum(spent.values())
    return [
        f"Horse-C's jobs took {total:.0f} s of job time ({spent['corrupt']:.0f} s corrupting, "
        f"{spent['evaluate_corrupted']:.0f} s scoring every cell on the corrupted sets), about {total / 2 / 60:.0f} "
        "minutes of the wall time at 2 jobs at a time; every job's seconds per rule are in `run.json` (`job_s`).",
        "",
    ]


def results_page(folder: Path) -> str:
    """The Markdown page of a published run: how it was made, its per-cell PCK, figures and findings."""
    report = json.loads((folder / "run.json").read_text())
    machine = report["machine"]
    where = machine.get("description") or f"{machine['cores']} cores, {machine['cpu']}"
    target_s, target_pck = TARGETS[report["config"]]
    now = verdict(report["wall_s"], report["final_pck"], target_s, target_pck)["meets_target"]
    added = "train" not in report.get("job_s", {"train": 0})  # a kept folder's study, grown by other jobs
    against = (
        f"This run trained nothing: it ran {', '.join(report['job_s'])} jobs on a study already trained in the "
        "same folder (`--keep`), so its wall time is what those jobs added."
        if added
        else f"Against `bench/demo.py`'s targets for `{report['config']}` (<= {target_s} s, every pretrained cell "
        f">= {target_pck}): **{'met' if now else 'not met'}**."
    )
    lines = [
        f"# {TITLES[report['config']]}: results of one run",
        "",
        f"Made by `{report['command']}` at commit `{report['commit']}` on {where} (torch {machine['torch']}"
        f"{', ' + report['date'] if 'date' in report else ''}). `bench/demo.py --publish` writes this page from "
        "that run's report (`run.json` beside it), figures and findings; rerun it to refresh them together.",
        "",
        f"Wall time {report['wall_s']:.0f} s ({report['wall_s'] / 60:.0f} min); lowest pretrained within-domain "
        f"PCK@0.3 {report['lowest_pretrained_within_pck']:.3f}. {against}",
        "",
        *horse_c_lines(report),
        *pck_table(report["final_pck"]),
        "",
    ]
    for name, caption in FIGURES.items():
        if (folder / name).exists():
            lines += [f"![{caption}]({folder.name}/{name})", ""]
    findings = re.sub(r"^(#+) ", r"#\1 ", (folder / "findings.md").read_text(), flags=re.MULTILINE)
    return "\n".join(lines) + "\n" + findings  # its headings one level down, under the page's


def pck_table(final: dict[str, dict[str, float]]) -> list[str]:
    """Final PCK@0.3 within / out of domain, a row per backbone and init, a column per split."""
    cells = {tuple(name.split("/")): value for name, value in final.items()}
    splits = sorted({split for _, _, split in cells}, key=int)
    lines = ["| cell | " + " | ".join(f"split {s}" for s in splits) + " |", "|---|" + "---|" * len(splits)]
    for backbone, init in dict.fromkeys((b, i) for b, i, _ in cells):
        values = [cells.get((backbone, init, s)) for s in splits]
        shown = ["–" if v is None else f"{v['within']:.3f} / {v['ood']:.3f}" for v in values]
        lines.append(f"| {backbone}, {'pretrained' if init == PRETRAINED else 'scratch'} | " + " | ".join(shown) + " |")
    return ["Final PCK@0.3, within domain / out of domain:", "", *lines]


def verdict(seconds: float, cells: dict[str, dict[str, float]], target_s: float, target_pck: float) -> dict:
    """The run against its targets, in plain JSON types (pandas gives numpy numbers)."""
    pretrained = [float(cell["within"]) for name, cell in cells.items() if name.split("/")[1] == PRETRAINED]
    lowest = min(pretrained, default=None)
    return {
        "wall_s": seconds,
        "target_s": target_s,
        "final_pck": {name: {k: float(v) for k, v in cell.items()} for name, cell in cells.items()},
        "lowest_pretrained_within_pck": lowest,
        "target_pck": target_pck,
        "meets_target": seconds <= target_s and (lowest is None or lowest >= target_pck),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="config/demo.yaml", choices=sorted(TARGETS), help="the study to run")
    args = run_arguments(parser, "figures and findings")
    print(json.dumps(main(args.config, args.tiny, args.keep, args.publish), indent=2))
