"""MAMBO pipeline: the behaviour that mutation testing (scripts/mutation.sh pipelines/mambo) found unchecked — crops,
context channels, the background mask's margin, the U-Net input, counters, progress, the overlap, the seed, the
shifted grid, tile-by-tile tiling's waves, chunks, finished pixels and noise — each with a known answer."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines import mambo
from MammoSynthLogic.progress import Reporter
from test_oracle_mambo import ATOL, FULL, K, MID, S, Oracle, asymmetric_global, pipeline, quick, tissue_global, up


def test_crops_inside_the_image_are_plain_slices():
    image = torch.arange(100.0).reshape(10, 10)
    out = mambo.crops(image, [0, 2, 6], [5, 0, 6], 4)
    assert torch.equal(out, torch.stack([image[0:4, 5:9], image[2:6, 0:4], image[6:10, 6:10]]))
    edge = mambo.crops(image, [-1], [8], 4, fill=-7.0)[0]
    assert (edge[0] == -7).all() and (edge[:, 2:] == -7).all() and torch.equal(edge[1:, :2], image[0:3, 8:10])


def test_contexts_are_two_channels_or_three_with_the_coarser_stage():
    g = torch.rand(S, S)
    tiles = tiling.grid(MID, MID, S, 2)[:3]
    assert mambo.tile_contexts("mambo-local", tiles, MID, g).shape == (3, 2, S, S)
    up = torch.rand(MID, MID)
    three = mambo.tile_contexts("mambo-local", tiles, MID, g, up=up)
    assert three.shape == (3, 3, S, S) and torch.equal(three[1, 2], up[tiles[1].slices])


def test_the_background_mask_is_the_breast_region_grown_by_two_percent_of_the_side():
    """A breast against the left edge of a 200-px coarse image: the mask reaches round(0.02 · 200) = 4 px beyond
    the breast region's edge (the breast-mask module's segmentation, tested there), then is resized (here 2×)."""
    from MammoSynthLogic.breast_mask import breast_region

    coarse = np.zeros((200, 200), np.float32)
    coarse[:, :61] = 0.6
    edge = int(np.flatnonzero(breast_region(coarse)[100])[-1])  # the region's last column
    row = mambo.background_mask(coarse, (400, 400))[200]
    assert row[: 2 * (edge + 5)].all() and not row[2 * (edge + 5):].any(), (edge, np.flatnonzero(~row)[:3])


def test_parallel_stage_feeds_the_unet_its_channels_counts_its_calls_and_reports_each_step():
    """The U-Net input is the noisy tile and the three context channels (an extra channel would go unnoticed by a
    model that ignores it, not by a real one); every U-Net call is counted, in forwards and in calls; each step of
    each stage is reported as done of total."""
    pipe = pipeline(sd=0.05)
    channels = []
    pipe.patch.unet.register_forward_pre_hook(lambda module, args: channels.append(args[0].shape[1]))
    updates = []
    result = pipe(FULL, 1, quick(strength=1.0), Reporter(lambda stage, done, total: updates.append((stage, done,
                                                                                                    total))),
                  global01=tissue_global())
    assert set(channels) == {4}
    seen = pipe.patch.unet.seen
    assert result.counters["full"].forwards == sum(n for _, n in seen) and result.counters["full"].batches == len(seen)
    assert result.counters["mid"].batches == len(pipe.local.unet.seen)
    for stage in ("mid", "full"):
        steps = [(done, total) for name, done, total in updates if name == f"{stage} tiles"]
        assert steps == [(i, 10) for i in range(1, 11)], (stage, steps)


def test_the_overlap_setting_reaches_the_grids_and_the_recorded_settings():
    """overlap 6 at s = 16 (default s/8 = 2) on the 48-px mid canvas: 5 tiles a side (starts 0, 10, 20, 30, 32)
    instead of 4 (0, 14, 28, 32), and the result records the overlap it ran with (provenance)."""
    result = pipeline()(FULL, 0, quick(overlap=6, skip_background=False), global01=tissue_global())
    assert result.settings.overlap == 6 and result.tiles["mid"] == (25, 25)
    default = pipeline()(FULL, 0, quick(skip_background=False), global01=tissue_global())
    assert default.settings.overlap == S // 8 and default.tiles["mid"] == (16, 16)


def test_an_output_of_the_model_size_is_allowed_and_a_smaller_one_refused_in_one_line():
    assert pipeline()(S, 0, quick(), global01=tissue_global()).image.shape == (S, S)
    with pytest.raises(MammoSynthError, match=rf"^--size {S - 1}: the output must be at least the model size "
                                              rf"s = {S}$"):
        pipeline()(S - 1, 0, quick(), global01=tissue_global())


@pytest.mark.parametrize("tiling", ["parallel", "sequential"])
def test_the_seed_reaches_every_stage(tiling):
    """Gaussian oracles: a stage's residual (its canvas minus the coarser stage upsampled) comes from that stage's
    own noise, so another seed must give another field (correlation near 0; a stage that ignored the seed would
    repeat its field, correlation 1, whatever the coarser stage did); one seed repeats the image. From noise, the
    global image depends on the seed too, and the global stage's U-Net calls are counted."""
    g01 = tissue_global()

    def run(seed):
        return pipeline(sd=0.1)(FULL, seed, quick(tiling=tiling, strength=1.0), global01=g01)

    a, b, again = run(1), run(2), run(1)
    assert np.array_equal(a.image, again.image)
    for fine_a, fine_b, coarse_a, coarse_b, n in ((a.mid, b.mid, g01, g01, MID), (a.image, b.image, a.mid, b.mid, FULL)):
        residual_a, residual_b = fine_a - up(coarse_a, n), fine_b - up(coarse_b, n)
        assert residual_a.std() > 0.005 and abs(np.corrcoef(residual_a.ravel(), residual_b.ravel())[0, 1]) < 0.3, n

    def from_noise(seed):
        pipe = pipeline(sd=0.1)
        g = torch.from_numpy(g01 * 2 - 1)[None, None]
        pipe.global_.unet = Oracle(lambda x: g.expand(x.shape[0], -1, -1, -1), 0.1)
        return pipe(FULL, seed, quick(tiling=tiling, strength=1.0))

    x, y = from_noise(1), from_noise(2)
    assert np.abs(x.global_image - y.global_image).mean() > 0.01
    assert x.counters["global"].batches == 10 and x.counters["global"].forwards == 10


