"""Command line: ``python -m oodpose {synthesize,prepare,corrupt,train,fetch-weights,evaluate,evaluate-corrupted,
select-schedules,aggregate,figures,check-config}``.

Options left out take the library's defaults (`oodpose.settings`), and every command builds its
settings with the same functions the workflow's scripts use.
"""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import logging
import sys

import yaml

from oodpose.errors import InputError
from oodpose.logs import FORMAT
from oodpose.settings import TEST_SCALE, TrainConfig
from oodpose.settings import DatasetSettings as Dataset
from oodpose.settings import SyntheticSettings as Synthetic
from oodpose.study import (
    AUGMENTATIONS,
    BATCHNORM_STATISTICS,
    CORRUPTIONS,
    INITS,
    NORMALISATIONS,
    SEVERITIES,
    cell_label,
)

SCHEMA = yaml.safe_load((importlib.resources.files("oodpose") / "config.schema.yaml").read_text())


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodpose", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, argument_default=argparse.SUPPRESS)  # left out: library default
    add_synthesize(command("synthesize", help="write the synthetic Horse-30 dataset in Horse-10's layout"))
    add_prepare(command("prepare", help="read, split and decode a dataset into a cache"))
    s = command("corrupt", help="write a cache's test frames under one common corruption and severity (Horse-C)")
    s.add_argument("cache_path", metavar="cache")
    s.add_argument("out")
    s.add_argument("--corruption", required=True, choices=CORRUPTIONS)
    s.add_argument("--severity", required=True, type=int, choices=SEVERITIES)
    s.add_argument("--workers", type=int, help="processes (default 1)")
    add_train(command("train", help="train one cell"))
    s = command("fetch-weights", help="download a backbone's timm weights to a file (needs internet)")
    s.add_argument("backbone")
    s.add_argument("out")
    s.add_argument("--backbones-table", help="the backbone table (default: the one the package ships)")
    s = command("evaluate", help="evaluate one trained cell")
    s.add_argument("train_dir")
    s.add_argument("cache_path", metavar="cache")
    s.add_argument("--predictions", required=True)
    add_prediction(s)
    s = command("evaluate-corrupted", help="evaluate one trained cell's final model on corrupted sets (Horse-C)")
    s.add_argument("train_dir")
    s.add_argument("cache_path", metavar="cache")
    s.add_argument("--corrupted", required=True, nargs="+", help="folders `oodpose corrupt` wrote")
    add_prediction(s)
    add_selection(command("select-schedules", help="a schedule search's choice per backbone and init, from its cells"))
    add_summary(command("aggregate", help="the tables, regressions and findings of evaluated cells"))
    s = command("figures", help="the paper's figures of an aggregated summary")
    s.add_argument("summary", help="a folder `oodpose aggregate` wrote")
    s.add_argument("cells", nargs="+", metavar="cell", help="the evaluated cell folders (their predictions.h5)")
    s.add_argument("--cache", required=True, help="the cache the cells were evaluated on")
    s = command("individuals", help="a dataset's individuals and their side of each split, and the paper's Figure 2")
    s.add_argument("cache_path", metavar="cache", help="a folder `oodpose prepare` wrote")
    s.add_argument("out", help="folder for individuals.csv and figures/figure2.png (as a summary holds them)")
    s = command("check-config", help="check study config files (YAML and schema), naming the line or key at fault")
    s.add_argument("files", nargs="+", metavar="file")
    s.add_argument(
        "--merged",
        action="store_true",
        help="check the files as one study, merged in order as `snakemake --configfile A B` merges them (an "
        "overlay such as config/horse-c.yaml after the study it extends)",
    )
    return p


def add_prediction(s: argparse.ArgumentParser) -> None:
    """The options of the commands that score a trained cell: where the metrics go, and how frames are predicted."""
    s.add_argument("--metrics", required=True)
    s.add_argument("--device")
    s.add_argument("--threads", type=int)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--test-scale", type=float, help=f"scale of the frames at prediction (default {TEST_SCALE})")
    s.add_argument("--batchnorm", choices=BATCHNORM_STATISTICS, help="MobileNetV2's statistics at prediction")


def add_summary(s: argparse.ArgumentParser) -> None:
    s.add_argument("out", help="folder for the summary's tables and findings")
    s.add_argument("cells", nargs="+", metavar="cell", help="evaluated cell folders, each with its metrics.csv")
    s.add_argument("--dataset", default="dataset", help="the dataset's name in the tables (default: dataset)")
    s.add_argument("--backbones-table", help="the backbone table (default: the one the package ships)")
    s.add_argument("--horse10", action="store_true", help="the cells are Horse-10's: hold Table 1 against the paper")


