"""`evaluate generation` and `evaluate realism` options through the command, each with an effect known in advance.

Generation: a real set of four DICOMs, the same pixels as PNGs of the same names (ROI pairs whose LPIPS is 0), and
the same images at twice the resolution (a set that only `--size` brings to the real set's pixel scale). LPIPS
weights are a seeded AlexNet LPIPS written to safetensors; LPIPS is linear in its heads' weights, so a file with the
heads doubled must double every LPIPS value the command reports.

Realism: a real film's texture in a half-ellipse breast, with brightness steps added on one MAMBO tile grid (a
checkerboard of ±0.03 per tile, hard-edged or blended like the tiles): the seam ratio rises well above 1 only when
--tile-size, --overlap and --k put the measured seams where those steps are.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import write_png16

torch.set_num_threads(1)
FAST = ["--global-size", "128", "--patch-size", "32", "--quiet"]  # MS-SSIM (slow) needs 161 px: skipped
MS_SSIM = ["--global-size", "176"]


def lpips_file(path: Path, head_scale: float = 1.0) -> Path:
    """A seeded AlexNet LPIPS (non-negative heads, times `head_scale`) as a safetensors state dict."""
    from MammoSynthLogic.metrics.lpips import Lpips

    torch.manual_seed(0)
    model = Lpips("alex")
    state = {k: (v.abs() * head_scale if k.startswith("lin") else v).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generation")
    for i in range(4):
        pixels = synthetic_breast(240, 180, side="left" if i % 2 else "right", seed=i)
        save(mammogram_dataset(pixels), root / "real" / f"case{i}.dcm")
        write_png16(root / "same" / f"case{i}.png", pixels)
        write_png16(root / "double" / f"case{i}.png", np.kron(pixels, np.ones((2, 2), np.uint16)))
    lpips_file(root / "lpips.safetensors")
    lpips_file(root / "lpips2.safetensors", head_scale=2.0)
    return root


def generation(sets: Path, out: Path, synthetic: str, *extra: str) -> dict:
    assert main(["evaluate", "generation", "--real", str(sets / "real"), "--synthetic", str(sets / synthetic),
                 "--out", str(out), *FAST, *extra]) == 0
    return json.loads((out / "generation.json").read_text())


def test_evaluate_generation_lpips_weights_are_the_file_given(sets, tmp_path):
    """Without --lpips-weights LPIPS is skipped; with it, the file's weights score the pairs: the same pixels at
    the same places give 0, and a file with doubled heads doubles every value."""
    assert "skipped" in generation(sets, tmp_path / "none", "same")["lpips"]
    one = generation(sets, tmp_path / "one", "same", "--lpips-weights", str(sets / "lpips.safetensors"))
    two = generation(sets, tmp_path / "two", "same", "--lpips-weights", str(sets / "lpips2.safetensors"))
    assert one["lpips_net"] == "alex" and one["lpips"]["roi_pairs"]["mean"] == pytest.approx(0, abs=1e-6)
    for key in ("diversity_real", "diversity_synthetic"):
        assert one["lpips"][key]["mean"] > 1e-3
        assert two["lpips"][key]["mean"] == pytest.approx(2 * one["lpips"][key]["mean"], rel=1e-4)


def test_evaluate_generation_patches_diversity_images_and_max_pairs_set_the_counts(sets, tmp_path):
    """4 paired images: --patches P gives 4·P ROI pairs; --diversity-images D keeps D images per set (D·(D-1)/2
    pairs); --max-pairs caps the pairs. Values chosen so that swapping any two options changes a count."""
    weights = ["--lpips-weights", str(sets / "lpips.safetensors")]
    default = generation(sets, tmp_path / "default", "same", *weights)
    assert default["lpips"]["roi_pairs"]["pairs"] == 16 and default["lpips"]["diversity_real"]["pairs"] == 6
    few = generation(sets, tmp_path / "few", "same", *weights, *MS_SSIM, "--patches", "2", "--diversity-images", "2")
    assert few["lpips"]["roi_pairs"]["pairs"] == 8  # --patches 2
    for section in (few["lpips"]["diversity_real"], few["lpips"]["diversity_synthetic"], few["ms_ssim"]["real"],
                    few["ms_ssim"]["synthetic"]):
        assert section["pairs"] == 1  # --diversity-images 2: one pair
    capped = generation(sets, tmp_path / "capped", "same", *weights, *MS_SSIM, "--max-pairs", "2")
    assert capped["lpips"]["roi_pairs"]["pairs"] == 16
    for section in (capped["lpips"]["diversity_real"], capped["ms_ssim"]["synthetic"]):
        assert section["pairs"] == 2  # --max-pairs 2 of the 6


def test_evaluate_generation_size_puts_both_sets_on_one_pixel_scale(sets, tmp_path):
    """The synthetic set is the real one at twice the resolution: ROI patches of the same pixel size cover twice
    the tissue unless --size resizes both to one side, where they are the same patches up to resampling."""
    weights = ["--lpips-weights", str(sets / "lpips.safetensors")]
    native = generation(sets, tmp_path / "native", "double", *weights)
    common = generation(sets, tmp_path / "common", "double", *weights, "--size", "128")
    assert common["settings"]["size"] == 128 and native["settings"]["size"] is None
    assert native["lpips"]["roi_pairs"]["mean"] > 0.01
    assert common["lpips"]["roi_pairs"]["mean"] < 0.01 * native["lpips"]["roi_pairs"]["mean"]


def test_evaluate_generation_seed_is_the_one_the_metrics_draw_with(sets, tmp_path):
    """--seed draws the pairs, the diversity subset, the patch centres and the intensity samples: the command with
    --seed 5 reports what the library reports with seed 5, and not what it reports with seed 0."""
    from MammoSynthLogic.metrics.generation import evaluate_generation
    from MammoSynthLogic.metrics.images import SummaryOptions

    from MammoSynthLogic.metrics.lpips import load_lpips

    weights = sets / "lpips.safetensors"
    result = generation(sets, tmp_path / "five", "same", "--lpips-weights", str(weights), "--max-pairs", "2",
                        "--seed", "5")
    assert result["settings"]["seed"] == 5
    library = {seed: evaluate_generation(sets / "real", sets / "same", lpips=load_lpips(weights), max_pairs=2,
                                         options=SummaryOptions(global_size=128, patch_size=32, seed=seed))
               for seed in (0, 5)}

    def drawn(r: dict) -> list[float]:  # values that depend on the seed
        return [r["lpips"]["diversity_real"]["mean"], r["lpips"]["diversity_synthetic"]["mean"],
                r["ks"]["pixel_intensity"]["statistic"], r["ks"]["mean_intensity"]["statistic"]]

    assert drawn(result) == pytest.approx(drawn(library[5]), rel=1e-6)
    assert drawn(result) != pytest.approx(drawn(library[0]), rel=1e-4)


class ShapeSpy(torch.nn.Module):
    """An LPIPS stand-in that records the side of every image pair it is given and scores them 0."""

    net_name = "spy"

    def __init__(self):
        super().__init__()
        self.sides: list[tuple[int, int]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape == b.shape
        self.sides += [tuple(a.shape[-2:])] * a.shape[0]
        return torch.zeros(a.shape[0])


def test_evaluate_generation_global_size_and_patch_size_are_the_sides_compared(sets, tmp_path, monkeypatch):
    """LPIPS sees the ROI patches (--patch-size²: 4 images x 4 patches) and the whole-image versions
    (--global-size²: 6 pairs per set); sides chosen apart from each other and from the defaults (256)."""
    import MammoSynthLogic.metrics.lpips

    spy = ShapeSpy()
    monkeypatch.setattr(MammoSynthLogic.metrics.lpips, "load_lpips", lambda path: spy)
    assert main(["evaluate", "generation", "--real", str(sets / "real"), "--synthetic", str(sets / "same"),
                 "--lpips-weights", str(sets / "lpips.safetensors"), "--global-size", "72", "--patch-size", "40",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(spy.sides) == [(40, 40)] * 16 + [(72, 72)] * 12


def test_evaluate_dualview_work_size_is_the_frame_the_masks_are_made_in(tmp_path, monkeypatch):
    """Both views of a CC/MLO pair are encoded at --work-size² before Otsu."""
    import MammoSynthLogic.dualview

    encode = MammoSynthLogic.dualview.encode_view
    sides = []

    def spy(*args, **kwargs):
        encoded = encode(*args, **kwargs)
        sides.append(encoded.pixels.shape)
        return encoded

    monkeypatch.setattr(MammoSynthLogic.dualview, "encode_view", spy)
    study = {"PatientID": "P1", "StudyInstanceUID": "1.2.826.0.1.3680043.2.1143.31", "ImageLaterality": "L"}
    for view in ("CC", "MLO"):
        save(mammogram_dataset(synthetic_breast(240, 180, seed=len(view)), ViewPosition=view, **study),
             tmp_path / "pairs" / f"{view}.dcm")
    for work_size in (48, 80):
        assert main(["evaluate", "dualview", "--real", str(tmp_path / "pairs"), "--synthetic", str(tmp_path / "pairs"),
                     "--work-size", str(work_size), "--out", str(tmp_path / f"out{work_size}"), "--quiet"]) == 0
        assert sides == [(work_size, work_size)] * 4  # CC and MLO, real and synthetic
        sides.clear()


# ------------------------------------------------------------------ evaluate realism

SIDE = 576  # divisible by 3 and 4: the local stages of k = 3 and k = 4 fall on whole pixels, and on other lines


@pytest.fixture(scope="module")
def film_breast(real_dicoms) -> np.ndarray:
    """A real film's breast texture (a 1024² crop at 50 µm, halved) inside a half-ellipse, SIDE², [0, 1]."""
    from MammoSynthLogic.breast_mask import breast_mask
    from MammoSynthLogic.dicom_io import read_mammogram
    from MammoSynthLogic.preparation import resize

    film = read_mammogram(real_dicoms[3]).pixels
    rows, cols = np.nonzero(breast_mask(film))
    cy, cx = int(np.median(rows)), int(np.median(cols))
    texture = resize(film[cy - 512:cy + 512, cx - 512:cx + 512], (SIDE, SIDE))
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    inside = (xx / (0.92 * SIDE)) ** 2 + ((yy - SIDE / 2) / (0.48 * SIDE)) ** 2 < 1
    return np.where(inside, texture, 0).astype(np.float32)


