"""Lesion inpainting with the MAMBO patch model: pixel-space RePaint (Lugmayr et al. 2022), no Stable Diffusion.

The real image is prepared (chest wall on the left, square), resampled to the scale the patch model was trained at,
and only the s×s tiles that the painted mask touches are denoised, each conditioned on the real image's clean local
context (mid-resolution crop centred on the tile) and global image, as in generation and native anomaly maps. Before
every step the known pixels (outside the mask) are replaced by the original forward-noised to the timestep the sample
is at; `jumps` > 1 adds RePaint's resampling. Overlapping tiles share one canvas: their noise predictions are blended
with smooth weights and every canvas pixel takes its noise from one tile's own generator (the tile whose weight is
highest there), so there are no seams and a result depends on the seed and the mask, not on the U-Net batch size.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import torch

from MammoSynthLogic import tiling
from MammoSynthLogic.anomaly import insert_mass
from MammoSynthLogic.bundles import Bundle, check_mambo_set
from MammoSynthLogic.devices import default_chunk
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines.mambo import MamboPipeline, image_contexts, to01
from MammoSynthLogic.preparation import PrepareTransform, prepare, resize
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sampling import add_noise, entry_index, generators, make_scheduler, randn, unet_predictor

SAMPLERS = ("ddpm", "ddim")  # ancestral steps only: the known region is replaced every step (no multistep solver)
SIDES = ("left", "right")


def with_lesion(image01: np.ndarray, mask: np.ndarray, contrast: float, seed: int) -> np.ndarray:
    """`image01` with a soft lobulated mass of `contrast` centred on the mask, as large as the mask, inside it only."""
    ys, xs = np.nonzero(mask)
    radius = max(1.0, float(np.sqrt(ys.size / np.pi)))
    massed, _ = insert_mass(image01, (int(ys.mean()), int(xs.mean())), radius, contrast,
                            np.random.default_rng([seed, 7]))
    return np.where(mask, massed, image01).astype(np.float32)


def prepared_frame(pixels: np.ndarray, side: Optional[str]) -> tuple[np.ndarray, PrepareTransform]:
    """The prepared square image and its transform; `side` (chest wall in the source) overrides the detected one."""
    prepared = prepare(pixels)
    if side is None or (side == "right") == prepared.transform.flipped:
        return prepared.pixels, prepared.transform
    transform = dataclasses.replace(prepared.transform, flipped=side == "right")
    return transform.to_prepared(prepared.transform.to_source(prepared.pixels)), transform


def jump_schedule(steps: int, jumps: int, jump_length: int) -> list[tuple[int, int]]:
    """RePaint's schedule as moves between positions in the timestep list (0 = noisiest, `steps` = clean).

    (p, p + 1) denoises one step; (p, p − jump_length) re-noises back. At every jump_length-th position counted from
    the clean end the chain goes back `jumps` − 1 times, so it denoises steps + (jumps − 1)·jump_length·⌊steps /
    jump_length⌋ times in all.
    """
    left = {p: jumps - 1 for p in range(steps, jump_length - 1, -jump_length)} if jumps > 1 else {}
    moves, p = [], 0
    while p < steps:
        moves.append((p, p + 1))
        p += 1
        if left.get(p, 0) > 0:
            left[p] -= 1
            moves.append((p, p - jump_length))
            p -= jump_length
    return moves


def owners(tiles: list[tiling.Tile], shape: tuple[int, int], weights: np.ndarray) -> list[np.ndarray]:
    """Per tile, the pixels it owns: those where its blending weight is the highest (earlier tiles win ties)."""
    best = np.full(shape, -1.0, dtype=np.float32)
    index = np.full(shape, -1, dtype=np.int64)
    for i, t in enumerate(tiles):
        better = weights > best[t.slices]
        best[t.slices][better] = weights[better]
        index[t.slices][better] = i
    return [index[t.slices] == i for i, t in enumerate(tiles)]


class TileCanvas:
    """The window of the working image that the tiles cover: crop it to a batch, blend a batch, paste by owner."""

    def __init__(self, tiles: list[tiling.Tile], overlap: int, device: torch.device):
        y0, x0 = min(t.y for t in tiles), min(t.x for t in tiles)
        y1, x1 = max(t.y + t.size for t in tiles), max(t.x + t.size for t in tiles)
        self.window = (slice(y0, y1), slice(x0, x1))
        self.shape = (y1 - y0, x1 - x0)
        self.tiles = [dataclasses.replace(t, y=t.y - y0, x=t.x - x0) for t in tiles]
        self.index = tiling.TileIndex(self.tiles)
        weights, inv = tiling.blend_weights(self.tiles, self.shape, overlap)
        self.inv = torch.from_numpy(inv).to(device)
        self.covered = self.inv > 0
        self.weights = torch.from_numpy(weights).to(device)
        self.own = torch.from_numpy(np.stack(owners(self.tiles, self.shape, weights))).to(device)

    def crop(self, canvas: torch.Tensor) -> torch.Tensor:
        """(B, 1, s, s) batch of the tiles' pixels."""
        return self.index.gather(canvas)[:, None]

    def paste(self, canvas: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """`canvas` with each pixel taken from the tile that owns it (in place; returned for chaining): every covered
        pixel has exactly one owner, so the sum of the owner-masked tiles is that tile's value exactly."""
        owned = self.index.scatter_add(torch.zeros_like(canvas), batch[:, 0] * self.own)
        return canvas.copy_(torch.where(self.covered, owned, canvas))

    def blend(self, batch: torch.Tensor) -> torch.Tensor:
        """Weighted mean of overlapping tiles, as a canvas."""
        out = torch.zeros(self.shape, dtype=torch.float32, device=self.inv.device)
        return self.index.scatter_add(out, batch[:, 0] * self.weights) * self.inv


def check_arguments(pixels: np.ndarray, mask: np.ndarray, steps: int, jumps: int, jump_length: int, side: Optional[str],
                    sampler: str) -> None:
    """Refuse what cannot be inpainted, one MammoSynthError per problem."""
    if mask.shape != pixels.shape:
        raise MammoSynthError("mask", f"its shape {mask.shape} differs from the image's {pixels.shape}")
    if not mask.any():
        raise MammoSynthError("mask", "mask is empty: paint a region first")
    if sampler not in SAMPLERS:
        raise MammoSynthError(f"sampler {sampler}", f"RePaint needs ancestral steps; choose one of {', '.join(SAMPLERS)}")
    if steps < 1 or jumps < 1:
        raise MammoSynthError(f"steps {steps}, jumps {jumps}", "both must be at least 1")
    if jumps > 1 and not 1 <= jump_length <= steps:
        raise MammoSynthError(f"jump length {jump_length}", f"must be between 1 and the number of steps ({steps})")
    if side is not None and side not in SIDES:
        raise MammoSynthError(f"side {side}", "choose left or right (the chest-wall side), or leave it to detection")


def inpaint_repaint(pixels: np.ndarray, mask: np.ndarray, bundles: tuple[Bundle, Bundle, Bundle], *, seed: int,
                    steps: int = 50, jumps: int = 1, jump_length: int = 10, reporter: Optional[Reporter] = None,
                    side: Optional[str] = None, sampler: str = "ddpm", chunk: Optional[int] = None,
                    lesion: float = 0.0, start: Optional[np.ndarray] = None, strength: float = 1.0) -> np.ndarray:
    """Synthetic content inside `mask` (bool) of a [0, 1] source-frame image; every other pixel is returned unchanged.

    The image is prepared and resampled to the patch model's full-resolution canvas (the manifest's `full_size`, else
    s·k²). At the paper's scale that is the native resolution (nothing is resampled when it equals the prepared side);
    with smaller models the inpainted pixels have the canvas's resolution and are resampled back. Only the tiles that the mask touches are
    denoised (DDPM, or DDIM with eta = 1), `chunk` tiles per U-Net call. Cost per masked tile: steps + (jumps − 1) ·
    jump_length · ⌊steps / jump_length⌋ U-Net forwards, about `jumps` times the plain chain.

    The tiles' contexts (mid-resolution and global image) come from the image itself, so with `lesion` = 0 the model
    re-creates tissue like what was there. `lesion` > 0 first draws a soft mass of that contrast ([0, 1] units) into
    the masked part of the contexts: the patch model then renders a lesion there at full resolution.

    `start` (source frame, [0, 1]; e.g. the image with an analytic lesion drawn in) harmonises instead of replacing:
    contexts come from it, and the masked part starts from it noised to `strength`·T (SDEdit) rather than from pure
    noise, the rest replaced by the image at every step (RePaint). Inside the mask the result is then `start` plus the
    model's change resampled to the source, so detail finer than the canvas (calcifications) survives a small model;
    where the canvas is the native resolution that is exactly the model's output.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    check_arguments(pixels, mask, steps, jumps, jump_length, side, sampler)
    if start is not None and np.shape(start) != pixels.shape:
        raise MammoSynthError("start image", f"its shape {np.shape(start)} differs from the image's {pixels.shape}")
    if not 0 < strength <= 1:
        raise MammoSynthError(f"--strength {strength}", "must be in (0, 1]")
    check_mambo_set(*bundles)
    reporter = reporter or Reporter()
    pipe = MamboPipeline(*bundles)
    s, n = pipe.s, pipe.default_size()
    patch = pipe.patch
    device = next(patch.unet.parameters()).device

    prepared01, transform = prepared_frame(pixels, side)
    working = resize(prepared01, (n, n))
    # area-averaged downsizing: any painted source pixel marks its canvas pixel
    work_mask = resize(transform.to_prepared(mask, fill=False).astype(np.float32), (n, n)) > 0
    overlap = s // 8  # MAMBO's 32 px at s = 256
    tiles = tiling.active(tiling.grid(n, n, s, overlap), work_mask)
    canvas = TileCanvas(tiles, overlap, device)
    win = canvas.window

    if start is not None:  # the change `start` makes, on the canvas (prepare() zeroed the background of `working`)
        begin = working + resize(transform.to_prepared(np.asarray(start, np.float32) - pixels), (n, n))
    else:
        begin = with_lesion(working, work_mask, lesion, seed) if lesion else working
    ctx = image_contexts(begin, patch, tiles, device)
    predict = unet_predictor(patch.unet, ctx, chunk=chunk or default_chunk(device.type))
    gens = generators(seed, [("repaint", t.row, t.col) for t in tiles])
    x0 = torch.from_numpy(working[win] * 2 - 1).to(device)
    known = torch.from_numpy(~work_mask[win]).to(device)

    scheduler = make_scheduler(sampler, patch.scheduler_config)
    scheduler.register_to_config(clip_sample=True)  # x̂0 in [-1, 1], as RePaint's code; DDIM re-derives ε from it
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    step_kwargs = {"generator": gens, **({"eta": 1.0, "use_clipped_model_output": True} if sampler == "ddim" else {})}

    def level(p: int) -> torch.Tensor:
        """ᾱ of the noise level at schedule position p (1 = clean after the last step)."""
        return scheduler.alphas_cumprod[int(timesteps[p])] if p < steps else torch.tensor(1.0)

    batch_shape = (len(tiles), 1, s, s)
    x = canvas.paste(torch.zeros(canvas.shape, device=device), randn(batch_shape, gens, device))
    first = 0
    if start is not None and strength < 1:
        first = entry_index(scheduler, strength)
        x = add_noise(scheduler, torch.from_numpy(begin[win] * 2 - 1).to(device), x, timesteps[first])
    moves = [(p, q) for p, q in jump_schedule(steps, jumps, jump_length) if min(p, q) >= first]
    total, done = sum(q > p for p, q in moves), 0
    reporter.update("inpaint (RePaint)", 0, total)
    for p, q in moves:
        if q < p:  # RePaint jump: q(x_{t_q} | x_{t_p}) on the whole canvas (the known part is replaced anyway)
            a = (level(q) / level(p)).to(device)
            canvas.paste(x, a.sqrt() * canvas.crop(x) + (1 - a).sqrt() * randn(batch_shape, gens, device))
            continue
        t = timesteps[p]
        noise = canvas.paste(torch.zeros(canvas.shape, device=device), randn(batch_shape, gens, device))
        x = torch.where(known, add_noise(scheduler, x0, noise, t), x)
        xt = canvas.crop(x)
        eps = canvas.crop(canvas.blend(predict(xt, t)))
        canvas.paste(x, scheduler.step(eps, t, xt, **step_kwargs).prev_sample)
        done += 1
        reporter.update("inpaint (RePaint)", done, total)

    result = working.copy()
    result[win] = np.where(work_mask[win], to01(x), working[win])
    if start is not None:
        return np.where(mask, np.clip(start + transform.to_source(result - begin), 0, 1), pixels).astype(np.float32)
    return np.where(mask, transform.to_source(result), pixels)
