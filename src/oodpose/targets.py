"""DeepLabCut's scoremap and location-refinement targets, its loss, and its prediction rule.

Scoremap cell i (row or column) is centred at i * STRIDE + STRIDE / 2 input pixels. A joint's target
is a binary disk of radius `pos_dist_thresh` x the scale applied to its frame, i.e. 17 pixels of the
original frame (DeepLabCut's ``dist_thresh = pos_dist_thresh * scale``, ``datasets/pose_imgaug.py``,
``compute_target_part_scoremap_numpy``); inside it the location-refinement target
is (joint - cell centre) / LOCREF_STDEV, and outside it the locref loss is masked. Unlabelled (NaN)
joints have no positive cell and no locref.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oodpose.settings import LOCREF_WEIGHT, POS_DIST_THRESH

STRIDE = 8
LOCREF_STDEV = 7.2801


def cell_centres(size: int, device=None) -> torch.Tensor:
    return torch.arange(size, device=device, dtype=torch.float32) * STRIDE + STRIDE / 2


def make_targets(keypoints: torch.Tensor, map_size: tuple[int, int], radius: float | torch.Tensor = POS_DIST_THRESH):
    """Targets for (B, J, 2) keypoints in input pixels: scoremap (B, J, h, w), locref and mask (B, 2J, h, w).

    `radius` is the disk's radius in input pixels: one number, or one per frame (B,).
    """
    b, j, _ = keypoints.shape
    radius = torch.as_tensor(radius, dtype=torch.float32, device=keypoints.device).reshape(-1, 1, 1, 1)
    h, w = map_size
    ys, xs = cell_centres(h, keypoints.device), cell_centres(w, keypoints.device)
    labelled = ~torch.isnan(keypoints).any(-1)
    kp = torch.nan_to_num(keypoints, nan=-1e6)
    dx = kp[..., 0, None, None] - xs.view(1, 1, 1, w)  # (B, J, 1, w)
    dy = kp[..., 1, None, None] - ys.view(1, 1, h, 1)  # (B, J, h, 1)
    inside = (dx**2 + dy**2 <= radius**2) & labelled[..., None, None]
    scoremap = inside.float()
    locref = torch.stack([dx.expand(b, j, h, w), dy.expand(b, j, h, w)], dim=2) / LOCREF_STDEV
    mask = inside[:, :, None].expand(b, j, 2, h, w).float()
    locref = (locref * mask).reshape(b, 2 * j, h, w)
    return scoremap, locref, mask.reshape(b, 2 * j, h, w)


def pose_loss(scoremap_logits, locref_pred, scoremap, locref, mask, locref_weight: float = LOCREF_WEIGHT):
    """DeepLabCut's loss: sigmoid cross-entropy + locref_weight x Huber(delta 1) on masked locref.

    Reductions follow TensorFlow's default (SUM_BY_NONZERO_WEIGHTS): the cross-entropy is the mean
    over every scoremap element; the Huber loss is summed over the masked-in elements and divided by
    their number (0 when there are none). Returns (total, scoremap part, locref part).
    """
    scoremap_loss = F.binary_cross_entropy_with_logits(scoremap_logits.float(), scoremap)
    huber = F.huber_loss(locref_pred.float(), locref, delta=1.0, reduction="none")
    locref_loss = (huber * mask).sum() / mask.sum().clamp(min=1)
    return scoremap_loss + locref_weight * locref_loss, scoremap_loss, locref_loss


def predict(scoremap_logits: torch.Tensor, locref: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) x, y, likelihood: argmax of sigmoid(scoremap), refined by locref at that cell."""
    b, j, h, w = scoremap_logits.shape
    flat = scoremap_logits.float().reshape(b, j, h * w)
    peak, index = flat.max(dim=-1)
    row, col = index // w, index % w
    offsets = locref.float().reshape(b, j, 2, h * w).gather(-1, index[:, :, None, None].expand(b, j, 2, 1))[..., 0]
    x = col * STRIDE + STRIDE / 2 + offsets[..., 0] * LOCREF_STDEV
    y = row * STRIDE + STRIDE / 2 + offsets[..., 1] * LOCREF_STDEV
    return torch.stack([x, y, torch.sigmoid(peak)], dim=-1)
