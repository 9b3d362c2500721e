"""Tiling: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — the dtype of a gathered
batch, seam lines next to the canvas edge and a canvas without seams — each with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling


def test_gather_keeps_the_canvas_dtype():
    canvas = torch.arange(36, dtype=torch.float64).reshape(6, 6) / 7  # values float32 cannot hold exactly
    tiles = tiling.grid(6, 6, 4, 2)
    batch = tiling.TileIndex(tiles).gather(canvas)
    assert batch.dtype == torch.float64
    assert torch.equal(batch, torch.stack([canvas[t.slices] for t in tiles]))


def test_seam_lines_next_to_the_first_row_and_column_count_and_none_wrap_around():
    image = np.arange(16, dtype=np.float32).reshape(4, 4) ** 2
    # 2 px tiles: the middle lines (`inside`) are between rows 0|1 and 2|3 (and the same columns)
    tiles = tiling.grid(4, 4, 2, 0)
    pairs = [image[0] - image[1], image[2] - image[3], image[:, 0] - image[:, 1], image[:, 2] - image[:, 3]]
    assert tiling.seam_mse(image, tiles, inside=True) == pytest.approx(float(np.mean(np.concatenate(pairs) ** 2)))
    # 1 px tiles: their middle lines are the tiles' own first rows; row 0 has no row above it to compare with
    ones = tiling.grid(2, 2, 1, 0)
    small = np.array([[0, 1], [3, 7]], np.float32)
    expected = np.mean(np.array([0 - 3, 1 - 7, 0 - 1, 3 - 7], np.float32) ** 2)
    assert tiling.seam_mse(small, ones, inside=True) == pytest.approx(float(expected))


def test_one_tile_over_the_whole_canvas_has_no_seams():
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    assert tiling.seam_mse(image, tiling.grid(8, 8, 8, 0)) == 0.0


def test_weight_sum_keeps_the_weights_dtype():
    tiles = tiling.grid(6, 6, 4, 2)
    weights = torch.full((4, 4), 1 / 3, dtype=torch.float64)
    total = tiling.TileIndex(tiles).weight_sum(weights, (6, 6))
    assert total.dtype == torch.float64
    # rows/columns 0-1 and 4-5 lie under one tile along that axis, 2-3 under two
    per_axis = torch.tensor([1, 1, 2, 2, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(total, torch.outer(per_axis, per_axis) / 3)


def test_each_row_of_evenly_spaced_tiles_is_one_run_and_rows_must_be_in_order():
    """The docstring's promise: one strided copy per run of a row's evenly spaced tiles (the last, flush tile of a
    row is spaced differently and starts a run of its own); runs are grown greedily from the left."""
    tiles = tiling.grid(100, 100, 32, 8)  # starts 0, 24, 48, 68 along each axis
    index = tiling.TileIndex(tiles)
    assert [(y, x, step, n) for y, x, step, _, n in index.runs][:2] == [(0, 0, 24, 3), (0, 68, 32, 1)]
    assert len(index.runs) == 8
    kept = [t for t in tiles if t.col != 1]  # columns 0, 2, 3 of each row: 0, 48 (spacing 48) | 68
    assert [(x, step, n) for _, x, step, _, n in tiling.TileIndex(kept).runs] == [(0, 48, 2), (68, 32, 1)] * 4
    with pytest.raises(ValueError, match="^tiles must be in row order$"):
        tiling.TileIndex(tiles[::-1])


@pytest.mark.parametrize("overlap", [-1, 32, 40])
def test_an_overlap_outside_zero_to_the_tile_size_is_refused(overlap):
    with pytest.raises(ValueError, match=rf"^overlap {overlap} must be in \[0, 32\)$"):
        tiling.positions(100, 32, overlap)


def test_batches_and_sums_stay_on_the_canvas_device():
    """Without a GPU, the "meta" device (shapes only, no data) shows that nothing is created on the CPU by default."""
    tiles = tiling.grid(6, 6, 4, 2)
    index = tiling.TileIndex(tiles)
    assert index.gather(torch.empty(6, 6, device="meta")).device.type == "meta"
    assert index.weight_sum(torch.empty(4, 4, device="meta"), (6, 6)).device.type == "meta"
