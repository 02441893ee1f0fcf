"""The files DeepLabCut itself reads: the synthetic Horse-30 is a DeepLabCut project, and the HDF files oodpose
writes in DeepLabCut's layout read under DeepLabCut's pandas (2.x) as under 3.x."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_reliability import cell
from test_workflow import REPO

from oodpose.data.cache import prepare_cache
from oodpose.data.labels import read_label_file, read_labels, write_label_file
from oodpose.data.synthetic import BODYPARTS
from oodpose.evaluate import evaluate
from oodpose.settings import DatasetSettings
from oodpose.train import train


def first_label_file(dataset):
    return sorted((dataset / "labeled-data").glob("*/CollectedData_synthetic.h5"))[0]


def test_label_files_are_in_the_fixed_format_deeplabcut_writes(synthetic_dataset):
    """Before: a table-format file, which pandas 3 writes without the version stamp pandas 2.3.3 needs to read it."""
    with pd.HDFStore(first_label_file(synthetic_dataset), mode="r") as store:
        assert store.keys() == ["/df_with_missing"] and not store.get_storer("df_with_missing").is_table
    assert pd.read_hdf(first_label_file(synthetic_dataset)).shape[1] == 44


def test_the_synthetic_dataset_is_a_single_animal_deeplabcut_project(synthetic_dataset):
    config = yaml.safe_load((synthetic_dataset / "config.yaml").read_text())
    assert config["scorer"] == "synthetic" and config["engine"] == "pytorch" and not config["multianimalproject"]
    assert config["bodyparts"] == list(BODYPARTS) and config["project_path"] == str(synthetic_dataset.resolve())
    assert all(bone[0] in BODYPARTS and bone[1] in BODYPARTS for bone in config["skeleton"])
    folders = sorted(p.name for p in (synthetic_dataset / "labeled-data").iterdir())
    videos = {Path(video).stem: crop["crop"] for video, crop in config["video_sets"].items()}
    assert sorted(videos) == folders and set(videos.values()) == {"0, 288, 0, 162"}
    assert not list(synthetic_dataset.glob("CollectedData_*"))  # no merged file beside the project's own
    for folder in folders:
        h5 = synthetic_dataset / "labeled-data" / folder / "CollectedData_synthetic.h5"
        rows = pd.read_hdf(h5).index
        assert rows.nlevels == 3 and set(rows.get_level_values(1)) == {folder}  # as DeepLabCut >= 2.3 writes them
        csv = read_label_file(h5.with_suffix(".csv"))
        pd.testing.assert_frame_equal(csv, read_label_file(h5), check_names=False)


def test_the_project_reads_in_its_video_order_into_the_cache_a_merged_file_made(synthetic_dataset, tmp_path):
    """The cache of the project equals, fingerprint and all, the cache of the same labels in one merged file
    (the layout before), so existing caches stay valid; folders merge in config.yaml's video order."""
    config = yaml.safe_load((synthetic_dataset / "config.yaml").read_text())
    labels = read_labels(synthetic_dataset)
    order = [Path(video).stem for video in config["video_sets"]]
    assert list(dict.fromkeys(labels.frames["individual"])) == order != sorted(order)
    merged = shutil.copytree(synthetic_dataset, tmp_path / "merged")
    for path in [merged / "config.yaml", *merged.glob("labeled-data/*/CollectedData_*")]:
        path.unlink()
    write_label_file(labels, merged / "CollectedData_synthetic.h5")
    settings = DatasetSettings(n_train_individuals=2)
    project = prepare_cache(synthetic_dataset, tmp_path / "project-cache", settings)
    before = prepare_cache(merged, tmp_path / "merged-cache", settings)
    assert (
        json.loads((project / "meta.json").read_text())["fingerprint"]
        == json.loads((before / "meta.json").read_text())["fingerprint"]
    )


READ_UNDER_PANDAS_2 = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    assert pd.__version__.startswith("2."), pd.__version__
    out = {}
    for path in sys.argv[1:]:
        frame = pd.read_hdf(path)
        out[path] = {"shape": list(frame.shape), "sum": float(frame.sum(numeric_only=True).sum())}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="session")
def pandas_2(tmp_path_factory):
    """A small environment with DeepLabCut 3's pandas (< 3) and tables; skipped where pip cannot reach them."""
    env = tmp_path_factory.mktemp("pandas2")
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = env / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--timeout", "10", "--retries", "1", "pandas>=2,<3", "tables"],
        capture_output=True,
        text=True,
    )
    if pip.returncode:
        pytest.skip(f"pandas < 3 could not be installed: {pip.stderr.strip().splitlines()[-1:]}")
    return python


