"""Mask readers: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — label maps that are not
one slice, colour PNGs, and the one-line errors — each with a known answer. The readers only need the image's size
(and, for DICOM SEG, its SOP instance), so a stand-in image of any size does."""
from __future__ import annotations

import types

import nrrd
import numpy as np
import pytest
from PIL import Image

from MammoSynthLogic.dicom_io import write_nrrd
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.masks import read_mask


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