def add_selection(s: argparse.ArgumentParser) -> None:
    s.add_argument("out", help="folder for schedules.tsv, scores.csv, validation_horses.csv and figures/")
    s.add_argument(
        "cells", nargs="+", metavar="cell", help="evaluated search cells' folders, each with its metrics.csv"
    )
    s.add_argument("--cache", required=True, help="the cache the cells were trained on")
    s.add_argument("--dataset", default="dataset", help="the dataset's name in the tables (default: dataset)")
    s.add_argument(
        "--backbones-table", help="the table whose schedules the choice is ranked against (default: the package's)"
    )


def config_option(s: argparse.ArgumentParser, path: str, default=None, **kwargs) -> None:
    """A flag for the config key at `path` (e.g. ``training.batch_size``; ``*`` for any dataset's name), whose
    help is the config schema's description: the command line and the config document a setting once."""
    node = SCHEMA
    for key in path.split("."):
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
    key = path.rsplit(".", 1)[-1]
    flag = kwargs.pop("flag", f"--{key.replace('_', '-')}")
    text = ("turn off " if flag.startswith("--no-") else "") + node["description"]
    text += "" if default is None else f" (default {default})"
    s.add_argument(flag, help=text.replace("%", "%%"), **kwargs)


def add_synthesize(s: argparse.ArgumentParser) -> None:
    s.add_argument("out")
    drawing = "datasets.*.synthetic"
    config_option(s, f"{drawing}.n_individuals", Synthetic.n_individuals, type=int)
    config_option(s, f"{drawing}.n_frames", Synthetic.n_frames, type=int)
    config_option(s, "datasets.*.n_splits", Synthetic.n_splits, type=int)
    config_option(s, "datasets.*.n_train_individuals", Synthetic.n_train_individuals, type=int)
    config_option(s, f"{drawing}.seed", Synthetic.seed, type=int)


def add_prepare(s: argparse.ArgumentParser) -> None:
    s.add_argument("dataset")
    s.add_argument("out")
    config_option(s, "datasets.*.scale_bodyparts", nargs=2)
    config_option(s, "datasets.*.labels")
    config_option(s, "datasets.*.individuals")
    config_option(s, "datasets.*.n_splits", Dataset.n_splits, type=int)
    config_option(s, "datasets.*.n_train_individuals", Dataset.n_train_individuals, type=int)
    config_option(s, "datasets.*.seed", Dataset.seed, type=int)


def add_train(s: argparse.ArgumentParser) -> None:
    """The cell, then every `training:` key of the config, then the schedule's overrides and where it runs."""
    s.add_argument("cache")
    s.add_argument("out")
    s.add_argument("--backbone", required=True)
    s.add_argument("--init", choices=INITS, help=f"default {TrainConfig.init}")
    s.add_argument("--split", type=int, help=f"default {TrainConfig.split}")
    s.add_argument("--fraction", type=int, help=f"training fraction in %% (default {TrainConfig.fraction})")
    for key, kind in (
        ("iterations", int),
        ("batch_size", int),
        ("snapshot_every", int),
        ("seed", int),
        ("global_scale", float),
        ("pos_dist_thresh", float),
        ("locref_weight", float),
    ):
        config_option(s, f"training.{key}", getattr(TrainConfig, key), type=kind)
    config_option(s, "training.curve_iterations", type=_int_list, metavar="I,J,...")
    config_option(s, "training.threads", type=int)
    config_option(s, "training.augmentation", TrainConfig.augmentation, choices=AUGMENTATIONS)
    config_option(s, "training.input_normalisation", TrainConfig.input_normalisation, choices=NORMALISATIONS)
    config_option(s, "training.amp", flag="--no-amp", dest="amp", action="store_false")
    config_option(s, "training.compile", action="store_true")
    config_option(s, "training.cuda_graphs", action="store_true")
    s.add_argument("--ilr", type=float, help="initial learning rate (default: the backbone table's)")
    s.add_argument("--final-lr", type=float, help="rate the cosine decays to (default: the backbone table's)")
    s.add_argument(
        "--validation-individuals",
        type=int,
        help="hold this many training individuals out of the split, as a schedule search's validation horses "
        "(default 0: none; see search.validation_individuals)",
    )
    s.add_argument("--cycles", type=int, help="cosine cycles (default: the table's from scratch, else 1)")
    s.add_argument("--device", help="auto (default), cpu or cuda[:i]")
    s.add_argument("--workers", type=int, help="loader workers (default: on CUDA the allocated CPUs but one, <= 8)")
    s.add_argument("--weights", help="a .pth/.safetensors file of ImageNet weights for the backbone")
    s.add_argument("--backbones-table", help="the backbone table (default: the one the package ships)")


