"""One home per concept: the config's schema, the library's settings, the CLI and the workflow agree."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import oodpose
from oodpose import cli, settings
from oodpose.backbones import DEFAULT_TABLE, load_backbones
from oodpose.data.augment import PRESETS
from oodpose.errors import InputError
from oodpose.logs import rule_log
from oodpose.settings import TEST_SCALE, DatasetSettings, SyntheticSettings, TrainConfig
from oodpose.study import AUGMENTATIONS, BATCHNORM_STATISTICS, INITS, NORMALISATIONS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def schema_defaults(node: dict) -> dict:
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


def test_schema_defaults_are_the_settings_defaults():
    dataset = SCHEMA["properties"]["datasets"]["additionalProperties"]
    pairs = [
        (schema_defaults(dataset), DatasetSettings()),
        (schema_defaults(dataset["properties"]["synthetic"]), SyntheticSettings()),
        (schema_defaults(SCHEMA["properties"]["training"]), TrainConfig("", "", "resnet50")),
    ]
    for defaults, instance in pairs:
        # `threads` in the config is the workflow's thread count per job; the library takes the job's
        library = {k: getattr(instance, k) for k in defaults if hasattr(instance, k) and k != "threads"}
        library = {k: list(v) if isinstance(v, tuple) else v for k, v in library.items()}  # YAML has lists
        assert library == {k: v for k, v in defaults.items() if k in library}, type(instance).__name__
        assert library, f"no schema default is a field of {type(instance).__name__}"
    assert SCHEMA["properties"]["study"]["properties"]["inits"]["items"]["enum"] == list(INITS)
    assert SCHEMA["properties"]["training"]["properties"]["augmentation"]["enum"] == list(AUGMENTATIONS)
    assert set(PRESETS) == set(AUGMENTATIONS)
    assert SCHEMA["properties"]["training"]["properties"]["input_normalisation"]["enum"] == list(NORMALISATIONS)
    assert SCHEMA["properties"]["evaluation"]["properties"]["batchnorm"]["enum"] == list(BATCHNORM_STATISTICS)
    assert SCHEMA["properties"]["evaluation"]["properties"]["test_scale"]["default"] == TEST_SCALE


def every_key_is_described(node: dict, path: str = "") -> list[str]:
    """Keys without a description, where their object's own description does not cover its parts."""
    undocumented = []
    for key, child in node.get("properties", {}).items():
        if "description" not in child and not ("description" in node and path):
            undocumented.append(f"{path}{key}")
        undocumented += every_key_is_described(child, f"{path}{key}.")
    if isinstance(node.get("additionalProperties"), dict):
        undocumented += every_key_is_described(node["additionalProperties"], f"{path}*.")
    return undocumented


def test_schema_documents_every_setting():
    assert every_key_is_described(SCHEMA) == []


def captured(monkeypatch, module: str, name: str, argv: list[str]):
    """The settings object a CLI command hands to the library function `module.name`."""
    calls = []
    monkeypatch.setattr(f"{module}.{name}", lambda *args, **kwargs: calls.append(args))
    cli.main(argv)
    return calls[0][-1]


def test_cli_prepare_builds_what_the_workflow_builds(monkeypatch):
    from_cli = captured(monkeypatch, "oodpose.data.cache", "prepare_cache", ["prepare", "data", "out"])
    assert from_cli == settings.dataset_settings({}) == DatasetSettings()
    assert from_cli.scale_bodyparts is None  # auto-detected, as in the workflow
    argv = [
        "prepare",
        "d",
        "o",
        "--labels",
        "c.json",
        "--individuals",
        "i.csv",
        "--scale-bodyparts",
        "A",
        "B",
        "--n-splits",
        "2",
    ]
    config = {"labels": "c.json", "individuals": "i.csv", "scale_bodyparts": ["A", "B"], "n_splits": 2}
    assert captured(monkeypatch, "oodpose.data.cache", "prepare_cache", argv) == settings.dataset_settings(config)


def test_cli_train_builds_what_the_workflow_builds(monkeypatch):
    training = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["training"]
    workflow = settings.train_config(
        training, backbone="resnet50", init="scratch", split=2, fraction=5, cache="c", out="o"
    )
    argv = [
        "train",
        "c",
        "o",
        "--backbone",
        "resnet50",
        "--init",
        "scratch",
        "--split",
        "2",
        "--fraction",
        "5",
        "--iterations",
        str(training["iterations"]["scratch"]),
        "--snapshot-every",
        str(training["snapshot_every"]),
        "--curve-iterations",
        ",".join(map(str, training["curve_iterations"]["scratch"])),
        "--batch-size",
        str(training["batch_size"]),
        "--threads",
        str(training["threads"]),
    ]
    from_cli = captured(monkeypatch, "oodpose.train", "train", argv)
    assert from_cli == dataclasses.replace(workflow, threads=training["threads"])
    assert (from_cli.ilr, from_cli.final_lr, from_cli.cycles) == (5e-4, 5e-5, 3)  # the table's scratch schedule
    assert (
        not from_cli.cuda_graphs
        and captured(monkeypatch, "oodpose.train", "train", [*argv, "--cuda-graphs"]).cuda_graphs
    )


