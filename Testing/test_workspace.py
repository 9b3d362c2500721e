"""Buffers kept from one image to the next (MammoSynthLogic.workspace) and a MAMBO pipeline that reuses them."""
from __future__ import annotations

import numpy as np
import torch

from MammoSynthLogic.workspace import Workspace
from test_oracle_mambo import FULL, pipeline, quick, tissue_global


def test_a_buffer_is_kept_by_name_until_its_shape_changes_or_it_is_released():
    ws = Workspace()
    a = ws.empty("canvas", (4, 5), "cpu")
    assert ws.empty("canvas", (4, 5), "cpu") is a
    assert ws.empty("canvas", (4, 5), "cpu", torch.float64).dtype == torch.float64
    b = ws.empty("canvas", (5, 4), "cpu")
    assert b.shape == (5, 4) and ws.buffers == {"canvas": b}, "the old shape is not kept beside the new one"
    ws.empty("mid noise", (2,), "cpu")
    ws.release("mid ")
    assert list(ws.buffers) == ["canvas"]
    ws.release()
    assert ws.buffers == {}


def test_a_pipeline_run_again_on_its_kept_buffers_gives_a_fresh_pipelines_image():
    """Gaussian oracle (the noise matters), parallel tiling: the second and third images of one pipeline equal those
    of fresh pipelines with their seeds, bit for bit (the same computation), although their noise canvases, window
    sums, U-Net inputs and x0 buffers are the first image's memory; the mid stage's buffers are not kept."""
    settings = quick(strength=1.0)
    g01 = tissue_global()
    pipe = pipeline(sd=0.1)
    first = pipe(FULL, 5, settings, global01=g01)
    kept = {name: buffer.data_ptr() for name, buffer in pipe.workspace.buffers.items()}
    canvas = (FULL, FULL)
    shapes = {"full weights 0": canvas, "full weights 1": canvas, "full weights both": canvas,
              "full noise": (1, 1, *canvas), "full x0 0": (1, 1, *canvas), "full x0 1": (1, 1, *canvas)}
    assert {name: tuple(b.shape) for name, b in pipe.workspace.buffers.items() if "input" not in name} == shapes
    assert {name for name in kept if "input" in name} == {"full input 0", "full input 1"}  # the mid stage's: freed
    second = pipe(FULL, 6, settings, global01=g01)
    third = pipe(FULL, 5, settings, global01=g01)
    assert {name: buffer.data_ptr() for name, buffer in pipe.workspace.buffers.items()} == kept
    assert np.array_equal(third.image, first.image) and np.array_equal(third.mid, first.mid)
    assert np.array_equal(second.image, pipeline(sd=0.1)(FULL, 6, settings, global01=g01).image)
    assert not np.array_equal(second.image, first.image)
