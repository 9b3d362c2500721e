"""Synthetic Secondary Capture and SEG writing: valid (dciodvfy), marked synthetic, provenance, atomic."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_factory import dciodvfy_errors
from MammoSynthLogic.dicom_io import (SyntheticStudy, read_mammogram, read_provenance, write_image,
                                      write_segmentation, write_synthetic_dicom)


def test_synthetic_image_is_valid_marked_and_carries_provenance(tmp_path, real_dicom):
    source = read_mammogram(real_dicom, max_side=512)
    pixels = np.linspace(0, 1, 256 * 200, dtype=np.float32).reshape(256, 200)
    provenance = {"model": "mambo-global", "version": "0.1", "seed": 7, "parameters": {"steps": 25}}
    path = write_synthetic_dicom(tmp_path / "s.dcm", pixels, provenance=provenance, source=source, spacing_mm=(0.1, 0.1))
    assert dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert ds.Modality == "MG" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.SeriesDescription.startswith("SYNTHETIC") and ds.BurnedInAnnotation == "NO"
    assert ds.BitsStored == 16 and ds.PhotometricInterpretation == "MONOCHROME2"
    assert np.array_equal(ds.pixel_array, np.rint(pixels * 65535).astype(np.uint16))
    src = source.dataset
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert str(ds.get(keyword)) != str(src.get(keyword))
    assert str(src.PatientID) not in path.read_bytes().decode("latin-1")
    assert read_provenance(path)["seed"] == 7 and read_provenance(path)["parameters"] == {"steps": 25}
    assert ds.ViewCodeSequence[0].CodeValue == "399162004" and ds.Laterality == source.laterality
    again = read_mammogram(path)
    assert again.view == "CC" and again.laterality == source.laterality


def test_source_identity_only_when_asked(tmp_path, real_dicom):
    source = read_mammogram(real_dicom, max_side=512)
    path = write_synthetic_dicom(tmp_path / "k.dcm", np.zeros((128, 128), np.float32), provenance={"seed": 1},
                                 source=source, keep_source_identity=True)
    ds = pydicom.dcmread(path)
    assert ds.PatientID == source.dataset.PatientID and ds.StudyInstanceUID == source.study_uid
    assert ds.SeriesDescription.startswith("SYNTHETIC")


def test_unknown_laterality_still_validates(tmp_path):
    path = write_synthetic_dicom(tmp_path / "u.dcm", np.zeros((128, 128)), provenance={"seed": 0})
    assert dciodvfy_errors(path) == []
    assert read_mammogram(path).laterality is None


def test_one_study_for_several_files(tmp_path):
    study = SyntheticStudy.new(seed=3)
    a = write_synthetic_dicom(tmp_path / "cc.dcm", np.zeros((128, 128)), provenance={"seed": 3}, view="CC", laterality="L", study=study)
    b = write_synthetic_dicom(tmp_path / "mlo.dcm", np.zeros((128, 128)), provenance={"seed": 3}, view="MLO", laterality="L", study=study)
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    assert da.StudyInstanceUID == db.StudyInstanceUID and da.PatientID == db.PatientID
    assert da.SeriesInstanceUID != db.SeriesInstanceUID
    assert dciodvfy_errors(b) == []


def test_segmentation_references_its_source_and_validates(tmp_path, real_dicom):
    source = read_mammogram(real_dicom)
    mask = np.zeros((source.rows, source.columns), bool)
    mask[1000:1200, 800:1100] = True
    path = write_segmentation(tmp_path / "seg.dcm", mask, source)
    assert dciodvfy_errors(path) == []
    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.sop_uid
    assert seg.StudyInstanceUID == source.study_uid
    import highdicom as hd

    decoded = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance([source.sop_uid], combine_segments=True)
    assert np.array_equal(decoded.squeeze() > 0, mask)


def test_png_and_nrrd_outputs(tmp_path):
    from PIL import Image
    import nrrd

    pixels = np.random.default_rng(0).uniform(0, 1, (96, 64)).astype(np.float32)
    png = write_image(tmp_path / "x.png", pixels)
    back = np.asarray(Image.open(png))
    assert back.dtype == np.uint16 and np.array_equal(back, np.rint(pixels * 65535).astype(np.uint16))
    path = write_image(tmp_path / "x.nrrd", pixels, spacing_mm=(0.2, 0.1))
    data, header = nrrd.read(str(path), index_order="C")
    assert np.allclose(data.T if data.shape != pixels.shape else data, pixels)


def test_failed_writes_leave_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_synthetic_dicom(tmp_path / "bad.dcm", np.zeros((4, 4, 4)), provenance={"seed": 0})
    assert list(tmp_path.iterdir()) == []


def test_segmentation_of_a_source_without_patient_and_study_details(tmp_path):
    from dicom_factory import mammogram_dataset, save, synthetic_breast

    ds = mammogram_dataset(synthetic_breast())
    del ds.PatientName, ds.StudyDate
    source = read_mammogram(save(ds, tmp_path / "bare.dcm"))
    mask = np.zeros((source.rows, source.columns), bool)
    mask[40:80, 30:60] = True
    path = write_segmentation(tmp_path / "seg.dcm", mask, source)
    assert dciodvfy_errors(path) == []
