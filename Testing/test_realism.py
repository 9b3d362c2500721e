"""Realism report: β from a known power-law texture, blur and seams detected, lesion texture, the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from MammoSynthLogic.metrics import realism
from MammoSynthLogic.preparation import prepare, resize


def power_law_texture(side: int, beta: float, seed: int = 0) -> np.ndarray:
    """Gaussian texture whose power spectrum is exactly 1/f^beta (random phases), scaled into [0, 1]."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(side)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    radius[0, 0] = 1.0
    amplitude = radius ** (-beta / 2)
    amplitude[0, 0] = 0.0
    x = np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((side, side)))).real
    return (0.5 + 0.08 * (x - x.mean()) / x.std()).astype(np.float32)


@pytest.mark.parametrize("beta", [2.0, 2.8, 3.5])
def test_known_power_law_gives_its_beta_back(beta):
    texture = power_law_texture(512, beta, seed=int(beta * 10))
    # Inside a disc only, so the ROI placement by mask is exercised too.
    yy, xx = np.mgrid[0:512, 0:512]
    disc = (yy - 256) ** 2 + (xx - 256) ** 2 < 200 ** 2
    assert realism.beta(texture, disc) == pytest.approx(beta, abs=0.1)


def test_no_roi_fits_gives_nan():
    texture = power_law_texture(256, 3.0)
    tiny = np.zeros_like(texture, dtype=bool)
    tiny[100:120, 100:120] = True
    assert np.isnan(realism.beta(texture, tiny))


@pytest.fixture(scope="module")
def real_square(real_dicoms):
    from MammoSynthLogic.dicom_io import read_mammogram

    prepared = prepare(read_mammogram(real_dicoms[0]))
    return resize(prepared.pixels, (1024, 1024)), resize(prepared.mask, (1024, 1024)) > 0.5


def test_real_texture_is_in_the_literature_range_and_blur_moves_it_away(real_square):
    square, mask = real_square
    sharp = realism.beta(square, mask)
    blurred = realism.beta(gaussian_filter(square, 2.0), mask)
    assert 2.5 <= sharp <= 3.6, "Burgess et al. 2001: beta 2.5-3.5 for real mammograms"
    assert blurred > sharp + 0.5, "a blurred copy has less fine texture: a steeper spectrum"


def with_tile_blocks(square: np.ndarray, canvas: int, overlap: int, step: float, seed: int = 0) -> np.ndarray:
    """A brightness offset of ±step per 64-px tile of a canvas-sized grid, blended with the parallel tiling's own
    weights (a ramp over the overlap, a hard edge without one), scaled up to the image: blocky tiles."""
    from MammoSynthLogic import tiling

    rng = np.random.default_rng(seed)
    tiles = tiling.grid(canvas, canvas, 64, overlap)
    weights, inverse = tiling.blend_weights(tiles, (canvas, canvas), overlap)
    total = np.zeros((canvas, canvas), np.float32)
    for t in tiles:
        total[t.slices] += weights * rng.choice([-step, step])
    scale = square.shape[0] // canvas
    return square + np.kron(total * inverse, np.ones((scale, scale), np.float32))


def test_seams_are_seen_on_the_stage_they_belong_to(real_square):
    square, mask = real_square
    zones = realism.seam_zones(1024, 64, 4, None)
    clean = {stage: realism.seam_ratio(square, mask, z) for stage, z in zones.items()}
    assert all(r <= 1.1 for r in clean.values()), clean
    patch = with_tile_blocks(square, 1024, 8, 0.02)
    assert realism.seam_ratio(patch, mask, zones["patch"]) > 1.5
    # The local stage's tiles, hard-edged (the sequential tiling's RePaint replacement leaves such edges).
    local = with_tile_blocks(square, 256, 0, 0.02)
    local_zones = realism.seam_zones(1024, 64, 4, 0)
    assert realism.seam_ratio(local, mask, local_zones["local"]) > 1.5
    assert realism.seam_ratio(square, mask, local_zones["local"]) <= 1.1


