"""Reading real and constructed mammograms: pixels, header facts, VOI, MONOCHROME1, grouping."""
from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.dicom_io import find_dicoms, group_by_breast, read_mammogram


def test_real_images_read_as_unit_floats_with_header_facts(real_dicoms):
    for path in real_dicoms:
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        image = read_mammogram(path)
        assert image.pixels.dtype == np.float32
        assert image.pixels.shape == (image.rows, image.columns)
        assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0 and image.pixels.max() > 0.5
        assert image.bits_stored == 16 and image.stored_dtype == "uint16"
        assert image.transfer_syntax == "RLE Lossless"
        assert image.view in ("CC", "MLO") and image.view_source == "PatientOrientation"
        assert image.laterality in ("L", "R") and image.laterality_source == "Laterality"
        assert "PixelData" not in image.dataset
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # inputs are never modified


def test_stored_values_round_trip_exactly_without_voi_and_are_kept_on_request(real_dicom):
    image = read_mammogram(real_dicom, keep_stored=True)
    raw = pydicom.dcmread(real_dicom).pixel_array
    assert np.array_equal(image.to_stored(image.pixels), raw)
    assert image.stored_pixels.dtype == raw.dtype and np.array_equal(image.stored_pixels, raw)
    assert read_mammogram(real_dicom, max_side=256).stored_pixels is None


def test_folder_is_read_recursively_and_cc_mlo_pairs_are_found(real_dicoms):
    root = real_dicoms[0].parent.parent
    files, errors = find_dicoms([root])
    assert not errors and sorted(files) == sorted(real_dicoms)
    groups = group_by_breast([read_mammogram(p, max_side=256) for p in files])
    assert len(groups) == 4
    for (patient, _study, laterality), members in groups.items():
        assert sorted(m.view for m in members) == ["CC", "MLO"]
        assert {m.laterality for m in members} == {laterality}
        assert "LEFT" not in patient and "RIGHT" not in patient


def test_laterality_and_view_sources_in_priority_order(tmp_path):
    px = synthetic_breast()
    ds = mammogram_dataset(px, ImageLaterality="R", Laterality="L")
    image = read_mammogram(save(ds, tmp_path / "a.dcm"))
    assert (image.laterality, image.laterality_source) == ("R", "ImageLaterality")
    ds = mammogram_dataset(px)
    del ds.ImageLaterality, ds.ViewPosition
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399368009", "SCT", "medio-lateral oblique"
    ds.ViewCodeSequence = [code]
    ds.PatientOrientation = ["P", "FL"]
    image = read_mammogram(save(ds, tmp_path / "b.dcm"))
    assert (image.view, image.view_source) == ("MLO", "ViewCodeSequence")
    assert (image.laterality, image.laterality_source) == ("R", "PatientOrientation")
    del ds.ViewCodeSequence, ds.PatientOrientation
    image = read_mammogram(save(ds, tmp_path / "c.dcm"))
    assert image.view is None and image.laterality is None


def test_voi_lut_is_preferred_to_the_window_and_monochrome1_inverted_after_it(tmp_path):
    px = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (128, 1))  # 0..4080 along columns
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]
    lut.add_new("LUTData", "US", [min(65535, v * 32) for v in range(4096)])  # saturates at 2048
    ds = mammogram_dataset(px, BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=4096)
    ds.VOILUTSequence = [lut]
    image = read_mammogram(save(ds, tmp_path / "lut.dcm"))
    assert image.voi_applied == "VOI LUT"
    expected = np.minimum(65535, px[0].astype(np.int64) * 32) / 65535.0
    assert np.allclose(image.pixels[0], expected, atol=1e-6)

    ds = mammogram_dataset(px, BitsStored=12, HighBit=11, WindowCenter=1024, WindowWidth=1024)
    windowed = read_mammogram(save(ds, tmp_path / "win.dcm"))
    assert windowed.voi_applied == "window"
    assert windowed.pixels[0, 0] == 0.0 and windowed.pixels[0, -1] == 1.0
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = read_mammogram(save(ds, tmp_path / "win1.dcm"))
    assert np.allclose(inverted.pixels, 1.0 - windowed.pixels, atol=1e-6)


def test_preview_read_keeps_full_size_facts(real_dicom):
    preview = read_mammogram(real_dicom, max_side=512)
    assert max(preview.pixels.shape) <= 512 and preview.pixel_step > 1
    full = read_mammogram(real_dicom)
    assert (preview.rows, preview.columns) == (full.rows, full.columns)
    assert np.array_equal(preview.pixels, full.pixels[:: preview.pixel_step, :: preview.pixel_step])


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_uncompressed_16bit_reads(tmp_path, photometric):
    px = synthetic_breast()
    image = read_mammogram(save(mammogram_dataset(px, PhotometricInterpretation=photometric), tmp_path / "x.dcm"))
    expected = px / 65535.0 if photometric == "MONOCHROME2" else 1.0 - px / 65535.0
    assert np.allclose(image.pixels, expected, atol=1e-6)
    assert image.spacing_mm == (0.1, 0.1)
