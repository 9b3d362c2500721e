"""Writing DICOM, PNG and NRRD, and the intensity mapping of the reader: the behaviour that mutation testing
(scripts/mutation.sh) found unchecked. Every assertion is an exact value known from the DICOM standard or from what
the function promises: header attributes, the provenance text, the segment's codes, error messages and limits."""
from __future__ import annotations

import dataclasses
import datetime
import re
import types
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic import __version__
from MammoSynthLogic.dicom_io import (SyntheticStudy, _add_patient_geometry, _to_unit_range, find_dicoms,
                                      read_mammogram, read_provenance, stored_representation, write_image,
                                      write_png16, write_segmentation, write_synthetic_dicom)
from MammoSynthLogic.errors import MammoSynthError

# a StudyID longer than SH allows and a bad UID are written on purpose: real files have them, users type them
pytestmark = [pytest.mark.filterwarnings("ignore:The value length"), pytest.mark.filterwarnings("ignore:Invalid value")]

PIXELS = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)


def written(path: Path, pixels=PIXELS, **options) -> pydicom.Dataset:
    write_synthetic_dicom(path, pixels, **{"provenance": {"seed": 3}, **options})
    return pydicom.dcmread(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    ds = mammogram_dataset(synthetic_breast(), PatientID="REAL-7", PatientName="Doe^Jane", StudyID="S" * 20,
                           StudyDate="20190102", StudyTime="101112", AccessionNumber="ACC9", BurnedInAnnotation="YES",
                           PixelSpacing=[0.07, 0.05])
    return read_mammogram(save(ds, tmp_path_factory.mktemp("src") / "src.dcm"))


# ---------------------------------------------------------------- the reader's intensity mapping


def dataset(**tags) -> Dataset:
    ds = Dataset()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def test_window_maps_onto_the_rescaled_range_that_pydicom_windows_into():
    """pydicom's linear window outputs the modality range (stored range through slope and intercept)."""
    # stored 1000..3000 with intercept -1000 are 0..2000; window 1000/2001: (x - 999.5) / 2000 + 0.5
    ds = dataset(BitsStored=12, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2", RescaleSlope=1,
                 RescaleIntercept=-1000, WindowCenter=1000, WindowWidth=2001)
    out, voi = _to_unit_range(ds, np.array([[1000, 2000, 3000, 4095]], np.uint16))
    np.testing.assert_allclose(out[0], [0.5 / 2000, 0.5 + 0.5 / 2000, 1, 1], atol=1e-6)
    assert voi == "window" and out.dtype == np.float32
    # a negative slope turns the modality values round: the window's high end stays bright
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter = -1, 4095, 2095
    out, _ = _to_unit_range(ds, np.array([[1000, 2000, 3000]], np.uint16))
    np.testing.assert_allclose(out[0], [1, 0.5 + 0.5 / 2000, 0.5 / 2000], atol=1e-6)


@pytest.mark.parametrize("signed", [False, True])
def test_window_takes_the_first_of_several_and_spans_the_stored_range(signed):
    ds = dataset(BitsStored=12, PixelRepresentation=int(signed), PhotometricInterpretation="MONOCHROME2",
                 WindowCenter=[1000, 3000], WindowWidth=[201, 11])
    out, _ = _to_unit_range(ds, np.array([[900, 1000, 1100]], np.int16 if signed else np.uint16))
    # DICOM's linear window (x - (c - 0.5)) / (w - 1) + 0.5 of the range -2048..2047 or 0..4095, clipped
    np.testing.assert_allclose(out[0], [0.5 / 200, 0.5 + 0.5 / 200, 1], atol=1e-6)


def test_modality_lut_sequence_is_applied_and_its_output_spans_its_own_range():
    item = dataset(LUTDescriptor=[4, 0, 16], LUTData=[100, 200, 300, 500], ModalityLUTType="US")
    ds = dataset(BitsStored=12, PixelRepresentation=0, ModalityLUTSequence=[item])
    out, voi = _to_unit_range(ds, np.array([[0, 1, 2, 3]], np.uint16))
    np.testing.assert_allclose(out[0], [0, 0.25, 0.5, 1], atol=1e-7)
    assert voi is None


def test_a_window_needs_both_centre_and_width():
    ds = dataset(BitsStored=8, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2", WindowCenter=10)
    out, voi = _to_unit_range(ds, np.array([[0, 51, 255]], np.uint16))
    assert voi is None
    np.testing.assert_allclose(out[0], [0, 0.2, 1], atol=1e-7)


def test_without_voi_the_stored_range_its_defaults_and_clipping():
    out, _ = _to_unit_range(dataset(), np.array([[0, 32768, 65535]], np.uint16))  # no BitsStored: the dtype's
    np.testing.assert_allclose(out[0], [0, 32768 / 65535, 1], atol=1e-7)
    out, _ = _to_unit_range(dataset(), np.array([[0, 51, 255]], np.uint8))
    np.testing.assert_allclose(out[0], [0, 0.2, 1], atol=1e-7)
    out, _ = _to_unit_range(dataset(BitsStored=8), np.array([[100, 255, 300]], np.uint16))
    np.testing.assert_allclose(out[0], [100 / 255, 1, 1], atol=1e-7)  # above BitsStored: clipped
    out, _ = _to_unit_range(dataset(BitsStored=16, PixelRepresentation=1), np.array([[-5, 0, 15]], np.int16))
    np.testing.assert_allclose(out[0], [0, 0.25, 1], atol=1e-7)  # signed: their own range


@pytest.mark.parametrize("keyword, dtype", [("FloatPixelData", np.float32), ("DoubleFloatPixelData", np.float64)])
def test_float_pixel_data_spans_its_own_range(tmp_path, keyword, dtype):
    ds = mammogram_dataset(synthetic_breast(64, 64))
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    bits = np.dtype(dtype).itemsize * 8
    ds.BitsAllocated = bits
    setattr(ds, keyword, np.tile(np.array([0.25, 0.5, 1.25, 0.75], dtype), (64, 16)).tobytes())
    image = read_mammogram(save(ds, tmp_path / "float.dcm"))
    assert (image.stored_dtype, image.bits_stored) == (np.dtype(dtype).name, bits) and keyword not in image.dataset
    np.testing.assert_allclose(image.pixels[0, :4], [0, 0.25, 1, 0.5], atol=1e-7)


def test_window_through_a_modality_lut_or_a_slope_without_intercept():
    # a modality LUT's output (here 8 bits, from 16-bit stored values) is the range the window maps onto
    item = dataset(LUTDescriptor=[256, 0, 8], LUTData=list(range(256)), ModalityLUTType="US")
    ds = dataset(BitsStored=16, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2",
                 ModalityLUTSequence=[item], WindowCenter=100, WindowWidth=21)
    out, _ = _to_unit_range(ds, np.array([[90, 100, 5000]], np.uint16))
    np.testing.assert_allclose(out[0], [0.5 / 20, 0.5 + 0.5 / 20, 1], atol=1e-6)
    # a slope without an intercept is no rescale for pydicom: the stored range
    ds = dataset(BitsStored=12, PixelRepresentation=0, PhotometricInterpretation="MONOCHROME2", RescaleSlope=2,
                 WindowCenter=1000, WindowWidth=201)
    out, _ = _to_unit_range(ds, np.array([[900, 1000, 1100]], np.uint16))
    np.testing.assert_allclose(out[0], [0.5 / 200, 0.5 + 0.5 / 200, 1], atol=1e-6)
    # slope 2, intercept -1000: stored 0..4095 are -1000..7190, the window is in those units
    ds.RescaleIntercept, ds.WindowCenter = -1000, 3095
    out, _ = _to_unit_range(ds, np.array([[1000, 2048, 3000]], np.uint16))  # 1000, 3096, 5000
    np.testing.assert_allclose(out[0], [0, 0.5 + 1.5 / 200, 1], atol=1e-6)
    # signed, slope 2: -2048..2047 are -4096..4094; stored 0 is the window's centre
    ds.PixelRepresentation, ds.RescaleIntercept, ds.WindowCenter = 1, 0, 0
    out, _ = _to_unit_range(ds, np.array([[-100, 0, 100]], np.int16))
    np.testing.assert_allclose(out[0], [0, 0.5 + 0.5 / 200, 1], atol=1e-6)


def test_a_rescaled_range_narrower_than_one_still_spans_zero_to_one():
    ds = dataset(BitsStored=12, PixelRepresentation=0, RescaleSlope=0.0001, RescaleIntercept=0)
    out, voi = _to_unit_range(ds, np.array([[0, 1000, 2000]], np.uint16))  # rescaled 0 .. 0.2
    np.testing.assert_allclose(out[0], [0, 0.5, 1], atol=1e-6)
    assert out.dtype == np.float32 and voi is None
    out, _ = _to_unit_range(ds, np.full((2, 2), 7, np.uint16))  # a constant image has no range: all 0
    assert np.array_equal(out, np.zeros((2, 2), np.float32))


def test_suffixes_without_a_preamble_are_found(tmp_path):
    ds = mammogram_dataset(synthetic_breast(64, 64))
    for name in ("a.DCM", "b.Dicom", "c.IMA", "d.raw"):  # no preamble, no DICM
        ds.save_as(tmp_path / name, implicit_vr=False, little_endian=True, enforce_file_format=False)
    files, errors = find_dicoms([tmp_path])
    assert [f.name for f in files] == ["a.DCM", "b.Dicom", "c.IMA"] and errors == []


# ---------------------------------------------------------------- synthetic identities


def test_new_study_identity_format_and_a_fresh_patient_each_call():
    before = datetime.datetime.now().replace(microsecond=0)
    study = SyntheticStudy.new()
    after = datetime.datetime.now()
    assert re.fullmatch(r"SYN-[0-9A-F]{8}", study.patient_id)
    assert study.patient_name == f"SYNTHETIC^{study.patient_id}" and study.study_id == study.patient_id[4:]
    assert pydicom.uid.UID(study.study_uid).is_valid and study.accession_number == ""
    when = datetime.datetime.strptime(study.study_date + study.study_time, "%Y%m%d%H%M%S")
    assert before <= when <= after
    assert SyntheticStudy.new().patient_id != study.patient_id


def test_a_pinned_study_derives_its_patient_and_a_pinned_patient_is_kept():
    import hashlib

    uid = "2.25.1234"
    token = hashlib.sha256(uid.encode()).hexdigest()[:8].upper()
    study = SyntheticStudy.new(study_uid=uid)
    assert (study.patient_id, study.study_id, study.study_uid) == (f"SYN-{token}", token, uid)
    assert SyntheticStudy.new(study_uid=uid).patient_id == study.patient_id
    pinned = SyntheticStudy.new(patient_id="P" * 64, study_uid=uid)
    assert pinned.patient_id == "P" * 64 and pinned.patient_name == ("SYNTHETIC^" + "P" * 64)[:64]
    assert SyntheticStudy.new(patient_id="X").patient_id == "X"


@pytest.mark.parametrize("kwargs, what, why", [
    ({"study_uid": "1.2.abc"}, "--study-uid 1.2.abc",
     "not a valid DICOM UID (digits and dots, at most 64 characters, e.g. 2.25.<a large number>)"),
    ({"patient_id": ""}, "--patient-id ", "must be 1 to 64 characters"),
    ({"patient_id": "P" * 65}, "--patient-id " + "P" * 65, "must be 1 to 64 characters"),
])
def test_bad_pins_are_refused_with_the_option_and_the_rule(kwargs, what, why):
    with pytest.raises(MammoSynthError) as caught:
        SyntheticStudy.new(**kwargs)
    assert (caught.value.what, caught.value.why) == (what, why)


def test_of_source_copies_the_source_identity_and_blanks_what_it_lacks(source, tmp_path):
    study = SyntheticStudy.of_source(source)
    assert (study.patient_id, study.patient_name, study.study_uid, study.study_id, study.study_date,
            study.study_time, study.accession_number) == \
        ("REAL-7", "Doe^Jane", source.study_uid, "S" * 16, "20190102", "101112", "ACC9")
    bare = read_mammogram(save(mammogram_dataset(synthetic_breast(64, 64)), tmp_path / "bare.dcm"))
    for keyword in ("PatientID", "PatientName", "StudyDate"):
        delattr(bare.dataset, keyword)
    bare.study_uid = ""
    study = SyntheticStudy.of_source(bare)
    assert (study.patient_id, study.patient_name, study.study_id, study.study_date, study.study_time,
            study.accession_number) == ("", "", "", "", "", "")
    assert pydicom.uid.UID(study.study_uid).is_valid


def test_series_numbers_count_up_from_1001():
    study = SyntheticStudy.new()
    assert [study.next_series_number() for _ in range(3)] == [1001, 1002, 1003]


# ---------------------------------------------------------------- the synthetic Secondary Capture


def test_every_attribute_of_a_synthetic_image_without_a_source(tmp_path):
    study = SyntheticStudy(patient_id="SYN-1", patient_name="SYNTHETIC^SYN-1", study_uid="2.25.77", study_id="ID1",
                           study_date="20240102", study_time="030405", accession_number="A1")
    ds = written(tmp_path / "a.dcm", view="MLO", laterality="R", spacing_mm=(0.2, 0.1), study=study)
    assert (ds.Manufacturer, ds.PatientID, ds.PatientName, ds.PatientSex, ds.AccessionNumber, ds.StudyID,
            ds.StudyDate, ds.StudyTime, ds.StudyInstanceUID, ds.SeriesNumber, ds.InstanceNumber) == \
        ("SlicerMammoSynth", "SYN-1", "SYNTHETIC^SYN-1", "F", "A1", "ID1", "20240102", "030405", "2.25.77", 1001, 1)
    assert "ReferringPhysicianName" in ds and ds.ReferringPhysicianName == ""
    assert "PatientBirthDate" in ds and ds.PatientBirthDate == ""
    assert [float(v) for v in ds.PixelSpacing] == [0.2, 0.1]
    assert ds.Laterality == "R" and list(ds.PatientOrientation) == ["A", "FL"]  # chest wall left by default
    assert (ds.ViewCodeSequence[0].CodeValue, ds.ViewCodeSequence[0].CodingSchemeDesignator) == ("399368009", "SCT")
    assert (ds.ConversionType, ds.SeriesDescription, ds.BurnedInAnnotation, ds.RecognizableVisualFeatures,
            ds.BodyPartExamined, ds.SoftwareVersions) == \
        ("SYN", "SYNTHETIC mammogram", "NO", "NO", "BREAST", __version__)
    assert ds.DerivationDescription == f"Synthetic image generated by mammosynth {__version__} (seed 3)"
    assert "PatientIdentityRemoved" not in ds  # nothing was removed: there was no source
    today = datetime.date.today().strftime("%Y%m%d")
    assert ds.ContentDate == today and re.fullmatch(r"\d{6}", ds.ContentTime)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    raw = (tmp_path / "a.dcm").read_bytes()
    assert raw[128:132] == b"DICM"  # a DICOM file with its preamble, as PACS expect
    ds = written(tmp_path / "b.dcm", laterality="X", breast_side="right", view="CC")
    assert ds.Laterality == "" and list(ds.PatientOrientation) == ["P", "F"]


def test_provenance_text_is_sorted_json_behind_a_fixed_sentence(tmp_path):
    ds = written(tmp_path / "p.dcm", provenance={"seed": 3, "b": Path("/x/y"), "a": 1})
    assert ds.ImageComments == ('SYNTHETIC image made by mammosynth; provenance {"a": 1, "b": "/x/y", '
                                f'"generator": "mammosynth", "mammosynth_version": "{__version__}", "seed": 3}}')
    assert read_provenance(tmp_path / "p.dcm") == {"a": 1, "b": "/x/y", "generator": "mammosynth",
                                                   "mammosynth_version": __version__, "seed": 3}
    ds = written(tmp_path / "q.dcm", synthetic=False, series_description="Reader copy")
    assert ds.ImageComments.startswith("De-identified copy of a real image written by mammosynth; provenance {")
    assert (ds.ConversionType, ds.SeriesDescription) == ("WSD", "Reader copy")
    assert ds.DerivationDescription == (f"Real image de-identified by mammosynth {__version__}: new identity, pixels "
                                        "outside the breast set to background")


def test_provenance_longer_than_image_comments_allow_is_refused(tmp_path):
    head = 'SYNTHETIC image made by mammosynth; provenance {"generator": "mammosynth", "mammosynth_version": '
    fixed = len(head) + len(f'"{__version__}", "pad": "", "seed": 0}}')
    pad = "x" * (10240 - fixed)
    assert len(written(tmp_path / "max.dcm", provenance={"seed": 0, "pad": pad}).ImageComments) == 10240
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "long.dcm", provenance={"seed": 0, "pad": pad + "x"})
    assert str(caught.value) == "provenance too long for ImageComments (10240 characters)"
    assert not (tmp_path / "long.dcm").exists()


@pytest.mark.parametrize("given, expected", [
    ("SYNTHETIC lesion", "SYNTHETIC lesion"), ("synthetic lesion", "synthetic lesion"),
    ("Lesion", "SYNTHETIC Lesion"), ("L" * 70, ("SYNTHETIC " + "L" * 70)[:64]),
])
def test_series_description_is_marked_synthetic_once_and_cut_to_64(tmp_path, given, expected):
    assert written(tmp_path / "s.dcm", series_description=given).SeriesDescription == expected


def test_a_source_gives_view_side_spacing_and_says_its_identity_was_removed(tmp_path, source):
    ds = written(tmp_path / "s.dcm", source=source)
    assert (ds.Laterality, [float(v) for v in ds.PixelSpacing], ds.ViewCodeSequence[0].CodeValue) == \
        ("L", [0.07, 0.05], "399162004")
    assert ds.PatientID.startswith("SYN-") and ds.BurnedInAnnotation == "NO"
    assert (ds.PatientIdentityRemoved, ds.DeidentificationMethod) == \
        ("YES", "mammosynth: new identity; outside breast cleaned")
    ds = written(tmp_path / "t.dcm", source=source, spacing_mm=(0.3, 0.3), laterality="R", view="MLO")
    assert (ds.Laterality, [float(v) for v in ds.PixelSpacing], ds.ViewCodeSequence[0].CodeValue) == \
        ("R", [0.3, 0.3], "399368009")


def test_keeping_the_source_identity_keeps_its_burned_in_statement(tmp_path, source):
    ds = written(tmp_path / "k.dcm", source=source, keep_source_identity=True)
    assert (ds.PatientID, ds.AccessionNumber, ds.BurnedInAnnotation) == ("REAL-7", "ACC9", "YES")
    assert "PatientIdentityRemoved" not in ds
    header = source.dataset.copy()
    del header.BurnedInAnnotation
    unstated = dataclasses.replace(source, dataset=header)
    assert "BurnedInAnnotation" not in written(tmp_path / "u.dcm", source=unstated, keep_source_identity=True)
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "n.dcm", keep_source_identity=True)
    assert str(caught.value) == "keep_source_identity needs a source image"


