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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, machine, timed_snakemake, workflow_dir  # noqa: E402

from oodpose.atomic import atomic_file  # noqa: E402

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
            publish(workdir / SEARCH, report, Path(publish_to))
    return report


def publish(search: Path, report: dict, dest: Path) -> None:
    """Copy the search's tables and heatmaps with the report that says how they were made, then write its page."""
    for path in [search / "schedules.tsv", search / "scores.csv", *sorted((search / "figures").glob("*.png"))]:
        with atomic_file(dest / path.name) as tmp:
            shutil.copyfile(path, tmp)
    with atomic_file(dest / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    with atomic_file(dest.with_suffix(".md")) as tmp:
        Path(tmp).write_text(results_page(dest))


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="dry run: plan the jobs, run none (CI)")
    parser.add_argument("--keep", help="run in this folder and keep its results")
    parser.add_argument("--publish", help="a folder for the search's tables, heatmaps and report; DEST.md: its page")
    args = parser.parse_args()
    if args.publish and args.tiny:
        parser.error(f"--publish {args.publish}: a --tiny dry run has nothing to publish; drop one of the two")
    print(json.dumps(main(args.tiny, args.keep, args.publish), indent=2))
