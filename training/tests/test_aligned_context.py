"""The aligned-context channel: training samples and the engine's sampling-time contexts agree, and a widened
model started from a 3-channel one computes what it did."""
import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.pipelines.mambo import aligned_context, context_channels
from mammosynth_training.datasets import mambo_channels, resize_square
from mammosynth_training.models import copy_weights


def smooth_image(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return resize_square(rng.random((16, 16)).astype(np.float32), n)


@pytest.mark.parametrize("role", ["mambo-local", "mambo-patch"])
def test_training_channels_match_sampling_contexts(role):
    n, s, k = 512, 32, 4
    full = smooth_image(n)
    g01, mid01 = resize_square(full, s), resize_square(full, n // k)
    if role == "mambo-local":  # a mid-canvas tile at (y, x); its centre in full-resolution pixels is k times further
        side, y, x = n // k, 40, 72
        cy, cx = k * (y + s // 2), k * (x + s // 2)
    else:
        side, y, x = n, 200, 136
        cy, cx = y + s // 2, x + s // 2
    tile = tiling.Tile(row=0, col=0, y=y, x=x, size=s, index=0)
    sample = mambo_channels(full, g01, role, cy, cx, k, mid=mid01) * 2 - 1
    engine = context_channels(role, tile, side, g01 * 2 - 1, mid01 * 2 - 1, aligned=True)
    assert sample.shape == (4, s, s) and engine.shape == (3, s, s)
    np.testing.assert_allclose(sample[3], engine[2], atol=1e-5)  # the aligned channel: same function, same place
    np.testing.assert_allclose(sample[2], engine[1], atol=1e-6)  # global
    assert np.abs(sample[1] - engine[0]).mean() < 0.02  # MAMBO's context: same region, resized in another order
    # the aligned channel is the low-resolution version of the tile itself (what makes it easy to use)
    target = sample[0]
    assert np.abs(resize_square(target, s // k) - resize_square(sample[3], s // k)).mean() < 0.1
    assert np.abs(target - sample[3]).mean() < np.abs(target - np.roll(sample[3], s // 2, axis=0)).mean()


def test_aligned_context_fills_outside_and_keeps_inside():
    coarse = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_allclose(aligned_context(coarse, 0, 0, 8, 8), coarse)  # same scale: identity
    np.testing.assert_allclose(aligned_context(coarse, 2, 3, 4, 8), coarse[2:6, 3:7])
    up = aligned_context(coarse, 0, 0, 16, 16)  # twice as fine; bilinear is exact on a ramp (8·row + column)
    centres = (np.arange(16) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(up[1:-1, 1:-1], 8 * centres[1:-1, None] + centres[None, 1:-1], atol=1e-5)
    out = aligned_context(coarse, -16, 0, 8, 8, fill=-1.0)  # entirely above the image
    assert (out == -1).all()


def test_copy_weights_widens_input_channels_without_changing_the_output():
    from diffusers import UNet2DModel

    def unet(cin):
        torch.manual_seed(cin)
        return UNet2DModel(sample_size=16, in_channels=cin, out_channels=cin, block_out_channels=(8, 16),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                           up_block_types=("UpBlock2D",) * 2, norm_num_groups=4).eval()

    small, wide = unet(3), unet(4)
    copy_weights(small, wide)
    x = torch.randn(2, 3, 16, 16)
    extra = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        a = small(x, 10).sample
        b = wide(torch.cat([x, extra], 1), 10).sample
    torch.testing.assert_close(b[:, :3], a)
    assert (b[:, 3] == 0).all()
    with pytest.raises(ValueError, match="same layout"):
        copy_weights(wide, small)