def test_writer_errors_are_exact(tmp_path, source):
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "a.dcm", pixels=np.zeros((2, 8, 8)))
    assert str(caught.value) == "expected a 2D image, got shape (2, 8, 8)"
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "b.dcm", attributes={"ViewPositon": "CC", "Lateralty": "L", "Modality": "MG"})
    assert str(caught.value) == "not DICOM keywords: ViewPositon, Lateralty"
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "c.dcm", pixels=np.zeros((8, 8), np.int32))
    assert str(caught.value) == "integer pixels must be uint16, got int32"
    with pytest.raises(ValueError) as caught:
        written(tmp_path / "d.dcm", pixels=np.zeros((64, 64), np.uint16), stored_like=source,
                transfer_syntax_uid=pydicom.uid.JPEGLSLossless)
    assert str(caught.value) == "stored_like needs an uncompressed or RLE transfer syntax"
    assert list(tmp_path.iterdir()) == []


def test_transfer_syntax_is_the_one_asked_for(tmp_path):
    ds = written(tmp_path / "r.dcm", transfer_syntax_uid=pydicom.uid.RLELossless)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert np.array_equal(ds.pixel_array, np.rint(PIXELS * 65535).astype(np.uint16))


def test_stored_representation_copies_and_names_the_image(tmp_path):
    voi = dataset(LUTDescriptor=[2, 0, 12], LUTData=[0, 4095], LUTExplanation="LINEAR")
    image = types.SimpleNamespace(stored_dtype="uint16", bits_stored=12, photometric="MONOCHROME1", path=None,
                                  dataset=dataset(VOILUTSequence=[voi], WindowCenter=[100, 200]))
    rep = stored_representation(image)
    rep["VOILUTSequence"][0].LUTExplanation = "changed"
    assert voi.LUTExplanation == "LINEAR"  # the source's header is not shared
    assert (rep["BitsStored"], rep["HighBit"], rep["PhotometricInterpretation"]) == (12, 11, "MONOCHROME1")
    for dtype, path in (("int16", None), ("float32", tmp_path / "f.dcm")):
        image.stored_dtype, image.path = dtype, path
        with pytest.raises(MammoSynthError) as caught:
            stored_representation(image)
        assert (caught.value.what, caught.value.why) == \
            (str(path or "image"), f"{dtype} pixel data cannot be written as DICOM here; write a .png or .nrrd")


