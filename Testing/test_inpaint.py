"""Native-resolution lesion inpainting: crop box, feathered blend, mask readers and `mammosynth inpaint`."""
from __future__ import annotations

import hashlib
import math
import sys
import threading
import types

import numpy as np
import pydicom
import pytest
import torch

from dicom_factory import dciodvfy_errors, mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.deidentify import outside_breast
from MammoSynthLogic.dicom_io import read_mammogram, read_provenance, write_nrrd, write_png16, write_segmentation
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.masks import read_mask
from MammoSynthLogic.pipelines.inpaint import blend_into, crop_box, encode_like, feather_weights
from tiny_sd import make_tiny_sd_bundle

torch.set_num_threads(1)
ROWS, COLS = 256, 192
LESION = np.s_[100:130, 30:62]  # asymmetric, inside the synthetic breast (chest wall on the left)


def lesion_mask(shape=(ROWS, COLS)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[LESION] = True
    return mask


def make_source(folder, bits: int = 16, monochrome1: bool = False, window: bool = False):
    pixels = synthetic_breast(ROWS, COLS) >> (16 - bits)
    tags = {"BitsStored": bits, "HighBit": bits - 1}
    if monochrome1:
        pixels = (1 << bits) - 1 - pixels
        tags["PhotometricInterpretation"] = "MONOCHROME1"
    if window:
        tags.update(WindowCenter=0.45 * (1 << bits), WindowWidth=0.8 * (1 << bits))
    name = f"src{bits}{'m1' if monochrome1 else ''}{'w' if window else ''}.dcm"
    return save(mammogram_dataset(pixels.astype(np.uint16), **tags), folder / name)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return make_tiny_sd_bundle(tmp_path_factory.mktemp("sd") / "mame-inpaint", "mame-inpaint")


# ---------------------------------------------------------------- crop box and blending


@pytest.mark.parametrize("shape, rows, cols, margin, min_side, pad", [
    ((600, 500), (200, 240), (150, 170), 0.5, 128, 0),  # small mask: the model size wins
    ((600, 500), (100, 400), (200, 260), 0.5, 128, 0),  # tall mask: margin of its extent
    ((600, 500), (5, 25), (480, 498), 0.5, 128, 9),  # corner: shifted inside
    ((100, 90), (40, 60), (40, 50), 0.5, 128, 0),  # image smaller than the model: clipped
])
def test_crop_box_contains_mask_square_inside_image(shape, rows, cols, margin, min_side, pad):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    box = crop_box(mask, margin, min_side, pad)
    extent = max(rows[1] - rows[0], cols[1] - cols[0])
    side = max(math.ceil(extent * (1 + 2 * margin)), extent + 2 * pad, min_side)
    assert (box.height, box.width) == (min(side, shape[0]), min(side, shape[1]))
    assert 0 <= box.top and box.top + box.height <= shape[0] and 0 <= box.left and box.left + box.width <= shape[1]
    assert mask[box.slices].sum() == mask.sum()
    assert box.top <= max(rows[0] - pad, 0) and box.top + box.height >= min(rows[1] + pad, shape[0])
    assert box.left <= max(cols[0] - pad, 0) and box.left + box.width >= min(cols[1] + pad, shape[1])


def test_crop_box_of_empty_mask_is_an_error():
    with pytest.raises(MammoSynthError, match="mask is empty"):
        crop_box(np.zeros((10, 10), bool))


def test_feather_weights_fall_from_one_to_zero():
    mask = lesion_mask()
    weights = feather_weights(mask, 8)
    assert (weights[mask] == 1).all() and weights.dtype == np.float32
    row = weights[115, 62:75]  # leaving the mask to the right: distances 1, 2, ...
    assert (np.diff(row) <= 0).all() and 0 < row[0] < 1 and row[6] > 0 and (row[7:] == 0).all()
    from scipy import ndimage

    far = ndimage.distance_transform_edt(~mask) >= 8
    assert (weights[far] == 0).all() and (weights[~far & ~mask] > 0).all()
    assert np.array_equal(feather_weights(mask, 0), mask.astype(np.float32))


def test_encode_like_inverts_the_sources_display_mapping(tmp_path):
    plain = read_mammogram(make_source(tmp_path, 12), keep_stored=True)
    stored = plain.stored_pixels
    assert np.array_equal(encode_like(plain.pixels, stored, plain.pixels), stored)
    windowed = read_mammogram(make_source(tmp_path, 12, monochrome1=True, window=True), keep_stored=True)
    stored = windowed.stored_pixels
    back = encode_like(windowed.pixels, stored, windowed.pixels)
    unsaturated = (windowed.pixels > 0) & (windowed.pixels < 1)
    assert unsaturated.mean() > 0.3 and np.array_equal(back[unsaturated], stored[unsaturated])


def test_blend_into_copies_weight_zero_pixels_bit_identically():
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, (64, 64)).astype(np.uint16)
    original = stored.astype(np.float32) / 4095
    mask = np.zeros((64, 64), bool)
    mask[20:30, 20:30] = True
    weights = feather_weights(mask, 4)
    out = blend_into(stored, original, np.ones_like(original), weights)
    assert out.dtype == np.uint16 and np.array_equal(out[weights == 0], stored[weights == 0])
    assert (out[mask] == stored.max()).all() and (out[weights > 0] >= stored[weights > 0]).all()
    ring = (weights > 0) & ~mask
    assert (out[ring] > stored[ring]).mean() > 0.9
    only_inside = blend_into(stored, original, np.where(mask, np.float32(1), original), weights)
    assert np.array_equal(only_inside[~mask], stored[~mask]) and (only_inside[mask] == stored.max()).all()


