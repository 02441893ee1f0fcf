"""Horse-C: the corruptions pinned and checked against the library, the corrupted sets, their evaluation,
statistics and claims."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oodpose import robustness
from oodpose.aggregate import read_corrupted
from oodpose.cli import main
from oodpose.corruptions import (
    CORRUPTIONS,
    OWN_GENERATOR,
    corrupt,
    corrupt_cache,
    corrupted_view,
    frame_seed,
    horse_c_rows,
)
from oodpose.data.cache import Cache
from oodpose.errors import InputError
from oodpose.evaluate import evaluate, evaluate_corrupted
from oodpose.findings import SUPPORTED, findings
from oodpose.settings import read_yaml_mapping
from oodpose.study import OOD, PRETRAINED, SCRATCH, WITHIN

REPO = Path(__file__).resolve().parents[1]
imagecorruptions = pytest.importorskip("imagecorruptions")  # the horse-c extra, which dev installs
FRAME = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.mark.parametrize(
    "corruption, expected",
    [  # a fixed frame, severity 3, seed 1234: numpy's generator, and one that draws from its own
        ("gaussian_noise", "0f293be5aaa8f8101e77ded6a6733318fcb33f178679c79b4a9fbef714442d90"),
        ("impulse_noise", "f3f0b8a2fcc18f36bf847cca6da8ab6d54352f87612aedd6a555e0c9511c2332"),
    ],
)
def test_a_fixed_frame_corruption_severity_and_seed_give_known_pixels(corruption, expected):
    assert digest(corrupt(FRAME, corruption, 3, 1234)) == expected


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_every_corruption_is_the_librarys_under_its_seed_and_repeatable(corruption):
    state = np.random.get_state()
    ours = corrupt(FRAME, corruption, 2, 99)
    assert all(np.array_equal(a, b) for a, b in zip(state, np.random.get_state(), strict=True))  # restored
    np.random.seed(99)
    theirs = imagecorruptions.corrupt(
        FRAME, severity=2, corruption_name=corruption, **({"seed": 99} if corruption in OWN_GENERATOR else {})
    )
    assert ours.dtype == np.uint8 and ours.shape == FRAME.shape
    assert np.array_equal(ours, theirs)
    assert np.array_equal(ours, corrupt(FRAME, corruption, 2, 99))
    assert not np.array_equal(ours, FRAME)


def test_seeds_differ_by_frame_corruption_and_severity_and_never_change():
    seed = frame_seed("labeled-data/Sample1/0001.png", "gaussian_noise", 3)
    assert seed == 3072874029
    others = {
        frame_seed("labeled-data/Sample1/0002.png", "gaussian_noise", 3),
        frame_seed("labeled-data/Sample1/0001.png", "shot_noise", 3),
        frame_seed("labeled-data/Sample1/0001.png", "gaussian_noise", 4),
    }
    assert seed not in others and len(others) == 3


def test_a_missing_library_is_one_sentence_on_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    with pytest.raises(InputError, match=r"pip install -e '\.\[horse-c\]'"):
        corrupt(FRAME, "contrast", 1, 0)


def test_the_schema_offers_exactly_the_fifteen_corruptions():
    schema = read_yaml_mapping(REPO / "config" / "schema.yaml", "the schema")
    corruptions = schema["properties"]["evaluation"]["properties"]["corruptions"]["properties"]
    assert tuple(corruptions["types"]["items"]["enum"]) == CORRUPTIONS
    overlay = read_yaml_mapping(REPO / "config" / "horse-c.yaml", "a config")["evaluation"]["corruptions"]
    assert tuple(overlay["types"]) == CORRUPTIONS and overlay["severities"] == [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def corrupted_set(synthetic_cache, tmp_path_factory):
    return corrupt_cache(synthetic_cache, tmp_path_factory.mktemp("horse-c") / "contrast3", "contrast", 3, workers=2)


def test_a_corrupted_set_holds_every_tested_frame_at_its_own_size(synthetic_cache, corrupted_set, tmp_path):
    cache = Cache(synthetic_cache)
    meta = json.loads((corrupted_set / "meta.json").read_text())
    rows = horse_c_rows(cache)
    assert meta["cache_fingerprint"] == cache.fingerprint and meta["n_frames"] == len(rows)
    assert meta["corruption"] == "contrast" and meta["severity"] == 3 and meta["library"].startswith("imagecorrupt")
    images = np.load(corrupted_set / "images.npy")
    frames = cache.index["frame"].to_numpy()
    for row in rows[:: max(1, len(rows) // 5)]:
        width, height = cache.sizes[row]
        frame = np.ascontiguousarray(cache.images[row, :height, :width])
        seeded = corrupt(frame, "contrast", 3, frame_seed(frames[row], "contrast", 3))
        assert np.array_equal(images[row, :height, :width], seeded)
        assert not images[row, height:].any() and not images[row, :, width:].any()  # the canvas' padding
    untested = np.setdiff1d(np.arange(len(frames)), rows)
    assert not images[untested].any()
    one_process = corrupt_cache(synthetic_cache, tmp_path / "again", "contrast", 3, workers=1)
    assert digest(np.load(one_process / "images.npy")) == digest(images)  # processes change no pixel


def test_noise_is_the_same_in_one_process_and_in_several(synthetic_cache, tmp_path):
    one = corrupt_cache(synthetic_cache, tmp_path / "one", "gaussian_noise", 1, workers=1)
    two = corrupt_cache(synthetic_cache, tmp_path / "two", "gaussian_noise", 1, workers=2)
    assert digest(np.load(one / "images.npy")) == digest(np.load(two / "images.npy"))


def test_a_set_corrupted_from_another_cache_is_refused(synthetic_cache, corrupted_set, tmp_path):
    other = shutil.copytree(corrupted_set, tmp_path / "other")
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps(meta | {"cache_fingerprint": "0" * 16}))
    with pytest.raises(InputError, match="delete .* and rerun"):
        corrupted_view(Cache(synthetic_cache), other)


@pytest.fixture(scope="module")
def trained_cell(synthetic_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("cell") / "cell"
    main(
        ["train", str(synthetic_cache), str(out), "--backbone", "efficientnet_lite0", "--iterations", "4"]
        + ["--batch-size", "2", "--snapshot-every", "2", "--curve-iterations", "2", "--device", "cpu"]
    )
    return out


def test_uncorrupted_frames_score_as_the_clean_evaluation(synthetic_cache, trained_cell, tmp_path):
    """A 'corrupted' set that holds the clean pixels gives the final model's clean metrics: the wiring is exact."""
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(synthetic_cache / "images.npy", clean / "images.npy")
    meta = {"corruption": "contrast", "severity": 1, "cache_fingerprint": Cache(synthetic_cache).fingerprint}
    (clean / "meta.json").write_text(json.dumps(meta))
    corrupted = evaluate_corrupted(trained_cell, synthetic_cache, [clean], tmp_path / "c.csv", device="cpu")
    metrics = evaluate(trained_cell, synthetic_cache, tmp_path / "p.h5", tmp_path / "m.csv", device="cpu")
    final = metrics[(metrics["iteration"] == 4) & metrics["set"].isin([WITHIN, OOD])]
    keys = ["set", "bodypart"]
    joined = final.merge(corrupted, on=keys, suffixes=("", "_corrupted"))
    assert len(joined) == len(final) == len(corrupted)
    for column in ("n", "normalised_error", "pck"):
        assert np.allclose(joined[column], joined[f"{column}_corrupted"], equal_nan=True)


