"""Feature-extractor weights from local safetensors files only: never unpickled, never downloaded."""
from __future__ import annotations

import os
from pathlib import Path

from MammoSynthLogic.bundles import PICKLE_SUFFIXES
from MammoSynthLogic.errors import MammoSynthError

CONVERT = ("convert it once with `python -c \"import torch, safetensors.torch as st; "
           "st.save_file(torch.load('IN.pth', map_location='cpu', weights_only=True), 'OUT.safetensors')\"` "
           "(docs/metrics.md)")


def load_safetensors(path: str | os.PathLike, what: str, where: str) -> dict:
    """The tensors of a local .safetensors file; a missing, pickled or unreadable file is a one-line error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MammoSynthError(path, f"{what} weights file not found; {where}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise MammoSynthError(path, f"pickle weight files are refused (they can run code); {CONVERT}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise MammoSynthError(path, f"not a readable safetensors file ({reason}); {where}") from None


def load_into(module, tensors: dict, path: str | os.PathLike, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Load `tensors` into `module`; every parameter and buffer must be there with its shape (keys in `ignore` skip)."""
    import torch

    expected = {k: v for k, v in module.state_dict().items() if not k.endswith(ignore)}
    missing = sorted(k for k in expected if k not in tensors)
    wrong = sorted(k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape))
    if missing or wrong:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"shape of {', '.join(wrong[:3])}"
        raise MammoSynthError(path, f"these are not {what} weights ({detail}{' ...' if len(missing or wrong) > 3 else ''})")
    with torch.no_grad():
        module.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected}, strict=False)