# ---------------------------------------------------------------- mask readers


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return read_mammogram(make_source(tmp_path_factory.mktemp("src"), 12))


def test_nrrd_label_maps_2d_3d_and_label(source, tmp_path):
    import nrrd

    labels = lesion_mask().astype(np.uint8)
    labels[200:210, 20:40] = 2
    write_nrrd(tmp_path / "2d.nrrd", labels, source.spacing_mm)
    assert np.array_equal(read_mask(tmp_path / "2d.nrrd", source), labels > 0)
    assert np.array_equal(read_mask(tmp_path / "2d.nrrd", source, label=1), lesion_mask())
    # Slicer's export of a segment on a 2D image: 3D, sizes (columns, rows, 1), columns fastest.
    nrrd.write(str(tmp_path / "3d.nrrd"), np.ascontiguousarray(labels.T[..., None]), index_order="F")
    assert np.array_equal(read_mask(tmp_path / "3d.nrrd", source, label=2), labels == 2)
    with pytest.raises(MammoSynthError, match=r"label 3 is not in the mask \(labels present: 1, 2\)"):
        read_mask(tmp_path / "2d.nrrd", source, label=3)
    write_nrrd(tmp_path / "t.nrrd", np.ascontiguousarray(labels.T), source.spacing_mm)  # transposed grid
    with pytest.raises(MammoSynthError, match="mask is 192x256 pixels but the image is 256x192"):
        read_mask(tmp_path / "t.nrrd", source)


def test_png_and_seg_masks(source, tmp_path):
    mask = lesion_mask()
    write_png16(tmp_path / "m.png", mask.astype(np.uint8) * np.uint8(255))
    assert np.array_equal(read_mask(tmp_path / "m.png", source), mask)
    write_segmentation(tmp_path / "seg.dcm", mask, source, label="Lesion")
    for segment in (None, "1", "Lesion"):
        assert np.array_equal(read_mask(tmp_path / "seg.dcm", source, segment=segment), mask)
    with pytest.raises(MammoSynthError, match="no segment 'Mass' \\(segments: 1 Lesion\\)"):
        read_mask(tmp_path / "seg.dcm", source, segment="Mass")
    copy = pydicom.dcmread(source.path)  # the same image under another SOP instance: accepted by its size
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(tmp_path / "copy.dcm")
    assert np.array_equal(read_mask(tmp_path / "seg.dcm", read_mammogram(tmp_path / "copy.dcm")), mask)
    with pytest.raises(MammoSynthError, match="--label is for NRRD and PNG"):
        read_mask(tmp_path / "seg.dcm", source, label=1)
    with pytest.raises(MammoSynthError, match="--segment is for DICOM SEG"):
        read_mask(tmp_path / "m.png", source, segment="1")