def test_the_cli_corrupts_evaluates_aggregates_and_draws(synthetic_cache, trained_cell, tmp_path, capsys):
    sets = []
    for severity in (1, 5):
        out = tmp_path / f"noise{severity}"
        main(["corrupt", str(synthetic_cache), str(out), "--corruption", "gaussian_noise", "--severity", str(severity)])
        sets.append(str(out))
    cell = tmp_path / "cell"
    shutil.copytree(trained_cell, cell)
    main(
        [
            "evaluate-corrupted",
            str(cell),
            str(synthetic_cache),
            "--corrupted",
            *sets,
            "--metrics",
            str(cell / "metrics_corrupted.csv"),
        ]
    )
    table = pd.read_csv(cell / "metrics_corrupted.csv")
    assert set(table["severity"]) == {1, 5} and set(table["set"]) == {WITHIN, OOD}
    assert set(table["corruption"]) == {"gaussian_noise"}
    assert {"backbone", "init", "split", "fraction", "n", "normalised_error", "pck"} <= set(table.columns)
    main(
        [
            "evaluate",
            str(cell),
            str(synthetic_cache),
            "--predictions",
            str(cell / "predictions.h5"),
            "--metrics",
            str(cell / "m.csv"),
        ]
    )
    (cell / "m.csv").rename(cell / "metrics.csv")
    main(["aggregate", str(tmp_path / "summary"), str(cell), "--dataset", "toy"])
    summary = tmp_path / "summary"
    severity = pd.read_csv(summary / "corruptions" / "severity.csv")
    assert set(severity["severity"]) == {0, 1, 5}  # 0: the clean frames
    assert "## gaussian_noise" in (summary / "corruptions" / "tables.md").read_text()
    assert "(f)" in (summary / "findings.md").read_text()
    main(["figures", str(summary), str(cell), "--cache", str(synthetic_cache)])
    assert (summary / "figures" / "corruptions.png").stat().st_size > 1000

    unscored = tmp_path / "unscored"  # another split's cell, not evaluated on Horse-C: not silently left out
    shutil.copytree(cell, unscored)
    (unscored / "metrics_corrupted.csv").unlink()
    pd.read_csv(cell / "metrics.csv").assign(split=2).to_csv(unscored / "metrics.csv", index=False)
    settings = json.loads((cell / "settings.json").read_text()) | {"split": 2}
    (unscored / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(SystemExit) as refused:
        main(["aggregate", str(tmp_path / "again"), str(cell), str(unscored), "--dataset", "toy"])
    assert refused.value.code == 2 and "no Horse-C scores" in capsys.readouterr().err


def test_a_summary_refuses_horse_c_scores_that_cover_cells_or_corruptions_unevenly(tmp_path):
    """By hand (`oodpose aggregate` on cell folders) a cell may lack Horse-C scores, or have them on other sets."""
    row = dict(dataset="toy", backbone="b", init="imagenet", split=1, fraction=50, set=OOD, bodypart="all")
    row |= dict(n=1, normalised_error=0.5, pck=0.5)
    metrics = pd.DataFrame([row, row | {"split": 2}])
    metadata = [dict(backbone="b", imagenet_top1=70.0, family="x", backbones="paper")]

    def scores(name: str, split: int, sets: list[tuple[str, int]]) -> Path:
        rows = [row | {"split": split, "corruption": c, "severity": s} for c, s in sets]
        pd.DataFrame(rows).to_csv(tmp_path / name, index=False)
        return tmp_path / name

    both = [("gaussian_noise", 1), ("fog", 3)]
    first, other_sets = scores("a.csv", 1, both), scores("b.csv", 2, both[:1])
    with pytest.raises(InputError, match=r"b.csv scores the corrupted sets .*; evaluate every cell on the same"):
        read_corrupted([first, other_sets], metrics, metadata)
    with pytest.raises(InputError, match=r"no Horse-C scores \(metrics_corrupted.csv\): b imagenet split 2 50%;"):
        read_corrupted([first], metrics, metadata)
    assert len(read_corrupted([first, scores("b.csv", 2, both)], metrics, metadata)) == 4
    assert read_corrupted([], metrics, metadata) is None


def cells_table(gap: float, growth: float, slope: float) -> pd.DataFrame:
    """Corrupted metrics of 3 backbones x 3 splits x 2 inits x 2 sets x 2 corruptions x 3 severities: pretrained
    error falls by `slope` per ImageNet point; scratch adds `gap` + `growth` x severity, with split noise."""
    rng = np.random.default_rng(0)
    rows = []
    for backbone, top1 in (("a", 70.0), ("resnet50", 75.0), ("c", 80.0)):
        for split in (1, 2, 3):
            for init in (PRETRAINED, SCRATCH):
                for set_ in (WITHIN, OOD):
                    for corruption in ("gaussian_noise", "fog"):
                        for severity in (1, 3, 5):
                            error = 0.5 + slope * (top1 - 75) + 0.02 * severity + rng.normal(0, 0.002)
                            if init == SCRATCH:
                                error += gap + growth * severity
                            rows.append(
                                dict(dataset="d", backbone=backbone, imagenet_top1=top1, backbones="paper")
                                | dict(init=init, split=split, fraction=50, set=set_, corruption=corruption)
                                | dict(severity=severity, bodypart="all", normalised_error=error, pck=1 - error)
                            )
    return pd.DataFrame(rows)


def test_mce_is_relative_to_resnet50_pretrained():
    table = robustness.corruption_errors(cells_table(0.1, 0.01, -0.01))
    reference = table[(table["backbone"] == "resnet50") & (table["init"] == PRETRAINED)]
    assert np.allclose(reference["mce"], 1.0) and (table["reference"] == "resnet50 (imagenet)").all()
    pretrained = table[table["init"] == PRETRAINED].groupby("backbone")["mce"].mean()
    assert pretrained["c"] < 1 < pretrained["a"]  # better ImageNet, lower corruption error
    without = robustness.corruption_errors(cells_table(0.1, 0.01, -0.01).query("backbone != 'resnet50'"))
    assert (without["reference"] == "a (imagenet)").all()


def test_horse_c_claims_follow_the_numbers():
    clean = cells_table(0, 0, 0).drop(columns=["corruption", "severity"]).assign(iteration=10)
    clean = clean.drop_duplicates(["backbone", "init", "split", "set"])
    rows = findings(clean, horse10=False, corrupted=cells_table(0.1, 0.01, -0.01)).set_index(["claim", "scope"])
    for claim in ("f", "g", "h"):
        assert (rows.loc[claim, "verdict"] == SUPPORTED).all(), claim
        assert set(rows.loc[claim].index) == {WITHIN, OOD}
    shrinking = findings(clean, horse10=False, corrupted=cells_table(0.2, -0.02, 0.01)).set_index("claim")
    assert (shrinking.loc["g", "verdict"] == "contradicted").all()
    assert (shrinking.loc["h", "verdict"] == "contradicted").all()
    untested = findings(clean, horse10=False).set_index("claim")
    assert untested.loc[["f", "g", "h"], "statistic"].str.startswith("not testable").all()
    one_severity = cells_table(0.1, 0.01, -0.01).query("severity == 3")
    assert findings(clean, horse10=False, corrupted=one_severity).set_index("claim").loc["g", "n"] == 0


def test_a_misspelt_corruption_in_a_config_is_named_by_its_key():
    from oodpose.cli import SCHEMA
    from oodpose.settings import check_config

    config = read_yaml_mapping(REPO / "config" / "test.yaml", "a config")
    config["evaluation"]["corruptions"]["types"] = ["gaussian"]
    with pytest.raises(InputError, match=r"evaluation\.corruptions\.types\[0\]: 'gaussian' is not one of"):
        check_config(config, SCHEMA)


def test_frames_too_small_to_corrupt_stop_before_any_work(synthetic_cache, tmp_path, monkeypatch):
    monkeypatch.setattr("oodpose.corruptions.MIN_SIZE", 10_000)  # every synthetic frame is then too small
    with pytest.raises(InputError, match=r"frame labeled-data/.* is smaller than 10000 pixels"):
        corrupt_cache(synthetic_cache, tmp_path / "set", "contrast", 1)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_search_cell_is_never_scored_on_corrupted_frames(synthetic_cache, trained_cell, corrupted_set, tmp_path):
    cell = shutil.copytree(trained_cell, tmp_path / "cell")
    settings = json.loads((cell / "settings.json").read_text())
    (cell / "settings.json").write_text(json.dumps(settings | {"validation_individuals": 1}))
    with pytest.raises(InputError, match="validation horses"):
        evaluate_corrupted(cell, synthetic_cache, [corrupted_set], tmp_path / "m.csv", device="cpu")


def test_no_corrupted_set_to_score_is_named_before_any_work(tmp_path):
    with pytest.raises(InputError, match="no corrupted sets to evaluate on; list some in evaluation.corruptions"):
        evaluate_corrupted(tmp_path / "no-cell", tmp_path / "no-cache", [], tmp_path / "m.csv", device="cpu")
