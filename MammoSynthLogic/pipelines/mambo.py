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
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from MammoSynthLogic import tiling
from MammoSynthLogic.bundles import Bundle
from MammoSynthLogic.devices import compiled, default_chunk
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import (Counter, canvas_scheduler, entry_index, forward, generators, in_place_dpm_solver,
                                      make_scheduler, randn, sample, unet_predictor)
from MammoSynthLogic.workspace import Workspace

BACKGROUND = -1.0  # model space; 0 in [0, 1]
BACKGROUND_TOLERANCE = 0.01  # [0, 1] units: darker than this in the coarser stage counts as background
# Parallel tiling's last steps (t below this fraction of T) blend both grids' predictions: alternating to the end
# leaves speckle where the grids' tiles disagree most (the skin line sits at another place in each), and either
# grid alone for the last steps draws its seams back (measured: patch seam ratio 1.42 instead of 1.10, seed 3).
BOTH_GRIDS_BELOW = 0.1
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
    compile: bool = False  # CUDA only: U-Net calls through torch.compile with CUDA graphs ("reduce-overhead")

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


def crops(image: torch.Tensor, tops: Sequence[int], lefts: Sequence[int], size: int,
          fill: float = BACKGROUND, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, size, size) crops of a 2-D tensor with top-left corners (tops[i], lefts[i]); outside the image is `fill`
    (written into `out` if given)."""
    h, w = image.shape
    pad = max(0, -min(tops), -min(lefts), max(tops) + size - h, max(lefts) + size - w)
    padded = F.pad(image[None, None], (pad,) * 4, value=fill)[0, 0] if pad else image
    return torch.stack([padded[y + pad:y + pad + size, x + pad:x + pad + size] for y, x in zip(tops, lefts)], out=out)


def upsampled(coarse: torch.Tensor, side: int) -> torch.Tensor:
    """The coarser stage resampled bilinearly to side × side, pixel centres aligned, edge values held: under each
    tile of the canvas lies the tile's own low-resolution content (the aligned channel, and the SDEdit start)."""
    return F.interpolate(coarse[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]


def resampled_crops(coarse: torch.Tensor, tops: Sequence[float], lefts: Sequence[float], size: int, fine_side: int,
                    fill: float = BACKGROUND) -> torch.Tensor:
    """The part of the coarser image under each size × size tile at (top, left) of a fine canvas of side `fine_side`,
    resampled bilinearly (pixel centres aligned, edge values held; `fill` beyond the image): (N, size, size)."""
    n = coarse.shape[0]

    def axis(starts: Sequence[float]):
        # positions in float64 on the host (MPS has no float64); only indices and weights go to the device
        start = torch.tensor(list(starts), dtype=torch.float64)[:, None]
        pos = (start + torch.arange(size) + 0.5) * (n / fine_side) - 0.5
        low = pos.floor()
        frac = (pos - low).to(device=coarse.device, dtype=coarse.dtype)
        i0 = low.long().clamp(0, n - 1).to(coarse.device)
        i1 = (low.long() + 1).clamp(0, n - 1).to(coarse.device)
        return i0, i1, frac, ((pos < -0.5) | (pos > n - 0.5)).to(coarse.device)

    r0, r1, fr, out_r = axis(tops)
    c0, c1, fc, out_c = axis(lefts)
    fr, fc = fr[:, :, None], fc[:, None, :]

    def row(r: torch.Tensor) -> torch.Tensor:
        return torch.lerp(coarse[r[:, :, None], c0[:, None, :]], coarse[r[:, :, None], c1[:, None, :]], fc)

    out = torch.lerp(row(r0), row(r1), fr)
    return out.masked_fill(out_r[:, :, None] | out_c[:, None, :], fill)


def centred_offsets(tiles: Sequence[tiling.Tile], side: int, n: int, size: int) -> tuple[list[int], list[int]]:
    """Top-left corners of size × size crops of an n-px image centred on the tiles' centres (of a `side` px canvas)."""
    return ([round(t.centre[0] / side * n - size / 2) for t in tiles],
            [round(t.centre[1] / side * n - size / 2) for t in tiles])


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))


