"""MAMBO full-resolution synthesis: global image → mid-resolution tiles → full-resolution patches.

Stage 1 samples the s×s global image (or takes a real image's s×s version: super-resolution). Stage 2 tiles the
mid-resolution canvas (full size / k) with s×s tiles whose context is [global shifted so the tile centre is at the
image centre, global]. Stage 3 tiles the full canvas with s×s patches whose context is [the s×s mid-resolution crop
centred on the patch (k·s full-resolution pixels), global]. Values inside the models are in [-1, 1]; background is -1.

Tiling modes: `sequential` (MAMBO's code: row order, RePaint replacement of pixels finished by earlier tiles),
`wavefront` (the same result, one batch per anti-diagonal) and `parallel` (every tile each step in one batch, noise
predictions blended with smooth weights, one scheduler step on the whole canvas). Tiles whose breast-mask crop
(from the coarser stage) is empty are not denoised and stay background.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.devices import default_chunk
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import (Counter, entry_index, forward, generators, make_scheduler, randn, sample,
                                      unet_predictor)

BACKGROUND = -1.0  # model space; 0 in [0, 1]
BACKGROUND_TOLERANCE = 0.01  # [0, 1] units: darker than this in the coarser stage counts as background
TILINGS = ("parallel", "wavefront", "sequential")


@dataclasses.dataclass
class MamboSettings:
    """Sampling parameters of one run; `preset()` gives the named defaults."""

    name: str = "fast"
    sampler: str = "dpm++"
    steps: int = 20
    eta: float = 0.0
    global_sampler: str = "sde-dpm++"
    global_steps: int = 25
    global_eta: float = 0.0
    tiling: str = "parallel"
    overlap: Optional[int] = None  # None: s / 8 (MAMBO's 32 px at s = 256)
    skip_background: bool = True
    chunk: Optional[int] = None
    strength: float = 1.0  # < 1: tiles start from the coarser stage upsampled, noised to strength·T (SDEdit)

    @classmethod
    def preset(cls, name: str, **overrides) -> "MamboSettings":
        if name == "fast":
            base = cls(strength=0.6)
        elif name == "paper":  # MAMBO's published code: DDIM 150 (eta 0 global, eta 1 tiles), row order
            base = cls(name="paper", sampler="ddim", steps=150, eta=1.0, global_sampler="ddim", global_steps=150,
                       global_eta=0.0, tiling="sequential")
        else:
            raise MammoSynthError(f"--preset {name}", "choose fast or paper")
        settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
        if settings.tiling not in TILINGS:
            raise MammoSynthError(f"--tiling {settings.tiling}", f"choose one of {', '.join(TILINGS)}")
        return settings


@dataclasses.dataclass
class MamboResult:
    image: np.ndarray  # full resolution, float32 [0, 1]
    mid: np.ndarray  # mid resolution, float32 [0, 1]
    global_image: np.ndarray  # s × s, float32 [0, 1]
    counters: dict[str, Counter]
    tiles: dict[str, tuple[int, int]]  # stage -> (active tiles, all tiles)
    settings: MamboSettings  # as run (overlap resolved)


def crop_padded(image: np.ndarray, top: int, left: int, size: int, fill: float = BACKGROUND) -> np.ndarray:
    """size × size crop at (top, left); outside the image is `fill`."""
    out = np.full((size, size), fill, dtype=np.float32)
    h, w = image.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def shifted_global(global_image: np.ndarray, cy: float, cx: float) -> np.ndarray:
    """The global image moved so that the point at fractional position (cy, cx) lies at its centre."""
    s = global_image.shape[0]
    return crop_padded(global_image, round(cy * s - s / 2), round(cx * s - s / 2), s)


def local_context(mid: np.ndarray, cy: float, cx: float, size: int) -> np.ndarray:
    """The size × size crop of the mid-resolution image centred on fractional position (cy, cx)."""
    h, w = mid.shape
    return crop_padded(mid, round(cy * h - size / 2), round(cx * w - size / 2), size)


def aligned_context(coarse: np.ndarray, top: float, left: float, size: int, fine_side: int,
                    fill: float = BACKGROUND) -> np.ndarray:
    """The part of the coarser image under the size × size tile at (top, left) of a fine canvas of side
    `fine_side`, resampled bilinearly to size × size: the tile's own low-resolution content, pixel-aligned."""
    from scipy import ndimage

    n = coarse.shape[0]
    scale = n / fine_side
    rows = (np.arange(size) + top + 0.5) * scale - 0.5
    cols = (np.arange(size) + left + 0.5) * scale - 0.5
    out = ndimage.map_coordinates(coarse.astype(np.float32, copy=False), np.meshgrid(rows, cols, indexing="ij"),
                                  order=1, mode="nearest")
    outside = ((rows < -0.5) | (rows > n - 0.5))[:, None] | ((cols < -0.5) | (cols > n - 0.5))[None, :]
    out[outside] = fill
    return out.astype(np.float32, copy=False)