def test_read_provenance_wants_the_json_and_says_which_file_lacks_it(tmp_path):
    ds = mammogram_dataset(synthetic_breast(64, 64), ImageComments='{"seed": 5}')
    assert read_provenance(save(ds, tmp_path / "json.dcm")) == {"seed": 5}
    for name, comments in (("text.dcm", "a real image"), ("none.dcm", None)):
        ds = mammogram_dataset(synthetic_breast(64, 64))
        if comments is not None:
            ds.ImageComments = comments
        path = save(ds, tmp_path / name)
        with pytest.raises(MammoSynthError) as caught:
            read_provenance(path)
        assert (caught.value.what, caught.value.why) == (str(path), "no mammosynth provenance recorded in this file")


# ---------------------------------------------------------------- PNG, NRRD and the choice by extension


def test_png_clips_to_the_unit_range_and_keeps_8_bit_as_8_bit(tmp_path):
    from PIL import Image

    back = np.asarray(Image.open(write_png16(tmp_path / "a.png", np.array([[-0.5, 0.0, 0.5, 1.0, 1.5]]))))
    assert back.dtype == np.uint16 and back.tolist() == [[0, 0, 32768, 65535, 65535]]
    eight = np.array([[0, 7, 255]], np.uint8)
    image = Image.open(write_png16(tmp_path / "b.png", eight))
    assert image.mode == "L" and np.array_equal(np.asarray(image), eight)