@pytest.fixture(scope="module")
def evaluated_cell(synthetic_cache, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cell")
    train(cell(synthetic_cache, folder))
    evaluate(folder, synthetic_cache, folder / "predictions.h5", folder / "metrics.csv", device="cpu")
    return folder


@pytest.mark.slow
def test_every_deeplabcut_file_of_a_run_reads_under_pandas_2(pandas_2, synthetic_dataset, evaluated_cell):
    labels = sorted((synthetic_dataset / "labeled-data").glob("*/CollectedData_synthetic.h5"))
    files = [*labels, synthetic_dataset / "Horsescale.h5", evaluated_cell / "predictions.h5"]
    read = subprocess.run([pandas_2, "-c", READ_UNDER_PANDAS_2, *map(str, files)], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    seen = json.loads(read.stdout)
    for path in files:
        frame = pd.read_hdf(path)
        assert seen[str(path)]["shape"] == list(frame.shape)
        assert seen[str(path)]["sum"] == pytest.approx(float(frame.sum(numeric_only=True).sum()))


def page_blocks(page: Path) -> list[tuple[str, str]]:
    """A docs page's Python blocks, each with the environment its first line names."""
    blocks = page.read_text().split("```python\n")[1:]
    return [(code.split("\n", 1)[0].removeprefix("# "), code.split("```")[0]) for code in blocks]


@pytest.mark.slow
def test_the_deeplabcut_page_runs(pandas_2, synthetic_dataset, synthetic_cache, evaluated_cell, tmp_path):
    """docs/deeplabcut.md's recipes, each in its environment: DeepLabCut's own where OODPOSE_DEEPLABCUT_PYTHON
    names a Python with deeplabcut, else the pandas-2 one for the recipes that need only pandas."""
    dataset = tmp_path / "results" / "synthetic" / "dataset"
    shutil.copytree(synthetic_dataset, dataset)
    (tmp_path / "results" / "synthetic" / "cache").symlink_to(synthetic_cache)
    predictions = tmp_path / "results" / "synthetic" / "efficientnet_lite0" / "imagenet" / "split1_frac50"
    predictions.mkdir(parents=True)
    shutil.copy(evaluated_cell / "predictions.h5", predictions)
    deeplabcut = os.environ.get("OODPOSE_DEEPLABCUT_PYTHON")
    blocks = page_blocks(REPO / "docs" / "deeplabcut.md")
    assert [env for env, _ in blocks] == ["oodpose's environment"] + ["DeepLabCut's environment"] * 2
    for env, code in blocks:
        python = sys.executable if env.startswith("oodpose") else deeplabcut or pandas_2
        if python == pandas_2 and "import deeplabcut" in code:
            continue
        ran = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert ran.returncode == 0, f"{env}:\n{code}\n{ran.stderr[-3000:]}"

    split = json.loads((tmp_path / "split1_frac50.json").read_text())
    frames = pd.read_parquet(synthetic_cache / "index.parquet")["frame"]
    assert split["train"] and set(split["train"]) < set(frames) and not set(split["train"]) & set(split["test_ood"])
    machine = sorted(dataset.glob("labeled-data/*/machinelabels-iter0.h5"))
    assert len(machine) == len(list(dataset.glob("labeled-data/*")))
    rows = pd.concat(pd.read_hdf(path) for path in machine)
    assert rows.index.nlevels == 3 and len(rows) == len(pd.read_hdf(predictions / "predictions.h5"))
    if deeplabcut:
        (made,) = dataset.glob("training-datasets/*/*/Documentation_data-Horse30_*shuffle1.pickle")
        read = "import pickle, sys; "
        read += "_, train, test, _ = pickle.load(open(sys.argv[1], 'rb')); print(len(train), len(test))"
        counts = subprocess.run([deeplabcut, "-c", read, made], capture_output=True, text=True, check=True).stdout
        assert counts.split() == [str(len(split["train"])), str(len(split["test_within"]) + len(split["test_ood"]))]


def test_a_yaml_mistake_in_a_projects_config_is_named_by_line_and_column(synthetic_dataset, tmp_path):
    from oodpose.errors import InputError

    project = shutil.copytree(synthetic_dataset, tmp_path / "project")
    config = project / "config.yaml"
    config.write_text(config.read_text().replace("Task: Horse30", "Task: [Horse30", 1))
    with pytest.raises(InputError, match=r"config.yaml, line \d+, column \d+: not valid YAML .*; fix it there"):
        read_labels(project)
