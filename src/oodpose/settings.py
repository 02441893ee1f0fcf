"""The library's settings, their defaults, and the one translation from a study config to them.

The workflow's scripts and the command line both build their settings here, from a dict shaped
like the config (`config/schema.yaml`), so the two cannot disagree. Defaults live in these
dataclasses and in the schema, nowhere else (a test checks that the two agree). Torch-free, so the
workflow can import it when it builds the job graph.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from oodpose import paper
from oodpose.backbones import DEFAULT_TABLE, Backbone, get_backbone
from oodpose.errors import InputError
from oodpose.schedule import cell_schedule, search_grid
from oodpose.study import AUGMENTATIONS, DATASET_NAME, NORMALISATIONS, PRETRAINED, Cell, SearchCell

GLOBAL_SCALE = 0.8  # DeepLabCut's global_scale: frames are resized by it before the network
POS_DIST_THRESH = 17.0  # DeepLabCut's pos_dist_thresh: radius of a joint's positive disk, in pixels
LOCREF_WEIGHT = 0.05  # DeepLabCut's locref_loss_weight
TEST_SCALE = 1.0  # DeepLabCut's evaluate_network predicts on frames at their own size (rescale=False)


def check_ranges(settings, minimum: dict[str, int], maximum: dict[str, int] | None = None) -> None:
    """The config schema's ranges, with its wording, for settings that come from the command line too."""
    for name, low in minimum.items():
        for value in numbers(getattr(settings, name)):
            if value < low:
                raise InputError(f"{name}: {value} is less than the minimum of {low}")
    for name, high in (maximum or {}).items():
        for value in numbers(getattr(settings, name)):
            if value > high:
                raise InputError(f"{name}: {value} is greater than the maximum of {high}")


