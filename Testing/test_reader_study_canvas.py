"""Reader-study size policy: tall films and square synthetic images end up alike on one canvas."""
from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_factory import dciodvfy_errors
from MammoSynthLogic.deidentify import outside_breast
from MammoSynthLogic.dicom_io import read_mammogram, write_synthetic_dicom
from MammoSynthLogic.reader_study.canvas import resample
from MammoSynthLogic.reader_study.prepare import prepare_study
from MammoSynthLogic.reader_study.telltales import features

ROWS = 192
FILMS = slice(0, 4)  # 1-130 LCC, 1-131 LMLO, 1-132 RCC, 1-133 RMLO
SIZES = (0.55, 0.8, 0.65, 0.7)  # of the square's side: a model draws breasts of any size in its square


def square_stand_in(film, path, size: float, seed: int):
    """A square 'synthetic' image made of a real breast: the film with its base level taken off and black outside
    the breast, shrunk to `size` of a 1024-pixel square, chest wall against its side, at a random height."""
    image = read_mammogram(film, max_side=1024)
    outside = outside_breast(image.pixels)
    base = np.median(image.pixels[outside])  # the film base: the grey a synthetic image does not have
    breast = np.where(outside, 0.0, np.clip(image.pixels - base, 0.0, None)).astype(np.float32)
    shape = (round(breast.shape[0] * size), round(breast.shape[1] * size))
    small = np.asarray(Image.fromarray(breast).resize(shape[::-1], Image.Resampling.BOX))
    square = np.zeros((1024, 1024), np.float32)
    top = np.random.default_rng(seed).integers(0, 1024 - shape[0])
    left = 0 if image.laterality == "L" else 1024 - shape[1]
    square[top:top + shape[0], left:left + shape[1]] = small
    return write_synthetic_dicom(path, square, provenance={"stand_in_for": film.name}, laterality=image.laterality,
                                 breast_side="left" if image.laterality == "L" else "right")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, real_dicoms):
    """4 tall films and 4 square stand-ins made of the same 4 breasts, exported at 192 rows (small: the canvas
    cleaning's one-pixel rim effects show there)."""
    root = tmp_path_factory.mktemp("mixed")
    films = real_dicoms[FILMS]
    stand_ins = [square_stand_in(film, root / f"square-{film.stem}.dcm", size, i)
                 for i, (film, size) in enumerate(zip(films, SIZES))]
    paths = prepare_study(films, stand_ins, root / "study", seed=4, rows=ROWS)
    with open(paths.key, newline="") as f:
        key = list(csv.DictReader(f))
    copies = {row["source"]: pydicom.dcmread(paths.reader / row["file"]) for row in key}
    pairs = [(copies[str(f.resolve())], copies[str(s.resolve())]) for f, s in zip(films, stand_ins)]
    return paths, key, pairs


def test_filled_size_does_not_tell_tall_films_from_square_images(mixed):
    paths, key, pairs = mixed
    told = json.loads(paths.manifest.read_text())["telltales"]
    # before the crop the stand-ins filled 0.55-0.8 of their square's height and the films their whole one: AUC 1.0
    assert told["auc"]["filled_height"] <= 0.75 and told["auc"]["filled_width"] <= 0.75
    for film, square in pairs:  # the same breast, so the same place and size on the canvas
        a, b = features(film.pixel_array, 16), features(square.pixel_array, 16)
        # the box is planned on <=512-pixel previews (a preview pixel is under one canvas pixel) and the thin ends
        # of a breast are cut on that grid: measured up to 2 canvas pixels apart (3 at 256 rows), 4 allowed
        assert abs(a["filled_height"] - b["filled_height"]) <= 4 / ROWS
        assert abs(a["filled_width"] - b["filled_width"]) <= 4 / film.Columns
        filled_a, filled_b = film.pixel_array > 0, square.pixel_array > 0
        assert (filled_a != filled_b).mean() < 0.03  # the same silhouette, not only the same box (measured < 0.015)


def test_every_copy_is_on_one_canvas_chest_wall_on_its_side_and_valid(mixed):
    paths, key, pairs = mixed
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["canvas"] == {"rows": ROWS, "columns": round(0.8 * ROWS), "bits": 16}
    assert manifest["size_policy"]["max_upscale"] == 2.0 and "area average" in manifest["size_policy"]["resampling"]
    for film, square in pairs:
        for ds in (film, square):
            assert (ds.Rows, ds.Columns) == (ROWS, round(0.8 * ROWS))
            columns = np.flatnonzero(ds.pixel_array.any(axis=0))
            rows = np.flatnonzero(ds.pixel_array.any(axis=1))
            chest_wall_left = columns[0] == 0
            assert chest_wall_left != (columns[-1] == ds.Columns - 1)  # against exactly one side
            assert rows[0] <= 3 or rows[-1] >= ROWS - 4 or columns[-1] - columns[0] >= ds.Columns - 4  # fitted
        assert (film.pixel_array[:, 0] > 0).any() == (square.pixel_array[:, 0] > 0).any()  # same laterality side
        for ds in (film, square):  # the cleaning rule, run again on the copy, finds nothing left outside the breast
            assert features(ds.pixel_array, 16)["std_outside_breast"] == 0.0
    sides = {row["source"]: row for row in key}
    assert {row["mirrored"] for row in sides.values()} == {"0"}  # stored as their laterality says: none mirrored
    for path in sorted(paths.reader.glob("case-*.dcm")):
        assert dciodvfy_errors(path) == [], path.name