def test_bundles_without_the_aligned_channel_get_two_context_channels():
    pipe = pipeline()
    for bundle in (pipe.local, pipe.patch):
        bundle.manifest["aligned_context"] = False
        bundle.unet.target = lambda x: x[:, 2:3]  # the global image: the only clean channel they have
    channels = []
    pipe.patch.unet.register_forward_pre_hook(lambda module, args: channels.append(args[0].shape[1]))
    pipe.local.unet.register_forward_pre_hook(lambda module, args: channels.append(args[0].shape[1]))
    pipe(FULL, 0, quick(strength=1.0), global01=tissue_global())
    assert set(channels) == {3}


def test_a_background_only_global_image_gives_a_background_image_without_a_tile():
    result = pipeline()(FULL, 0, quick(), global01=np.zeros((S, S), np.float32))
    assert result.tiles["mid"][0] == result.tiles["full"][0] == 0 and result.tiles["full"][1] > 0
    assert result.image.shape == (FULL, FULL) and not result.image.any() and not result.mid.any()


@pytest.mark.parametrize("tiling", ["wavefront", "sequential"])
def test_tile_by_tile_stages_batch_their_waves_count_their_calls_and_report_progress(tiling):
    """Wavefront: the tiles of one anti-diagonal in one U-Net call; sequential: one tile per call. Every call is
    counted; progress runs over all groups' steps of a stage, ending at its total."""
    pipe = pipeline()
    updates = []
    result = pipe(FULL, 0, quick(tiling=tiling, strength=1.0, skip_background=False),
                  Reporter(lambda stage, done, total: updates.append((stage, done, total))), global01=tissue_global())
    side = result.tiles["mid"][0] ** 0.5
    groups = 2 * side - 1 if tiling == "wavefront" else side ** 2
    assert result.counters["mid"].batches == groups * 10 and result.counters["mid"].forwards == side ** 2 * 10
    assert len(pipe.local.unet.seen) == result.counters["mid"].batches
    mid = [(done, total) for name, done, total in updates if name == "mid tiles"]
    assert mid == [(i, groups * 10) for i in range(1, int(groups * 10) + 1)]


