"""MAMBO pipeline: the behaviour that mutation testing (scripts/mutation.sh pipelines/mambo) found unchecked — crops
inside the image, the context channels' count, the background mask's margin, the U-Net input, the usage counters
and the progress of the parallel stage — each with a known answer."""
from __future__ import annotations

import numpy as np
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.pipelines import mambo
from MammoSynthLogic.progress import Reporter
from test_oracle_mambo import FULL, MID, S, pipeline, quick, tissue_global


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
