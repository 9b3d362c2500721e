"""Synthetic Secondary Capture and SEG writing: valid (dciodvfy), marked synthetic, provenance, atomic."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_factory import dciodvfy_errors, mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.dicom_io import (SyntheticStudy, read_mammogram, read_provenance, stored_representation,
                                      write_image, write_segmentation, write_synthetic_dicom)
from MammoSynthLogic.errors import MammoSynthError


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
    study = SyntheticStudy.new()
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


MEANING_12 = dict(PhotometricInterpretation="MONOCHROME1", WindowCenter=1800, WindowWidth=3200,
                  WindowCenterWidthExplanation="SOFT", RescaleIntercept=0, RescaleSlope=1, RescaleType="US")


@pytest.mark.parametrize("bits, tags", [(8, {}), (12, MEANING_12)])
def test_stored_like_copies_the_sources_stored_representation_in_one_write(tmp_path, bits, tags):
    stored = (synthetic_breast() >> (16 - bits)).astype(np.uint8 if bits == 8 else np.uint16)
    src = save(mammogram_dataset(stored, BitsStored=bits, HighBit=bits - 1, **tags), tmp_path / "src.dcm")
    source = read_mammogram(src, keep_stored=True)
    path = write_synthetic_dicom(tmp_path / "out.dcm", source.stored_pixels, provenance={"seed": 0}, source=source,
                                 stored_like=source, attributes={"ViewPosition": "CC"})
    assert dciodvfy_errors(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dcm", "src.dcm"]
    ds = pydicom.dcmread(path)
    # an 8-bit source: BitsAllocated 16, BitsStored 8, HighBit 7
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, bits, bits - 1, 0)
    assert ds.ViewPosition == "CC" and ds.SeriesDescription.startswith("SYNTHETIC")
    assert all(ds[keyword].value == value for keyword, value in tags.items())
    assert ds.pixel_array.dtype == np.uint16 and np.array_equal(ds.pixel_array, stored)
    again = read_mammogram(path)
    assert np.array_equal(again.pixels, source.pixels) and again.voi_applied == source.voi_applied


def test_stored_like_refuses_what_it_cannot_write(tmp_path):
    twelve = read_mammogram(save(mammogram_dataset(synthetic_breast() >> 4, BitsStored=12, HighBit=11),
                                 tmp_path / "src.dcm"))
    with pytest.raises(ValueError, match="exceed BitsStored 12"):
        write_synthetic_dicom(tmp_path / "a.dcm", np.full((128, 128), 4096, np.uint16), provenance={"seed": 0},
                              stored_like=twelve)
    with pytest.raises(ValueError, match="must be uint8 or uint16, got float32"):
        write_synthetic_dicom(tmp_path / "b.dcm", np.zeros((128, 128), np.float32), provenance={"seed": 0},
                              stored_like=twelve)
    with pytest.raises(ValueError, match="needs an uncompressed or RLE transfer syntax"):
        write_synthetic_dicom(tmp_path / "c.dcm", np.zeros((128, 128), np.uint16), provenance={"seed": 0},
                              stored_like=twelve, transfer_syntax_uid=pydicom.uid.JPEG2000Lossless)
    with pytest.raises(ValueError, match="not DICOM keywords: ViewPositon"):
        write_synthetic_dicom(tmp_path / "d.dcm", np.zeros((128, 128)), provenance={"seed": 0},
                              attributes={"ViewPositon": "CC"})
    signed = read_mammogram(save(mammogram_dataset(synthetic_breast().astype(np.int16), PixelRepresentation=1),
                                 tmp_path / "signed.dcm"))
    with pytest.raises(MammoSynthError, match="int16 pixel data cannot be written as DICOM"):
        stored_representation(signed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signed.dcm", "src.dcm"]


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


def test_segmentation_of_a_source_with_pixel_spacing_and_without_patient_and_study_details(tmp_path):
    import highdicom as hd

    ds = mammogram_dataset(synthetic_breast())
    del ds.PatientName, ds.StudyDate
    source = read_mammogram(save(ds, tmp_path / "bare.dcm"))
    mask = np.zeros((source.rows, source.columns), bool)
    mask[40:80, 30:60] = True
    path = write_segmentation(tmp_path / "seg.dcm", mask, source)
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)  # highdicom reads it back as written: its Pixel Measures item has a SliceThickness
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.1, 0.1] and float(measures.SliceThickness) == 1.0
    decoded = seg.get_pixels_by_source_instance([source.sop_uid], combine_segments=True)
    assert np.array_equal(decoded.squeeze() > 0, mask)
