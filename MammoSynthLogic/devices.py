"""Device and precision selection: `--device auto|cpu|cuda|mps`, bf16/fp16 autocast on GPUs."""
from __future__ import annotations

import contextlib
import weakref

from MammoSynthLogic.errors import MammoSynthError


def select_device(name: str = "auto") -> str:
    """`auto` = cuda, then mps, then cpu; an explicit device that is not available is an error."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise MammoSynthError("--device cuda", "no CUDA GPU visible to this torch build; use --device cpu or auto")
    if name == "mps" and not mps:
        raise MammoSynthError("--device mps", "Apple MPS is not available here; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise MammoSynthError(f"--device {name}", "choose auto, cpu, cuda or mps")
    return name


def autocast_dtype(device: str):
    """bf16 where the GPU supports it, else fp16; None (full float32) on CPU."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return None


def autocast(device: str):
    """Autocast context for U-Net forwards on GPUs; a no-op on CPU."""
    import torch

    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def default_chunk(device: str) -> int:
    """How many s×s tiles go through the U-Net in one call (bounds memory, not results)."""
    return 64 if device == "cuda" else 16 if device == "mps" else 8


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def compiled(unet, device: str, enabled: bool):
    """The U-Net through `torch.compile(mode="reduce-overhead")` (CUDA graphs) when enabled on CUDA, compiled once
    per model; elsewhere, or when not enabled, the model itself (the same code path minus the compilation)."""
    import torch

    if not enabled or device != "cuda":
        return unet
    if unet not in _COMPILED:
        _COMPILED[unet] = torch.compile(unet, mode="reduce-overhead")
    return _COMPILED[unet]