@pytest.mark.parametrize("case, message", [
    ("empty", "mask is empty: paint a region first"),
    ("small", "mask is 128x96 pixels but the image is 256x192"),
    ("garbage", "cannot read the mask"),
])
def test_bad_masks_one_line_error_nothing_written(source, tmp_path, capsys, case, message):
    mask_path = tmp_path / ("m.png" if case != "garbage" else "m.nrrd")
    if case == "garbage":
        mask_path.write_bytes(b"NRRD0004\nthis is not a header\n")
    else:
        write_png16(mask_path, np.zeros((ROWS, COLS) if case == "empty" else (128, 96), np.uint8))
    before = hashlib.sha256(source.path.read_bytes()).hexdigest()
    out = tmp_path / "out.dcm"
    assert main(["inpaint", str(source.path), "--mask", str(mask_path), "--method", "sd", "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [mask_path.name]
    assert hashlib.sha256(source.path.read_bytes()).hexdigest() == before


def test_output_over_an_input_is_refused(source, tmp_path, capsys):
    write_png16(tmp_path / "m.png", lesion_mask().astype(np.uint8))
    assert main(["inpaint", str(source.path), "--mask", str(tmp_path / "m.png"), "--out", str(source.path)]) == 2
    assert "would overwrite an input" in capsys.readouterr().err


# ---------------------------------------------------------------- the command


def _inpaint(src, mask_path, out, *extra):
    return main(["inpaint", str(src), "--mask", str(mask_path), "--steps", "3", "--seed", "4", "--feather", "6",
                 "--out", str(out), "--quiet", *map(str, extra)])


@pytest.mark.parametrize("bits, monochrome1, window", [(16, False, False), (12, True, True)])
def test_sd_inpainting_keeps_source_pixels_outside_the_blend_zone(sd_dir, tmp_path, bits, monochrome1, window):
    src = make_source(tmp_path, bits, monochrome1, window)
    image = read_mammogram(src)
    write_nrrd(tmp_path / "m.nrrd", lesion_mask().astype(np.uint8), image.spacing_mm)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out.dcm"
    assert _inpaint(src, tmp_path / "m.nrrd", out, "--model", sd_dir) == 0
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert dciodvfy_errors(out) == []
    ds, original = pydicom.dcmread(out), pydicom.dcmread(src)
    result, stored = ds.pixel_array, original.pixel_array
    assert result.shape == stored.shape and result.dtype == stored.dtype == np.uint16
    assert (ds.BitsStored, ds.PhotometricInterpretation) == (bits, original.PhotometricInterpretation)
    assert result.max() < (1 << bits)
    outside = feather_weights(lesion_mask(), 6) == 0
    assert np.array_equal(result[outside], stored[outside])
    assert (result[LESION] != stored[LESION]).mean() > 0.5
    assert ds.PatientID != original.PatientID and ds.SeriesDescription.startswith("SYNTHETIC")
    prov = read_provenance(out)
    assert (prov["method"], prov["seed"], prov["steps"], prov["guidance"]) == ("sd", 4, 3, 4.0)
    assert prov["prompt"] == "a mammogram with a lesion" and prov["box"]["height"] >= 32
    png = tmp_path / "out.png"
    assert _inpaint(src, tmp_path / "m.nrrd", png, "--model", sd_dir) == 0
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(png)), result)  # same seed, same stored pixels


@pytest.fixture(scope="module")
def mambo_dir(tmp_path_factory):
    from tiny_bundles import make_tiny_mambo_set

    return make_tiny_mambo_set(tmp_path_factory.mktemp("mambo"))


def test_cancel_writes_nothing(sd_dir, source, tmp_path):
    from MammoSynthLogic.cli import build_parser
    from MammoSynthLogic.errors import Cancelled
    from MammoSynthLogic.progress import Reporter

    write_png16(tmp_path / "m.png", lesion_mask().astype(np.uint8))
    cancel = threading.Event()
    args = build_parser().parse_args(["inpaint", str(source.path), "--mask", str(tmp_path / "m.png"), "--model",
                                      str(sd_dir), "--steps", "4", "--out", str(tmp_path / "out.dcm")])
    with pytest.raises(Cancelled):
        args.func(args, Reporter(lambda stage, done, total: done == 2 and cancel.set(), cancel))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


