"""A DeepLabCut project's ``config.yaml``: read for its bodyparts and the order of its videos, written for the
synthetic Horse-30 so that DeepLabCut opens it as a project of its own.

DeepLabCut finds a project's labels through ``video_sets``: each video's file stem names its
``labeled-data/<stem>/`` folder, and ``create_training_dataset`` merges the folders in that order.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import yaml

from oodpose.atomic import atomic_file
from oodpose.settings import read_yaml_mapping

CONFIG = "config.yaml"
# what deeplabcut.create_new_project (3.0) writes for a single-animal PyTorch project, less the paths and names
NEW_PROJECT_DEFAULTS = {
    "start": 0,
    "stop": 1,
    "numframes2pick": 20,
    "skeleton_color": "black",
    "pcutoff": 0.6,
    "dotsize": 12,
    "alphavalue": 0.7,
    "colormap": "rainbow",
    "TrainingFraction": [0.95],
    "iteration": 0,
    "default_net_type": "resnet_50",
    "default_augmenter": "albumentations",
    "snapshotindex": -1,
    "detector_snapshotindex": -1,
    "batch_size": 8,
    "detector_batch_size": 1,
    "cropping": False,
    "x1": 0,
    "x2": 640,
    "y1": 277,
    "y2": 624,
    "corner2move2": [50, 50],
    "move2corner": True,
    "SuperAnimalConversionTables": None,
}


def read_project_config(root: Path) -> dict | None:
    """The project's config.yaml as a dict; None where the dataset has none."""
    path = Path(root) / CONFIG
    return read_yaml_mapping(path, "a DeepLabCut config.yaml") if path.exists() else None


def video_folders(root: Path) -> list[str]:
    """The ``labeled-data`` folder names of the project's ``video_sets``, in DeepLabCut's order ([] without any)."""
    config = read_project_config(root) or {}
    videos = config.get("video_sets") or {}
    return [PureWindowsPath(str(video)).stem for video in videos]  # takes '/' and '\\' paths alike


def write_project_config(
    root: Path,
    project_path: Path,
    task: str,
    scorer: str,
    date: str,
    bodyparts: list[str],
    folders: list[str],
    frame_size: tuple[int, int],
    skeleton: list[list[str]],
) -> None:
    """A single-animal DeepLabCut config.yaml at `root` for a project that will live at `project_path`: one
    (absent) video per labeled-data folder, cropped to the whole `frame_size` (width, height), as DeepLabCut
    records a video it has read."""
    width, height = frame_size
    config = {
        "Task": task,
        "scorer": scorer,
        "date": date,
        "multianimalproject": False,
        "identity": None,
        "project_path": str(project_path),
        "engine": "pytorch",
        "video_sets": {
            str(project_path / "videos" / f"{f}.mp4"): {"crop": f"0, {width}, 0, {height}"} for f in folders
        },
        "bodyparts": list(bodyparts),
        "skeleton": skeleton,
        **NEW_PROJECT_DEFAULTS,
    }
    with atomic_file(Path(root) / CONFIG) as tmp:
        Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False))
