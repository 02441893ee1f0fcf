"""The paper's published numbers, read from ``paper.yaml`` beside this module: its 13 backbones, Table 1
and the slopes of error on ImageNet top-1. Torch-free, so the workflow and the benchmarks can import it."""

from __future__ import annotations

from pathlib import Path

import yaml

_PAPER = yaml.safe_load((Path(__file__).resolve().parent / "paper.yaml").read_text())

TABLE1: dict[str, tuple[float, float]] = {  # backbone: (within domain, out of domain) PCK@0.3 in %
    name: (row["within_domain"], row["out_of_domain"]) for name, row in _PAPER["table1"].items()
}
BACKBONES: tuple[str, ...] = tuple(TABLE1)  # the paper's 13, in Table 1's order
SLOPES: dict[str, float] = dict(_PAPER["slopes"])  # set: % normalised error per ImageNet point
ALIAS = "paper"  # in a study's `backbones:`, the paper's 13


def study_backbones(names: list[str]) -> list[str]:
    """A study's backbones, with `paper` standing for the paper's 13 in Table 1's order, each name once."""
    return list(dict.fromkeys(b for name in names for b in (BACKBONES if name == ALIAS else (name,))))


def backbone_group(name: str) -> str:
    """'paper' for the paper's 13 backbones, 'added' for any other."""
    return "paper" if name in BACKBONES else "added"