def crop_padded(image: np.ndarray, top: int, left: int, size: int, fill: float = BACKGROUND) -> np.ndarray:
    """size × size crop at (top, left); outside the image is `fill`."""
    return crops(as_tensor(image), [top], [left], size, fill)[0].numpy()


def shifted_global(global_image: np.ndarray, cy: float, cx: float) -> np.ndarray:
    """The global image moved so that the point at fractional position (cy, cx) lies at its centre."""
    s = global_image.shape[0]
    return crop_padded(global_image, round(cy * s - s / 2), round(cx * s - s / 2), s)


def aligned_context(coarse: np.ndarray, top: float, left: float, size: int, fine_side: int,
                    fill: float = BACKGROUND) -> np.ndarray:
    """The part of the coarser image under the size × size tile at (top, left) of a fine canvas of side
    `fine_side`, resampled bilinearly to size × size: the tile's own low-resolution content, pixel-aligned."""
    return resampled_crops(as_tensor(coarse), [top], [left], size, fine_side, fill)[0].numpy()


def tile_contexts(role: str, tiles: Sequence[tiling.Tile], side: int, g: torch.Tensor,
                  mid: Optional[torch.Tensor] = None, up: Optional[torch.Tensor] = None,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The clean context channels (N, C, s, s) of tiles of a canvas of `side` px (model space, on g's device):
    MAMBO's two (local: global shifted to the tile centre, global; patch: mid-resolution crop centred on the patch,
    global), then, for bundles trained with it, the coarser stage's pixels under the tile, cropped from `up` (that
    stage `upsampled` to the canvas). Built once per stage (into `out` if given, e.g. the U-Net input's context
    channels): they do not change while the tiles are denoised."""
    s = g.shape[0]
    if out is None:
        out = torch.empty((len(tiles), 2 + (up is not None), s, s), device=g.device)
    source = g if role == "mambo-local" else mid
    tops, lefts = centred_offsets(tiles, side, source.shape[0], s)
    crops(source, tops, lefts, s, out=out[:, 0])
    out[:, 1] = g
    if up is not None:
        tiling.TileIndex(list(tiles)).gather(up, out=out[:, 2])
    return out


def context_channels(role: str, tile: tiling.Tile, side: int, g: np.ndarray, mid: Optional[np.ndarray] = None,
                     aligned: bool = False) -> np.ndarray:
    """`tile_contexts` of one tile, NumPy in and out (training data is built with it)."""
    g_t, mid_t = as_tensor(g), None if mid is None else as_tensor(mid)
    up = upsampled(g_t if role == "mambo-local" else mid_t, side) if aligned else None
    return tile_contexts(role, [tile], side, g_t, mid_t, up)[0].numpy()


def full_size(patch: Bundle) -> int:
    """The full-resolution side the patch model was trained at: the manifest's `full_size`, else s·k²."""
    return int(patch.manifest.get("full_size") or patch.image_size * int(patch.k) ** 2)


def image_contexts(working01: np.ndarray, patch: Bundle, tiles: Sequence[tiling.Tile],
                   device: torch.device | str) -> torch.Tensor:
    """Patch-model contexts (N, C, s, s) on `device` for tiles of a real square image ([0, 1]) at the model's scale:
    the mid-resolution image is the image resized by 1/k, the global image the image resized to s (as in
    super-resolution)."""
    from MammoSynthLogic.preparation import resize

    s, k, n = patch.image_size, int(patch.k), working01.shape[0]
    mid = as_tensor(resize(working01, (max(s, round(n / k)),) * 2) * 2 - 1).to(device)
    g = as_tensor(resize(working01, (s, s)) * 2 - 1).to(device)
    return tile_contexts("mambo-patch", tiles, n, g, mid, upsampled(mid, n) if patch.aligned_context else None)