def run(command: str, options: dict) -> None:
    """Run one command; `options` holds only what was given, shaped like the config's keys."""
    from oodpose import settings

    if command == "synthesize":
        from oodpose.data.synthetic import generate

        out = options.pop("out")
        splits = {k: options.pop(k) for k in ("n_splits", "n_train_individuals") if k in options}
        generate(out, settings.synthetic_settings({"synthetic": options, **splits}))
    elif command == "prepare":
        from oodpose.data.cache import prepare_cache

        dataset, out = options.pop("dataset"), options.pop("out")
        prepare_cache(dataset, out, settings.dataset_settings(options))
    elif command == "corrupt":
        from oodpose.corruptions import corrupt_cache

        corrupt_cache(**options)
    elif command == "train":
        from oodpose.train import train

        train(settings.train_config({}, **options))
    elif command == "fetch-weights":
        from oodpose.backbones import DEFAULT_TABLE, get_backbone
        from oodpose.models import fetch_weights

        fetch_weights(get_backbone(options["backbone"], options.get("backbones_table", DEFAULT_TABLE)), options["out"])
    elif command == "evaluate":
        from oodpose.evaluate import evaluate

        evaluate(**options)
    elif command == "evaluate-corrupted":
        from oodpose.evaluate import evaluate_corrupted

        evaluate_corrupted(**options)
    elif command == "select-schedules":
        select_cell_schedules(options)
    elif command == "aggregate":
        aggregate_cells(options)
    elif command == "figures":
        draw_cell_figures(options)
    elif command == "individuals":
        from pathlib import Path

        from oodpose.data.individuals import write_individuals

        out = Path(options["out"])
        write_individuals(options["cache_path"], out / "individuals.csv", out / "figures" / "figure2.png")
    elif command == "check-config":
        check_config_files(options["files"], options.get("merged", False))


def check_config_files(paths: list[str], merged: bool) -> None:
    """`oodpose check-config`: each file a study, or with `merged` all of them one study, as Snakemake merges them."""
    from snakemake.utils import update_config

    from oodpose import settings

    studies = [(path, settings.read_config_file(path)) for path in paths]
    if merged:
        config: dict = {}
        for _, overlay in studies:
            update_config(config, overlay)
        studies = [(" + ".join(paths), config)]
    for name, config in studies:
        try:
            settings.check_config(config, SCHEMA)
        except InputError as err:
            raise InputError(f"{name}: {err}") from None
        print(f"{name}: a valid study config")


def select_cell_schedules(options: dict) -> None:
    """`oodpose select-schedules`: the select_schedules rule's work on search cell folders given by hand; each
    cell's schedule, split and held-out horses as its settings.json records them (the CLI has no study config)."""
    from pathlib import Path

    from oodpose.backbones import DEFAULT_TABLE, get_backbone
    from oodpose.data.cache import Cache
    from oodpose.evaluate import check_same_cache, read_settings
    from oodpose.schedule import Schedule, cell_schedule
    from oodpose.search import select_schedules
    from oodpose.study import OOD, VALIDATION, SearchCell

    folders = [Path(c) for c in options["cells"]]
    for folder in folders:
        if not (folder / "settings.json").exists() or not (folder / "metrics.csv").exists():
            raise InputError(f"{folder}: no settings.json and metrics.csv; train and evaluate the search cell first")
    records, cache = [read_settings(folder / "settings.json") for folder in folders], Cache(options["cache"])
    for folder, record in zip(folders, records):
        check_same_cache(folder, record, cache)  # the validation horses are this cache's
    held_out = {int(record.get("validation_individuals", 0)) for record in records}
    if len(held_out) > 1:
        raise InputError(f"the cells hold out {sorted(held_out)} validation horses; give the cells of one search")
    held = held_out.pop()
    cells = [
        SearchCell(
            options["dataset"],
            r["backbone"],
            r["init"],
            int(r["split"]),
            int(r["fraction"]),
            VALIDATION if held else OOD,  # a search without validation horses scores the test horses (oracle)
            Schedule(r["ilr"], r["final_lr"], int(r["cycles"])).name,
        )
        for r in records
    ]
    each_once(folders, [cell_label(c.as_dict()) for c in cells])
    table = options.get("backbones_table", DEFAULT_TABLE)
    schedules = {(c.backbone, c.init): cell_schedule(get_backbone(c.backbone, table), c.init) for c in cells}
    select_schedules([folder / "metrics.csv" for folder in folders], cells, schedules, cache, held, options["out"])


