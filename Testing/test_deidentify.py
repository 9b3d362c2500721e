"""Pixel de-identification: a real film with a burned-in name keeps none of it in any output that drops its identity."""
from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from pydicom.uid import ExplicitVRLittleEndian

from dicom_factory import dciodvfy_errors
from MammoSynthLogic.breast_mask import breast_region
from MammoSynthLogic.cli import main
from MammoSynthLogic.deidentify import clean_image, outside_breast
from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_synthetic_dicom
from MammoSynthLogic.pipelines.inpaint import feather_weights
from tiny_sd import make_tiny_sd_bundle

torch.set_num_threads(1)
TEXT = "DOE^JANE 1961-03-04 ST. ELSEWHERE"


class Film:
    """A real film (half size, to keep the tests fast) with text burned in well outside the breast."""

    def __init__(self, path, plain, original, text, value, breast):
        self.path, self.plain, self.original, self.text, self.value, self.breast = (path, plain, original, text,
                                                                                     value, breast)


def _save(ds: pydicom.Dataset, pixels: np.ndarray, path):
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.Rows, ds.Columns = pixels.shape
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def film(tmp_path_factory, real_dicoms) -> Film:
    folder = tmp_path_factory.mktemp("film")
    ds = pydicom.dcmread(real_dicoms[0])  # chest wall on the left
    plain = _save(ds, ds.pixel_array[::2, ::2], folder / "plain.dcm")
    image = read_mammogram(plain, keep_stored=True)
    far = ~breast_region(image.pixels, grow=0.05)
    height, width = 110, 750
    top, left = next((r, c) for r in range(50, image.rows - height, 100) for c in (image.columns - width - 25,)
                     if far[r:r + height, c:c + width].all())
    canvas = Image.new("L", (width, height))
    ImageDraw.Draw(canvas).text((5, 5), TEXT, fill=255, font=ImageFont.load_default(size=55))
    text = np.zeros((image.rows, image.columns), bool)
    text[top:top + height, left:left + width] = np.asarray(canvas) > 0
    value = np.uint16((1 << image.bits_stored) - 1)
    pixels = image.stored_pixels.copy()
    pixels[text] = value
    ds.BurnedInAnnotation = "YES"
    path = _save(ds, pixels, folder / "film.dcm")
    assert text.sum() > 5000  # a real line of text, every pixel of it outside the breast
    return Film(path, plain, image.stored_pixels, text, value, breast_region(image.pixels))


def assert_clean(result: np.ndarray, film: Film, changed: np.ndarray | None = None) -> None:
    """No text pixel survives (all are the darkest value), and the breast is the source's, bit for bit."""
    assert result.shape == film.original.shape
    assert (result[film.text] == result.min()).all() and result.min() != film.value
    keep = film.breast if changed is None else film.breast & ~changed
    assert np.array_equal(result[keep], film.original[keep])


def test_cleaning_keeps_the_breast_and_drops_the_text(film):
    image = read_mammogram(film.path, keep_stored=True)
    cleaned = clean_image(image)
    assert_clean(cleaned.stored_pixels, film)
    assert (cleaned.pixels[film.text] == cleaned.pixels.min()).all()
    assert not outside_breast(image.pixels)[film.breast].any()  # the grown region holds the whole breast


def test_inpaint_output_has_no_burned_in_text(film, tmp_path):
    sd = make_tiny_sd_bundle(tmp_path / "sd", "mame-inpaint")
    mask = np.zeros(film.original.shape, bool)
    mask[1000:1045, 200:235] = True
    write_nrrd(tmp_path / "m.nrrd", mask.astype(np.uint8))
    common = ["inpaint", str(film.path), "--mask", str(tmp_path / "m.nrrd"), "--model", str(sd), "--steps", "2",
              "--seed", "3", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "out.dcm")]) == 0
    ds = pydicom.dcmread(tmp_path / "out.dcm")
    assert_clean(ds.pixel_array, film, changed=feather_weights(mask, 8) > 0)
    assert (ds.BurnedInAnnotation, ds.PatientIdentityRemoved) == ("NO", "YES")
    assert dciodvfy_errors(tmp_path / "out.dcm") == []
    assert main([*common, "--keep-identity", "--out", str(tmp_path / "kept.dcm")]) == 0
    kept = pydicom.dcmread(tmp_path / "kept.dcm")
    assert (kept.pixel_array[film.text] == film.value).all() and kept.BurnedInAnnotation == "YES"
    assert kept.PatientID == pydicom.dcmread(film.path).PatientID


