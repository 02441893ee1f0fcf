"""Read COCO keypoint annotations (MMPose's Horse-10 files) into the same `Labels` as DeepLabCut files.

COCO stores keypoints as flat (x, y, v) triplets; v = 0 means not labelled. Image paths are taken
relative to the image folder; the individual is the image's parent folder (Horse-10's layout,
``labeled-data/<horse>/<frame>.png``), or `individual` for files that name no folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from oodpose.data.labels import Labels, image_size
from oodpose.errors import InputError


def read_coco(path: str | Path, image_root: str | Path, individual: str | None = None) -> Labels:
    """The single-animal keypoint annotations of a COCO file; images are looked up under `image_root`."""
    path, image_root = Path(path), Path(image_root)
    try:
        coco = json.loads(path.read_text())
        categories, images, annotations = coco["categories"], coco["images"], coco["annotations"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a COCO keypoint file ({type(err).__name__}: {err})") from err
    with_keypoints = [c for c in categories if c.get("keypoints")]
    if len(with_keypoints) != 1:
        raise InputError(f"{path}: expected one category with keypoints, found {len(with_keypoints)}")
    bodyparts = tuple(with_keypoints[0]["keypoints"])
    by_image = {}
    for annotation in annotations:
        if annotation["image_id"] in by_image:
            raise InputError(f"{path}: image {annotation['image_id']} has several animals; only one is supported")
        by_image[annotation["image_id"]] = annotation
    rows, keypoints = [], []
    for image in images:
        if image["id"] not in by_image:
            continue
        flat = by_image[image["id"]]["keypoints"]
        if len(flat) % 3:
            raise InputError(
                f"{path}: image {image['file_name']} has {len(flat)} keypoint values, not (x, y, v) triplets"
            )
        triplets = np.asarray(flat, dtype=np.float32).reshape(-1, 3)
        if len(triplets) != len(bodyparts):
            raise InputError(f"{path}: image {image['file_name']} has {len(triplets)} keypoints, not {len(bodyparts)}")
        keypoints.append(np.where(triplets[:, 2:] > 0, triplets[:, :2], np.nan))
        frame = Path(image["file_name"]).as_posix()
        owner = Path(frame).parent.name or individual or path.stem
        width, height = image_size(image_root / frame)
        rows.append((frame, owner, width, height))
    if not rows:
        raise InputError(f"{path}: no annotated images")
    frames = pd.DataFrame(rows, columns=["frame", "individual", "width", "height"])
    return Labels(frames, np.stack(keypoints).astype(np.float32), bodyparts, scorer=path.stem)