def context_channels(role: str, tile: tiling.Tile, side: int, g: np.ndarray, mid: Optional[np.ndarray] = None,
                     aligned: bool = False) -> np.ndarray:
    """The clean context channels of one tile of a canvas of `side` px (model space): MAMBO's two (local: global
    shifted to the tile centre, global; patch: mid-resolution crop centred on the patch, global), then, for bundles
    trained with it, the coarser stage's pixels under the tile (global for local tiles, mid for patches)."""
    cy, cx = tile.centre
    s = g.shape[0]
    if role == "mambo-local":
        channels, coarse = [shifted_global(g, cy / side, cx / side), g], g
    else:
        channels, coarse = [local_context(mid, cy / side, cx / side, s), g], mid
    if aligned:
        channels.append(aligned_context(coarse, tile.y, tile.x, s, side))
    return np.stack(channels)


def full_size(patch: Bundle) -> int:
    """The full-resolution side the patch model was trained at: the manifest's `full_size`, else s·k²."""
    return int(patch.manifest.get("full_size") or patch.image_size * int(patch.k) ** 2)


def image_context(working01: np.ndarray, patch: Bundle) -> Callable[[tiling.Tile], np.ndarray]:
    """Patch-model contexts for the tiles of a real square image ([0, 1]) at the model's scale: the mid-resolution
    image is the image resized by 1/k, the global image the image resized to s (as in super-resolution)."""
    from MammoSynthLogic.preparation import resize

    s, k, n = patch.image_size, int(patch.k), working01.shape[0]
    mid = resize(working01, (max(s, round(n / k)),) * 2) * 2 - 1
    g = resize(working01, (s, s)) * 2 - 1
    return lambda t: context_channels("mambo-patch", t, n, g, mid, aligned=patch.aligned_context)


def background_mask(coarse01: np.ndarray, shape: tuple[int, int], margin: float = 0.02) -> np.ndarray:
    """Breast region of the coarser stage (MAMBO suppl. §9 without erosion), dilated, resized to `shape`."""
    from scipy import ndimage

    from MammoSynthLogic.breast_mask import breast_region
    from MammoSynthLogic.preparation import resize

    region = breast_region(coarse01)
    region = ndimage.binary_dilation(region, iterations=max(1, round(margin * max(region.shape))))
    return resize(region, shape)


def to01(x: np.ndarray) -> np.ndarray:
    return np.clip((x + 1) / 2, 0, 1).astype(np.float32)