def numbers(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else () if value is None else (value,)


@dataclass(frozen=True)
class SyntheticSettings:
    """How the synthetic Horse-30 is drawn; the generator also writes its official split files."""

    n_individuals: int = 30
    n_frames: int = 8100  # over all individuals
    size: tuple[int, int] = (288, 162)  # width, height
    n_splits: int = 3
    n_train_individuals: int = 10
    seed: int = 0

    def __post_init__(self):
        check_ranges(self, dict.fromkeys(["n_individuals", "n_frames", "size", "n_splits", "n_train_individuals"], 1))


@dataclass(frozen=True)
class DatasetSettings:
    """How a dataset is split and normalised; part of the cache so every cell sees the same."""

    scale_bodyparts: tuple[str, str] | None = None  # None: a nose- and an eye-like bodypart
    labels: str | None = None  # a COCO keypoint file (relative to the dataset) instead of DeepLabCut's
    individuals: str | None = None  # CSV folder,individual mapping several folders to one animal
    n_splits: int = 3  # generated splits, for datasets without official split files
    n_train_individuals: int = 10  # training individuals of each generated split
    seed: int = 0
    official_splits: bool = field(default=True)  # use TrainTestInfo_shuffle*.csv when present

    def __post_init__(self):
        check_ranges(self, dict.fromkeys(["n_splits", "n_train_individuals"], 1))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; unset learning-rate fields come from the backbone table."""

    cache: str
    out: str
    backbone: str
    init: str = PRETRAINED
    split: int = 1
    fraction: int = 50
    iterations: int = 30000
    ilr: float | None = None  # initial learning rate
    final_lr: float | None = None  # the rate each cosine cycle decays to
    cycles: int | None = None  # cosine cycles (restarts + 1); from scratch the table's, else 1
    batch_size: int = 8
    snapshot_every: int = 5000
    curve_iterations: tuple[int, ...] = ()
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported); changes the numbers a little
    compile: bool = False  # torch.compile the network: minutes of warm-up; measured gains in bench/README.md
    augmentation: str = "paper"  # a preset of oodpose.data.augment: paper, imgaug or none
    input_normalisation: str = "weights"  # as the weights were trained, or "deeplabcut" (mean pixel subtracted)
    global_scale: float = GLOBAL_SCALE
    pos_dist_thresh: float = POS_DIST_THRESH
    locref_weight: float = LOCREF_WEIGHT
    validation_individuals: int = 0  # a search cell's held-out training individuals, scored instead of the tests
    # How and where it runs; these never change the result.
    device: str = "auto"
    threads: int | None = None
    workers: int | None = None
    cuda_graphs: bool = False  # replay each step from a CUDA graph (same kernels, one launch; oodpose.cuda_graphs)
    weights: str | None = None  # a file of ImageNet weights, instead of the table's source
    backbones_table: str = str(DEFAULT_TABLE)

    def __post_init__(self):
        positive = ["split", "fraction", "iterations", "batch_size", "snapshot_every", "curve_iterations", "cycles"]
        check_ranges(self, dict.fromkeys(positive, 1), {"fraction": 50})
        if self.augmentation not in AUGMENTATIONS:
            raise InputError(f"augmentation: {self.augmentation!r} is not one of {list(AUGMENTATIONS)}")
        if self.input_normalisation not in NORMALISATIONS:
            raise InputError(f"input_normalisation: {self.input_normalisation!r} is not one of {list(NORMALISATIONS)}")
        late = [i for i in self.curve_iterations if i >= self.iterations]
        if late:
            raise InputError(
                f"curve_iterations: {late} must be below iterations ({self.iterations}); the final model is "
                "evaluated anyway"
            )

    def resolved(self, backbone: Backbone | None = None) -> TrainConfig:
        """A copy with the schedule filled in from the backbone table (the schedule's one home); `backbone`, the
        table's row when the caller has read it already."""
        table = cell_schedule(backbone or get_backbone(self.backbone, self.backbones_table), self.init)
        return dataclasses.replace(
            self,
            ilr=table.ilr if self.ilr is None else self.ilr,
            final_lr=table.final_lr if self.final_lr is None else self.final_lr,
            cycles=table.cycles if self.cycles is None else self.cycles,
            curve_iterations=tuple(self.curve_iterations),
        )


RUNTIME_FIELDS = (
    "cache",
    "out",
    "device",
    "threads",
    "workers",
    "cuda_graphs",
    "weights",
    "backbones_table",
)
PATH_FIELDS = ("cache", "out", "weights", "backbones_table")
LATER_FIELDS = {"validation_individuals": 0}  # added after cells were trained: recorded only when not this value


def result_settings(config: TrainConfig) -> dict:
    """The fields of a resolved `config` that define its result: a change to any of them retrains the cell. A
    field added later is left out at its neutral value, so the cells trained before it existed stay valid."""
    return {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in RUNTIME_FIELDS and not (k in LATER_FIELDS and v == LATER_FIELDS[k])
    }


def synthetic_settings(dataset: dict) -> SyntheticSettings:
    """A dataset config's `synthetic:` section (and its split keys) as the generator's settings."""
    keys = {f.name for f in dataclasses.fields(SyntheticSettings)}
    chosen = {k: v for k, v in dataset.get("synthetic", {}).items() if k in keys}
    chosen |= {k: dataset[k] for k in ("n_splits", "n_train_individuals") if k in dataset}
    if "size" in chosen:
        chosen["size"] = tuple(chosen["size"])
    return SyntheticSettings(**chosen)


def dataset_settings(dataset: dict) -> DatasetSettings:
    """A dataset config (one entry under `datasets:`) as the cache's settings; the study's fractions and
    splits are not among them, so a study can grow without preparing its data again."""
    keys = {f.name for f in dataclasses.fields(DatasetSettings)}
    chosen = {k: v for k, v in dataset.items() if k in keys and v is not None}
    if "scale_bodyparts" in chosen:
        chosen["scale_bodyparts"] = tuple(chosen["scale_bodyparts"])
    return DatasetSettings(**chosen)


def train_config(training: dict, **fields) -> TrainConfig:
    """A config's `training:` section plus explicit `fields` (the cell, where it runs) as a resolved TrainConfig.

    `iterations` and `curve_iterations` may be per init ({imagenet: ..., scratch: ...}) as in the config;
    the cell's init picks its value.
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    chosen = {k: v for k, v in {**training, **fields}.items() if k in names and v is not None}
    init = chosen.get("init", TrainConfig.init)
    for key in ("iterations", "curve_iterations"):
        if isinstance(chosen.get(key), dict):
            per_init = chosen.pop(key)
            if init in per_init:
                chosen[key] = per_init[init]
    chosen |= {k: str(chosen[k]) for k in PATH_FIELDS if k in chosen}
    chosen |= {k: int(chosen[k]) for k in ("split", "fraction") if k in chosen}
    return TrainConfig(**chosen).resolved()


def fusion_group(config: dict, cell: Cell) -> list[Cell]:
    """The cells that `cell`'s training job may train with it under `training: fuse` (oodpose.fused): those that
    share its network. A study cell's: the study's other splits and fractions of its dataset, backbone and init.
    A search cell's: its search grid's other schedules in its split, which draw the very same batches. A cell
    outside its study or search trains alone."""
    if isinstance(cell, SearchCell):
        matrix = config["search"]
        plans = search_grid(matrix, cell.backbone, cell.init)
        group = [dataclasses.replace(cell, schedule=plan.name) for plan in plans]
    else:
        matrix = config["study"]
        splits, fractions = matrix["splits"], matrix["fractions"]
        group = [dataclasses.replace(cell, split=int(s), fraction=int(f)) for s in splits for f in fractions]
    ours = cell.dataset in config["study"]["datasets"] and cell.init in matrix["inits"]
    ours = ours and cell.backbone in paper.study_backbones(matrix["backbones"])
    return group if ours and cell in group else [cell]


def yaml_mistake(err: yaml.MarkedYAMLError) -> str:
    """Where PyYAML stopped and why, and where the construct it was reading began (often the real slip)."""
    at = lambda mark: f"line {mark.line + 1}, column {mark.column + 1}"  # noqa: E731
    text = f"{at(err.problem_mark)}: not valid YAML ({err.problem})" if err.problem_mark else "not valid YAML"
    if err.context_mark is not None and err.context:
        text += f", {err.context} at {at(err.context_mark)}"
    return text


def read_yaml_mapping(path: str | Path, what: str) -> dict:
    """A YAML file of `key: value` settings (`what` it is, for the message) as a dict, or one sentence naming
    the line and column at fault."""
    try:
        mapping = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist") from None
    except yaml.MarkedYAMLError as err:
        raise InputError(f"{path}, {yaml_mistake(err)}; fix it there") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({err}); fix it there") from None
    if not isinstance(mapping, dict):
        raise InputError(f"{path}: {what} is `key: value` settings at its top level, not a {type(mapping).__name__}")
    return mapping


def read_config_file(path: str | Path) -> dict:
    """A study config file as a dict: Snakemake, which parses the files of `--configfile` before any of the
    workflow's code runs, says only that one is not YAML, naming neither the file nor the line."""
    return read_yaml_mapping(path, "a config")


def check_config(config: dict, schema: dict) -> None:
    """Stop on the first problem of a study config with one sentence naming its key: the schema's rules first,
    then what a schema cannot say."""
    import jsonschema

    for name in config.get("datasets") or {}:
        if not re.fullmatch(DATASET_NAME, str(name)):
            raise InputError(
                f"config key datasets.{name}: a dataset's name may hold only letters, digits, '_' and '-' "
                "(it names a folder under results/ and a workflow wildcard)"
            )
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        raise InputError(f"config key {key or '(top level)'}: {error.message}; see config/schema.yaml")
    backbones = config["study"]["backbones"]
    twice = sorted(set(backbones) & set(paper.BACKBONES)) if paper.ALIAS in backbones else []
    if twice:
        raise InputError(f"config key study.backbones: {twice} are already among `{paper.ALIAS}`'s 13; list each once")
    for name, dataset in config["datasets"].items():
        if not {"path", "synthetic", "download"} & set(dataset):
            raise InputError(
                f"config key datasets.{name}: give `path` (a dataset folder), `synthetic` (generate one) "
                "or `download: horse10`"
            )
    training = config["training"]
    for init, iterations in training["curve_iterations"].items():
        try:  # TrainConfig's own check, at config time
            TrainConfig("", "", "", init, iterations=training["iterations"][init], curve_iterations=tuple(iterations))
        except InputError as err:
            raise InputError(f"config key training.{init}: {err}") from None
