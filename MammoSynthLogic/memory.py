"""Memory guard: what an output size needs (canvases, tiles in flight, models) against the RAM free now (psutil).

The estimate is linear in what grows: full-size float32 arrays alive at the peak (canvas, blend weights, scheduler
state, noise, the image as written) per output pixel, U-Net activations per tile in flight, the weights, and the
process itself (Python, torch, diffusers). The coefficients were measured (Testing/benchmarks/bench_memory.py
measures the peak RSS of real runs and prints it beside this estimate); a size that needs more than is free is
refused in one line before any large array exists.
"""
from __future__ import annotations

from typing import Iterable, Optional

from MammoSynthLogic.errors import MammoSynthError

GB = 1e9
# Fitted to peak RSS of `generate` with the embedded bundles on the CPU (bench_memory.py, shared 2-core machine):
# 0.766 GB at 2048², 1.343 GB at 4096², i.e. 45.8 bytes per output pixel on top of 0.574 GB; rounded up.
PROCESS_BYTES = 600e6  # python + torch + diffusers + highdicom imported
CANVAS_BYTES_PER_PIXEL = 48.0  # full-size arrays alive at the peak of a MAMBO run, bytes per output pixel
ACTIVATION_FACTOR = 12.0  # U-Net activations kept per input pixel per feature channel, summed over resolutions
SOURCE_BYTES_PER_PIXEL = 40.0  # a real image read, cleaned and blended (stored, [0,1], weights, result, writer)


def unet_activation_bytes(unet, side: int, batch: int) -> float:
    """Activations of one U-Net forward on `batch` inputs of side × side: channels at each resolution level."""
    channels = list(getattr(unet.config, "block_out_channels", (128,)))
    per_pixel = sum(c / 4 ** level for level, c in enumerate(channels))
    return 4.0 * batch * side * side * per_pixel * ACTIVATION_FACTOR


def model_bytes(models: Iterable) -> float:
    """Parameter bytes of the given torch modules."""
    return float(sum(p.numel() * p.element_size() for m in models for p in m.parameters()))


def mambo_bytes(size: int, unets: Iterable = (), s: int = 0, chunk: int = 1) -> float:
    """A MAMBO run to a size × size output: process, weights, full-size arrays and the largest tile batch (without
    `unets`, a lower bound that needs no model: checked before torch is even imported)."""
    unets = list(unets)
    tiles = max((unet_activation_bytes(u, s, chunk) for u in unets), default=0.0)
    return PROCESS_BYTES + model_bytes(unets) + CANVAS_BYTES_PER_PIXEL * float(size) ** 2 + tiles


def check_mambo(size: int, pipe, chunk: Optional[int], device: str, extra: float = 0.0) -> None:
    """Refuse a MAMBO size × size run (plus `extra` bytes) that cannot fit in the free RAM."""
    from MammoSynthLogic.devices import default_chunk

    unets = [b.unet for b in (pipe.global_, pipe.local, pipe.patch)]
    check_fits(f"--size {size}", mambo_bytes(size, unets, pipe.s, chunk or default_chunk(device)) + extra)


def sd_bytes(pipeline, size: int) -> float:
    """A Stable Diffusion image of size × size: process, weights, the VAE at full size, the U-Net (CFG: 2) at 1/8."""
    parts = [getattr(pipeline, name) for name in ("unet", "vae", "text_encoder") if getattr(pipeline, name, None)]
    return (PROCESS_BYTES + model_bytes(parts) + unet_activation_bytes(pipeline.vae, size, 1)
            + unet_activation_bytes(pipeline.unet, size // 8, 2))


def source_bytes(rows: int, columns: int) -> float:
    """Arrays of one real image of rows × columns as a command holds them (read, cleaned, blended, written)."""
    return SOURCE_BYTES_PER_PIXEL * float(rows) * float(columns)


def available_bytes() -> float:
    """RAM the system can give this process now without swapping."""
    import psutil

    return float(psutil.virtual_memory().available)


def check_fits(what: str, needed: float, available: Optional[float] = None) -> None:
    """Refuse work that needs more memory than is free, in one line naming the option."""
    free = available_bytes() if available is None else available
    if needed > free:
        raise MammoSynthError(what, f"needs about {needed / GB:.1f} GB, this machine has {free / GB:.1f} GB free; "
                                    "choose a smaller size or free memory")