def test_chest_wall_goes_where_the_laterality_says(tmp_path, real_dicoms):
    yy, xx = np.mgrid[0:400, 0:300]
    pixels = np.where((xx / 250) ** 2 + ((yy - 200) / 180) ** 2 < 1, 0.5, 0.0).astype(np.float32)
    pixels[60:90, 0:60] = 0.9  # asymmetric: a bright patch at the top, by the chest wall
    left = write_synthetic_dicom(tmp_path / "l.dcm", pixels, provenance={}, laterality="L")
    right = write_synthetic_dicom(tmp_path / "r.dcm", pixels, provenance={}, laterality="R")  # stored the L way
    paths = prepare_study(real_dicoms[:1], [left, right], tmp_path / "s", n_real=0, seed=1, rows=256)
    with open(paths.key, newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    copy_l, copy_r = (pydicom.dcmread(paths.reader / rows[str(p)]["file"]).pixel_array for p in (left, right))
    assert (rows[str(left)]["mirrored"], rows[str(right)]["mirrored"]) == ("0", "1")
    assert copy_l[:, 0].any() and not copy_l[:, -1].any() and copy_r[:, -1].any() and not copy_r[:, 0].any()
    top_r, top_l = np.argmax(copy_r[:, -40:]) // 40, np.argmax(copy_l[:, :40]) // 40  # the patch stays at the top
    assert top_r == top_l < ROWS // 2
    # the same crop, mirrored; resampling an image and its mirror rounds differently in the last float bits, which
    # moves a 16-bit value by one, or flips a pixel right at the cleaned rim's edge (2 pixels here)
    apart = np.abs(copy_r.astype(int) - copy_l[:, ::-1])
    assert (apart > 1).mean() < 1e-3 and ((apart > 1) <= (copy_l[:, ::-1] < 1000) | (copy_r < 1000)).all()


def test_a_label_beside_the_breast_inside_the_window_is_cleaned(tmp_path, real_dicoms):
    yy, xx = np.mgrid[0:600, 0:400]
    plain = np.where((xx / 300) ** 2 + ((yy - 300) / 280) ** 2 < 1, 0.5, 0.0).astype(np.float32)
    labelled = plain.copy()
    labelled[30:60, 220:290] = 1.0  # in the corner of the breast's box, 100 pixels from the skin line
    sources = [write_synthetic_dicom(tmp_path / f"{name}.dcm", pixels, provenance={}, laterality="L")
               for name, pixels in (("plain", plain), ("labelled", labelled))]
    paths = prepare_study(real_dicoms[:1], sources, tmp_path / "s", n_real=0, seed=1, rows=ROWS)
    with open(paths.key, newline="") as f:
        rows = {r["source"]: r for r in csv.DictReader(f)}
    clean, copy = (pydicom.dcmread(paths.reader / rows[str(p)]["file"]).pixel_array for p in sources)
    row = rows[str(sources[1])]
    (top, bottom), (left, right) = (map(int, part.split(":")) for part in row["crop"].split(","))
    assert top < 30 and right > 290  # the label is inside the window: only the cleaning can take it out
    scale = float(row["scale"])
    offset = (ROWS - round((bottom - top) * scale)) // 2  # centred vertically, chest wall (left) at column 0
    label = np.s_[offset + int((30 - top) * scale):offset + int((60 - top) * scale) + 1,
                  int((220 - left) * scale):int((290 - left) * scale) + 1]
    # the label is a blob apart from the breast: region, base level and so every pixel are as without it
    assert copy[label].max() == 0 and np.array_equal(copy, clean)


def test_area_averaging_down_and_bicubic_up():
    board = np.indices((256, 256)).sum(axis=0) % 2  # one-pixel checkerboard: aliases to 0 or 1 unless averaged
    assert np.allclose(resample(board, (128, 128)), 0.5, atol=1e-6)
    assert np.abs(resample(board, (77, 77)) - 0.5).max() < 0.1  # a 3.3-pixel box: at most a fraction of a pixel left
    noise = np.random.default_rng(0).normal(0, 1, (512, 512)).astype(np.float32)
    # averaging 4 x 4 independent pixels divides the standard deviation by 4 (the noise floor follows the scale)
    assert resample(noise, (128, 128)).std() == pytest.approx(0.25, rel=0.05)
    ramp = np.add.outer(np.arange(64.0), 2 * np.arange(64.0)).astype(np.float32)
    up = resample(ramp, (128, 128))  # bicubic reproduces a linear ramp: no steps as nearest would leave
    assert np.abs(np.diff(up[4:-4, 4:-4], 2, axis=0)).max() < 1e-3
    assert np.abs(np.diff(up[4:-4, 4:-4], 2, axis=1)).max() < 1e-3
