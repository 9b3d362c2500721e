"""LPIPS (Zhang et al. 2018) with AlexNet, SqueezeNet-1.1 or VGG-16 trunks, loaded from one local safetensors file.

The file holds the state dict of the `lpips` package's `LPIPS(net=...)` module (trunk `net.sliceN.*` and linear
heads `linN.model.1.weight`), or of torchmetrics' `_LPIPS` (trunk `net.slices.N.*` for SqueezeNet); docs/metrics.md
shows how to write it. The trunk layers are torchvision's `features` (no torchvision needed here). MAMBO reports
LPIPS with the SqueezeNet trunk.
"""
from __future__ import annotations

import os
import re

import torch
import torch.nn.functional as F
from torch import nn

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.metrics.weights import load_into, load_safetensors

GET_LPIPS = ("on a connected machine run `pip install lpips` and save `lpips.LPIPS(net='squeeze').state_dict()` "
             "(or net='alex'/'vgg') with safetensors.torch.save_file as docs/metrics.md shows; pass it with "
             "--lpips-weights")
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ImageNet scaling of [-1, 1] inputs
SCALE = (0.458, 0.448, 0.450)

_VGG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
SLICES = {  # torchvision `features` index ranges whose outputs LPIPS compares
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
    "squeeze": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)],
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
}


class Fire(nn.Module):
    """SqueezeNet's Fire module (torchvision names)."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.out_channels = e1 + e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


def trunk_layers(net: str) -> list[nn.Module]:
    """torchvision's `features` of alexnet, squeezenet1_1 or vgg16, layer for layer."""
    relu = nn.ReLU
    if net == "alex":
        return [nn.Conv2d(3, 64, 11, 4, 2), relu(), nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), relu(),
                nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), relu(), nn.Conv2d(384, 256, 3, padding=1),
                relu(), nn.Conv2d(256, 256, 3, padding=1), relu()]
    if net == "squeeze":
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        return [nn.Conv2d(3, 64, 3, 2), relu(), pool(), Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(), Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256)]
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), relu()]
            cin = v
    return layers


def _channels(layers: list[nn.Module]) -> int:
    for layer in reversed(layers):
        if isinstance(layer, (nn.Conv2d, Fire)):
            return layer.out_channels
    raise ValueError("slice without a convolution")


class LinearHead(nn.Module):
    """LPIPS's 1×1 weighting of squared feature differences (`model.1` as in the lpips package)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class Trunk(nn.Module):
    def __init__(self, net: str):
        super().__init__()
        layers = trunk_layers(net)
        self.n = len(SLICES[net])
        self.channels = []
        for i, (a, b) in enumerate(SLICES[net], start=1):
            part = nn.Sequential()
            for j in range(a, b):
                part.add_module(str(j), layers[j])
            setattr(self, f"slice{i}", part)
            self.channels.append(_channels(layers[:b]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(1, self.n + 1):
            x = getattr(self, f"slice{i}")(x)
            outs.append(x)
        return outs


class Lpips(nn.Module):
    """LPIPS distance of image pairs: N×3×H×W floats in [0, 1] → N distances (0 for identical images)."""

    def __init__(self, net: str = "squeeze"):
        super().__init__()
        if net not in SLICES:
            raise ValueError(f"net must be one of {', '.join(SLICES)}")
        self.net_name = net
        self.net = Trunk(net)
        for i, c in enumerate(self.net.channels):
            setattr(self, f"lin{i}", LinearHead(c))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.net(((a * 2 - 1) - self.shift) / self.scale)
        fb = self.net(((b * 2 - 1) - self.shift) / self.scale)
        total = torch.zeros(a.shape[0], dtype=torch.float32, device=a.device)
        for i, (x, y) in enumerate(zip(fa, fb)):
            diff = (_unit(x) - _unit(y)) ** 2
            total += getattr(self, f"lin{i}").model(diff).mean(dim=(1, 2, 3))
        return total


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Features normalised to unit length along channels (as LPIPS does)."""
    return x / torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True) + eps)


def _canonical(tensors: dict) -> dict:
    """torchmetrics' `net.slices.K.` (SqueezeNet) → the lpips package's `net.slice{K+1}.`."""
    return {re.sub(r"^net\.slices\.(\d+)\.", lambda m: f"net.slice{int(m.group(1)) + 1}.", k): v
            for k, v in tensors.items()}


def _net_of(tensors: dict, path) -> str:
    if "net.slice7.12.squeeze.weight" in tensors:
        return "squeeze"
    conv0 = tensors.get("net.slice1.0.weight")
    if conv0 is not None and tuple(conv0.shape[-2:]) == (11, 11):
        return "alex"
    if conv0 is not None and tuple(conv0.shape[-2:]) == (3, 3):
        return "vgg"
    raise MammoSynthError(path, f"not an LPIPS state dict (no AlexNet, SqueezeNet or VGG trunk found); {GET_LPIPS}")


def load_lpips(path: str | os.PathLike) -> Lpips:
    """LPIPS with trunk and linear heads from a local safetensors file; the trunk is recognised from the keys."""
    tensors = _canonical(load_safetensors(path, "LPIPS", GET_LPIPS))
    model = Lpips(_net_of(tensors, path))
    load_into(model, tensors, path, f"LPIPS ({model.net_name})")
    return model.eval()
