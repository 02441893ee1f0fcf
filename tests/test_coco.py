import json

import numpy as np
import pytest

from oodpose.data.coco import read_coco
from oodpose.data.scales import frame_scales
from oodpose.errors import InputError


def test_mmpose_horse10_annotations(shared_data, tmp_path):
    samples = shared_data / "horse10-samples"
    labels = read_coco(samples / "test_horse10.json", samples, individual="horse")
    assert labels.bodyparts[:2] == ("Nose", "Eye") and len(labels.bodyparts) == 22
    assert list(labels.frames["frame"]) == ["0244.png", "0292.png", "0465.png"]
    assert (labels.frames[["width", "height"]].to_numpy() == [288, 162]).all()
    assert labels.keypoints[0, 0].tolist() == pytest.approx([126.0, 71.1])
    unlabelled = np.isnan(labels.keypoints).any(-1).sum(axis=1)
    assert unlabelled.tolist() == [0, 3, 11]  # num_keypoints 22, 19, 11 in the file
    assert np.isnan(labels.keypoints[2, :2]).all()  # frame 900 has neither nose nor eye
    scales = frame_scales(tmp_path, labels, ("Nose", "Eye"))  # no Horsescale.h5 here: from the individual
    expected = np.median(np.linalg.norm(labels.keypoints[:2, 0] - labels.keypoints[:2, 1], axis=1))
    assert scales.tolist() == pytest.approx([expected] * 3)


def test_bad_coco_files(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{}")
    with pytest.raises(InputError, match="a.json: not a COCO keypoint file"):
        read_coco(path, tmp_path)
    path.write_text(json.dumps({"categories": [{"id": 1, "keypoints": ["a"]}], "images": [], "annotations": []}))
    with pytest.raises(InputError, match="no annotated images"):
        read_coco(path, tmp_path)