def test_train_config_resolves_the_cell():
    training = {"iterations": {"imagenet": 30, "scratch": 90}, "curve_iterations": {"imagenet": [10]}, "amp": False}
    pretrained = settings.train_config(training, backbone="resnet50", init="imagenet", cache="c", out="o")
    assert (pretrained.iterations, pretrained.curve_iterations, pretrained.amp) == (30, (10,), False)
    assert (pretrained.ilr, pretrained.final_lr, pretrained.cycles) == (1e-4, 1e-5, 1)
    scratch = settings.train_config(training, backbone="resnet50", init="scratch", ilr=0.1, cache="c", out="o")
    assert (scratch.iterations, scratch.curve_iterations, scratch.ilr, scratch.cycles) == (90, (), 0.1, 3)
    assert {"amp", "compile", "ilr", "iterations", "seed"} <= set(settings.result_settings(scratch))
    assert not {"cache", "out", "threads", "device", "cuda_graphs"} & set(settings.result_settings(scratch))


def test_synthetic_settings_take_the_datasets_split_keys():
    config = {"synthetic": {"n_individuals": 6, "n_frames": 60}, "n_splits": 2, "n_train_individuals": 3}
    made = settings.synthetic_settings(config)
    assert (made.n_individuals, made.n_frames, made.n_splits, made.n_train_individuals) == (6, 60, 2, 3)
    assert made.seed == SyntheticSettings.seed


def test_the_backbone_table_ships_inside_the_package():
    assert DEFAULT_TABLE.parent == Path(oodpose.__file__).parent
    assert (REPO / "config" / "backbones.tsv").resolve() == DEFAULT_TABLE.resolve()


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("family", "convnext", "column 'family': 'convnext' is not one of"),
        ("weights", "hub:resnet50", "column 'weights': 'hub:resnet50' does not match"),
        ("pretrained_ilr", -0.1, "column 'pretrained_ilr': -0.1 is less than or equal to"),
        ("scratch_cycles", 0, "column 'scratch_cycles': 0 is less than the minimum"),
        ("gpu_mem_mb", None, "column 'gpu_mem_mb': 'gpu_mem_mb' is a required property"),
    ],
)
def test_a_bad_table_row_is_named_by_line_and_column(tmp_path, column, value, message):
    table = pd.read_csv(DEFAULT_TABLE, sep="\t")
    table[column] = table[column].astype(object)
    table.loc[table["name"] == "resnet50", column] = value
    path = tmp_path / "backbones.tsv"
    table.to_csv(path, sep="\t", index=False)
    line = int(table.index[table["name"] == "resnet50"][0]) + 2
    with pytest.raises(InputError, match=f"backbones.tsv, line {line} \\(resnet50\\), {message}"):
        load_backbones(path)


def test_an_extra_column_or_a_repeated_name_is_refused(tmp_path):
    table = pd.read_csv(DEFAULT_TABLE, sep="\t")
    path = tmp_path / "backbones.tsv"
    table.assign(notes="x").to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match="line 2 .*Additional properties are not allowed \\('notes' was unexpected"):
        load_backbones(path)
    pd.concat([table, table.head(1)]).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=f"line {len(table) + 2}: backbone 'mobilenetv2_035' appears twice"):
        load_backbones(path)


def test_library_messages_reach_the_rules_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test, as is stderr
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with pytest.raises(SystemExit) as stopped, rule_log(tmp_path / "rule.log"):
            logging.getLogger("oodpose.data.labels").info("skipped 3 frames with no labels at all")
            print("a line of output")
            raise InputError("labels.csv, row 4, column 'x': 'abc' is not a number")
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers[:], root.level = handlers, level
    text = (tmp_path / "rule.log").read_text()
    assert "INFO oodpose.data.labels: skipped 3 frames with no labels at all" in text and "a line of output" in text
    assert "ERROR oodpose.logs: labels.csv, row 4, column 'x': 'abc' is not a number" in text
    console = capsys.readouterr().err
    assert stopped.value.code == 1 and "Traceback" not in text + console
    assert console == f"error: labels.csv, row 4, column 'x': 'abc' is not a number (log: {tmp_path / 'rule.log'})\n"


def test_config_refuses_curve_iterations_past_training_before_any_job():
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["training"]["curve_iterations"]["scratch"] = [2, 9]
    with pytest.raises(InputError, match=r"config key training.scratch: curve_iterations: \[9\] must be below"):
        settings.check_config(config, SCHEMA)


