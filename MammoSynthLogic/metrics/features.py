"""Feature extractors for FID/KID: the FID Inception from a local file, or any `torch.nn.Module`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

FeatureSpec = Union[str, os.PathLike, nn.Module, None]


def feature_model(spec: FeatureSpec) -> tuple[nn.Module | None, dict]:
    """(model, description): a safetensors path loads the FID Inception; a Module is used as is; None gives None."""
    if spec is None:
        return None, {"name": None}
    if isinstance(spec, nn.Module):
        return spec.eval(), {"name": type(spec).__name__, "kind": "module given by the caller"}
    from MammoSynthLogic.bundles import sha256_file
    from MammoSynthLogic.metrics.inception import load_inception

    model = load_inception(spec)
    return model, {"name": "Inception-v3 FID (TF 2015-12-05), pool 2048", "path": str(Path(spec)),
                   "sha256": sha256_file(Path(spec).expanduser())}


def as_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Equal-sized grey images in [0, 1] → N×3×H×W float32 (the grey value in every channel)."""
    x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) for im in images]))
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def extract(model: nn.Module, images: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """N×d float64 features of grey images in [0, 1]."""
    device = next(model.parameters(), torch.empty(0)).device
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            feats = model(as_batch(images[i:i + batch]).to(device))
            out.append(feats.reshape(feats.shape[0], -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
