"""Mask readers: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — label maps that are not
one slice, colour PNGs, and the one-line errors — each with a known answer. The readers only need the image's size
(and, for DICOM SEG, its SOP instance), so a stand-in image of any size does."""
from __future__ import annotations

import copy
import types
from pathlib import Path

import nrrd
import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_segmentation
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.masks import _select, read_mask


def image_of(rows: int, columns: int):
    return types.SimpleNamespace(rows=rows, columns=columns, sop_uid="1.2.3")


def box(rows: int = 6, columns: int = 5) -> np.ndarray:
    mask = np.zeros((rows, columns), bool)
    mask[1:3, 2:4] = True
    return mask


def test_a_label_map_of_several_slices_is_refused_with_its_shape(tmp_path):
    path = tmp_path / "two.nrrd"
    labels = np.stack([box(), box()]).astype(np.uint8)
    nrrd.write(str(path), labels, index_order="C")
    with pytest.raises(MammoSynthError) as caught:
        read_mask(path, image_of(6, 5))
    assert (caught.value.what, caught.value.why) == \
        (str(path), "label map of shape (2, 6, 5): expected a 2D or single-slice label map")


def test_a_one_row_label_map_stays_two_dimensional(tmp_path):
    row = np.array([[0, 1, 1, 0, 2]], np.uint8)
    write_nrrd(tmp_path / "row.nrrd", row)
    np.testing.assert_array_equal(read_mask(tmp_path / "row.nrrd", image_of(1, 5)), row > 0)


@pytest.mark.parametrize("mode, channel", [("RGB", 2), ("RGBA", 1), ("LA", 0)])
def test_a_colour_png_is_in_the_mask_where_any_colour_channel_is_set(tmp_path, mode, channel):
    mask = box()
    pixels = np.zeros((6, 5, len(mode)), np.uint8)
    pixels[..., channel][mask] = 200
    if mode.endswith("A"):
        pixels[..., -1] = 255  # opaque everywhere: alpha says nothing about the mask
    Image.fromarray(pixels, mode).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", image_of(6, 5)), mask)


def test_seg_errors_name_the_file_the_segments_and_the_source(tmp_path):
    image = read_mammogram(save(mammogram_dataset(synthetic_breast()), tmp_path / "a.dcm"))
    other = read_mammogram(save(mammogram_dataset(synthetic_breast()), tmp_path / "b.dcm"))
    mask = np.zeros((image.rows, image.columns), bool)
    mask[100:130, 30:62] = True
    seg = write_segmentation(tmp_path / "seg.dcm", mask, image, label="Lesion")
    with pytest.raises(MammoSynthError) as caught:
        read_mask(seg, image, segment="Mass")
    assert (caught.value.what, caught.value.why) == (str(seg), "no segment 'Mass' (segments: 1 Lesion)")
    # a SEG that references two other images: no way to tell which grid it belongs to
    ds = pydicom.dcmread(seg)
    instances = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    second = copy.deepcopy(instances[0])
    second.ReferencedSOPInstanceUID = pydicom.uid.generate_uid()
    instances.append(second)
    ds.save_as(tmp_path / "two.dcm")
    with pytest.raises(MammoSynthError) as caught:
        read_mask(tmp_path / "two.dcm", other)
    assert (caught.value.what, caught.value.why) == (
        str(tmp_path / "two.dcm"), f"this segmentation does not reference the source image (SOPInstanceUID "
                                   f"{other.sop_uid}); export it from this image")


def test_files_that_are_no_mask_are_named_with_the_reason(tmp_path):
    image = image_of(6, 5)
    cases = {"missing.png": "no such mask file",
             "notes.txt": "unknown mask type: use an NRRD label map, a PNG or a DICOM SEG",
             "short.bin": "unknown mask type: use an NRRD label map, a PNG or a DICOM SEG"}
    (tmp_path / "notes.txt").write_text("no DICM here " * 20)  # longer than a DICOM preamble
    (tmp_path / "short.bin").write_bytes(b"\0" * 128 + b"DIC")
    for name, why in cases.items():
        with pytest.raises(MammoSynthError) as caught:
            read_mask(tmp_path / name, image)
        assert (caught.value.what, caught.value.why) == (str(tmp_path / name), why)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(MammoSynthError) as caught:
        read_mask(tmp_path / "broken.png", image)
    assert caught.value.why.startswith("cannot read the mask (") and "\n" not in caught.value.why
    assert len(caught.value.why) <= len("cannot read the mask ()") + 120