def aggregate_cells(options: dict) -> None:
    """`oodpose aggregate`: what the workflow's aggregate rule does, on cell folders given by hand."""
    from pathlib import Path

    from oodpose.aggregate import aggregate
    from oodpose.backbones import DEFAULT_TABLE, backbone_metadata, load_backbones

    table = load_backbones(options.get("backbones_table", DEFAULT_TABLE))
    settings = study_settings(options["cells"])
    metric_files = [Path(c) / "metrics.csv" for c in options["cells"]]
    corrupted = [Path(c) / "metrics_corrupted.csv" for c in options["cells"]]
    aggregate(
        metric_files,
        options["dataset"],
        backbone_metadata(table.values()),
        trained_schedules(settings),
        None,
        options.get("horse10", False),
        options["out"],
        [path for path in corrupted if path.exists()],  # the cells evaluated on Horse-C, if any
    )


def study_settings(cells: list[str]) -> list[dict]:
    """Each cell folder's settings.json, refused unless they are one study's cells: trained on one prepared
    dataset (a summary labels them with one), each cell once (twice, it would count twice in every statistic)."""
    from pathlib import Path

    from oodpose.evaluate import read_settings

    records = [read_settings(Path(cell) / "settings.json") for cell in cells]
    each_once(cells, [cell_label(s) for s in records])
    for folder, s in zip(cells, records):
        if s.get("cache_fingerprint") != records[0].get("cache_fingerprint"):
            raise InputError(
                f"{cells[0]} and {folder} were trained on different prepared datasets (cache fingerprints "
                f"{records[0].get('cache_fingerprint')} and {s.get('cache_fingerprint')}); aggregate each dataset's "
                "cells apart"
            )
    return records


def each_once(folders: list, cells: list[str]) -> None:
    """Refuses two folders of one cell (named in `cells`, in the folders' order): it would count twice."""
    seen = {}
    for folder, cell in zip(folders, cells):
        if cell in seen:
            raise InputError(f"{seen[cell]} and {folder} are the same cell ({cell}); give each cell once")
        seen[cell] = folder


def trained_schedules(settings: list[dict]) -> list[dict]:
    """Each backbone and init's schedule as its cells' settings.json record it (the CLI has no study config)."""
    records = {}
    for s in settings:
        record = {k: s[k] for k in ("backbone", "init", "ilr", "final_lr", "cycles")}
        records[(s["backbone"], s["init"])] = record | {"schedule_source": "as trained (settings.json)"}
    return list(records.values())


def draw_cell_figures(options: dict) -> None:
    """`oodpose figures`: the figures rule's work, on a summary `oodpose aggregate` wrote and its cell folders."""
    from pathlib import Path

    import pandas as pd

    from oodpose.data.cache import Cache
    from oodpose.figures import draw_figures, figure_corruptions
    from oodpose.study import CELL, Cell

    summary = Path(options["summary"])
    metrics = pd.read_csv(summary / "metrics.csv")
    dataset = metrics["dataset"].iloc[0]
    predictions = {}
    for folder in map(Path, options["cells"]):
        cell = Cell.of(pd.read_csv(folder / "metrics.csv").iloc[0].to_dict() | {"dataset": dataset})
        predictions[cell] = folder / "predictions.h5"
    cells = metrics[list(CELL)].drop_duplicates()
    draw_figures(metrics, cells, Cache(options["cache"]), predictions, summary / "figures")
    severity = summary / "corruptions" / "severity.csv"
    if severity.exists():  # the cells were evaluated on Horse-C
        figure_corruptions(pd.read_csv(severity), summary / "figures" / "corruptions.png")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    options = vars(parser().parse_args(argv))
    command = options.pop("command")
    try:
        run(command, options)
    except InputError as err:
        print(f"oodpose {command}: error: {err}", file=sys.stderr)
        sys.exit(2)