def test_dualview_completion_copy_has_no_burned_in_text(film, tmp_path):
    out = tmp_path / "pair"
    assert main(["dualview", "--complete", str(film.path), "--copy-known", "--preset", "fast", "--steps", "2",
                 "--seed", "1", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    cc, mlo = pydicom.dcmread(out / "CC.dcm"), pydicom.dcmread(out / "MLO.dcm")
    assert_clean(cc.pixel_array, film)
    real = pydicom.dcmread(film.path, stop_before_pixels=True)
    assert cc.PatientID == mlo.PatientID != real.PatientID and cc.StudyInstanceUID == mlo.StudyInstanceUID
    assert cc.BurnedInAnnotation == "NO" and cc.PatientIdentityRemoved == "YES"
    assert not cc.SeriesDescription.startswith("SYNTHETIC") and cc.ConversionType == "WSD"
    assert mlo.SeriesDescription.startswith("SYNTHETIC")
    assert dciodvfy_errors(out / "CC.dcm") == [] and dciodvfy_errors(out / "MLO.dcm") == []


def test_reader_study_copy_has_no_burned_in_text(film, tmp_path):
    from MammoSynthLogic.reader_study.canvas import PREVIEW_SIDE, Canvas, fit_to_canvas, plan_crop

    yy, xx = np.mgrid[:1024, :640]
    breast = np.where((xx / 560) ** 2 + ((yy - 512) / 450) ** 2 < 1, 0.5, 0.0).astype(np.float32)
    write_synthetic_dicom(tmp_path / "syn.dcm", breast, provenance={"seed": 0})
    assert main(["reader-study", "prepare", "--real", str(film.path), "--synthetic", str(tmp_path / "syn.dcm"),
                 "--out", str(tmp_path / "study"), "--rows", "1024", "--seed", "2", "--quiet"]) == 0
    with open(tmp_path / "study" / "_key" / "key.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["truth"] == "real")
    copy = pydicom.dcmread(tmp_path / "study" / "reader" / row["file"]).pixel_array
    canvas = Canvas(rows=copy.shape[0], columns=copy.shape[1], bits=16)
    crop = plan_crop(read_mammogram(film.path, max_side=PREVIEW_SIDE))  # the window the export cut
    assert row["crop"] == f"{crop.top}:{crop.bottom},{crop.left}:{crop.right}" and not crop.mirror
    scale, _, top, left = crop.placement(canvas)
    rows, cols = np.nonzero(film.text)  # where the text lands on the canvas, if the crop kept any of it
    r, c = np.rint((rows - crop.top) * scale + top).astype(int), np.rint((cols - crop.left) * scale + left).astype(int)
    on = (r >= 0) & (r < canvas.rows) & (c >= 0) & (c < canvas.columns)
    assert copy[r[on], c[on]].max(initial=0) == 0
    # the breast: what the same cleaning gives for the film without the text, cut by the same window; the text moves
    # the segmentation's threshold a hair, so a few skin-line pixels may come or go
    expected, _ = fit_to_canvas(read_mammogram(film.plain).pixels, crop, canvas, True)
    inner = ndimage.binary_erosion(expected > 0, iterations=2)
    assert np.array_equal(copy[inner], expected[inner]) and (copy != expected).mean() < 1e-3
