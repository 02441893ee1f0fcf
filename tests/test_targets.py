import math

import torch
import torch.nn.functional as F

from oodpose.targets import LOCREF_STDEV, make_targets, pose_loss, predict


def test_disk_target_and_locref_by_hand():
    keypoints = torch.tensor([[[12.0, 20.0]]])
    scoremap, locref, mask = make_targets(keypoints, (5, 5), radius=17)
    centres = torch.arange(5) * 8 + 4
    for r in range(5):
        for c in range(5):
            inside = (centres[c] - 12) ** 2 + (centres[r] - 20) ** 2 <= 17**2
            assert scoremap[0, 0, r, c] == float(inside)
            if inside:
                assert math.isclose(locref[0, 0, r, c].item(), (12 - centres[c].item()) / LOCREF_STDEV, rel_tol=1e-6)
                assert math.isclose(locref[0, 1, r, c].item(), (20 - centres[r].item()) / LOCREF_STDEV, rel_tol=1e-6)
    assert torch.equal(mask[0, 0], scoremap[0, 0])


def test_loss_on_a_hand_built_example():
    target = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[0.0, 2.0]]]])
    locref_target = torch.tensor([[[[0.5, 0.0]], [[-3.0, 0.0]]]])
    locref_pred = torch.tensor([[[[1.0, 9.0]], [[0.0, 9.0]]]])
    mask = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    total, sm, lr = pose_loss(logits, locref_pred, target, locref_target, mask)
    bce = (-math.log(0.5) + -math.log(1 - 1 / (1 + math.exp(-2)))) / 2
    huber = (0.5 * 0.5**2 + (3.0 - 0.5)) / 2  # masked elements only: 0.125 and 2.5
    assert math.isclose(sm.item(), bce, rel_tol=1e-6) and math.isclose(lr.item(), huber, rel_tol=1e-6)
    assert math.isclose(total.item(), bce + 0.05 * huber, rel_tol=1e-6)
    assert torch.allclose(sm, F.binary_cross_entropy_with_logits(logits, target))


def test_prediction_rule():
    scoremap = torch.full((1, 1, 3, 4), -9.0)
    scoremap[0, 0, 2, 1] = 1.5
    locref = torch.zeros(1, 2, 3, 4)
    locref[0, :, 2, 1] = torch.tensor([0.5, -1.0])
    x, y, p = predict(scoremap, locref)[0, 0]
    assert math.isclose(x, 1 * 8 + 4 + 0.5 * LOCREF_STDEV, rel_tol=1e-6)
    assert math.isclose(y, 2 * 8 + 4 - LOCREF_STDEV, rel_tol=1e-6)
    assert math.isclose(p, 1 / (1 + math.exp(-1.5)), rel_tol=1e-6)
