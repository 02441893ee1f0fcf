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
CELL = ("dataset", "backbone", "init", "split", "fraction")  # the columns that name one cell
CELL_DIR = "results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}"
AUGMENTATIONS = ("paper", "imgaug", "none")  # training augmentation presets (oodpose.data.augment.PRESETS)
NORMALISATIONS = ("weights", "deeplabcut")  # input scaling: the weights' own, or DeepLabCut 2.x's mean subtraction
BATCHNORM_STATISTICS = ("running", "per_frame")  # at evaluation, for networks that train their batch norm
DATASET_NAME = "[A-Za-z0-9_-]+"  # a dataset's name is a path component and a Snakemake wildcard


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
