"""Shared fixtures: a small synthetic dataset and its cache, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    from oodpose.data.synthetic import generate
    from oodpose.settings import SyntheticSettings

    settings = SyntheticSettings(n_individuals=5, n_frames=150, n_train_individuals=2, seed=3)
    return generate(tmp_path_factory.mktemp("data") / "synthetic", settings)


@pytest.fixture(scope="session")
def synthetic_cache(synthetic_dataset, tmp_path_factory) -> Path:
    from oodpose.data.cache import prepare_cache
    from oodpose.settings import DatasetSettings

    return prepare_cache(
        synthetic_dataset, tmp_path_factory.mktemp("cache") / "cache", DatasetSettings(n_train_individuals=2)
    )


@pytest.fixture(autouse=True)
def no_host_slurm(request, monkeypatch):
    """Snakemake's SLURM plugin runs `scontrol show config` whenever Snakemake starts. Where SLURM's clients are
    installed but no controller answers (as after the SLURM test, which leaves its slurm.conf), that waits about
    9 s per start. The tests that are not about SLURM see no cluster: with an empty config, scontrol fails at once.
    """
    if request.node.get_closest_marker("slurm") is None:
        monkeypatch.setenv("SLURM_CONF", os.devnull)


@pytest.fixture(autouse=True)
def restore_torch_global_state():
    """Tests that set torch's threads, denormal flushing or RNG leave the next test as they found it."""
    import torch

    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    flushing = torch.tensor([1e-323], dtype=torch.float64).item() == 0
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)
    torch.set_flush_denormal(flushing)