class MamboPipeline:
    """The three MAMBO models; `__call__` generates, `upscale` super-resolves a real s×s context."""

    def __init__(self, global_: Bundle, local: Bundle, patch: Bundle, device: str = "cpu"):
        self.global_, self.local, self.patch, self.device = global_, local, patch, device
        self.s = global_.image_size
        self.k = int(patch.k)

    def default_size(self) -> int:
        return full_size(self.patch)

    def __call__(self, size: int, seed: int, settings: MamboSettings, reporter: Optional[Reporter] = None,
                 global01: Optional[np.ndarray] = None) -> MamboResult:
        reporter = reporter or Reporter()
        s, k = self.s, self.k
        settings = dataclasses.replace(settings, overlap=s // 8 if settings.overlap is None else settings.overlap)
        if size < s:
            raise MammoSynthError(f"--size {size}", f"the output must be at least the model size s = {s}")
        mid_size = max(s, round(size / k))
        counters = {name: Counter() for name in ("global", "mid", "full")}
        tiles_used: dict[str, tuple[int, int]] = {}

        # Stage 1: the global image from noise (or the given context for super-resolution).
        if global01 is None:
            g = self.sample_global(seed, settings, counters["global"], reporter)
        else:
            g = np.asarray(global01, dtype=np.float32) * 2 - 1

        # Stage 2: mid-resolution canvas; context = [global shifted to the tile centre, global].
        def mid_context(t: tiling.Tile) -> np.ndarray:
            return context_channels("mambo-local", t, mid_size, g, aligned=self.local.aligned_context)

        mid = self.run_stage("mid", self.local, (mid_size, mid_size), mid_context, background_mask(to01(g), (mid_size,) * 2),
                             seed, settings, counters["mid"], tiles_used, reporter, coarse=g)

        # Stage 3: full canvas; context = [mid crop centred on the patch (k·s full px), global].
        def full_context(t: tiling.Tile) -> np.ndarray:
            return context_channels("mambo-patch", t, size, g, mid, aligned=self.patch.aligned_context)

        full = self.run_stage("full", self.patch, (size, size), full_context, background_mask(to01(mid), (size, size)),
                              seed, settings, counters["full"], tiles_used, reporter, coarse=mid)
        return MamboResult(image=to01(full), mid=to01(mid), global_image=to01(g), counters=counters, tiles=tiles_used,
                           settings=settings)

    def upscale(self, prepared01: np.ndarray, seed: int, settings: MamboSettings,
                reporter: Optional[Reporter] = None) -> MamboResult:
        """Super-resolution: the prepared square image's s×s version is the global context of stages 2 and 3."""
        from MammoSynthLogic.preparation import resize

        g01 = resize(np.asarray(prepared01, dtype=np.float32), (self.s, self.s))
        return self(prepared01.shape[0], seed, settings, reporter, global01=g01)

    def sample_global(self, seed: int, settings: MamboSettings, counter: Counter, reporter: Reporter) -> np.ndarray:
        s = self.s
        gens = generators(seed, [("global",)])
        scheduler = make_scheduler(settings.global_sampler, self.global_.scheduler_config)
        x = sample(unet_predictor(self.global_.unet, None, counter), scheduler,
                   randn((1, 1, s, s), gens, self.device), gens, settings.global_steps, eta=settings.global_eta,
                   on_step=lambda i, n: reporter.update("global image", i, n))
        return x[0, 0].cpu().numpy().astype(np.float32)

    def run_stage(self, stage: str, bundle: Bundle, shape: tuple[int, int], context: Callable[[tiling.Tile], np.ndarray],
                  mask: np.ndarray, seed: int, settings: MamboSettings, counter: Counter,
                  tiles_used: dict, reporter: Reporter, coarse: np.ndarray) -> np.ndarray:
        """One tiled stage on a float32 canvas in model space; tiles outside `mask` stay background. With
        `settings.strength` < 1 the tiles start from `coarse` (the previous stage) upsampled to the canvas."""
        all_tiles = tiling.grid(shape[0], shape[1], self.s, settings.overlap)
        tiles = tiling.active(all_tiles, mask) if settings.skip_background else all_tiles
        tiles_used[stage] = (len(tiles), len(all_tiles))
        canvas = np.full(shape, BACKGROUND, dtype=np.float32)
        if not tiles:
            return canvas
        chunk = settings.chunk or default_chunk(self.device)
        start = aligned_context(coarse, 0, 0, shape[0], shape[0]) if settings.strength < 1 else None
        if settings.tiling == "parallel":
            canvas = self.parallel_stage(stage, bundle, canvas, tiles, context, seed, settings, counter, chunk,
                                         reporter, start)
        else:
            groups = tiling.wavefronts(tiles) if settings.tiling == "wavefront" else [[t] for t in tiles]
            done = np.zeros(shape, dtype=bool)
            for gi, group in enumerate(groups):
                self.sample_tiles(stage, bundle, canvas, done, group, context, seed, settings, counter, chunk,
                                  on_step=lambda i, n, gi=gi: reporter.update(f"{stage} tiles", gi * n + i,
                                                                              len(groups) * n),
                                  start=start)
        if start is not None:  # outside the coarser stage's breast, or where it is background, this one is too
            keep = (mask > 0.5) & (start >= BACKGROUND + 2 * BACKGROUND_TOLERANCE)
            canvas = np.where(keep, canvas, np.float32(BACKGROUND))
        return canvas

    def sample_tiles(self, stage: str, bundle: Bundle, canvas: np.ndarray, done: np.ndarray, group: list[tiling.Tile],
                     context: Callable, seed: int, settings: MamboSettings, counter: Counter, chunk: int,
                     on_step: Callable[[int, int], None], start: Optional[np.ndarray] = None) -> None:
        """Denoise tiles that do not depend on each other as one batch; finished pixels are re-noised, not resampled."""
        s, dev = self.s, self.device
        gens = generators(seed, [(stage, t.row, t.col) for t in group])
        ctx = torch.from_numpy(np.stack([context(t) for t in group])).to(dev)
        known = torch.from_numpy(np.stack([canvas[t.slices] for t in group])[:, None]).to(dev)
        known_mask = torch.from_numpy(np.stack([done[t.slices] for t in group])[:, None]).to(dev)
        scheduler = make_scheduler(settings.sampler, bundle.scheduler_config)
        x0 = None if start is None else torch.from_numpy(np.stack([start[t.slices] for t in group])[:, None]).to(dev)
        x = sample(unet_predictor(bundle.unet, ctx, counter, chunk), scheduler, randn((len(group), 1, s, s), gens, dev),
                   gens, settings.steps, eta=settings.eta, known=known, known_mask=known_mask, on_step=on_step,
                   start=x0, strength=settings.strength)
        out = x[:, 0].cpu().numpy()
        for t, tile_out in zip(group, out):
            new = ~done[t.slices]
            canvas[t.slices][new] = tile_out[new]
            done[t.slices] = True

    def parallel_stage(self, stage: str, bundle: Bundle, canvas: np.ndarray, tiles: list[tiling.Tile],
                       context: Callable, seed: int, settings: MamboSettings, counter: Counter, chunk: int,
                       reporter: Reporter, start: Optional[np.ndarray] = None) -> np.ndarray:
        """All tiles each step: blended noise predictions, one scheduler step on the whole canvas."""
        dev = self.device
        h, w = canvas.shape
        weights, inv = tiling.blend_weights(tiles, canvas.shape, settings.overlap)
        covered = inv > 0
        inv, w_t = torch.from_numpy(inv).to(dev), torch.from_numpy(weights).to(dev)

        # The canvas steps as (rows, 1, 1, columns): elementwise updates are the same, and DPM-Solver++'s
        # thresholding (a per-sample quantile, clamped to 1) stays within torch.quantile's size limit.
        def predict(x: torch.Tensor, t) -> torch.Tensor:
            img = x.view(h, w)
            eps = torch.zeros((h, w), dtype=torch.float32, device=dev)
            for group in tiling.chunks(tiles, chunk):
                inp = torch.stack([torch.cat([img[t_.slices][None],
                                              torch.from_numpy(context(t_)).to(dev)]) for t_ in group])
                out = forward(bundle.unet, inp, t, dev)
                counter.forwards += len(group)
                counter.batches += 1
                for t_, o in zip(group, out):
                    eps[t_.slices] += w_t * o[0]
            return (eps * inv).view(h, 1, 1, w)

        gens = generators(seed, [(stage, "canvas")])
        scheduler = make_scheduler(settings.sampler, bundle.scheduler_config)
        x0 = None if start is None else torch.from_numpy(start).to(dev).view(h, 1, 1, w)
        x = sample(predict, scheduler, randn((1, 1, h, w), gens, dev).view(h, 1, 1, w), gens, settings.steps,
                   eta=settings.eta, on_step=lambda i, n: reporter.update(f"{stage} tiles", i, n), start=x0,
                   strength=settings.strength)
        out = x.view(h, w).cpu().numpy()
        return np.where(covered, out, np.float32(BACKGROUND)).astype(np.float32)


def sequential_batches(counters: dict[str, Counter]) -> int:
    return sum(c.batches for c in counters.values())


def forwards(counters: dict[str, Counter]) -> int:
    return sum(c.forwards for c in counters.values())


def expected_counts(size: int, s: int, k: int, settings: MamboSettings, chunk: Optional[int] = None) -> dict:
    """U-Net forwards and sequential U-Net batches of a run with every tile active (no background skip),
    from the grids alone; `chunk` = tiles per U-Net call in parallel tiling (None: all tiles in one call)."""
    mid = max(s, round(size / k))
    overlap = s // 8 if settings.overlap is None else settings.overlap
    grids = [tiling.grid(n, n, s, overlap) for n in (mid, size)]
    scheduler = make_scheduler(settings.sampler, {"num_train_timesteps": 1000})
    scheduler.set_timesteps(settings.steps)
    steps = settings.steps - (entry_index(scheduler, settings.strength) if settings.strength < 1 else 0)
    fwd = settings.global_steps + sum(len(g) for g in grids) * steps
    if settings.tiling == "parallel":
        per_step = sum(math.ceil(len(g) / (chunk or len(g))) for g in grids)
    elif settings.tiling == "wavefront":
        per_step = sum(len(tiling.wavefronts(g)) for g in grids)
    else:
        per_step = sum(len(g) for g in grids)
    return {"unet_forwards": fwd, "sequential_unet_batches": settings.global_steps + steps * per_step,
            "tiles_mid": len(grids[0]), "tiles_full": len(grids[1])}