def test_auto_route_picks_repaint_for_mambo_models(mambo_dir, tmp_path, monkeypatch):
    calls = []

    def inpaint_repaint(pixels, mask, bundles, *, seed, steps=50, jumps=1, jump_length=10, reporter=None, side=None,
                        lesion=0.0, start=None, strength=1.0):
        assert start is None and strength == 1.0, "a painted mask alone starts from noise"
        calls.append((pixels.shape, mask.sum(), [b.role for b in bundles], seed, steps, jumps, side, lesion))
        return np.where(mask, np.float32(1.0), pixels)

    monkeypatch.setitem(sys.modules, "MammoSynthLogic.pipelines.repaint",
                        types.SimpleNamespace(inpaint_repaint=inpaint_repaint))
    src = make_source(tmp_path, 12)
    write_png16(tmp_path / "m.png", lesion_mask().astype(np.uint8))
    out = tmp_path / "out.nrrd"
    assert _inpaint(src, tmp_path / "m.png", out, "--model", mambo_dir, "--jumps", 2, "--lesion-contrast", 0.2) == 0
    ring = feather_weights(lesion_mask(), 6) > 0  # RePaint regenerates the feather ring, to blend it as sd does
    assert calls == [((ROWS, COLS), ring.sum(), ["mambo-global", "mambo-local", "mambo-patch"], 4, 3, 2, "left", 0.2)]
    import nrrd

    result, _ = nrrd.read(str(out), index_order="C")
    stored = pydicom.dcmread(src).pixel_array
    outside = feather_weights(lesion_mask(), 6) == 0
    assert result.dtype == np.uint16 and np.array_equal(result[outside], stored[outside])
    assert (result[LESION] == stored.max()).all()


def test_repaint_route_honours_feather_like_the_sd_route(mambo_dir, tmp_path):
    src = make_source(tmp_path, 12)
    write_png16(tmp_path / "m.png", lesion_mask().astype(np.uint8))
    stored = pydicom.dcmread(src).pixel_array
    weights = feather_weights(lesion_mask(), 6)
    ring = (weights > 0) & ~lesion_mask()
    out = tmp_path / "out.dcm"
    assert _inpaint(src, tmp_path / "m.png", out, "--method", "repaint", "--model", mambo_dir) == 0
    assert dciodvfy_errors(out) == [] and read_provenance(out)["method"] == "repaint"
    result = pydicom.dcmread(out).pixel_array
    assert np.array_equal(result[weights == 0], stored[weights == 0])
    assert (result[LESION] != stored[LESION]).mean() > 0.5
    assert (result[ring] != stored[ring]).mean() > 0.3  # the ring is blended (was 0: a hard edge)
    # the blend moves a ring pixel only part of the way: less near the edge of the zone than next to the mask
    change = np.abs(result.astype(np.int64) - stored)
    near, far = ring & (weights > 0.75), ring & (weights < 0.25)
    assert change[near].mean() > change[far].mean()
    hard = tmp_path / "hard.dcm"
    assert _inpaint(src, tmp_path / "m.png", hard, "--method", "repaint", "--model", mambo_dir, "--feather", 0) == 0
    assert np.array_equal(pydicom.dcmread(hard).pixel_array[~lesion_mask()], stored[~lesion_mask()])


def test_real_mammogram_with_seg_mask(sd_dir, real_dicom, tmp_path):
    image = read_mammogram(real_dicom)
    mask = np.zeros((image.rows, image.columns), bool)
    mask[2000:2090, 400:470] = True
    write_segmentation(tmp_path / "seg.dcm", mask, image)
    out = tmp_path / "out.dcm"
    assert _inpaint(real_dicom, tmp_path / "seg.dcm", out, "--model", sd_dir, "--segment", "Mass") == 0
    assert dciodvfy_errors(out) == []
    result, stored = pydicom.dcmread(out).pixel_array, pydicom.dcmread(real_dicom).pixel_array
    background = outside_breast(image.pixels)  # the film's labels and markers: cleaned (test_deidentify.py)
    kept = (feather_weights(mask, 6) == 0) & ~background
    assert result.shape == stored.shape and np.array_equal(result[kept], stored[kept])
    assert (result[background] == result.min()).all()
    assert (result[mask] != stored[mask]).mean() > 0.5
