"""MAMBO 3-stage pipeline and the generate/upscale commands with tiny random bundles (s = 32, k = 3)."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.bundles import load_mambo_set
from MammoSynthLogic.errors import Cancelled
from MammoSynthLogic.pipelines import mambo
from MammoSynthLogic.pipelines.mambo import BACKGROUND, MamboPipeline, MamboSettings
from MammoSynthLogic.progress import Reporter
from tiny_bundles import make_tiny_mambo_set

torch.set_num_threads(1)
S = 32


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_tiny_mambo_set(tmp_path_factory.mktemp("bundles"), size=S, k=3)


@pytest.fixture(scope="module")
def pipe(bundle_dir):
    return MamboPipeline(*load_mambo_set([str(bundle_dir)]))


def quick(preset="fast", **kw):
    return MamboSettings.preset(preset, **{"steps": 4, "global_steps": 4, "overlap": 8, **kw})


def breast_like(size: int) -> np.ndarray:
    """A half-disc 'breast' against the left edge, background zero elsewhere."""
    yy, xx = np.mgrid[:size, :size]
    img = np.where((yy - size / 2) ** 2 + xx ** 2 < (0.4 * size) ** 2, 0.6, 0.0)
    return img.astype(np.float32)


def test_same_seed_same_image_other_seed_differs(pipe):
    a = pipe(100, 3, quick()).image
    b = pipe(100, 3, quick()).image
    c = pipe(100, 4, quick()).image
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_wavefront_batches_equal_sequential_tiles(pipe):
    seq = pipe(100, 1, quick("paper", tiling="sequential"))
    wave = pipe(100, 1, quick("paper", tiling="wavefront"))
    np.testing.assert_allclose(wave.mid, seq.mid, atol=2e-3)
    np.testing.assert_allclose(wave.image, seq.image, atol=2e-3)
    assert wave.counters["full"].batches < seq.counters["full"].batches
    assert wave.counters["full"].forwards == seq.counters["full"].forwards


def test_overlaps_of_finished_tiles_match(pipe, monkeypatch):
    """Every tile's own result over pixels finished by earlier tiles equals those pixels in the final canvas."""
    records = []
    real_sample = mambo.sample

    def spy(*args, **kwargs):
        out = real_sample(*args, **kwargs)
        if "known" in kwargs:  # tile batches (the global image has none)
            records.append((out.clone(), kwargs["known"].clone(), kwargs["known_mask"].clone()))
        return out

    monkeypatch.setattr(mambo, "sample", spy)
    pipe(100, 2, quick("paper", skip_background=False))
    assert sum(bool(m.any()) for _, _, m in records) >= 8
    for out, known, mask in records:
        assert torch.equal(out[mask], known[mask])


@pytest.mark.parametrize("mode", ["parallel", "wavefront", "sequential"])
def test_size_not_divisible_by_stride_has_no_missing_rows(pipe, mode):
    size = 101  # stride 24 with s = 32, overlap 8: positions 0, 24, 48, 69
    assert (size - S) % (S - 8)
    settings = quick(tiling=mode, skip_background=False)
    zero_contexts = lambda tiles, up, out=None: torch.zeros((len(tiles), 2, S, S)) if out is None else out.zero_()
    canvas = pipe.run_stage("full", pipe.patch, size, zero_contexts,
                            np.ones((size, size), bool), 0, settings, mambo.Counter(), {}, Reporter(),
                            coarse=torch.zeros((34, 34))).numpy()
    assert canvas.shape == (size, size)
    assert not np.any(np.all(canvas == BACKGROUND, axis=1)) and not np.any(np.all(canvas == BACKGROUND, axis=0))
    result = pipe(size, 0, quick(tiling=mode))
    assert result.image.shape == (size, size) and result.mid.shape == (34, 34)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_skipped_tiles_stay_background(pipe, mode):
    """Super-resolution of a half-disc: mid-resolution tiles outside the breast are not denoised, stay background."""
    result = pipe.upscale(breast_like(288), 5, quick(tiling=mode))
    active, total = result.tiles["mid"]
    assert 0 < active < total
    mask = mambo.background_mask(result.global_image, (96, 96))
    covered = np.zeros((96, 96), bool)
    for t in tiling.active(tiling.grid(96, 96, S, 8), mask):
        covered[t.slices] = True
    assert (~covered).sum() > 500 and np.all(result.mid[~covered] == 0.0)
    assert np.any(result.mid[covered] != 0.0)


def test_fast_preset_keeps_background_outside_the_coarser_breast_region(pipe):
    """A faint grey floor around the breast (a noisy global image): with the start from the coarser stage, pixels of
    active tiles outside that stage's breast region come out background, not grey tile ghosts."""
    g = breast_like(288)
    g[g == 0] = 0.03  # above the background tolerance, below Otsu's breast threshold
    result = pipe.upscale(g, 5, quick())
    mask = mambo.background_mask(result.global_image, (96, 96)) > 0.5
    covered = np.zeros((96, 96), bool)
    for t in tiling.active(tiling.grid(96, 96, S, 8), mask):
        covered[t.slices] = True
    start = mambo.aligned_context(result.global_image * 2 - 1, 0, 0, 96, 96)
    ghosts = covered & ~mask & (start >= BACKGROUND + 2 * mambo.BACKGROUND_TOLERANCE)
    assert ghosts.sum() > 20, "the grey floor must reach denoised tiles for this test to mean anything"
    assert np.all(result.mid[ghosts] == 0.0) and np.any(result.mid[mask] != 0.0)


