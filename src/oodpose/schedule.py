"""The learning schedule: which rates a cell trains with, and the rate at each iteration.

Pretrained cells decay once from the initial to the final rate; from scratch, the cosine restarts
(the table's `scratch_cycles`), as the paper trained them. The rate is a pure function of the
iteration, so the iteration is the schedule's whole state and a resumed run follows it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from oodpose.backbones import Backbone
from oodpose.study import SCRATCH


@dataclass(frozen=True)
class Schedule:
    ilr: float  # initial learning rate
    final_lr: float  # the rate each cosine cycle decays to
    cycles: int  # cosine cycles over the run (warm restarts + 1)


def cell_schedule(backbone: Backbone, init: str) -> Schedule:
    """The backbone table's schedule for a pretrained ('imagenet') or from-scratch cell."""
    if init == SCRATCH:
        return Schedule(backbone.scratch_ilr, backbone.scratch_final_lr, int(backbone.scratch_cycles))
    return Schedule(backbone.pretrained_ilr, backbone.pretrained_final_lr, 1)


def learning_rate(iteration: int, total: int, ilr: float, final_lr: float, cycles: int = 1) -> float:
    """Cosine decay from `ilr` to `final_lr`, restarted `cycles` times over `total` iterations."""
    length = math.ceil(total / cycles)
    progress = (iteration % length) / length
    return final_lr + 0.5 * (ilr - final_lr) * (1 + math.cos(math.pi * progress))
