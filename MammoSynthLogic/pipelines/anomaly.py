"""MAMBO anomaly maps: noise a prepared real image to λ, denoise it with a model of healthy tissue, compare.

`level="global"` is the paper's setting: the whole image at the global model's size s. `level="native"` (beyond the
paper) runs the same recipe on s×s tiles of the full-resolution canvas with the patch model, each tile conditioned on
the real image's local context and global image, only tiles that touch the breast, reconstructions blended with
smooth weights so the merged map has no seams.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.anomaly import AnomalySettings, heat_map, label_map
from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.devices import default_chunk
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines.mambo import as_tensor, full_size, image_contexts, to01
from MammoSynthLogic.preparation import PreparedImage, resize
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import add_noise, generators, make_scheduler, randn, sample, unet_predictor


@dataclasses.dataclass
class AnomalyResult:
    heat: np.ndarray  # float32, source frame
    labels: np.ndarray  # bool, source frame
    reconstruction: np.ndarray  # float32 [0, 1], the working frame (s×s or the full canvas)
    working: np.ndarray  # the prepared image at the working size, [0, 1]
    heat_working: np.ndarray


def denoising_timesteps(lam: int, steps: int) -> list[int]:
    """Descending timesteps from λ − 1 to 0: `steps` of them, at most λ (then every step: the paper's chain)."""
    n = max(1, min(steps, lam))
    return sorted({int(round(t)) for t in np.linspace(lam - 1, 0, n)}, reverse=True)


class AnomalyPipeline:
    """Reconstruct with the global model (paper) or the patch model on tiles (native), then MAMBO's recipe."""

    def __init__(self, global_: Bundle, patch: Optional[Bundle] = None, device: str = "cpu"):
        self.global_, self.patch, self.device = global_, patch, device
        self.s = global_.image_size

    def __call__(self, prepared: PreparedImage, settings: AnomalySettings, seed: int,
                 reporter: Optional[Reporter] = None) -> AnomalyResult:
        reporter = reporter or Reporter()
        if not prepared.mask.any():
            raise MammoSynthError("breast mask", "empty: no breast found in this image, nothing to compare")
        if settings.level == "global":
            size = self.s
            working = resize(prepared.pixels, (size, size))
            mask = resize(prepared.mask, (size, size))
            recon = self.reconstruct_global(working, settings, seed, reporter)
        elif settings.level == "native":
            if self.patch is None:
                raise MammoSynthError("--level native", "needs a mambo-patch bundle beside the global one")
            # the full-resolution canvas the patch model was trained at (MAMBO: the native pixel pitch)
            size = full_size(self.patch)
            working = resize(prepared.pixels, (size, size))
            mask = resize(prepared.mask, (size, size))
            recon = self.reconstruct_native(working, mask, settings, seed, reporter)
        else:
            raise MammoSynthError(f"--level {settings.level}", "choose global or native")
        heat_w = heat_map(working, recon, mask, settings)
        heat = prepared.transform.to_source(resize(heat_w, prepared.pixels.shape))
        heat = np.maximum(heat, 0.0).astype(np.float32)
        labels = label_map(heat, settings.threshold, settings.min_difference)
        return AnomalyResult(heat=heat, labels=labels, reconstruction=recon, working=working, heat_working=heat_w)

    def _partial_denoise(self, bundle: Bundle, x0: torch.Tensor, context: Optional[torch.Tensor], seed: int,
                         keys: list, settings: AnomalySettings, on_step) -> torch.Tensor:
        """Forward-noise x0 (model space) to λ, then denoise it back with a strided DDPM chain."""
        scheduler = make_scheduler("ddpm", bundle.scheduler_config)
        gens = generators(seed, keys)
        timesteps = denoising_timesteps(settings.lam, settings.steps)
        x_lam = add_noise(scheduler, x0, randn(x0.shape, gens, self.device), timesteps[0])
        predict = unet_predictor(bundle.unet, context, chunk=default_chunk(self.device))
        return sample(predict, scheduler, x_lam, gens, len(timesteps), timesteps=timesteps, on_step=on_step)

    def reconstruct_global(self, working: np.ndarray, settings: AnomalySettings, seed: int,
                           reporter: Reporter) -> np.ndarray:
        x0 = torch.from_numpy(working * 2 - 1)[None, None].repeat(settings.draws, 1, 1, 1).to(self.device)
        keys = [("anomaly", d) for d in range(settings.draws)]
        x = self._partial_denoise(self.global_, x0, None, seed, keys, settings,
                                  on_step=lambda i, n: reporter.update("anomaly: reconstruct", i, n))
        return to01(x.mean(dim=0)[0])

    def reconstruct_native(self, working: np.ndarray, mask: np.ndarray, settings: AnomalySettings, seed: int,
                           reporter: Reporter) -> np.ndarray:
        s, n, dev = self.s, working.shape[0], self.device
        model = as_tensor(working * 2 - 1).to(dev)
        overlap = min(32, s // 4)
        tiles = tiling.active(tiling.grid(n, n, s, overlap), mask)
        contexts = image_contexts(working, self.patch, tiles, dev)
        weights = torch.from_numpy(tiling.ramp_weights(s, overlap)).to(dev)
        acc = torch.zeros((n, n), device=dev)
        wsum = torch.zeros((n, n), device=dev)
        chunk = default_chunk(self.device)
        groups = list(tiling.chunks(list(range(len(tiles))), chunk))
        for gi, group in enumerate(groups):
            reporter.update("anomaly: tiles", gi, len(groups))
            index = tiling.TileIndex([tiles[i] for i in group])
            x0 = index.gather(model)[:, None].repeat_interleave(settings.draws, 0)
            ctx = contexts[group[0]:group[-1] + 1].repeat_interleave(settings.draws, 0)
            keys = [("anomaly", tiles[i].row, tiles[i].col, d) for i in group for d in range(settings.draws)]
            x = self._partial_denoise(self.patch, x0, ctx, seed, keys, settings, None)
            out = x.view(len(group), settings.draws, s, s).mean(dim=1)
            index.scatter_add(acc, out * weights)
            index.scatter_add(wsum, weights.expand(len(group), s, s))
        reporter.update("anomaly: tiles", len(groups), len(groups))
        recon = torch.where(wsum > 0, acc / wsum.clamp_min(1e-12), model)
        return to01(recon)
