"""Stand-in denoisers whose right answer is known analytically, wrapped as bundles the pipelines accept.

A U-Net that knows the clean image x0 predicts ε = (x_t − √ᾱ_t·x0) / √(1 − ᾱ_t); every sampler started from any
noise then ends on x0 (DDPM's last step returns its x0 estimate, the ODE solvers follow the exact flow), so a
pipeline's output is known pixel for pixel and any misplaced, mirrored or mis-scaled step shows.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import torch

from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.progress import Reporter
from tiny_bundles import ddpm_scheduler

Clean = Callable[[torch.Tensor, int], torch.Tensor]


class KnownClean(torch.nn.Module):
    """Stand-in U-Net: x̂0 = `clean(input, t)` (as many channels as it returns); records (input, t) per call."""

    def __init__(self, clean: Clean):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # pipelines ask the U-Net for its device
        self.clean = clean
        self.acp = ddpm_scheduler().alphas_cumprod
        self.calls: list[tuple[torch.Tensor, int]] = []

    def forward(self, inp: torch.Tensor, t, *args, **kwargs) -> SimpleNamespace:
        t = int(t)
        self.calls.append((inp.detach().clone(), t))
        x0 = self.clean(inp, t).to(inp)
        a = self.acp[t]
        return SimpleNamespace(sample=(inp[:, :x0.shape[1]] - a.sqrt() * x0) / (1 - a).sqrt())


def constant(c: float) -> Clean:
    """x̂0 = c everywhere (one channel)."""
    return lambda inp, t: torch.full_like(inp[:, :1], c)


def channel(i: int) -> Clean:
    """x̂0 = input channel i: a model that copies one of its clean context channels."""
    return lambda inp, t: inp[:, i:i + 1]


def image(x0: torch.Tensor) -> Clean:
    """x̂0 = a fixed (C, H, W) image in model space, for every batch element."""
    return lambda inp, t: x0.expand(inp.shape[0], *x0.shape)


def oracle_bundle(role: str, size: int, clean: Clean, *, in_channels: int = 1, out_channels: int = 1,
                  k: Optional[int] = None, aligned: bool = False, **manifest) -> Bundle:
    """A bundle of `role` whose U-Net is `KnownClean(clean)`, with MAMBO's training schedule."""
    fields = {"role": role, "image_size": size, "in_channels": in_channels, "out_channels": out_channels,
              "k": k, "aligned_context": aligned, "version": "oracle", **manifest}
    unet = KnownClean(clean)
    # what callers read from a diffusers UNet2DModel's config (memory estimates, sizes)
    unet.config = SimpleNamespace(sample_size=size, in_channels=in_channels, out_channels=out_channels,
                                  block_out_channels=(8,))
    return Bundle(manifest=fields, path=Path(f"<oracle {role}>"), unet=unet,
                  scheduler_config=dict(ddpm_scheduler().config))


def mambo_oracles(size: int, k: int, global_clean: Clean, local_clean: Clean, patch_clean: Clean,
                  aligned: bool = True) -> tuple[Bundle, Bundle, Bundle]:
    """(global, local, patch) oracle bundles that agree on s and k (aligned: a 4th, pixel-aligned context)."""
    cin = 3 + aligned
    return (oracle_bundle("mambo-global", size, global_clean, k=k),
            oracle_bundle("mambo-local", size, local_clean, in_channels=cin, k=k, aligned=aligned),
            oracle_bundle("mambo-patch", size, patch_clean, in_channels=cin, k=k, aligned=aligned))


def asymmetric_breast(rows: int, cols: int, side: str = "left") -> np.ndarray:
    """A smooth float32 [0, 1] breast: half-ellipse on the chest-wall `side`, fading away from it and softly at its
    skin line, with a bright blob in its upper half, so that a left-right or top-bottom mirror of it is far from it."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    depth = x if side == "left" else cols - 1 - x
    ellipse = np.sqrt((depth / (0.7 * cols)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2)
    skin = np.clip((1 - ellipse) / 0.25, 0, 1)
    blob = np.exp(-((y - 0.35 * rows) ** 2 + (depth - 0.3 * cols) ** 2) / (2 * (0.08 * rows) ** 2))
    tissue = 0.45 + 0.25 * (1 - depth / cols) + 0.25 * blob
    return (tissue * skin * skin * (3 - 2 * skin)).astype(np.float32)  # smoothstep to 0 at the skin line


def recording_reporter() -> tuple[list[tuple], Reporter]:
    """A Reporter that records every (stage, done, total) update, and the list it records into."""
    log: list[tuple] = []
    return log, Reporter(lambda stage, done, total: log.append((stage, done, total)))
