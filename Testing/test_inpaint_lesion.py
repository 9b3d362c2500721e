"""`inpaint --lesion`: an analytic lesion of known size in mm drawn into a real mammogram, harmonised by RePaint, its
exact mask written as a DICOM SEG of the output (dciodvfy and dcmqi check every SEG through the conftest hook)."""
from __future__ import annotations

import numpy as np
import pytest

from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import read_mammogram, read_provenance
from MammoSynthLogic.lesions import LesionSpec, draw, insert

SPACING = 0.05  # DDSM films were scanned at 50 µm; the files carry no PixelSpacing


@pytest.fixture(scope="module")
def mambo_dir(tmp_path_factory):
    from tiny_bundles import make_tiny_mambo_set

    return make_tiny_mambo_set(tmp_path_factory.mktemp("mambo"))


def seg_mask(path):
    import highdicom as hd

    return hd.seg.segread(path).pixel_array.squeeze().astype(bool)


def run(src, out, mambo_dir, *extra) -> int:
    return main(["inpaint", str(src), "--model", str(mambo_dir), "--steps", "4", "--seed", "7", "--quiet",
                 "--spacing-mm", str(SPACING), "--out", str(out), *map(str, extra)])


def test_mass_at_a_random_place_in_the_breast_with_its_exact_seg(real_dicoms, mambo_dir, tmp_path):
    src = real_dicoms[0]
    out = tmp_path / "mass.dcm"
    assert run(src, out, mambo_dir, "--lesion", "mass", "--shape", "round", "--size-mm", "12") == 0
    record = read_provenance(out)["lesion"]
    assert (record["kind"], record["shape"], record["margin"], record["size_mm"]) == ("mass", "round", "circumscribed",
                                                                                      12.0)
    seg = out.with_name("mass_lesion_seg.dcm")
    mask = seg_mask(seg)
    # The same drawing again (same seed, spacing, centre, inside the breast of the cleaned image the command works on)
    # is the ground truth, pixel for pixel.
    from MammoSynthLogic.deidentify import clean_image

    source = clean_image(read_mammogram(src))
    profile, _ = draw(LesionSpec(kind="mass", shape="round", size_mm=12, contrast=record["contrast"]), SPACING, 7)
    from MammoSynthLogic.breast_mask import breast_region

    _, expected = insert(source.pixels, profile, tuple(record["centre"]), record["contrast"],
                         breast_region(source.pixels))
    assert np.array_equal(mask, expected)
    # 12 mm at 50 µm: a disc of radius 120 px (the mask keeps the profile above 5 % of its peak).
    assert mask.sum() == pytest.approx(np.pi * (120 * np.sqrt(1 - 0.05 ** 2)) ** 2, rel=0.03)
    result = read_mammogram(out)
    # the lesion brightens its core; far from it the tissue is the source's own
    core = mask & (np.hypot(*(np.mgrid[:mask.shape[0], :mask.shape[1]] - np.array(record["centre"])[:, None, None]))
                   < 60)
    assert (result.pixels[core] - source.pixels[core]).mean() > 0.05
    far = breast_region(source.pixels)
    far[max(0, record["centre"][0] - 400):record["centre"][0] + 400, :] = False
    assert np.abs(result.pixels[far] - source.pixels[far]).max() < 1e-3


def test_painted_mask_places_and_sizes_the_mass(real_dicoms, mambo_dir, tmp_path):
    from MammoSynthLogic.dicom_io import write_nrrd

    source = read_mammogram(real_dicoms[1])
    yy, xx = np.mgrid[:source.rows, :source.columns]
    from MammoSynthLogic.breast_mask import breast_mask

    rows, cols = np.nonzero(breast_mask(source.pixels))
    cy, cx = int(np.median(rows)), int(np.median(cols))
    painted = (yy - cy) ** 2 + (xx - cx) ** 2 < 150 ** 2
    mask_path = write_nrrd(tmp_path / "painted.nrrd", painted.astype(np.uint8))
    out = tmp_path / "placed.dcm"
    assert run(real_dicoms[1], out, mambo_dir, "--mask", mask_path, "--lesion", "mass", "--shape", "round") == 0
    record = read_provenance(out)["lesion"]
    assert record["centre"] == [cy, cx]
    # default size: 0.8 of the painted disc's diameter (300 px = 15 mm)
    assert record["size_mm"] == pytest.approx(0.8 * 2 * np.sqrt(painted.sum() / np.pi) * SPACING, rel=1e-6)
    assert seg_mask(out.with_name("placed_lesion_seg.dcm"))[~painted].sum() == 0


def test_margin_shape_and_calcification_options_reach_the_drawing(real_dicoms, mambo_dir, tmp_path):
    masks = {}
    for name, extra in {"round": ("--lesion", "mass", "--shape", "round"),
                        "spiculated": ("--lesion", "mass", "--shape", "round", "--margin", "spiculated"),
                        "calc": ("--lesion", "calcification", "--count", "9", "--size-mm", "0.5",
                                 "--spread-mm", "8")}.items():
        out = tmp_path / f"{name}.dcm"
        assert run(real_dicoms[2], out, mambo_dir, *extra) == 0
        masks[name] = seg_mask(out.with_name(f"{name}_lesion_seg.dcm"))
    from skimage.measure import label, perimeter

    assert perimeter(masks["spiculated"]) > 1.5 * perimeter(masks["round"])
    assert label(masks["calc"]).max() == 9
    assert np.ptp(np.argwhere(masks["calc"]), axis=0).max() * SPACING < 8 * 1.3 + 1


def test_strength_is_recorded_and_changes_the_result(real_dicoms, mambo_dir, tmp_path):
    pixels = {}
    for strength in ("0.3", "0.8"):
        out = tmp_path / f"s{strength}.dcm"
        assert run(real_dicoms[0], out, mambo_dir, "--lesion", "mass", "--strength", strength) == 0
        assert read_provenance(out)["strength"] == float(strength)
        pixels[strength] = read_mammogram(out).pixels
    assert not np.allclose(pixels["0.3"], pixels["0.8"])


@pytest.mark.parametrize("extra, message", [
    (("--lesion", "mass", "--method", "sd"), "--lesion"),
    ((), "--mask"),
])
def test_refusals_are_one_line_and_write_nothing(real_dicoms, mambo_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "x.dcm"
    assert main(["inpaint", str(real_dicoms[0]), "--model", str(mambo_dir), "--out", str(out), "--quiet",
                 *extra]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) <= 2  # argparse adds its usage line
    assert not list(tmp_path.iterdir())


def test_an_unknown_margin_is_refused_by_the_parser(real_dicoms, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["inpaint", str(real_dicoms[0]), "--lesion", "mass", "--margin", "fuzzy", "--out", str(tmp_path / "x.dcm")])
    assert e.value.code == 2 and "invalid choice: 'fuzzy'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_no_spacing_is_a_one_line_error_naming_the_file(real_dicoms, mambo_dir, tmp_path, capsys):
    out = tmp_path / "x.dcm"
    assert main(["inpaint", str(real_dicoms[0]), "--model", str(mambo_dir), "--lesion", "mass", "--out", str(out),
                 "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert str(real_dicoms[0]) in err and "--spacing-mm" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())
