"""Reader-study noise floor: grain brings every copy to the set's highest floor, so grain alone no longer tells."""
from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import write_synthetic_dicom
from MammoSynthLogic.reader_study.canvas import copy_noise_floors, equalise_grain, grain_units

ROWS = 256
COARSE, FINE = 0.012, 0.003  # the grain of the two sets (σ in [0, 1] units, white)


def smooth_breast(seed: int) -> np.ndarray:
    """A 640 x 400 breast: a half ellipse against the left edge with slow, smooth tissue shading, no grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:640, 0:400].astype(np.float32)
    inside = (xx / 380) ** 2 + ((yy - 320) / 300) ** 2 <= 1
    a, b = rng.uniform(0.5, 1.5, 2)
    shade = 0.45 + 0.15 * np.cos(a * yy / 200) * np.cos(b * xx / 150)
    return np.where(inside, shade, 0.0).astype(np.float32)


def write_set(folder, sigma: float, first_seed: int) -> list:
    """4 breasts (2 L, 2 R) with white grain of `sigma` on the breast, as 16-bit DICOMs."""
    paths = []
    for i in range(4):
        seed = first_seed + i
        breast = smooth_breast(seed)
        grain = np.random.default_rng(100 + seed).normal(0.0, sigma, breast.shape).astype(np.float32)
        pixels = np.where(breast > 0, np.clip(breast + grain, 0.01, 1.0), 0.0).astype(np.float32)
        laterality = "L" if i % 2 == 0 else "R"
        paths.append(write_synthetic_dicom(folder / f"b{seed}.dcm", pixels if laterality == "L" else pixels[:, ::-1],
                                           provenance={"seed": seed}, laterality=laterality,
                                           breast_side="left" if laterality == "L" else "right"))
    return paths


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The same 4 coarse-grained ('real') and 4 fine-grained ('synthetic') breasts exported with and without
    --keep-noise; (manifest, key rows, {file: pixels}) for each."""
    root = tmp_path_factory.mktemp("grain")
    write_set(root / "coarse", COARSE, 0)
    write_set(root / "fine", FINE, 10)
    found = {}
    for name, extra in (("kept", ["--keep-noise"]), ("equalised", [])):
        out = root / name
        assert main(["reader-study", "prepare", "--real", str(root / "coarse"), "--synthetic", str(root / "fine"),
                     "--out", str(out), "--rows", str(ROWS), "--seed", "3", "--quiet", *extra]) == 0
        with open(out / "_key" / "key.csv", newline="") as f:
            key = list(csv.DictReader(f))
        pixels = {row["file"]: pydicom.dcmread(out / "reader" / row["file"]).pixel_array for row in key}
        found[name] = (json.loads((out / "_key" / "manifest.json").read_text()), key, pixels)
    return found


def test_sets_differing_only_in_grain_are_told_apart_before_and_not_after(exports):
    kept, equalised = exports["kept"][0], exports["equalised"][0]
    assert kept["telltales"]["auc"]["noise_floor"] == 1.0 and "noise_floor" in kept["telltales"]["telling"]
    assert kept["noise"]["equalised"] is False and kept["noise"]["target_noise_floors"] is None
    for feature in ("noise_floor", "noise_floor_half"):
        assert equalised["telltales"]["auc"][feature] <= 0.625 and feature not in equalised["telltales"]["telling"]
    assert equalised["noise"]["equalised"] is True


def test_every_copy_gets_the_grain_it_lacks_and_ends_at_the_targets(exports):
    manifest, key, pixels = exports["equalised"]
    _, key_kept, pixels_kept = exports["kept"]
    target = np.array(manifest["noise"]["target_noise_floors"])
    assert [row["noise_floor"] for row in key] == [row["noise_floor"] for row in key_kept]  # same pick, same canvas
    before = np.array([[float(row["noise_floor"]), float(row["noise_floor_half"])] for row in key])
    units = grain_units(before)
    assert grain_units(target) == pytest.approx(units.max(axis=0), rel=1e-3)  # the largest of each, no more
    bits = manifest["canvas"]["bits"]
    for row in key:
        was, now = pixels_kept[row["file"]], pixels[row["file"]]
        sigma = np.array([float(row["grain_white"]), float(row["grain_smooth"])])
        assert copy_noise_floors(now, bits) == pytest.approx(target, rel=0.01)
        assert np.array_equal(was, now) == (not sigma.any())
        outside = was == 0
        assert not now[outside].any()  # the background stays black
        assert abs(now[~outside].mean() - was[~outside].mean()) < 2e-3 * (1 << bits)  # zero-mean grain
    assert np.mean([float(row["grain_white"]) for row in key if row["truth"] == "synthetic"]) > 3 * np.mean(
        [float(row["grain_white"]) for row in key if row["truth"] == "real"])  # the fine set lacked white grain


def breast_with(noise: np.ndarray) -> np.ndarray:
    """The smooth breast of seed 1 with `noise` on it, as a 16-bit canvas copy."""
    breast = smooth_breast(1)
    return np.rint(np.clip(np.where(breast > 0, breast + noise, 0.0), 0.0, 1.0) * 65535).astype(np.uint16)


@pytest.mark.parametrize("missing", ["white", "smooth"])
def test_the_missing_grain_is_recognised_as_white_or_smooth(missing):
    rng = np.random.default_rng(0)
    shape = smooth_breast(1).shape
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    kinds = {"white": rng.standard_normal(shape), "smooth": smooth / smooth.std()}
    own = rng.standard_normal(shape)  # the copy's own white grain, independent of the one it lacks
    stored = breast_with(0.002 * own)
    target_copy = breast_with(0.002 * own + 0.008 * kinds[missing])
    target = grain_units(copy_noise_floors(target_copy, 16))
    out, sigma = equalise_grain(stored, 16, target, np.random.default_rng(1))
    assert copy_noise_floors(out, 16) == pytest.approx(copy_noise_floors(target_copy, 16), rel=0.01)
    found = dict(zip(("white", "smooth"), sigma))
    assert found[missing] == pytest.approx(0.008, rel=0.15)
    assert found["smooth" if missing == "white" else "white"] < 0.25 * 0.008
    inside = smooth_breast(1) > 0
    assert not out[~inside].any() and abs(out[inside].mean() - stored[inside].mean()) < 1e-3 * 65535
    same, none = equalise_grain(target_copy, 16, target, np.random.default_rng(1))  # there already: unchanged
    assert not none.any() and same is target_copy