def test_unet_counts_match_the_grid_formula(pipe):
    st = quick(skip_background=False, chunk=1000)
    r = pipe(100, 0, st)
    expected = mambo.expected_counts(100, S, 3, st)
    assert mambo.forwards(r.counters) == expected["unet_forwards"]
    assert mambo.sequential_batches(r.counters) == expected["sequential_unet_batches"] == 4 + 2 * 2
    full = pipe(100, 0, dataclasses.replace(st, strength=1.0))  # from pure noise: every step of the schedule
    assert mambo.sequential_batches(full.counters) == mambo.expected_counts(100, S, 3, dataclasses.replace(
        st, strength=1.0))["sequential_unet_batches"] == 3 * 4


def _run_cli(argv, reporter=None):
    from MammoSynthLogic.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args, reporter or Reporter())


def test_generate_dicom_is_valid_synthetic_and_records_seed(bundle_dir, tmp_path, dciodvfy_errors_fn):
    from MammoSynthLogic.dicom_io import read_provenance

    out = tmp_path / "synth.dcm"
    assert _run_cli(["generate", "--model", str(bundle_dir), "--size", "100", "--seed", "11", "--steps", "3",
                     "--overlap", "8", "--out", str(out)]) == 0
    assert dciodvfy_errors_fn(out) == []
    prov = read_provenance(out)
    assert prov["seed"] == 11 and prov["settings"]["steps"] == 3 and prov["settings"]["overlap"] == 8
    assert prov["size"] == 100 and len(prov["models"]) == 3
    import pydicom
    ds = pydicom.dcmread(out)
    assert (ds.Rows, ds.Columns) == (100, 100) and "SYNTHETIC" in ds.SeriesDescription.upper()


def test_cancel_leaves_no_file(bundle_dir, tmp_path):
    cancel = threading.Event()
    calls = []

    def callback(stage, done, total):
        calls.append(stage)
        if len(calls) == 6:  # inside the mid-resolution stage
            cancel.set()

    out = tmp_path / "never.png"
    with pytest.raises(Cancelled):
        _run_cli(["generate", "--model", str(bundle_dir), "--size", "100", "--seed", "1", "--steps", "4",
                  "--overlap", "8", "--out", str(out)], Reporter(callback, cancel))
    assert len(calls) == 6 and not out.exists() and list(tmp_path.iterdir()) == []


def test_upscale_real_dicom_maps_back_to_source_frame(bundle_dir, tmp_path, real_dicom):
    from MammoSynthLogic.dicom_io import read_mammogram

    out = tmp_path / "sr.nrrd"
    assert _run_cli(["upscale", str(real_dicom), "--model", str(bundle_dir), "--size", "96", "--seed", "2",
                     "--steps", "2", "--overlap", "8", "--out", str(out)]) == 0
    import nrrd
    data, _ = nrrd.read(str(out), index_order="C")
    src = read_mammogram(real_dicom)
    assert data.shape == (src.rows, src.columns) and 0 <= data.min() and data.max() <= 1


@pytest.fixture
def dciodvfy_errors_fn():
    from dicom_factory import dciodvfy_errors

    return dciodvfy_errors


def test_aligned_bundles_see_the_coarser_stage_under_each_tile(tmp_path, monkeypatch):
    """Local/patch bundles trained with the aligned context get, as channel 3, the global (mid stage) or mid image
    (full stage) under the tile; a 3-channel model whose manifest claims it is refused."""
    import json

    from MammoSynthLogic.errors import MammoSynthError

    folder = make_tiny_mambo_set(tmp_path / "aligned", size=S, k=3, aligned=True)
    aligned = MamboPipeline(*load_mambo_set([str(folder)]))
    seen = []
    original = mambo.tile_contexts

    def spy(role, tiles, side, g, mid=None, up=None, out=None):
        out = original(role, tiles, side, g, mid, up, out)
        seen.extend((role, tile, side, g.numpy(), None if mid is None else mid.numpy(), ctx.numpy())
                    for tile, ctx in zip(tiles, out))
        return out

    monkeypatch.setattr(mambo, "tile_contexts", spy)
    result = aligned(96, 2, quick(preset="paper", tiling="sequential"))
    assert {r for r, *_ in seen} == {"mambo-local", "mambo-patch"}
    for role, tile, side, g, mid, ctx in seen:
        assert ctx.shape == (3, S, S)
        coarse = g if role == "mambo-local" else mid
        scale = coarse.shape[0] / side  # fine pixel centres that fall on coarse pixel centres take their value
        rows = (np.arange(S) + tile.y + 0.5) * scale - 0.5
        cols = (np.arange(S) + tile.x + 0.5) * scale - 0.5
        on_r = np.flatnonzero(np.isclose(rows, np.round(rows)) & (rows >= 0) & (rows < coarse.shape[0]))
        on_c = np.flatnonzero(np.isclose(cols, np.round(cols)) & (cols >= 0) & (cols < coarse.shape[1]))
        assert on_r.size and on_c.size
        expected = coarse[np.round(rows[on_r]).astype(int)][:, np.round(cols[on_c]).astype(int)]
        np.testing.assert_allclose(ctx[2][np.ix_(on_r, on_c)], expected, atol=1e-5)
    assert result.image.shape == (96, 96)
    manifest_path = folder / "mambo-patch" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "aligned_context": False}))
    with pytest.raises(MammoSynthError, match="channel"):
        load_mambo_set([str(folder)])


def test_compile_flag_is_off_by_default_and_the_same_path_off_cuda(pipe):
    """torch.compile / CUDA graphs only on CUDA: on CPU the flag leaves the model and every pixel as they are."""
    from MammoSynthLogic.devices import compiled

    assert MamboSettings.preset("fast").compile is False and MamboSettings.preset("paper").compile is False
    assert compiled(pipe.patch.unet, "cpu", True) is pipe.patch.unet
    assert np.array_equal(pipe(100, 3, quick()).image, pipe(100, 3, quick(compile=True)).image)