def test_the_schema_the_settings_and_the_cli_agree_on_what_a_study_may_set():
    """Every training setting is a `training:` key (the rest name the cell, override the backbone table's schedule
    for one cell, hold out a search cell's validation horses, or say where it runs), and each key is a flag of
    `oodpose train` with the schema's description."""
    jobs = {"fuse"}  # which cells one workflow job trains (oodpose.fused): not a setting of any one cell
    training = {k: v for k, v in SCHEMA["properties"]["training"]["properties"].items() if k not in jobs}
    cell, schedule = {"cache", "out", "backbone", "init", "split", "fraction"}, {"ilr", "final_lr", "cycles"}
    runtime, search = {"device", "workers", "weights", "backbones_table"}, {"validation_individuals"}
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(training) | cell | schedule | runtime | search
    assert set(SCHEMA["properties"]["search"]["properties"]) >= search
    train = cli.parser()._subparsers._group_actions[0].choices["train"]
    helps = {action.dest: (action.help or "").replace("%%", "%") for action in train._actions}
    assert search <= set(helps)
    for key, node in training.items():
        assert node["description"] in helps[key], key
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["training"] |= {"global_scale": 0.6, "pos_dist_thresh": 12.0, "locref_weight": 0.1}
    settings.check_config(config, SCHEMA)  # what docs/fidelity.md tells a user to set, the schema takes
    resolved = settings.train_config(config["training"], backbone="resnet50", cache="c", out="o")
    assert (resolved.global_scale, resolved.pos_dist_thresh, resolved.locref_weight) == (0.6, 12.0, 0.1)


def test_paper_in_a_studys_backbones_stands_for_the_papers_13():
    from oodpose import paper

    assert paper.study_backbones(["paper"]) == list(paper.BACKBONES) and len(paper.BACKBONES) == 13
    assert paper.study_backbones(["resnet50", "paper", "convnext_tiny"])[:2] == ["resnet50", "mobilenetv2_035"]
    assert paper.study_backbones(["paper", "convnext_tiny"])[-1] == "convnext_tiny"
    assert len(paper.study_backbones(["paper", "resnet50"])) == 13  # each name once
    assert set(paper.BACKBONES) <= set(load_backbones())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("splits", [1, 1, 2], "config key study.splits: [1, 1, 2] has non-unique elements"),
        ("fractions", [50, 50], "config key study.fractions: [50, 50] has non-unique elements"),
        ("backbones", ["resnet50", "resnet50"], "config key study.backbones: ['resnet50', 'resnet50'] has non-unique"),
        ("backbones", ["paper", "resnet50"], "config key study.backbones: ['resnet50'] are already among `paper`'s 13"),
    ],
)
def test_an_item_twice_in_a_study_list_is_refused_rather_than_counted_twice(key, value, message):
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["study"][key] = value
    with pytest.raises(InputError) as refused:
        settings.check_config(config, SCHEMA)
    assert message in str(refused.value)


def test_every_shipped_row_names_a_model_timm_has():
    """The workflow checks at config time only the rows a user added or changed; these are checked here."""
    from oodpose.feature_maps import check_known_to_timm

    for backbone in load_backbones().values():
        check_known_to_timm(backbone)


@pytest.mark.parametrize(
    "text, message",
    [
        ("study:\n  splits: [1, 2\n  fractions: [50]\n", "line 3, column 12: not valid YAML (expected ',' or ']'"),
        ("study:\n\tsplits: [1]\n", "line 2, column 1: not valid YAML (found character '\\t'"),
        ("- study\n", "a config is `key: value` settings at its top level, not a list"),
        ("datasets: {}\n", ": config key (top level): 'study' is a required property"),
    ],
)
def test_check_config_names_the_line_or_key_at_fault(tmp_path, capsys, text, message):
    """Snakemake says only 'Config file is not valid JSON or YAML' for a file named by --configfile."""
    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(SystemExit):
        cli.main(["check-config", str(tmp_path / "mine.yaml")])
    err = capsys.readouterr().err
    assert f"oodpose check-config: error: {tmp_path / 'mine.yaml'}" in err and message in err


def test_check_config_accepts_the_shipped_configs(capsys):
    overlays = ("schema.yaml", "horse-c.yaml")  # the schema, and an overlay that extends a study
    configs = [p for p in sorted((REPO / "config").glob("*.yaml")) if p.name not in overlays]
    cli.main(["check-config", *map(str, configs)])
    assert capsys.readouterr().out.count("a valid study config") == len(configs)
    paper, horse_c = REPO / "config" / "config.yaml", REPO / "config" / "horse-c.yaml"
    cli.main(["check-config", "--merged", str(paper), str(horse_c)])
    assert capsys.readouterr().out.strip() == f"{paper} + {horse_c}: a valid study config"
    with pytest.raises(SystemExit):  # alone, an overlay is no study
        cli.main(["check-config", str(horse_c)])
    assert "'datasets' is a required property" in capsys.readouterr().err
