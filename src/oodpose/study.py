"""The study's vocabulary: what a cell is, where its files live, and the names of inits and sets.

Everything else (the workflow's wildcards, the CLI's choices, the analysis and the figures) takes
these names from here, so a new init or a renamed cell folder is one edit.
"""

from __future__ import annotations

INITS = ("imagenet", "scratch")  # ImageNet-pretrained backbone, or randomly initialised
SETS = ("train", "test_within", "test_ood")  # the frames a cell is evaluated on, by their role in its split
CELL = ("dataset", "backbone", "init", "split", "fraction")  # the columns that name one cell
CELL_DIR = "results/{dataset}/{backbone}/{init}/split{split}_frac{fraction}"
AUGMENTATIONS = ("paper", "imgaug", "none")  # training augmentation presets (oodpose.data.augment.PRESETS)
NORMALISATIONS = ("weights", "deeplabcut")  # input scaling: the weights' own, or DeepLabCut 2.x's mean subtraction
BATCHNORM_STATISTICS = ("running", "per_frame")  # at evaluation, for networks that train their batch norm
PAPER_BACKBONES = (  # the paper's 13; every other row of the backbone table is an added one
    "mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "resnet50", "resnet101",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
    "efficientnet_b6",
)  # fmt: skip
DATASET_NAME = "[A-Za-z0-9_-]+"  # a dataset's name is a path component and a Snakemake wildcard


def cell_dir(**cell) -> str:
    """The folder of one cell's model, metrics and predictions."""
    return CELL_DIR.format(**{key: cell[key] for key in CELL})


def backbone_group(name: str) -> str:
    """'paper' for the paper's 13 backbones, 'added' for any other."""
    return "paper" if name in PAPER_BACKBONES else "added"
