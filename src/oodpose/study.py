"""The study's vocabulary: what a cell is, where its files live, and the names of inits and sets.

Everything else (the workflow's wildcards, the CLI's choices, the analysis and the figures) takes
these names from here, so a new init or a renamed cell folder is one edit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PRETRAINED, SCRATCH = "imagenet", "scratch"  # the inits: ImageNet-pretrained backbone, or randomly initialised
INITS = (PRETRAINED, SCRATCH)
TRAIN, WITHIN, OOD = "train", "test_within", "test_ood"  # the sets, by their frames' role in a cell's split
SETS = (TRAIN, WITHIN, OOD)
VALIDATION = "validation"  # a search cell's held-out training individuals, scored instead of any test frame
SELECTIONS = (VALIDATION, OOD)  # what a schedule search scores: validation horses, or the paper's test horses
SELECTED_ON = {  # each selection as every output of a search names it
    VALIDATION: "validation horses (training individuals held out of each split)",
    OOD: "oracle selection (test horses)",
}
CELL = ("dataset", "backbone", "init", "split", "fraction")  # the columns that name one cell
CELL_DIR = "results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}"
SEARCH_DIR = "results/{dataset}/search/{selection}"  # one schedule search: its cells, schedules.tsv, heatmaps
SEARCH_CELL_DIR = SEARCH_DIR + "/{backbone}/{init}/{schedule}/split{split}_frac{fraction}"
CORRUPTED_DIR = "results/{dataset}/corrupted/{corruption}/severity{severity}"  # one Horse-C set of a dataset
TRAIN_LOG = "train_log.csv"  # in a cell's folder: every iteration's loss and learning rate
# in a cell's folder: what evaluating its model writes (the evaluate, evaluate_corrupted and search_evaluate rules);
# a new model of the cell supersedes them all (oodpose.train.remove_old_results)
EVALUATIONS = ("metrics.csv", "predictions.h5", "metrics_corrupted.csv")
AUGMENTATIONS = ("paper", "imgaug", "none")  # training augmentation presets (oodpose.data.augment.PRESETS)
NORMALISATIONS = ("weights", "deeplabcut")  # input scaling: the weights' own, or DeepLabCut 2.x's mean subtraction
BATCHNORM_STATISTICS = ("running", "per_frame")  # at evaluation, for networks that train their batch norm
CORRUPTIONS = (  # Horse-C's: ImageNet-C's 15 common corruptions, in its order (noise, blur, weather, digital)
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)  # of each corruption (oodpose.corruptions)
DATASET_NAME = "[A-Za-z0-9_-]+"  # a dataset's name is a path component and a Snakemake wildcard


def cell_label(values) -> str:
    """How a message names a cell, from a mapping with its CELL keys but the dataset (and a search cell's schedule):
    a Cell's `as_dict`, a metrics row, a cell's settings.json."""
    schedule = f" {values['schedule']}" if values.get("schedule") else ""
    return f"{values['backbone']} {values['init']}{schedule} split {values['split']} {values['fraction']}%"


@dataclass(frozen=True, order=True)
class Cell:
    """One cell of a study; the same value names its training job, its folder and its rows in every table."""

    dataset: str
    backbone: str
    init: str
    split: int
    fraction: int

    @classmethod
    def of(cls, values) -> Cell:
        """The cell named by a mapping with the CELL keys: Snakemake wildcards, a metrics row, a config record."""
        return cls(*(values[key] for key in CELL[:3]), int(values["split"]), int(values["fraction"]))

    @property
    def folder(self) -> str:
        """Where its model, metrics and predictions live."""
        return CELL_DIR.format(**asdict(self))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, order=True)
class SearchCell(Cell):
    """A cell of a schedule search: a study cell trained on one schedule of the grid (`Schedule.name`),
    scored on held-out training individuals or, for the paper's oracle selection, on the test horses."""

    selection: str = VALIDATION
    schedule: str = ""

    @classmethod
    def of(cls, values) -> SearchCell:
        return cls(**Cell.of(values).as_dict(), selection=values["selection"], schedule=values["schedule"])

    @property
    def folder(self) -> str:
        return SEARCH_CELL_DIR.format(**asdict(self))
