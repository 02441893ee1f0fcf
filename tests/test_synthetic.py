import numpy as np
import pandas as pd

from oodpose.data.labels import read_labels
from oodpose.data.synthetic import BODYPARTS, frame_geometry, generate, pose, render_frame, render_scene, sample_horses
from oodpose.settings import SyntheticSettings

SIZE = (288, 162)


def test_layout_is_readable_by_the_same_reader(synthetic_dataset):
    labels = read_labels(synthetic_dataset)
    assert labels.bodyparts == BODYPARTS and labels.scorer == "synthetic"
    assert len(labels.frames) == 150 and labels.frames["individual"].nunique() == 5
    for k in (1, 2, 3):
        assert (synthetic_dataset / f"TrainTestInfo_shuffle{k}.csv").exists()
    scales = pd.read_hdf(synthetic_dataset / "Horsescale.h5")["scale"]
    assert list(scales.index) == list(labels.frames["frame"])


def test_deterministic(synthetic_dataset, tmp_path):
    settings = SyntheticSettings(n_individuals=5, n_frames=150, n_train_individuals=2, seed=3)
    again = generate(tmp_path / "again", settings)
    for name in ("labeled-data/BayHorse01/0003.png", "labeled-data/GreyHorse03/0010.png", "TrainTestInfo_shuffle2.csv"):
        assert (again / name).read_bytes() == (synthetic_dataset / name).read_bytes()
    a, b = read_labels(again), read_labels(synthetic_dataset)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_keypoints_lie_on_the_drawn_animal():
    for horse in sample_horses(8, 800, np.random.default_rng(1)):
        scene = render_scene(horse, SIZE)
        for t in (0, 13, 40):
            image, keypoints = render_frame(horse, t, scene, SIZE)
            offset = int(horse.pan * t) % (scene.shape[1] - SIZE[0])
            background = np.clip(scene[:, offset : offset + SIZE[0]], 0, 255).astype(np.uint8)
            for x, y in keypoints[~np.isnan(keypoints).any(1)]:
                assert (image[int(y), int(x)] != background[int(y), int(x)]).any(), (horse.name, t, x, y)


def test_scales_match_drawn_nose_eye_distance(synthetic_dataset):
    labels = read_labels(synthetic_dataset)
    scales = pd.read_hdf(synthetic_dataset / "Horsescale.h5")["scale"].to_numpy()
    drawn = np.linalg.norm(labels.keypoints[:, 0] - labels.keypoints[:, 1], axis=1)
    table = pd.DataFrame({"ind": labels.frames["individual"], "drawn": drawn, "scale": scales})
    per = table.groupby("ind").agg(drawn=("drawn", "median"), scale=("scale", "first"))
    np.testing.assert_allclose(per["drawn"], per["scale"], rtol=0.03)


def test_individuals_span_horse10_sizes():
    horses = sample_horses(30, 8100, np.random.default_rng(0))
    sizes = [h.nose_eye_px for h in horses]
    assert min(sizes) >= 10 and max(sizes) <= 36 and max(sizes) - min(sizes) > 12
    assert len({h.coat for h in horses}) >= 4 and sum(h.n_frames for h in horses) == 8100
    unit = frame_geometry(horses[0], 0, SIZE)[0]
    p = pose(horses[0], 0)
    assert np.linalg.norm(p["Nose"] - p["Eye"]) * unit > 5
