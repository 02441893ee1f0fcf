"""The laptop-scale schedule search (config/search-laptop.yaml) from a clean results/ on 2 cores: wall time and
what it chose. Target: <= 45 min wall for its 36 search cells and their selection.

python bench/search.py [--tiny] [--keep DIR] [--publish DEST]
  --tiny: a dry run (plans the jobs, runs none, for CI)
  --keep: run in DIR and keep its results/
  --publish: copy the search's schedules.tsv, scores.csv and heatmaps into the folder DEST with this report
             (run.json), and write the results page DEST.md from them, e.g. docs/results/search-laptop
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, machine, publish_run, run_arguments, timed_snakemake, workflow_dir  # noqa: E402

CONFIG = "config/search-laptop.yaml"
SEARCH = Path("results", "synthetic", "search", "validation")  # the search's folder, in the run's folder
TARGET_S = 2700
SHOWN = ["backbone", "schedule", "score", "score_ci_low", "score_ci_high", "n_splits", "runner_up", "runner_up_score"]
SHOWN += ["distinguishable", "table_schedule", "table_rank", "grid_size"]


def main(tiny: bool, keep: str | None, publish_to: str | None) -> dict:
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    report = {"benchmark": "search", "machine": machine(), "config": CONFIG, "dry_run": tiny}
    report |= {"date": time.strftime("%Y-%m-%d"), "commit": commit.stdout.strip()}
    report |= {"command": shlex.join(["python", *sys.argv])}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = workflow_dir(Path(keep or tmp))
        seconds = timed_snakemake(workdir, "search", "--cores", "2", "--configfile", CONFIG, *(["-n"] if tiny else []))
        report |= {"wall_s": seconds, "target_s": TARGET_S, "meets_target": seconds <= TARGET_S}
        if not tiny:
            chosen = pd.read_csv(workdir / SEARCH / "schedules.tsv", sep="\t")
            report["chosen"] = json.loads(chosen[SHOWN].to_json(orient="records"))
        if publish_to:
            search = workdir / SEARCH
            files = [search / "schedules.tsv", search / "scores.csv", *sorted((search / "figures").glob("*.png"))]
            publish_run(files, report, Path(publish_to), results_page)
    return report


def results_page(folder: Path) -> str:
    """The Markdown page of a published search: how it was made, what it chose, and its heatmaps."""
    report = json.loads((folder / "run.json").read_text())
    machine = report["machine"]
    where = machine.get("description") or f"{machine['cores']} cores, {machine['cpu']}"
    chosen = pd.DataFrame(report["chosen"])
    lines = [
        "# The laptop-scale schedule search: results of one run",
        "",
        f"Made by `{report['command']}` at commit `{report['commit']}` on {where} (torch {machine['torch']}, "
        f"{report['date']}). `bench/search.py --publish` writes this page from that run's report (`run.json` "
        "beside it), `schedules.tsv`, `scores.csv` and heatmaps; rerun it to refresh them together.",
        "",
        f"Wall time {report['wall_s']:.0f} s ({report['wall_s'] / 60:.0f} min) against a target of <= "
        f"{report['target_s']} s: **{'met' if report['meets_target'] else 'not met'}**. Selection on validation "
        "horses (one training individual held out of each split); scores are mean normalised error over the "
        "splits with 95 % CIs.",
        "",
        *markdown_table(chosen),
        "",
    ]
    for png in sorted(folder.glob("*.png")):
        lines += [f"![Schedule search heatmap: {png.stem}]({folder.name}/{png.name})", ""]
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame) -> list[str]:
    cells = [
        [f"{v:.3g}" if isinstance(v, float) else "–" if v is None else str(v) for v in row] for row in table.values
    ]
    header = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return header + ["| " + " | ".join(row) + " |" for row in cells]


if __name__ == "__main__":
    args = run_arguments(argparse.ArgumentParser(description=__doc__), "tables and heatmaps")
    print(json.dumps(main(args.tiny, args.keep, args.publish), indent=2))