def test_nrrd_header_gives_the_spacing_of_each_axis(tmp_path):
    import nrrd

    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = write_image(tmp_path / "a.NRRD", pixels, spacing_mm=(0.2, 0.1))  # rows 0.2 mm apart, columns 0.1 mm
    data, header = nrrd.read(str(path))
    assert data.dtype == np.float32 and np.array_equal(data.T, pixels)  # columns first, as NRRD stores them
    assert header["dimension"] == 2 and header["space dimension"] == 2 and header["encoding"] == "gzip"
    np.testing.assert_array_equal(header["space directions"], [[0.1, 0.0], [0.0, 0.2]])
    np.testing.assert_array_equal(header["space origin"], [0.0, 0.0])
    _, header = nrrd.read(str(write_image(tmp_path / "b.nrrd", pixels)))
    np.testing.assert_array_equal(header["space directions"], np.eye(2))


@pytest.mark.parametrize("name", ["x.dcm", "x.DICOM"])
def test_write_image_passes_dicom_options_through(tmp_path, name):
    path = write_image(tmp_path / name, PIXELS, provenance={"seed": 11}, laterality="R")
    assert path == tmp_path / name and read_provenance(path)["seed"] == 11 and pydicom.dcmread(path).Laterality == "R"


def test_write_image_refuses_other_extensions(tmp_path):
    with pytest.raises(MammoSynthError) as caught:
        write_image(tmp_path / "x.jpg", PIXELS)
    assert (caught.value.what, caught.value.why) == \
        (str(tmp_path / "x.jpg"), "unknown output type: use a .dcm, .png or .nrrd file name")