def tile_steps(breast: np.ndarray, canvas: int, tile: int, overlap: int, step: float = 0.03) -> np.ndarray:
    """`breast` plus ±step per tile (a checkerboard) of a canvas² grid blended like MAMBO's tiles, scaled to SIDE."""
    from MammoSynthLogic import tiling

    tiles = tiling.grid(canvas, canvas, tile, overlap)
    weights, inverse = tiling.blend_weights(tiles, (canvas, canvas), overlap)
    total = np.zeros((canvas, canvas), np.float32)
    for t in tiles:
        total[t.slices] += weights * step * (-1) ** (t.row + t.col)
    steps = np.kron(total * inverse, np.ones((SIDE // canvas,) * 2, np.float32))
    return np.clip(breast + steps * (breast > 0), 0, 1)


def seams(tmp_path: Path, breast: np.ndarray, synthetic: np.ndarray, *extra: str) -> dict:
    """The seam ratios `evaluate realism` reports for one synthetic PNG (which records no tile geometry), with the
    geometry the report says it used under "geometry"."""
    real = write_png16(tmp_path / "real.png", breast)
    path = write_png16(tmp_path / "synthetic.png", synthetic)
    out = tmp_path / f"report{len(list(tmp_path.glob('report*')))}"
    assert main(["evaluate", "realism", str(real), "--synthetic", str(path), "--size", str(SIDE), "--out", str(out),
                 "--quiet", *extra]) == 0
    report = json.loads((out / "realism.json").read_text())
    (image,) = report["synthetic"]["per_image"]
    return {**image["seams"], "geometry": tuple(report["options"][k] for k in ("tile_size", "k", "overlap"))}


def test_evaluate_realism_tile_size_places_the_patch_seams(film_breast, tmp_path):
    """Steps on a grid of 48-px tiles (overlap 6 = 48/8): seen with --tile-size 48, not with the default 64."""
    stepped = tile_steps(film_breast, SIDE, 48, 6)
    matched = seams(tmp_path, film_breast, stepped, "--tile-size", "48")
    assert matched["patch"] > 2.0 and matched["geometry"] == (48, 4, None)
    assert seams(tmp_path, film_breast, stepped)["patch"] < 1.3


def test_evaluate_realism_overlap_places_the_patch_seams(film_breast, tmp_path):
    """Hard-edged 64-px tiles (overlap 0, a tile every 64 px): seen with --overlap 0, not with the default 8 (a
    tile every 56 px)."""
    stepped = tile_steps(film_breast, SIDE, 64, 0)
    matched = seams(tmp_path, film_breast, stepped, "--overlap", "0")
    assert matched["patch"] > 2.0 and matched["geometry"] == (64, 4, 0)
    assert seams(tmp_path, film_breast, stepped)["patch"] < 1.3


def test_evaluate_realism_k_places_the_local_seams(film_breast, tmp_path):
    """Hard-edged tiles of the local stage of k = 3 (a 192² canvas: edges at 192 and 384 px of 576): seen with
    --k 3, not with the default 4 (a 144² canvas: edges at 256 and 320 px). (Tile 3 with k 64 would put the local
    edges on the same lines: the geometry the report records tells k from the tile size.)"""
    stepped = tile_steps(film_breast, SIDE // 3, 64, 0)
    matched = seams(tmp_path, film_breast, stepped, "--k", "3", "--overlap", "0")
    assert matched["local"] > 2.0 and matched["geometry"] == (64, 3, 0)
    assert seams(tmp_path, film_breast, stepped, "--overlap", "0")["local"] < 1.3
