"""RePaint lesion inpainting with the MAMBO patch model: tiny random bundles, a stub with a known prediction, the
embedded trained bundles on a real CBIS-DDSM mammogram."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from dicom_factory import synthetic_breast
from oracles import KnownClean, constant
from tiny_bundles import make_tiny_mambo_set
from MammoSynthLogic import tiling
from MammoSynthLogic.breast_mask import breast_mask
from MammoSynthLogic.bundles import default_bundle_dir, load_mambo_set
from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.errors import Cancelled, MammoSynthError
from MammoSynthLogic.pipelines.repaint import inpaint_repaint, jump_schedule
from MammoSynthLogic.preparation import prepare, resize
from MammoSynthLogic.progress import Reporter

torch.set_num_threads(1)
S, K = 32, 4  # tiny canvas s·k² = 512 = the prepared side of the 400 × 300 test images: no resampling


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_mambo_set([str(make_tiny_mambo_set(tmp_path_factory.mktemp("tiny"), size=S, k=K))])


def breast(side: str = "left") -> np.ndarray:
    return synthetic_breast(400, 300, side=side, seed=1).astype(np.float32) / 65535


def disc(shape: tuple[int, int], cy: int, cx: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2


LEFT_MASK = disc((400, 300), 200, 70, 30)  # inside the left breast, several 32-px tiles


def with_stub(bundles, c: float = 0.6):
    stub = KnownClean(constant(c))  # x̂0 = c everywhere
    return (*bundles[:2], dataclasses.replace(bundles[2], unet=stub)), stub


def test_only_the_mask_changes(tiny):
    pixels = breast()
    out = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=0, steps=6)
    assert out.shape == pixels.shape and out.dtype == np.float32
    assert np.array_equal(out[~LEFT_MASK], pixels[~LEFT_MASK])
    assert np.abs(out[LEFT_MASK] - pixels[LEFT_MASK]).mean() > 0.02
    assert out.min() >= 0 and out.max() <= 1


def test_seed_decides_and_chunk_size_does_not(tiny):
    pixels = breast()
    a = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=5, steps=5, chunk=1)
    b = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=5, steps=5, chunk=64)
    c = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=6, steps=5, chunk=64)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.array_equal(b, inpaint_repaint(pixels, LEFT_MASK, tiny, seed=5, steps=5, chunk=64))
    assert np.abs(b - c)[LEFT_MASK].mean() > 1e-3


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_known_pixels_enter_each_step_at_that_steps_noise_level(tiny, sampler):
    """Known pixels fed to the U-Net at t are √ᾱ_t·x0 + √(1 − ᾱ_t)·N(0, 1); contexts are the clean real image's."""
    pixels = breast()
    bundles, stub = with_stub(tiny)
    inpaint_repaint(pixels, LEFT_MASK, bundles, seed=1, steps=8, sampler=sampler, chunk=64)
    prepared = prepare(pixels)
    pmask = prepared.transform.to_prepared(LEFT_MASK, fill=False)
    tiles = tiling.active(tiling.grid(512, 512, S, S // 8), pmask)  # the module's tiles, in its order
    assert len(tiles) > 1 and len(stub.calls) == 8
    x0 = np.stack([prepared.pixels[t.slices] * 2 - 1 for t in tiles])
    known = np.stack([~pmask[t.slices] for t in tiles])
    global_ = resize(prepared.pixels, (S, S)) * 2 - 1
    acp = stub.acp.numpy().astype(np.float64)
    for inp, t in stub.calls:
        x = inp[:, 0].numpy().astype(np.float64)
        z = (x[known] - np.sqrt(acp[t]) * x0[known]) / np.sqrt(1 - acp[t])
        assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1, (t, z.mean(), z.std())
        assert np.array_equal(inp[:, 1:].numpy(), stub.calls[0][0][:, 1:].numpy())  # contexts: clean, fixed
        assert np.allclose(inp[:, 2].numpy(), global_, atol=1e-6)
    last_input, last_t = stub.calls[-1]
    if sampler == "ddpm":
        assert last_t == 0 and np.abs(last_input[:, 0].numpy()[known] - x0[known]).max() < 0.05


def test_right_breast_is_the_mirror_of_the_left_one(tiny):
    right, mask = breast("right"), LEFT_MASK[:, ::-1]
    out_r = inpaint_repaint(right, mask, tiny, seed=2, steps=4)
    out_l = inpaint_repaint(np.ascontiguousarray(right[:, ::-1]), LEFT_MASK, tiny, seed=2, steps=4)
    np.testing.assert_allclose(out_r, out_l[:, ::-1], atol=1e-5)
    assert np.array_equal(out_r[~mask], right[~mask]) and np.abs(out_r - right)[mask].mean() > 0.02
    assert np.array_equal(out_r, inpaint_repaint(right, mask, tiny, seed=2, steps=4, side="right"))
    forced = inpaint_repaint(right, mask, tiny, seed=2, steps=4, side="left")
    assert np.array_equal(forced[~mask], right[~mask]) and not np.allclose(forced, out_r, atol=1e-3)


def test_content_lands_in_the_mask_after_unflip_and_resampling(tiny, real_dicoms):
    """A stub that denoises every pixel to c: on a right breast at 4608 px (canvas 512), the mask holds c."""
    image = read_mammogram(real_dicoms[2])
    assert prepare(image).breast_side == "right"
    inner = breast_mask(image.pixels)
    ys, xs = np.nonzero(inner[::16, ::16])
    mask = disc(image.pixels.shape, int(np.median(ys)) * 16, int(np.median(xs)) * 16, 150)
    bundles, _ = with_stub(tiny, c=0.6)
    out = inpaint_repaint(image.pixels, mask, bundles, seed=0, steps=4)
    assert np.array_equal(out[~mask], image.pixels[~mask])
    core = disc(image.pixels.shape, int(np.median(ys)) * 16, int(np.median(xs)) * 16, 110)
    assert np.abs(out[core] - 0.8).max() < 1e-4


def test_jumps_resample_and_cost_what_the_schedule_says(tiny):
    assert jump_schedule(4, 2, 2) == [(0, 1), (1, 2), (2, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 2), (2, 3), (3, 4)]
    assert jump_schedule(5, 1, 10) == [(p, p + 1) for p in range(5)]
    seen = []
    pixels = breast()
    one = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=3, steps=6)
    two = inpaint_repaint(pixels, LEFT_MASK, tiny, seed=3, steps=6, jumps=2, jump_length=3,
                          reporter=Reporter(lambda stage, done, total: seen.append((done, total))))
    assert seen[-1] == (12, 12)  # 6 + (2 − 1)·3·⌊6 / 3⌋ denoising steps
    assert np.array_equal(two[~LEFT_MASK], pixels[~LEFT_MASK]) and np.abs(two - one)[LEFT_MASK].mean() > 1e-3


def test_cancel_and_bad_input_are_refused(tiny):
    pixels = breast()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        inpaint_repaint(pixels, LEFT_MASK, tiny, seed=0, steps=3, reporter=Reporter(cancel=cancel))
    cases = [(np.zeros_like(LEFT_MASK), {}, "mask is empty: paint a region first"),
             (LEFT_MASK[:-1], {}, "differs from the image"),
             (LEFT_MASK, {"sampler": "dpm++"}, "ancestral"),
             (LEFT_MASK, {"jumps": 2, "jump_length": 0}, "between 1 and"),
             (LEFT_MASK, {"side": "up"}, "left or right")]
    for mask, kwargs, why in cases:
        with pytest.raises(MammoSynthError, match=why):
            inpaint_repaint(pixels, mask, tiny, seed=0, steps=3, **kwargs)
    with pytest.raises(MammoSynthError) as err:
        inpaint_repaint(pixels, np.zeros_like(LEFT_MASK), tiny, seed=0)
    assert err.value.what == "mask"


def test_embedded_bundles_inpaint_tissue_on_a_real_mammogram(real_dicoms):
    """The trained s = 64, k = 4 bundles (canvas 1024) fill a 120-px disc with tissue of the surrounding intensity."""
    bundles = load_mambo_set([str(default_bundle_dir())])
    image = read_mammogram(real_dicoms[0])
    inner = breast_mask(image.pixels)
    ys, xs = np.nonzero(inner[::16, ::16])
    cy, cx = int(np.median(ys)) * 16, int(np.median(xs)) * 16
    mask = disc(image.pixels.shape, cy, cx, 60)
    out = inpaint_repaint(image.pixels, mask, bundles, seed=1, steps=30)
    assert np.array_equal(out[~mask], image.pixels[~mask])
    assert np.abs(out - image.pixels)[mask].mean() > 0.005
    ring = disc(image.pixels.shape, cy, cx, 120) & ~mask
    assert abs(float(out[mask].mean()) - float(image.pixels[ring].mean())) < 0.1
    assert float(out[mask].std()) > 0.005  # structure, not a flat fill


def test_lesion_is_drawn_into_the_contexts_only(tiny):
    """`lesion` brightens the masked part of the patch contexts (what the model renders); the outside stays the
    original and the contexts outside the mask are the same as without it."""
    from MammoSynthLogic.pipelines.repaint import with_lesion

    image = breast()
    mask = LEFT_MASK
    massed = with_lesion(image, mask, 0.3, seed=0)
    assert np.array_equal(massed[~mask], image[~mask]) and massed[mask].mean() > image[mask].mean() + 0.1

    runs = {}
    for lesion in (0.0, 0.3):
        bundles, stub = with_stub(tiny)
        out = inpaint_repaint(image, mask, bundles, seed=2, steps=4, lesion=lesion)
        assert np.array_equal(out[~mask], image[~mask])
        runs[lesion] = stub.calls[0][0][:, 1:]  # the clean context channels of the first step
    assert runs[0.3][:, 0].mean() > runs[0.0][:, 0].mean() + 0.01  # local context: mid image with the mass
    assert not torch.equal(runs[0.3], runs[0.0])
