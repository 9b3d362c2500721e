"""Reading DICOM: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — each bad input's
one-line reason, the intensity mapping of signed and rescaled images, the fallbacks for laterality, view and pixel
spacing, file discovery and the breast key — on small constructed files whose answers are known."""
from __future__ import annotations

import types

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from dicom_factory import bad_inputs, mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.dicom_io import (MammogramImage, breast_key, find_dicoms, group_by_breast, patient_orientation,
                                      read_mammogram)
from MammoSynthLogic.errors import MammoSynthError

# lower-case and padded code strings are written on purpose: the reader must accept what vendors write
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS")

REASONS = {
    "empty": "empty file (0 bytes), not a DICOM file",
    "text": "not a DICOM file (no DICM preamble); export the image as DICOM",
    "ct_modality": "modality CT is not mammography (MG); only mammograms are supported",
    "rgb": "colour image (RGB, 3 samples per pixel): mammograms are single-channel grayscale",
    "no_pixel_data": "no pixel data (an object without an image); pass the image file itself",
    "one_pixel": "image is 1x1 pixels: too small to be a mammogram (need at least 64x64)",
    "multi_frame": "multi-frame image (3 frames, e.g. tomosynthesis): only 2D mammograms are supported",
    "no_dicom_folder": "is a folder: use find_dicoms() or pass files",
    "missing": "no such file",
    "bad_vr": "corrupt or truncated DICOM header (NotImplementedError); re-export the file",
    "runaway_length": "corrupt DICOM header (the Modality value runs on); re-export the file",
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_each_bad_input_names_the_file_and_the_reason(bad, kind):
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(bad[kind])
    assert (caught.value.what, caught.value.why) == (str(bad[kind]), REASONS[kind])


def test_truncated_files_say_what_broke(bad):
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(bad["truncated_header"])  # cut before the image's tags
    assert (caught.value.what, caught.value.why) == \
        (str(bad["truncated_header"]), "no image in this file: the header is truncated or corrupt; re-export the file")
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(bad["truncated_pixels"])
    why = caught.value.why
    assert caught.value.what == str(bad["truncated_pixels"])
    with pytest.raises(Exception) as raw:  # the reason quotes the start of pydicom's own first line
        pydicom.dcmread(bad["truncated_pixels"]).pixel_array
    quoted = why[len("pixel data cannot be decoded, truncated or corrupt ("):-1]
    assert len(quoted) > 10 and str(raw.value).splitlines()[0].startswith(quoted)
    assert why.startswith("pixel data cannot be decoded, truncated or corrupt (") and why.endswith(")")
    assert "\n" not in why and len(why) <= len("pixel data cannot be decoded, truncated or corrupt ()") + 120


def test_header_without_modality_must_say_breast(tmp_path):
    ds = mammogram_dataset(synthetic_breast())
    del ds.Modality
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(save(ds, tmp_path / "nomod.dcm"))
    assert (caught.value.what, caught.value.why) == \
        (str(tmp_path / "nomod.dcm"), "no Modality tag and BodyPartExamined is not BREAST; only mammograms are supported")
    ds.BodyPartExamined = "breast"
    image = read_mammogram(save(ds, tmp_path / "breast.dcm"))
    assert image.modality == "" and image.rows == 256
    del ds.PixelData
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(save(ds, tmp_path / "nomod_nopix.dcm"))
    assert caught.value.why == "no image in this file: the header is truncated or corrupt; re-export the file"


def test_signed_and_rescaled_images_span_their_own_range(tmp_path):
    px = np.tile(np.array([-100, 0, 300], np.int16), (64, 22))[:, :64]
    ds = mammogram_dataset(px.view(np.uint16), PixelRepresentation=1, BitsStored=16)
    image = read_mammogram(save(ds, tmp_path / "signed.dcm"))  # no VOI: the image's min..max
    np.testing.assert_allclose(image.pixels[0, :3], [0, 100 / 400, 1], atol=1e-6)
    ds = mammogram_dataset(px.view(np.uint16), PixelRepresentation=1, BitsStored=16, WindowCenter=0,
                           WindowWidth=200)
    windowed = read_mammogram(save(ds, tmp_path / "signed_window.dcm"))  # output range -32768..32767
    assert windowed.voi_applied == "window"
    # DICOM's linear window: (x - (c - 0.5)) / (w - 1) + 0.5 of the output range, so 0 lands at 0.5 + 0.5 / 199
    np.testing.assert_allclose(windowed.pixels[0, :3], [0, 0.5 + 0.5 / 199, 1], atol=1e-5)
    unsigned = np.tile(np.array([0, 1000, 2000], np.uint16), (64, 22))[:, :64]
    ds = mammogram_dataset(unsigned, RescaleSlope=2, RescaleIntercept=100)
    rescaled = read_mammogram(save(ds, tmp_path / "rescaled.dcm"))  # rescaled values 100..4100: their range
    np.testing.assert_allclose(rescaled.pixels[0, :3], [0, 0.5, 1], atol=1e-6)
    assert rescaled.voi_applied is None


def read_without(tmp_path, removed: str):
    """A reader of the test breast saved without the tag `removed` and with the given tags set."""
    def read(name, **tags):
        ds = mammogram_dataset(synthetic_breast())
        delattr(ds, removed)
        for key, value in tags.items():
            setattr(ds, key, value)
        return read_mammogram(save(ds, tmp_path / name))

    return read


def test_laterality_falls_back_through_frame_orientation_and_text(tmp_path):
    read = read_without(tmp_path, "ImageLaterality")

    item, frame = Dataset(), Dataset()
    frame.FrameLaterality = "L"
    item.FrameAnatomySequence = [frame]
    image = read("frame.dcm", SharedFunctionalGroupsSequence=[item])
    assert (image.laterality, image.laterality_source) == ("L", "FrameLaterality")
    frame.FrameLaterality = "R"
    image = read("frame_r.dcm", SharedFunctionalGroupsSequence=[item])
    assert (image.laterality, image.laterality_source) == ("R", "FrameLaterality")
    image = read("protocol.dcm", ProtocolName="LEFT BREAST")
    assert (image.laterality, image.laterality_source) == ("L", "ProtocolName")
    image = read("orient.dcm", PatientOrientation=["A", "L"])  # columns towards the patient's left: right breast
    assert (image.laterality, image.laterality_source) == ("R", "PatientOrientation")
    image = read("orient_mlo.dcm", PatientOrientation=["A", "FR"])
    assert (image.laterality, image.laterality_source) == ("L", "PatientOrientation")
    image = read("desc.dcm", SeriesDescription="screening right mlo")
    assert (image.laterality, image.laterality_source) == ("R", "SeriesDescription")
    image = read("pid.dcm", PatientID="P_00001_LEFT_CC")
    assert (image.laterality, image.laterality_source) == ("L", "PatientID")
    assert read("none.dcm", SeriesDescription="BRIGHTEST").laterality is None  # a word containing RIGHT is not it


def test_view_falls_back_through_position_orientation_and_text(tmp_path):
    read = read_without(tmp_path, "ViewPosition")

    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10242", "SRT", "cranio-caudal"
    assert read("srt.dcm", ViewCodeSequence=[code]).view == "CC"
    code.CodeValue = "399173006"  # a view code that is neither CC nor MLO (SNOMED ML)
    assert (read("ml.dcm", ViewCodeSequence=[code]).view, read("ml.dcm", ViewCodeSequence=[code]).view_source) == \
        ("other", "ViewCodeSequence")
    for view in ("CC", "MLO"):
        assert (read(f"{view}.dcm", ViewPosition=view).view, read(f"{view}.dcm", ViewPosition=view).view_source) == \
            (view, "ViewPosition")
    image = read("series.dcm", SeriesDescription="R MLO")
    assert (image.view, image.view_source) == ("MLO", "SeriesDescription")
    image = read("pid.dcm", PatientID="P_00001_LEFT_CC")
    assert (image.view, image.view_source) == ("CC", "PatientID")
    image = read("pos.dcm", ViewPosition=" ml ")
    assert (image.view, image.view_source) == ("other", "ViewPosition")
    image = read("po.dcm", PatientOrientation="mlo")
    assert (image.view, image.view_source) == ("MLO", "PatientOrientation")
    image = read("text.dcm", ProtocolName="L_CC 2D")
    assert (image.view, image.view_source) == ("CC", "ProtocolName")
    assert read("nothing.dcm", ProtocolName="MLOCAL").view is None


def test_pixel_spacing_falls_back_to_the_imager_and_skips_unusable_values(tmp_path):
    read = read_without(tmp_path, "PixelSpacing")

    def spacing(name, **tags):
        return read(name, **tags).spacing_mm

    assert spacing("imager.dcm", ImagerPixelSpacing=[0.07, 0.05]) == (0.07, 0.05)
    assert spacing("zero.dcm", PixelSpacing=[0, 0], NominalScannedPixelSpacing=[0.2, 0.2]) == (0.2, 0.2)
    assert spacing("none.dcm") is None
    # one value alone (pydicom gives a DSfloat, not a list) is no spacing: fall through to the next tag
    assert spacing("single.dcm", PixelSpacing=[0.1], ImagerPixelSpacing=[0.07, 0.07]) == (0.07, 0.07)
    assert spacing("single_only.dcm", PixelSpacing=[0.1]) is None


def test_to_stored_inverts_monochrome1_and_clips():
    image = types.SimpleNamespace(bits_stored=12, photometric="MONOCHROME1", stored_dtype="uint16")
    stored = MammogramImage.to_stored(image, np.array([0.0, 0.5, 1.0, 1.5, -1.0]))
    np.testing.assert_array_equal(stored, [4095, 2048, 0, 0, 4095])
    assert stored.dtype == np.uint16


def test_find_dicoms_by_suffix_or_preamble_and_not_dicomdir(tmp_path):
    ds = mammogram_dataset(synthetic_breast())
    save(ds, tmp_path / "a" / "x.DCM")
    save(ds, tmp_path / "a" / "b" / "noext")
    save(ds, tmp_path / "a" / "DICOMDIR")
    (tmp_path / "a" / "short.bin").write_bytes(b"\0" * 100)
    (tmp_path / "a" / "notes.txt").write_text("not DICOM " * 20)
    (tmp_path / "empty").mkdir()
    files, errors = find_dicoms([tmp_path / "a", tmp_path / "empty", tmp_path / "given.txt"])
    assert files == [tmp_path / "a" / "b" / "noext", tmp_path / "a" / "x.DCM", tmp_path / "given.txt"]
    assert [(e.what, e.why) for e in errors] == \
        [(str(tmp_path / "empty"), "no DICOM files found in this folder (searched recursively)")]


def test_breast_key_drops_the_cbis_suffix_and_takes_the_study_date():
    def image(patient, laterality, date="20200101"):
        ds = Dataset()
        if date is not None:
            ds.StudyDate = date
        return types.SimpleNamespace(dataset=ds, patient_id=patient, study_uid="1.2", laterality=laterality)

    assert breast_key(image("P_00001_left_MLO", "L")) == ("P_00001", "20200101", "L")
    assert breast_key(image("P_00001_LEFT_CC", "L", date="")) == ("P_00001", "1.2", "L")
    assert breast_key(image("P_00001_LEFT_CC", "L", date=None)) == ("P_00001", "1.2", "L")
    assert breast_key(image("P_00001", None)) == ("P_00001", "1.2", "?")
    groups = group_by_breast([image("P_1_LEFT_CC", "L"), image("P_1_LEFT_MLO", "L"), image("P_1_RIGHT_CC", "R")])
    assert {k: len(v) for k, v in groups.items()} == {("P_1", "20200101", "L"): 2, ("P_1", "20200101", "R"): 1}


@pytest.mark.parametrize("side, laterality, view, expected", [
    ("left", "L", "CC", ("A", "R")), ("right", "R", "CC", ("P", "L")), ("left", "L", "MLO", ("A", "FR")),
    ("right", "R", "MLO", ("P", "FL")), ("left", None, "CC", ("A", "F")), ("right", None, "MLO", ("P", "F")),
    ("left", "L", None, ("A", "R")),
])
def test_patient_orientation_of_each_side_and_view(side, laterality, view, expected):
    assert patient_orientation(side, laterality, view) == expected


def test_identity_path_and_preview_stride_as_read(tmp_path):
    ds = mammogram_dataset(synthetic_breast())  # 256 x 192
    image = read_mammogram(save(ds, tmp_path / "full.dcm"))
    assert (image.patient_id, image.study_uid, image.series_uid, image.sop_uid) == \
        ("TEST123", ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert image.transfer_syntax == "Explicit VR Little Endian"
    del ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    path = save(ds, tmp_path / "bare.dcm")
    image = read_mammogram(path)
    assert (image.path, image.patient_id, image.study_uid, image.series_uid, image.sop_uid, image.modality) == \
        (path, "", "", "", "", "MG")
    for max_side, step, shape in ((1000, 1, (256, 192)), (128, 2, (128, 96)), (100, 3, (86, 64))):
        preview = read_mammogram(path, max_side=max_side)
        assert (preview.pixel_step, preview.pixels.shape, preview.rows, preview.columns) == (step, shape, 256, 192)
        np.testing.assert_array_equal(preview.pixels, image.pixels[::step, ::step])


@pytest.mark.parametrize("tags, why", [
    ({"NumberOfFrames": 2}, "multi-frame image (2 frames, e.g. tomosynthesis): only 2D mammograms are supported"),
    ({"Rows": None}, "image is 0x192 pixels: too small to be a mammogram (need at least 64x64)"),
    ({"Columns": None}, "image is 256x0 pixels: too small to be a mammogram (need at least 64x64)"),
])
def test_frames_and_a_missing_size_are_refused(tmp_path, tags, why):
    ds = mammogram_dataset(synthetic_breast())
    for key, value in tags.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    if tags.get("NumberOfFrames") == 2:
        ds.PixelData = np.stack([synthetic_breast()] * 2).tobytes()
    path = save(ds, tmp_path / "x.dcm")
    with pytest.raises(MammoSynthError) as caught:
        read_mammogram(path)
    assert (caught.value.what, caught.value.why) == (str(path), why)


def test_an_empty_number_of_frames_is_one_frame(tmp_path):
    ds = mammogram_dataset(synthetic_breast(), NumberOfFrames="")
    assert read_mammogram(save(ds, tmp_path / "x.dcm")).rows == 256
