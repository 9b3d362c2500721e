"""Sample previews during training: denoise channel 0 only, keep the context channels clean (MAMBO Alg. 2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, SchedulerMixin, UNet2DModel
from PIL import Image


@torch.no_grad()
def denoise_channel0(unet: UNet2DModel, scheduler: SchedulerMixin, context: torch.Tensor | None, count: int,
                     steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """count samples [count, 1, s, s] in [-1, 1]; context [count, C-1, s, s] (clean) or None for 1-channel models."""
    s = unet.config.sample_size
    device = next(unet.parameters()).device
    scheduler.set_timesteps(steps)
    x = torch.randn((count, 1, s, s), generator=generator).to(device)
    context = None if context is None else context.to(device)
    for t in scheduler.timesteps:
        model_input = x if context is None else torch.cat([x, context], dim=1)
        eps = unet(model_input, t).sample[:, :1]
        x = scheduler.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def preview_scheduler(noise_scheduler_config) -> DDIMScheduler:
    """DDIM (eta 0, no clipping) on the training schedule: fast enough for previews on CPU."""
    return DDIMScheduler.from_config(noise_scheduler_config, clip_sample=False)


def preview_grid(generated: torch.Tensor, references: torch.Tensor | None) -> np.ndarray:
    """uint8 grid, one row per sample: generated channel 0, then the reference sample's channels."""
    rows = []
    for i in range(generated.shape[0]):
        tiles = [generated[i, 0]] + ([] if references is None else list(references[i]))
        rows.append(torch.cat([t.float().cpu() for t in tiles], dim=1))
    grid = torch.cat(rows, dim=0)
    return np.round((grid.numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)


def save_preview(path: Path, grid: np.ndarray) -> None:
    """Write the preview grid as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