@pytest.mark.parametrize("name", ["m.nrrd", "m.nhdr", "m.PNG"])
def test_a_segment_is_only_for_seg_files(tmp_path, name):
    (tmp_path / name).write_bytes(b"anything")  # refused before it is read
    with pytest.raises(MammoSynthError) as caught:
        read_mask(tmp_path / name, image_of(6, 5), segment="1")
    assert (caught.value.what, caught.value.why) == \
        (str(tmp_path / name), "--segment is for DICOM SEG masks; choose a label with --label")


def test_a_label_is_only_for_label_maps(tmp_path):
    (tmp_path / "seg").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)  # a DICOM by its preamble, not its name
    with pytest.raises(MammoSynthError) as caught:
        read_mask(tmp_path / "seg", image_of(6, 5), label=1)
    assert (caught.value.what, caught.value.why) == (str(tmp_path / "seg"), "--label is for NRRD and PNG label maps; "
                                                     "choose a DICOM SEG's segment with --segment")


def test_labels_are_chosen_in_png_and_detached_nrrd_label_maps(tmp_path):
    labels = np.zeros((6, 5), np.uint8)
    labels[1:3, 2:4] = 1
    labels[4, 0:2] = 2
    Image.fromarray(labels).save(tmp_path / "m.png")
    nrrd.write(str(tmp_path / "m.nhdr"), labels, index_order="C")  # header and data in two files
    image = image_of(6, 5)
    for name in ("m.png", "m.nhdr"):
        np.testing.assert_array_equal(read_mask(tmp_path / name, image, label=2), labels == 2)
        np.testing.assert_array_equal(read_mask(tmp_path / name, image), labels > 0)
        with pytest.raises(MammoSynthError) as caught:
            read_mask(tmp_path / name, image, label=3)
        assert (caught.value.what, caught.value.why) == \
            (str(tmp_path / name), "label 3 is not in the mask (labels present: 1, 2)")
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(MammoSynthError, match=r"label 1 is not in the mask \(labels present: none\)$"):
        read_mask(tmp_path / "empty.png", image, label=1)


@pytest.mark.parametrize("error, why", [
    (ValueError("bad chunk " + "x" * 200 + "\nsecond line"), ("bad chunk " + "x" * 200)[:120]),
    (OSError(), "OSError"),
])
def test_a_reader_failure_is_one_line_of_at_most_120_characters(tmp_path, monkeypatch, error, why):
    def fail(path):
        raise error

    monkeypatch.setattr("MammoSynthLogic.masks._png_labels", fail)
    (tmp_path / "m.png").write_bytes(b"")
    with pytest.raises(MammoSynthError) as caught:
        read_mask(tmp_path / "m.png", image_of(6, 5))
    assert (caught.value.what, caught.value.why) == (str(tmp_path / "m.png"), f"cannot read the mask ({why})")


def test_a_mask_of_another_size_or_an_empty_mask_is_refused(tmp_path):
    Image.fromarray(box().astype(np.uint8)).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "empty.png")
    for name, image, why in (
            ("m.png", image_of(5, 6),
             "mask is 6x5 pixels but the image is 5x6; export the mask on the image's own grid"),
            ("empty.png", image_of(6, 5), "mask is empty: paint a region first")):
        with pytest.raises(MammoSynthError) as caught:
            read_mask(tmp_path / name, image)
        assert (caught.value.what, caught.value.why) == (str(tmp_path / name), why)


def test_the_labels_present_are_listed_up_to_ten():
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)  # 0 and labels 1..11
    with pytest.raises(MammoSynthError) as caught:
        _select(labels, 12, Path("m.png"))
    assert caught.value.why == "label 12 is not in the mask (labels present: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)"
