"""Reader-study noise floor: grain brings every copy to the set's highest floor, so grain alone no longer tells."""
from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest

from MammoSynthLogic.cli import main
from MammoSynthLogic.deidentify import outside_breast
from MammoSynthLogic.dicom_io import write_synthetic_dicom
from MammoSynthLogic.reader_study.canvas import GRAIN_TOLERANCE, copy_noise_floor, equalise_grain
from MammoSynthLogic.reader_study.telltales import noise_floor

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
    assert kept["noise"]["equalised"] is False and kept["noise"]["target_noise_floor"] is None
    assert equalised["telltales"]["auc"]["noise_floor"] <= 0.625
    assert "noise_floor" not in equalised["telltales"]["telling"]
    assert equalised["noise"]["equalised"] is True


def test_every_copy_ends_at_the_grainiest_floor_and_only_the_smoother_ones_change(exports):
    manifest, key, pixels = exports["equalised"]
    _, key_kept, pixels_kept = exports["kept"]
    target = manifest["noise"]["target_noise_floor"]
    assert target == pytest.approx(max(float(row["noise_floor"]) for row in key), abs=1e-6)
    assert [row["noise_floor"] for row in key] == [row["noise_floor"] for row in key_kept]  # same pick, same canvas
    bits = manifest["canvas"]["bits"]
    for row in key:
        before, after = pixels_kept[row["file"]], pixels[row["file"]]
        floor, sigma = float(row["noise_floor"]), float(row["grain"])
        assert copy_noise_floor(after, bits) == pytest.approx(target, rel=2 * GRAIN_TOLERANCE)
        # white grain adds in variance: σ² = target² − floor²; the grainiest copy is left as it was
        assert sigma == pytest.approx(np.sqrt(target ** 2 - floor ** 2), rel=0.1, abs=1e-6)
        assert sigma < (0.5 if row["truth"] == "real" else 1.0) * target
        assert (sigma == 0) == (floor == target) == np.array_equal(before, after)
        outside = before == 0
        assert np.array_equal(after == 0, outside) or (after[~outside] == 0).mean() < 1e-3  # background stays black
        assert not after[outside].any()
        assert abs(after[~outside].mean() - before[~outside].mean()) < 2e-3 * (1 << bits)  # zero-mean grain


def test_equalise_grain_reaches_the_target_on_a_known_image():
    rng = np.random.default_rng(0)
    breast = smooth_breast(1)
    inside = breast > 0
    base = np.where(inside, breast + rng.normal(0.0, 0.002, breast.shape), 0.0)
    stored = np.rint(np.clip(base, 0.0, 1.0) * 65535).astype(np.uint16)
    floor = copy_noise_floor(stored, 16)
    assert floor == pytest.approx(0.002, rel=0.1)
    out, sigma = equalise_grain(stored, 16, 0.008, np.random.default_rng(1))
    image = out.astype(np.float32) / 65535
    assert noise_floor(image, ~outside_breast(image)) == pytest.approx(0.008, rel=GRAIN_TOLERANCE)
    # variances add; the black rim inside the estimator's region (1 % grown) takes no grain, hence a bit more σ
    assert sigma == pytest.approx(np.sqrt(0.008 ** 2 - floor ** 2), rel=0.1)
    assert not out[~inside].any() and abs(image[inside].mean() - base[inside].mean()) < 1e-3
    same, none = equalise_grain(stored, 16, floor * 0.5, np.random.default_rng(1))  # above the target: unchanged
    assert none == 0.0 and same is stored
