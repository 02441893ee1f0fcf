"""Any DeepLabCut project as a dataset: project checks, individuals mappings, default scales, a whole study."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from oodpose.data.cache import Cache, prepare_cache
from oodpose.data.labels import read_labels
from oodpose.data.scales import default_scale_bodyparts
from oodpose.errors import InputError
from oodpose.settings import DatasetSettings


@pytest.fixture
def openfield(shared_data, tmp_path):
    """A writable copy of the real DeepLabCut project."""
    return shutil.copytree(shared_data / "dlc-openfield", tmp_path / "openfield")


def test_config_bodyparts_must_match_the_labels(openfield):
    config = yaml.safe_load((openfield / "config.yaml").read_text())
    config["bodyparts"] = ["snout", "leftear", "rightear", "tail_end"]
    (openfield / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=r"only in config.yaml \['tail_end'\], only in the labels \['tailbase'\]"):
        read_labels(openfield)


def test_individuals_mapping(openfield, tmp_path):
    second = openfield / "labeled-data" / "m4s1_b"
    shutil.copytree(openfield / "labeled-data" / "m4s1", second)
    h5 = pd.read_hdf(second / "CollectedData_Pranav.h5")
    h5.index = [i.replace("m4s1/", "m4s1_b/") for i in h5.index]
    h5.to_hdf(second / "CollectedData_Pranav.h5", key="df_with_missing")
    (second / "CollectedData_Pranav.csv").unlink()
    assert read_labels(openfield).frames["individual"].nunique() == 2
    mapping = tmp_path / "individuals.csv"
    mapping.write_text("folder,individual\nm4s1,mouse4\nm4s1_b,mouse4\n")
    labels = read_labels(openfield, mapping)
    assert set(labels.frames["individual"]) == {"mouse4"} and len(labels.frames) == 232
    mapping.write_text("folder,individual\nm9,mouse9\n")
    with pytest.raises(InputError, match=r"individuals.csv: names folders that are not in labeled-data/: \['m9'\]"):
        read_labels(openfield, mapping)


def test_unlabelled_frames_are_skipped_and_counted(openfield, caplog):
    path = openfield / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5"
    table = pd.read_hdf(path)
    table.iloc[:3] = np.nan
    table.to_hdf(path, key="df_with_missing")
    with caplog.at_level("INFO"):
        labels = read_labels(openfield)
    assert len(labels.frames) == 113 and "skipped 3 frames with no labels at all" in caplog.text


def test_default_scale_bodyparts():
    assert default_scale_bodyparts(("Nose", "Eye", "Wither")) == ("Nose", "Eye")
    assert default_scale_bodyparts(("snout", "left_eye", "right_eye")) == ("snout", "left_eye")
    with pytest.raises(InputError, match="name two bodyparts with `scale_bodyparts`"):
        default_scale_bodyparts(("snout", "leftear", "rightear", "tailbase"))


def test_coco_dataset_prepares_like_any_other(shared_data, tmp_path):
    root = shutil.copytree(shared_data / "horse10-samples", tmp_path / "coco")
    cache = Cache(
        prepare_cache(
            root, tmp_path / "cache", DatasetSettings(labels="test_horse10.json", n_splits=1, n_train_individuals=1)
        )
    )
    assert cache.bodyparts[:2] == ["Nose", "Eye"] and len(cache.index) == 3
    assert cache.index["scale"].nunique() == 1  # frame 900 (no nose, no eye) has its individual's scale


def test_a_study_on_a_single_animal_project(shared_data, tmp_path):
    from test_workflow import REPO, snakemake

    shutil.copytree(REPO / "config", tmp_path / "config")
    config = yaml.safe_load((tmp_path / "config" / "test.yaml").read_text())
    dataset = {
        "path": str(shared_data / "dlc-openfield"),
        "scale_bodyparts": ["leftear", "rightear"],
        "n_splits": 1,
        "n_train_individuals": 1,
    }
    config["datasets"] = {"openfield": dataset}
    config["study"] = {
        "datasets": ["openfield"],
        "backbones": ["efficientnet_lite0"],
        "splits": [1],
        "fractions": [50],
        "inits": ["imagenet"],
    }
    config["training"] |= {
        "iterations": {"imagenet": 2, "scratch": 2},
        "curve_iterations": {"imagenet": []},
        "threads": 2,
    }
    config["evaluation"] = {"test_scale": 0.5}  # its 640x480 frames at a quarter of the pixels: the test's cost
    (tmp_path / "config" / "openfield.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--cores", "2", "--configfile", "config/openfield.yaml")
    cell = tmp_path / "results" / "openfield" / "efficientnet_lite0" / "imagenet" / "split1_frac50"
    predictions = pd.read_hdf(cell / "predictions.h5")
    assert predictions.columns.get_level_values("scorer")[0] == "Pranav"
    assert list(predictions.columns.get_level_values("bodyparts").unique()) == [
        "snout",
        "leftear",
        "rightear",
        "tailbase",
    ]
    metrics = pd.read_csv(cell / "metrics.csv")
    ood = metrics[(metrics["set"] == "test_ood") & (metrics["bodypart"] == "all")]
    assert (ood["n"] == 0).all() and ood["normalised_error"].isna().all()  # empty, reported as such
    assert (metrics[metrics["set"] == "test_within"]["n"] > 0).all()
    assert (tmp_path / "results" / "openfield" / "summary" / "figures" / "figure1.png").exists()
    assert "OOD sets are empty" in (tmp_path / "results" / "logs" / "openfield" / "prepare.log").read_text()