@pytest.mark.parametrize("tiling", ["parallel", "wavefront", "sequential"])
def test_every_tiling_enters_below_strength_T_from_the_coarser_stage(tiling):
    """strength 0.5 of a 10-step schedule: the tile models are asked at the 5 timesteps below t = 500 only (the
    tiles enter the schedule there, from the coarser stage; from noise they would be asked from t = 999)."""
    pipe = pipeline()
    pipe(FULL, 0, quick(tiling=tiling, strength=0.5), global01=tissue_global())
    for unet in (pipe.local.unet, pipe.patch.unet):
        assert max(t for t, _ in unet.seen) < 500 and len({t for t, _ in unet.seen}) == 5


def test_the_second_grid_of_the_parallel_stage_is_the_shifted_one(monkeypatch):
    """The grid the parallel stage alternates with is the one shifted by half a tile step (its borders lie in the
    middle of the first grid's tiles), narrowed to the tiles that cover the first grid's pixels."""
    offered = []
    real = mambo.covering

    def recording(candidates, tiles, side):
        offered.append((side, sorted({t.y for t in candidates}), sorted({t.x for t in candidates})))
        return real(candidates, tiles, side)

    monkeypatch.setattr(mambo, "covering", recording)
    pipeline()(FULL, 0, quick(), global01=tissue_global())
    expected = [(n, tiling.positions(n, S, S // 8, shifted=True), tiling.positions(n, S, S // 8, shifted=True))
                for n in (MID, FULL)]
    assert offered == expected and tiling.positions(MID, S, S // 8, shifted=True) != tiling.positions(MID, S, S // 8)


def test_wavefront_calls_the_unet_in_chunks_of_the_chunk_setting():
    """chunk 2 on a 4 × 4 mid grid: the waves hold 1, 2, 3, 4, 3, 2, 1 tiles, so 1+1+2+2+2+1+1 = 10 calls a step."""
    result = pipeline()(FULL, 0, quick(tiling="wavefront", chunk=2, strength=1.0, skip_background=False),
                        global01=tissue_global())
    assert result.tiles["mid"] == (16, 16) and result.counters["mid"].batches == 10 * 10


def test_tile_by_tile_a_tile_keeps_the_pixels_earlier_tiles_finished():
    """Each tile's clean target is the coarser stage plus a shift of its own (a fifth of the mean of its first
    context channel, which differs from tile to tile): where tiles overlap, the pixel must hold the target of the
    first tile (in row order) that covered it, re-noised and handed back to the later ones, not theirs."""
    pipe = pipeline()
    pipe.local.unet.target = lambda x: x[:, 3:4] + 0.2 * x[:, 1:2].mean(dim=(2, 3), keepdim=True)
    g01 = asymmetric_global()
    result = pipe(FULL, 0, quick(tiling="sequential", strength=1.0, skip_background=False), global01=g01)
    tiles = tiling.grid(MID, MID, S, S // 8)
    contexts = pipe.local.unet.contexts[::10]  # one tile per call, 10 steps each: each tile's first call
    expected, done = np.zeros((MID, MID), np.float32), np.zeros((MID, MID), bool)
    coarse = up(g01 * 2 - 1, MID)
    for t, ctx in zip(tiles, contexts):
        value = coarse[t.slices] + 0.2 * float(ctx[0, 0].mean())
        region = expected[t.slices]
        region[~done[t.slices]] = value[~done[t.slices]]
        done[t.slices] = True
    np.testing.assert_allclose(result.mid, np.clip((expected + 1) / 2, 0, 1), atol=ATOL)


def test_tile_by_tile_each_stage_draws_its_own_noise_for_a_tile():
    """Gaussian oracles, one tile per call: tile (0, 0) of the mid and of the full canvas have the same grid place,
    so only the stage's name in the key tells their noise apart. Their residuals (a function of the noise alone)
    must be another field each (correlation near 0, not 1)."""
    g01 = tissue_global()
    result = pipeline(sd=0.1)(FULL, 3, quick(tiling="sequential", strength=1.0), global01=g01)
    mid = (result.mid - up(g01, MID))[:S, :S]
    full = (result.image - up(result.mid, FULL))[:S, :S]
    assert mid.std() > 0.005 and full.std() > 0.005
    assert abs(np.corrcoef(mid.ravel(), full.ravel())[0, 1]) < 0.5


def test_presets_are_the_documented_settings_and_none_keeps_them():
    """fast: DPM-Solver++ 20 steps entered at 0.6·T, the global image by 25 SDE-DPM-Solver++ steps, parallel tiling;
    paper: MAMBO's code (DDIM 150, eta 1 for tiles, 0 for the global image, tiles in row order). An override of None
    keeps the preset's value, any other replaces it."""
    S_ = mambo.MamboSettings
    assert S_.preset("fast") == S_(name="fast", sampler="dpm++", steps=20, eta=0.0, global_sampler="sde-dpm++",
                                   global_steps=25, global_eta=0.0, tiling="parallel", strength=0.6)
    assert S_.preset("paper") == S_(name="paper", sampler="ddim", steps=150, eta=1.0, global_sampler="ddim",
                                    global_steps=150, global_eta=0.0, tiling="sequential", strength=1.0)
    assert S_.preset("paper", steps=None, tiling="wavefront", chunk=4) == S_(
        name="paper", sampler="ddim", steps=150, eta=1.0, global_sampler="ddim", global_steps=150, global_eta=0.0,
        tiling="wavefront", chunk=4)


@pytest.mark.parametrize("name,overrides,message", [
    ("slow", {}, "--preset slow: choose fast or paper"),
    ("fast", {"tiling": "random"}, "--tiling random: choose one of parallel, wavefront, sequential"),
])
def test_preset_errors_name_the_option_and_the_choices(name, overrides, message):
    with pytest.raises(MammoSynthError) as error:
        mambo.MamboSettings.preset(name, **overrides)
    assert str(error.value) == message


def test_the_global_image_is_one_seeded_chain_with_its_eta_and_progress():
    """Stage 1 is `sample` of the global model from noise drawn by the generator keyed ("global",), with the preset's
    global sampler, steps and eta (DDIM eta 1 here: a dropped eta would give another image), reporting each step as
    "global image"; float32. The reference is the same computation called directly."""
    from MammoSynthLogic.sampling import Counter, generators, make_scheduler, randn, sample, unet_predictor

    pipe = pipeline(tissue_global(), sd=0.2)  # Gaussian data: the chain's own noise (eta) shows in the image
    settings = quick(global_sampler="ddim", global_eta=1.0, global_steps=6)
    log = []
    image = pipe.sample_global(5, settings, Counter(), Reporter(callback=lambda *update: log.append(update)))
    gens = generators(5, [("global",)])
    expected = sample(unet_predictor(pipe.global_.unet, None), make_scheduler("ddim", pipe.global_.scheduler_config),
                      randn((1, 1, S, S), gens), gens, 6, eta=1.0)[0, 0].numpy()
    assert image.dtype == np.float32 and image.shape == (S, S)
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)  # the same calls in the same order
    assert log == [("global image", i, 6) for i in range(1, 7)]


@pytest.mark.parametrize("tiling, chunk, strength, overlap", [
    ("parallel", 2, 1.0, None), ("parallel", 1000, 0.5, None), ("parallel", 1000, 1.0, 4),  # shifted grid: 25 tiles
    ("wavefront", 1000, 1.0, None), ("sequential", 1000, 0.5, 4)])
def test_expected_counts_are_the_calls_a_run_makes(tiling, chunk, strength, overlap):
    """`expected_counts` (the benchmarks and the GPU check report it) from the grids alone, against a run with every
    tile active; the global stage is given, so its steps are not run."""
    settings = quick(tiling=tiling, chunk=chunk, strength=strength, skip_background=False, overlap=overlap)
    result = pipeline()(FULL, 0, settings, global01=tissue_global())
    expected = mambo.expected_counts(FULL, S, K, settings, chunk=None if chunk == 1000 else chunk)
    assert (mambo.forwards(result.counters), mambo.sequential_batches(result.counters)) == \
        (expected["unet_forwards"] - settings.global_steps, expected["sequential_unet_batches"] - settings.global_steps)
    assert (expected["tiles_mid"], expected["tiles_full"]) == (result.tiles["mid"][0], result.tiles["full"][0])


def test_aligned_context_resamples_bilinearly_holds_its_edges_and_fills_outside():
    """On a ramp (8·row + column) bilinear resampling is exact: the answer is the ramp at each pixel centre."""
    coarse = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_allclose(mambo.aligned_context(coarse, 2.5, 3, 4, 8),
                               8 * (2.5 + np.arange(4))[:, None] + (3 + np.arange(4))[None, :], atol=1e-5)
    centres = np.clip((np.arange(16) + 0.5) / 2 - 0.5, 0, 7)  # twice as fine; beyond the outer centres: held
    np.testing.assert_allclose(mambo.aligned_context(coarse, 0, 0, 16, 16),
                               8 * centres[:, None] + centres[None, :], atol=1e-5)
    rows, cols = (5 + np.arange(6) + 0.5) / 3 - 0.5, (7 + np.arange(6) + 0.5) / 3 - 0.5  # a tile of a 3x canvas
    np.testing.assert_allclose(mambo.aligned_context(coarse, 5, 7, 6, 24), 8 * rows[:, None] + cols[None, :],
                               atol=1e-5)
    out = mambo.aligned_context(coarse, -4, 5, 8, 8, fill=-1.0)  # half above the image, half beyond its right edge
    assert (out[:4] == -1).all() and (out[:, 3:] == -1).all() and np.array_equal(out[4:, :3], coarse[:4, 5:])


@pytest.mark.parametrize("role", ["mambo-local", "mambo-patch"])
def test_context_channels_of_one_tile_and_the_aligned_channel_on_request(role):
    """Local: the global image shifted to the tile's centre; patch: the mid-resolution crop centred on it; then the
    global image; with `aligned`, the coarser image under the tile (local: of g, patch: of mid)."""
    rng = np.random.default_rng(0)
    g, mid = rng.random((S, S), dtype=np.float32), rng.random((MID, MID), dtype=np.float32)
    side, source = (MID, g) if role == "mambo-local" else (FULL, mid)
    tile = tiling.grid(side, side, S, 2)[-2]
    n = source.shape[0]
    top, left = (round(c / side * n - S / 2) for c in tile.centre)
    out = mambo.context_channels(role, tile, side, g, mid, aligned=True)
    assert out.shape == (3, S, S)
    np.testing.assert_array_equal(out[0], mambo.crop_padded(source, top, left, S))
    np.testing.assert_array_equal(out[1], g)
    np.testing.assert_allclose(out[2], mambo.aligned_context(source, tile.y, tile.x, S, side), atol=1e-5)
    assert np.array_equal(mambo.context_channels(role, tile, side, g, mid), out[:2])
    if role == "mambo-local":  # a local tile needs no mid-resolution image
        assert np.array_equal(mambo.context_channels(role, tile, side, g, aligned=True), out)


def test_image_contexts_are_the_patch_models_of_a_real_image_at_its_scale():
    """A ramp image (resizing is exact on it away from the edges): the global channel is the image at s², the first
    the image at 1/k around the tile's centre, the aligned one the image itself under the tile."""
    yy, xx = np.mgrid[:FULL, :FULL].astype(np.float32)
    image = (yy + 2 * xx) / (3 * FULL)
    tiles = [t for t in tiling.grid(FULL, FULL, S, 2) if min(t.y, t.x) >= K and max(t.y, t.x) + S <= FULL - K][:2]
    patch = types.SimpleNamespace(image_size=S, k=K, aligned_context=True)
    out = mambo.image_contexts(image, patch, tiles, "cpu").numpy()
    assert out.shape == (2, 3, S, S)

    def ramp(rows, cols):  # the image's value at fractional full-resolution pixel positions
        return (rows[:, None] + 2 * cols[None, :]) / (3 * FULL) * 2 - 1

    step = FULL / S
    centres = (np.arange(S) + 0.5) * step - 0.5
    for tile, contexts in zip(tiles, out):
        np.testing.assert_allclose(contexts[1], ramp(centres, centres), atol=1e-5)
        top, left = (round(c / FULL * MID - S / 2) for c in tile.centre)
        mid_rows, mid_cols = ((start + np.arange(S) + 0.5) * K - 0.5 for start in (top, left))
        inside = ((top + np.arange(S) >= 0) & (top + np.arange(S) < MID))[:, None] & \
                 ((left + np.arange(S) >= 0) & (left + np.arange(S) < MID))[None, :]
        assert 0 < inside.sum() < S * S  # the crop runs off the mid image: there it is background
        np.testing.assert_allclose(contexts[0], np.where(inside, ramp(mid_rows, mid_cols), mambo.BACKGROUND),
                                   atol=1e-5)
        np.testing.assert_allclose(contexts[2], ramp(tile.y + np.arange(S, dtype=float),
                                                     tile.x + np.arange(S, dtype=float)), atol=1e-5)
    # a ramp looks the same at every resolution: on texture, the first and aligned channels come from the 1/k image
    from MammoSynthLogic.preparation import resize

    texture = np.random.default_rng(1).random((FULL, FULL), dtype=np.float32)
    mid = resize(texture, (MID, MID)) * 2 - 1
    out = mambo.image_contexts(texture, patch, tiles, "cpu").numpy()
    for tile, contexts in zip(tiles, out):
        top, left = (round(c / FULL * MID - S / 2) for c in tile.centre)
        np.testing.assert_allclose(contexts[0], mambo.crop_padded(mid, top, left, S), atol=1e-6)
        np.testing.assert_allclose(contexts[2], mambo.aligned_context(mid, tile.y, tile.x, S, FULL), atol=1e-5)
    patch.aligned_context = False
    assert mambo.image_contexts(image, patch, tiles, "cpu").shape == (2, 2, S, S)


def test_full_size_is_the_manifest_s_or_s_k_squared_and_the_default_size():
    patch = types.SimpleNamespace(image_size=16, k=3, manifest={})
    assert mambo.full_size(patch) == 144  # s·k²
    patch.manifest["full_size"] = 200
    assert mambo.full_size(patch) == 200
    assert pipeline().default_size() == FULL


def test_shifted_global_puts_the_given_point_at_the_centre():
    """The training shift: the point at fractional (cy, cx) moves to the centre; what comes in is background."""
    g = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_array_equal(mambo.shifted_global(g, 0.5, 0.5), g)
    out = mambo.shifted_global(g, 0.25, 0.75)  # row 2, column 6 to (4, 4): 2 rows down, 2 columns left
    np.testing.assert_array_equal(out[2:, :6], g[:6, 2:])
    assert (out[:2] == mambo.BACKGROUND).all() and (out[:, 6:] == mambo.BACKGROUND).all()