# ---------------------------------------------------------------- DICOM SEG


def test_patient_geometry_is_added_only_where_missing_and_is_one_per_source():
    source = types.SimpleNamespace(sop_uid="1.2.3", spacing_mm=None)
    reference = Dataset()
    _add_patient_geometry(reference, source)
    assert (list(reference.ImagePositionPatient), list(reference.ImageOrientationPatient),
            [float(v) for v in reference.PixelSpacing], float(reference.SliceThickness)) == \
        ([0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [1.0, 1.0], 1.0)
    again = Dataset()
    _add_patient_geometry(again, source)
    assert again.FrameOfReferenceUID == reference.FrameOfReferenceUID  # every SEG of one image shares it
    other = Dataset()
    _add_patient_geometry(other, types.SimpleNamespace(sop_uid="1.2.4", spacing_mm=(0.1, 0.2)))
    assert other.FrameOfReferenceUID != reference.FrameOfReferenceUID
    assert [float(v) for v in other.PixelSpacing] == [0.1, 0.2]
    kept = dataset(FrameOfReferenceUID="1.9", ImagePositionPatient=[5, 6, 7], ImageOrientationPatient=[0, 1, 0, 1, 0, 0],
                   PixelSpacing=[0.3, 0.4], SliceThickness=2)
    _add_patient_geometry(kept, source)
    assert (kept.FrameOfReferenceUID, list(kept.ImagePositionPatient), list(kept.ImageOrientationPatient),
            [float(v) for v in kept.PixelSpacing], float(kept.SliceThickness)) == \
        ("1.9", [5, 6, 7], [0, 1, 0, 1, 0, 0], [0.3, 0.4], 2.0)


@pytest.fixture(scope="module")
def seg_source(tmp_path_factory):
    ds = mammogram_dataset(synthetic_breast(128, 96))
    return read_mammogram(save(ds, tmp_path_factory.mktemp("seg") / "src.dcm"))


def segment_mask(rows=128, cols=96) -> np.ndarray:
    mask = np.zeros((rows, cols), np.uint8)
    mask[20:40, 10:30] = 255  # a label map, not a bool array
    return mask


def test_segmentation_defaults_and_its_fixed_attributes(tmp_path, seg_source):
    import highdicom as hd

    path = write_segmentation(tmp_path / "seg.dcm", segment_mask(), seg_source)
    seg = pydicom.dcmread(path)
    segment = seg.SegmentSequence[0]
    assert (segment.SegmentLabel, segment.SegmentAlgorithmName, seg.SeriesDescription) == \
        ("Mass", "mammosynth", "mammosynth finding")
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Mass.value
    modifier = segment.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    assert (modifier.CodeValue, modifier.CodingSchemeDesignator) == (codes.SCT.Left.value, "SCT")
    assert (seg.SeriesNumber, seg.InstanceNumber, seg.ManufacturerModelName, seg.DeviceSerialNumber) == \
        (2000, 1, "mammosynth", "0")
    assert list(seg.PatientOrientation) == ["A", "R"]  # detected: the test breast's chest wall is on the left
    assert (tmp_path / "seg.dcm").read_bytes()[128:132] == b"DICM"
    decoded = hd.seg.segread(path).get_pixels_by_source_instance([seg_source.sop_uid], combine_segments=True)
    assert np.array_equal(decoded.squeeze() > 0, segment_mask() > 0)


def test_segmentation_options_reach_the_file(tmp_path, seg_source):
    path = write_segmentation(tmp_path / "seg.dcm", segment_mask(), seg_source, label="L" * 70, algorithm="algo",
                              description="D" * 70, breast_side="right", finding="calcification")
    seg = pydicom.dcmread(path)
    segment = seg.SegmentSequence[0]
    assert (segment.SegmentLabel, segment.SegmentAlgorithmName, seg.SeriesDescription) == ("L" * 64, "algo", "D" * 64)
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.CalcificationCluster.value
    assert list(seg.PatientOrientation) == ["P", "R"]  # the side given, not the one detected


def test_segmentation_side_and_orientation_follow_the_source(tmp_path, seg_source):
    right = dataclasses.replace(seg_source, laterality="R", view="MLO")
    seg = pydicom.dcmread(write_segmentation(tmp_path / "r.dcm", segment_mask(), right, breast_side="left"))
    modifier = seg.SegmentSequence[0].AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0]
    assert modifier.CodeValue == codes.SCT.Right.value and list(seg.PatientOrientation) == ["A", "FL"]
    unknown = dataclasses.replace(seg_source, laterality=None)
    seg = pydicom.dcmread(write_segmentation(tmp_path / "u.dcm", segment_mask(), unknown))
    assert "AnatomicRegionModifierSequence" not in seg.SegmentSequence[0].AnatomicRegionSequence[0]
    header = seg_source.dataset.copy()
    header.PatientOrientation = ["P", "L"]
    stated = dataclasses.replace(seg_source, dataset=header)
    seg = pydicom.dcmread(write_segmentation(tmp_path / "s.dcm", segment_mask(), stated, breast_side="left"))
    assert list(seg.PatientOrientation) == ["P", "L"]  # the source's own statement wins


def test_an_empty_mask_is_still_one_frame_and_a_wrong_shape_is_refused(tmp_path, seg_source):
    seg = pydicom.dcmread(write_segmentation(tmp_path / "e.dcm", np.zeros((128, 96), bool), seg_source))
    assert int(seg.NumberOfFrames) == 1
    with pytest.raises(ValueError) as caught:
        write_segmentation(tmp_path / "w.dcm", np.zeros((96, 128), bool), seg_source)
    assert str(caught.value) == "mask shape (96, 128) differs from the source image (128, 96)"
    assert not (tmp_path / "w.dcm").exists()
