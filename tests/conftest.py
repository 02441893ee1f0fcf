"""Shared fixtures: a small synthetic dataset and its cache, and the real data in ../shared/data."""

from __future__ import annotations

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

    return generate(
        tmp_path_factory.mktemp("data") / "synthetic", n_individuals=5, total_frames=150, n_train_individuals=2, seed=3
    )


@pytest.fixture(scope="session")
def synthetic_cache(synthetic_dataset, tmp_path_factory) -> Path:
    from oodpose.data.cache import DatasetSettings, prepare_cache

    return prepare_cache(
        synthetic_dataset, tmp_path_factory.mktemp("cache") / "cache", DatasetSettings(n_train_individuals=2)
    )
