import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oodpose.data.labels import read_label_file, read_labels
from oodpose.errors import InputError


def test_real_deeplabcut_project_h5_and_csv_agree(shared_data):
    folder = shared_data / "dlc-openfield" / "labeled-data" / "m4s1"
    h5, csv = read_label_file(folder / "CollectedData_Pranav.h5"), read_label_file(folder / "CollectedData_Pranav.csv")
    assert h5.shape == csv.shape == (116, 8)
    assert list(h5.index) == list(csv.index)
    np.testing.assert_allclose(h5.to_numpy(), csv.to_numpy(), rtol=1e-6)
    labels = read_labels(shared_data / "dlc-openfield")
    assert labels.bodyparts == ("snout", "leftear", "rightear", "tailbase")
    assert labels.scorer == "Pranav"
    assert set(labels.frames["individual"]) == {"m4s1"}
    assert (labels.frames[["width", "height"]].to_numpy() == [640, 480]).all()
    assert labels.keypoints.shape == (116, 4, 2)


def make_project(root, index_style="flat", fmt="h5"):
    """A two-frame DeepLabCut project with one labels file per folder."""
    folder = root / "labeled-data" / "vid1"
    folder.mkdir(parents=True)
    names = ["img0.png", "img1.png"]
    for n in names:
        Image.new("RGB", (40, 30), (10, 20, 30)).save(folder / n)
    columns = pd.MultiIndex.from_product([["me"], ["nose", "eye"], ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    if index_style == "flat":
        index = [f"labeled-data/vid1/{n}" for n in names]
    else:
        index = pd.MultiIndex.from_tuples([("labeled-data", "vid1", n) for n in names])
    df = pd.DataFrame([[1.0, 2.0, 3.0, 4.0], [5.0, np.nan, np.nan, np.nan]], index=index, columns=columns)
    if fmt == "h5":
        df.to_hdf(folder / "CollectedData_me.h5", key="df_with_missing")
    else:
        df.to_csv(folder / "CollectedData_me.csv")
    return root


@pytest.mark.parametrize("fmt", ["h5", "csv"])
def test_three_level_index_reads_like_flat(tmp_path, fmt):
    flat = read_labels(make_project(tmp_path / "a", "flat", fmt))
    tuples = read_labels(make_project(tmp_path / "b", "tuple", fmt))
    assert (
        list(flat.frames["frame"])
        == list(tuples.frames["frame"])
        == ["labeled-data/vid1/img0.png", "labeled-data/vid1/img1.png"]
    )
    np.testing.assert_array_equal(flat.keypoints, tuples.keypoints)
    assert np.isnan(flat.keypoints[1, 1]).all()


def test_missing_dataset_folder_says_how_to_get_data(tmp_path):
    with pytest.raises(InputError, match="does not exist.*synthesize.*Horse-30"):
        read_labels(tmp_path / "nope")


def test_missing_image_is_named(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "labeled-data" / "vid1" / "img1.png").unlink()
    with pytest.raises(InputError, match="img1.png: image listed in the labels is missing"):
        read_labels(root)


def test_unreadable_image_is_named(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "labeled-data" / "vid1" / "img0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="img0.png: image listed in the labels is unreadable"):
        read_labels(root)


def test_labels_without_bodyparts_or_unknown_format(tmp_path):
    root = make_project(tmp_path / "p")
    path = root / "labeled-data" / "vid1" / "CollectedData_me.h5"
    pd.DataFrame({"a": [1]}).to_hdf(path, key="df_with_missing")
    with pytest.raises(InputError, match="CollectedData_me.h5: expected columns"):
        read_labels(root)
    empty = pd.DataFrame(
        index=["x"], columns=pd.MultiIndex.from_arrays([[], [], []], names=["scorer", "bodyparts", "coords"])
    )
    empty.to_hdf(path, key="df_with_missing")
    with pytest.raises(InputError, match="no bodyparts"):
        read_labels(root)
    path.unlink()
    (path.parent / "CollectedData_me.json").write_text("{}")
    with pytest.raises(InputError, match="no CollectedData"):
        read_labels(root)
    with pytest.raises(InputError, match="unknown label format"):
        read_label_file(path.parent / "CollectedData_me.json")