def test_seam_zones_follow_the_tiling_grid():
    zones = realism.seam_zones(1024, 64, 4, 8)
    # Patch stage: tiles start every 56 px; the first overlap band is columns 56..63, i.e. boundaries 55..62.
    assert zones["patch"][0] == (55, 63) and len(zones["patch"]) == len(range(0, 1024 - 64, 56))
    # Local stage: a 256² canvas with the same tiles, scaled ×4 to the image.
    assert zones["local"][0] == (223, 255)
    # Parallel tiling alternates with the grid shifted by half a step (starts 0, 28, 84, …): both grids' bands count
    both = realism.seam_zones(1024, 64, 4, 8, shifted=True)
    assert set(zones["patch"]) < set(both["patch"]) and (83, 91) in both["patch"] and (27, 63) in both["patch"]


def test_lesion_texture_inside_vs_around():
    texture = power_law_texture(512, 2.6)
    yy, xx = np.mgrid[0:512, 0:512]
    lesion = (yy - 256) ** 2 + (xx - 256) ** 2 < 30 ** 2
    smooth = texture.copy()
    box = slice(220, 292), slice(220, 292)
    smooth[box] = gaussian_filter(texture, 3.0)[box]
    region = np.ones_like(lesion)
    plain = realism.lesion_texture(texture, lesion, region)
    blurred = realism.lesion_texture(smooth, lesion, region)
    assert plain["rois_around"] == 8 and plain["beta_inside"] == pytest.approx(plain["beta_around"], abs=0.3)
    assert blurred["beta_inside"] > blurred["beta_around"] + 1.0


def test_report_ranks_a_blurred_set_below_the_real_one(real_dicoms, tmp_path):
    from MammoSynthLogic.dicom_io import read_mammogram, write_image

    blurred = []
    for i, path in enumerate(real_dicoms[:2]):
        image = read_mammogram(path)
        blurred.append(write_image(tmp_path / f"blurred{i}.png", gaussian_filter(image.pixels, 6.0)))
    report, real, synthetic = realism.compare(real_dicoms[:4], blurred, realism.RealismOptions(size=512))
    assert report["real"]["images"] == 4 and report["synthetic"]["images"] == 2
    assert report["beta_median_difference"] > 0.5
    assert report["area_within_real_range"].endswith("/2")
    md = realism.realism_markdown(report)
    assert "β, median (IQR)" in md and "seam ratio, patch stage" in md
    png = realism.plot_report(real, synthetic, tmp_path / "realism.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)  # the report is JSON-ready


def test_command_writes_the_report_with_lesion_texture(real_dicoms, tmp_path, capsys):
    """`evaluate realism`: real DICOMs vs a synthetic DICOM with a smoothed disc and its mask; every output file."""
    from MammoSynthLogic.cli import main
    from MammoSynthLogic.dicom_io import read_mammogram, write_image, write_nrrd

    image = read_mammogram(real_dicoms[1])
    rows, cols = np.nonzero(prepare(image).region[: image.rows, : image.columns])
    cy, cx = int(np.median(rows)), int(np.median(cols))
    yy, xx = np.mgrid[0:image.rows, 0:image.columns]
    lesion = (yy - cy) ** 2 + (xx - cx) ** 2 < 60 ** 2
    box = slice(cy - 90, cy + 90), slice(cx - 90, cx + 90)
    pixels = image.pixels.copy()
    pixels[box] = gaussian_filter(image.pixels, 4.0)[box]  # a smooth patch where texture should be
    synthetic = write_image(tmp_path / "inpainted.dcm", pixels, source=image, provenance={"command": "test"})
    mask = write_nrrd(tmp_path / "mask.nrrd", lesion.astype(np.uint8))
    out = tmp_path / "report"
    assert main(["evaluate", "realism", *map(str, real_dicoms[:3]), "--synthetic", str(synthetic),
                 "--masks", str(mask), "--size", "512", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "realism.json").read_text())
    assert report["real"]["images"] == 3 and report["synthetic"]["images"] == 1
    assert report["options"]["size"] == 512
    (lesion_report,) = report["lesions"]
    assert lesion_report["beta_inside"] > lesion_report["beta_around"] + 0.5, lesion_report
    assert "β inside mask" in (out / "realism.md").read_text()
    assert (out / "realism-spectra.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", "realism", str(real_dicoms[0]), "--synthetic", str(synthetic), "--masks", str(mask),
                 str(mask), "--out", str(tmp_path / "x"), "--quiet"]) != 0
    assert "2 masks for 1 synthetic images" in capsys.readouterr().err
