"""The learning schedule: which rates a cell trains with, and the rate at each iteration.

Pretrained cells decay once from the initial to the final rate; from scratch, the cosine restarts
(the table's `scratch_cycles`), as the paper trained them. The rate is a pure function of the
iteration, so the iteration is the schedule's whole state and a resumed run follows it exactly.
A schedule search (oodpose.search) tries a grid of schedules, each named by `Schedule.name`.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oodpose.backbones import Backbone
from oodpose.errors import InputError
from oodpose.study import SCRATCH

NUMBER = "[0-9.e+-]+"
NAME = f"ilr{NUMBER}_final{NUMBER}_cycles[0-9]+"  # a schedule's folder name (a workflow wildcard's pattern)


@dataclass(frozen=True)
class Schedule:
    ilr: float  # initial learning rate
    final_lr: float  # the rate each cosine cycle decays to
    cycles: int  # cosine cycles over the run (warm restarts + 1)

    @property
    def name(self) -> str:
        """A folder name that gives the schedule back exactly (`parse`): floats by their shortest repr."""
        return f"ilr{float(self.ilr)!r}_final{float(self.final_lr)!r}_cycles{int(self.cycles)}"

    @classmethod
    def parse(cls, name: str) -> Schedule:
        match = re.fullmatch(f"ilr({NUMBER})_final({NUMBER})_cycles([0-9]+)", name)
        if match is None:
            raise InputError(f"{name!r} is not a schedule name like 'ilr0.001_final0.0_cycles1'")
        return cls(float(match[1]), float(match[2]), int(match[3]))


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


def search_grid(search: dict, backbone: str, init: str) -> list[Schedule]:
    """The schedules a search tries for one backbone and init: `search.grids.<backbone>.<init>`'s keys, else
    `search.grid`'s; every ilr x final_lr x cycles, each final rate at or below its initial rate."""
    own = search.get("grids", {}).get(backbone, {}).get(init, {})
    grid = {key: own.get(key, search.get("grid", {}).get(key, [])) for key in ("ilr", "final_lr", "cycles")}
    where = f"search.grids.{backbone}.{init}" if own else "search.grid"
    for key, values in grid.items():
        if not values:
            raise InputError(f"config key {where}.{key}: the grid is empty; list at least one value")
    above = sorted({(i, f) for i in grid["ilr"] for f in grid["final_lr"] if f > i})
    if above:
        ilr, final_lr = above[0]
        raise InputError(
            f"config key {where}: final_lr {final_lr:g} is greater than ilr {ilr:g} ({backbone}, {init}); a cosine "
            "decays to its final rate, so keep every final_lr at or below every ilr of the grid"
        )
    return [Schedule(*values) for values in itertools.product(grid["ilr"], grid["final_lr"], grid["cycles"])]


def read_chosen_schedules(path: str | Path) -> dict[tuple[str, str], Schedule]:
    """A search's choices (its schedules.tsv, oodpose.search) by backbone and init."""
    table = pd.read_csv(path, sep="\t")
    return {(r.backbone, r.init): Schedule(float(r.ilr), float(r.final_lr), int(r.cycles)) for r in table.itertuples()}
