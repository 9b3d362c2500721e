"""Synthetic identities: new and unique for every run unless pinned; a seed fixes pixels and provenance, not patients."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
import torch

from dicom_factory import dciodvfy_errors
from MammoSynthLogic import batch
from MammoSynthLogic.cli import build_parser, main
from MammoSynthLogic.dicom_io import SyntheticStudy, read_provenance
from MammoSynthLogic.progress import Reporter
from tiny_bundles import make_tiny_mambo_set

torch.set_num_threads(1)
TINY = ["--size", "64", "--steps", "2", "--overlap", "8", "--device", "cpu", "--quiet"]
STUDY = "2.25.123456789012345678901234567890"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return make_tiny_mambo_set(tmp_path_factory.mktemp("bundles"), size=32, k=3)


def _generate(bundles, out, *extra) -> pydicom.Dataset:
    assert main(["generate", "--model", str(bundles), "--seed", "1", "--out", str(out), *TINY, *map(str, extra)]) == 0
    return pydicom.dcmread(out)


def test_same_seed_same_pixels_and_provenance_new_patient_and_study(bundles, tmp_path):
    a, b = _generate(bundles, tmp_path / "a.dcm"), _generate(bundles, tmp_path / "b.dcm")
    assert np.array_equal(a.pixel_array, b.pixel_array)  # the same computation twice in one process
    assert a.PatientID != b.PatientID and a.StudyInstanceUID != b.StudyInstanceUID
    assert a.PatientID.startswith("SYN-") and b.PatientID.startswith("SYN-")
    pa, pb = (read_provenance(tmp_path / f"{n}.dcm") for n in "ab")
    pa.pop("seconds"), pb.pop("seconds")
    assert pa == pb and a.PatientID not in str(pa) and a.StudyInstanceUID not in str(pa)


def test_pinned_patient_and_study(bundles, tmp_path):
    a = _generate(bundles, tmp_path / "a.dcm", "--patient-id", "TRIAL-0042", "--study-uid", STUDY)
    assert (a.PatientID, a.StudyInstanceUID) == ("TRIAL-0042", STUDY) and dciodvfy_errors(tmp_path / "a.dcm") == []
    # a study pinned alone: one patient for every file of that study, whichever run wrote it
    b, c = (_generate(bundles, tmp_path / f"{n}.dcm", "--study-uid", STUDY) for n in "bc")
    assert b.StudyInstanceUID == c.StudyInstanceUID == STUDY and b.PatientID == c.PatientID
    assert b.SeriesInstanceUID != c.SeriesInstanceUID


@pytest.mark.parametrize("extra, message", [(["--study-uid", "1.2.abc"], "not a valid DICOM UID"),
                                            (["--patient-id", "x" * 65], "1 to 64 characters")])
def test_bad_pins_are_one_line_errors_before_any_work(bundles, tmp_path, capsys, extra, message):
    assert main(["generate", "--model", str(tmp_path / "absent"), "--out", str(tmp_path / "o.dcm"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --") and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_every_batch_image_is_its_own_patient(tmp_path):
    from MammoSynthLogic.commands.batch_generate import dicom_options

    args = build_parser().parse_args(["batch-generate", "--count", "100", "--out", str(tmp_path)])
    image = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    batch.generate_shard(range(100), tmp_path, "dcm", lambda seed, _: (image, {"seed": seed}), Reporter(),
                         lambda seed: dicom_options(args, 64, seed))
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(tmp_path.glob("seed-*.dcm"))]
    assert len(headers) == 100
    assert len({h.PatientID for h in headers}) == 100 and len({h.StudyInstanceUID for h in headers}) == 100
    pinned = build_parser().parse_args(["batch-generate", "--count", "3", "--out", str(tmp_path), "--study-uid", STUDY])
    studies = [dicom_options(pinned, 64, seed)["study"] for seed in range(3)]
    assert {(s.patient_id, s.study_uid) for s in studies} == {(studies[0].patient_id, STUDY)}


def test_a_study_is_new_each_time_and_never_from_a_seed():
    a, b = SyntheticStudy.new(), SyntheticStudy.new()
    assert a.patient_id != b.patient_id and a.study_uid != b.study_uid
    assert SyntheticStudy.new(study_uid=STUDY).patient_id == SyntheticStudy.new(study_uid=STUDY).patient_id