def background_mask(coarse01: np.ndarray, shape: tuple[int, int], margin: float = 0.02) -> np.ndarray:
    """Breast region of the coarser stage (MAMBO suppl. §9 without erosion), dilated, resized to `shape`."""
    from scipy import ndimage

    from MammoSynthLogic.breast_mask import breast_region
    from MammoSynthLogic.preparation import resize

    region = breast_region(coarse01)
    region = ndimage.binary_dilation(region, iterations=max(1, round(margin * max(region.shape))))
    return resize(region, shape)


def to01(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Model space [-1, 1] to float32 [0, 1], clipped, as NumPy (a tensor is mapped on its device first)."""
    return (torch.as_tensor(x, dtype=torch.float32) + 1).mul_(0.5).clamp_(0, 1).cpu().numpy()


class MamboPipeline:
    """The three MAMBO models; `__call__` generates, `upscale` super-resolves a real s×s context."""

    def __init__(self, global_: Bundle, local: Bundle, patch: Bundle, device: str = "cpu"):
        self.global_, self.local, self.patch, self.device = global_, local, patch, device
        # the full stage's canvases and U-Net inputs, kept for the next image (`workspace.release()` frees them)
        self.workspace = Workspace()
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
            g_model = self.sample_global(seed, settings, counters["global"], reporter)
        else:
            g_model = np.asarray(global01, dtype=np.float32) * 2 - 1
        g01, g = to01(g_model), as_tensor(g_model).to(self.device)

        # Stage 2: mid-resolution canvas; context = [global shifted to the tile centre, global].
        mid = self.run_stage("mid", self.local, mid_size,
                             lambda tiles, up, out=None: tile_contexts(
                                 "mambo-local", tiles, mid_size, g, up=up if self.local.aligned_context else None,
                                 out=out),
                             background_mask(g01, (mid_size,) * 2), seed, settings, counters["mid"], tiles_used,
                             reporter, coarse=g)
        mid01 = to01(mid)
        self.workspace.release("mid ")  # a ninth of the full stage's: kept, they would raise the peak

        # Stage 3: full canvas; context = [mid crop centred on the patch (k·s full px), global].
        full = self.run_stage("full", self.patch, size,
                              lambda tiles, up, out=None: tile_contexts(
                                  "mambo-patch", tiles, size, g, mid, up=up if self.patch.aligned_context else None,
                                  out=out),
                              background_mask(mid01, (size, size)), seed, settings, counters["full"], tiles_used,
                              reporter, coarse=mid)
        return MamboResult(image=to01(full), mid=mid01, global_image=g01,
                           counters=counters, tiles=tiles_used, settings=settings)

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
        unet = compiled(self.global_.unet, self.device, settings.compile)
        x = sample(unet_predictor(unet, None, counter), scheduler, randn((1, 1, s, s), gens, self.device), gens,
                   settings.global_steps, eta=settings.global_eta,
                   on_step=lambda i, n: reporter.update("global image", i, n))
        return x[0, 0].cpu().numpy().astype(np.float32)

    def run_stage(self, stage: str, bundle: Bundle, side: int,
                  contexts: Callable[..., torch.Tensor], mask: np.ndarray, seed: int,
                  settings: MamboSettings, counter: Counter, tiles_used: dict, reporter: Reporter,
                  coarse: torch.Tensor) -> torch.Tensor:
        """One tiled stage on a side × side device canvas in model space; tiles outside `mask` stay background.
        `contexts(tiles, up, out=None)` gives the tiles' context channels, `up` being `coarse` (the previous stage)
        upsampled to the canvas; with `settings.strength` < 1 the tiles start from `up`."""
        dev = self.device
        all_tiles = tiling.grid(side, side, self.s, settings.overlap)
        tiles = tiling.active(all_tiles, mask) if settings.skip_background else all_tiles
        tiles_used[stage] = (len(tiles), len(all_tiles))
        if not tiles:
            return torch.full((side, side), BACKGROUND, device=dev)
        chunk = settings.chunk or default_chunk(dev)
        unet = compiled(bundle.unet, dev, settings.compile)
        up = upsampled(coarse, side)
        start = up if settings.strength < 1 else None
        if settings.tiling == "parallel":
            grids = [tiles, covering(tiling.grid(side, side, self.s, settings.overlap, shifted=True), tiles, side)]
            canvas = self.parallel_stage(stage, unet, bundle.scheduler_config, grids,
                                         lambda grid, out: contexts(grid, up, out), 2 + bundle.aligned_context, side,
                                         seed, settings, counter, chunk, reporter, start)
        else:
            groups = tiling.wavefronts(tiles) if settings.tiling == "wavefront" else [[t] for t in tiles]
            canvas = torch.full((side, side), BACKGROUND, device=dev)
            done = torch.zeros((side, side), dtype=torch.bool, device=dev)
            for gi, group in enumerate(groups):
                self.sample_tiles(stage, unet, bundle.scheduler_config, canvas, done, group, contexts(group, up), seed,
                                  settings, counter, chunk,
                                  on_step=lambda i, n, gi=gi: reporter.update(f"{stage} tiles", gi * n + i,
                                                                              len(groups) * n),
                                  start=start)
        if start is not None:  # outside the coarser stage's breast, or where it is background, this one is too
            drop = torch.from_numpy(mask <= 0.5).to(dev) | (start < BACKGROUND + 2 * BACKGROUND_TOLERANCE)
            canvas.masked_fill_(drop, BACKGROUND)
        return canvas

    def sample_tiles(self, stage: str, unet, scheduler_config: dict, canvas: torch.Tensor, done: torch.Tensor,
                     group: list[tiling.Tile], ctx: torch.Tensor, seed: int, settings: MamboSettings,
                     counter: Counter, chunk: int, on_step: Callable[[int, int], None],
                     start: Optional[torch.Tensor] = None) -> None:
        """Denoise tiles that do not depend on each other as one batch; finished pixels are re-noised, not resampled."""
        s, dev = self.s, self.device
        gens = generators(seed, [(stage, t.row, t.col) for t in group])
        index = tiling.TileIndex(group)
        x0 = None if start is None else index.gather(start)[:, None]
        x = sample(unet_predictor(unet, ctx, counter, chunk), make_scheduler(settings.sampler, scheduler_config),
                   randn((len(group), 1, s, s), gens, dev), gens, settings.steps, eta=settings.eta,
                   known=index.gather(canvas)[:, None], known_mask=index.gather(done)[:, None], on_step=on_step,
                   start=x0, strength=settings.strength)
        for t, tile_out in zip(group, x[:, 0]):  # finished pixels came back exactly, so overlaps agree
            canvas[t.slices] = tile_out
            done[t.slices] = True

    def parallel_stage(self, stage: str, unet, scheduler_config: dict, grids: list[list[tiling.Tile]],
                       contexts: Callable[[list[tiling.Tile], torch.Tensor], torch.Tensor], context_channels: int,
                       side: int, seed: int, settings: MamboSettings, counter: Counter, chunk: int, reporter: Reporter,
                       start: Optional[torch.Tensor] = None) -> torch.Tensor:
        """All tiles each step: blended noise predictions, one scheduler step on the whole canvas (1, 1, side, side),
        in place. Steps alternate between the `grids` (the grid, then one shifted by half a tile step that covers
        it): no tile border stays in one place, so none is drawn into the image as a seam; the last steps (t below
        `BOTH_GRIDS_BELOW`·T) blend both grids' predictions. Per grid, the U-Net input is allocated once with its
        context channels (`contexts(tiles, out)` fills them); each chunk's predictions are added onto the noise canvas
        times the tiles' window as they come, and the scheduler divides the sum by the canvas's window sum
        (`output_weight`, a precomputed inverse, one per grid and one for both): a weighted mean, no per-tile weight
        buffer. Pixels outside the first grid end as background."""
        dev, s, ws = self.device, self.s, self.workspace
        window = torch.from_numpy(tiling.ramp_weights(s, settings.overlap)).to(dev)
        passes = []
        for g, tiles in enumerate(grids):
            n = len(tiles)
            index = tiling.TileIndex(tiles)
            inp = ws.empty(f"{stage} input {g}", (n, 1 + context_channels, s, s), dev)
            contexts(tiles, inp[:, 1:])
            passes.append((index, [(i, tiling.TileIndex(tiles[i:i + chunk])) for i in range(0, n, chunk)], inp))
        sums = [index.weight_sum(window, (side, side), out=ws.empty(f"{stage} weights {g}", (side, side), dev))
                for g, (index, _, _) in enumerate(passes)]
        sums.append(torch.add(*sums, out=ws.empty(f"{stage} weights both", (side, side), dev)))
        inverses = [tiling.reciprocal(total) for total in sums]  # each grid's, then both grids'
        del sums
        eps = ws.empty(f"{stage} noise", (1, 1, side, side), dev)
        calls = [0]
        both_below = BOTH_GRIDS_BELOW * scheduler_config.get("num_train_timesteps", 1000)

        def predict(x: torch.Tensor, t) -> torch.Tensor:
            which = list(range(len(passes))) if t < both_below else [calls[0] % len(passes)]
            calls[0] += 1
            eps.zero_()
            for index, parts, inp in (passes[w] for w in which):
                index.gather(x[0, 0], out=inp[:, 0])
                for i, part in parts:
                    part.scatter_add(eps[0, 0], forward(unet, inp[i:i + chunk], t, dev)[:, 0], window)
                    counter.forwards += part.count
                    counter.batches += 1
            # the weighted mean's division, applied by the scheduler as it reads the noise (a canvas pass fewer)
            scheduler.output_weight = inverses[-1] if len(which) > 1 else inverses[which[0]]
            return eps

        gens = generators(seed, [(stage, "canvas")])
        scheduler = canvas_scheduler(settings.sampler, scheduler_config, side, side, dev)
        if isinstance(scheduler, in_place_dpm_solver()):
            scheduler.buffers = tuple(ws.empty(f"{stage} x0 {i}", (1, 1, side, side), dev) for i in range(2))
        x = sample(predict, scheduler, randn((1, 1, side, side), gens, dev), gens, settings.steps, eta=settings.eta,
                   on_step=lambda i, k: reporter.update(f"{stage} tiles", i, k),
                   start=None if start is None else start[None, None], strength=settings.strength)
        return x[0, 0].masked_fill_(inverses[0] == 0, BACKGROUND)  # not covered by the first grid


def covering(candidates: list[tiling.Tile], tiles: list[tiling.Tile], side: int) -> list[tiling.Tile]:
    """The candidates that hold any pixel of the `tiles`: together they cover every pixel the tiles cover."""
    covered = np.zeros((side, side), dtype=bool)
    for t in tiles:
        covered[t.slices] = True
    return tiling.active(candidates, covered)


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
    if settings.tiling == "parallel":  # steps alternate between the grid and the shifted one, the last on both
        shifted = [tiling.grid(n, n, s, overlap, shifted=True) for n in (mid, size)]
        per_step = [(len(g), math.ceil(len(g) / (chunk or len(g)))) for g in grids], \
                   [(len(g), math.ceil(len(g) / (chunk or len(g)))) for g in shifted]
        last = BOTH_GRIDS_BELOW * scheduler.config.num_train_timesteps
        counts = [per_step[0] + per_step[1] if t < last else per_step[i % 2]
                  for i, t in enumerate(scheduler.timesteps[-steps:])]
        fwd = sum(f for step in counts for f, _ in step)
        batches = sum(b for step in counts for _, b in step)
    else:
        fwd = sum(len(g) for g in grids) * steps
        batches = steps * sum(len(tiling.wavefronts(g)) if settings.tiling == "wavefront" else len(g) for g in grids)
    return {"unet_forwards": settings.global_steps + fwd, "sequential_unet_batches": settings.global_steps + batches,
            "tiles_mid": len(grids[0]), "tiles_full": len(grids[1])}
