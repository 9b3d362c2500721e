"""Set-to-set distances: FID and KID on features (torchmetrics), MS-SSIM diversity, two-sample KS."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn


class _Given(nn.Module):
    """Pass-through 'extractor': torchmetrics' FID/KID accumulate features that were extracted once, elsewhere."""

    def __init__(self, dims: int):
        super().__init__()
        self.num_features = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N×d each, N ≥ 2)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Given(real.shape[1]), normalize=True)
    metric.update(torch.from_numpy(real).double(), real=True)
    metric.update(torch.from_numpy(synthetic).double(), real=False)
    return float(metric.compute())


def kid(real: np.ndarray, synthetic: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel distance (cubic polynomial MMD²): mean and std over random subsets; subsets shrink to the smaller set."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(synthetic))
    with warnings.catch_warnings():  # "will save all extracted features": they are in memory already
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Given(real.shape[1]), subsets=subsets, subset_size=size,
                                         normalize=True)
    metric.update(torch.from_numpy(real).double(), real=True)
    metric.update(torch.from_numpy(synthetic).double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def split_fid(features: np.ndarray, seed: int = 0) -> float:
    """FID between two random halves of one set: MAMBO's lower bound for a set of that size."""
    order = np.random.default_rng(seed).permutation(len(features))
    half = len(features) // 2
    return fid(features[order[:half]], features[order[half:2 * half]])


def random_pairs(n: int, max_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """All i<j pairs of n items, or `max_pairs` of them drawn without replacement."""
    total = n * (n - 1) // 2
    if total <= max_pairs:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    rng = np.random.default_rng(seed)
    picked: set[tuple[int, int]] = set()
    while len(picked) < max_pairs:
        i, j = sorted(rng.choice(n, 2, replace=False).tolist())
        picked.add((i, j))
    return sorted(picked)


def ms_ssim(a: np.ndarray, b: np.ndarray, batch: int = 16) -> np.ndarray:
    """Multi-scale SSIM of image pairs (N×H×W each, [0, 1], sides > 160): 5 scales, 11-px Gaussian, data range 1.

    Negative contrast-structure terms are clipped to 0 (torchmetrics' normalize="relu") so that no pair gives NaN.
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    out = []
    for i in range(0, len(a), batch):
        x = torch.from_numpy(np.asarray(a[i:i + batch], dtype=np.float32))[:, None]
        y = torch.from_numpy(np.asarray(b[i:i + batch], dtype=np.float32))[:, None]
        out.append(msssim(x, y, data_range=1.0, normalize="relu", reduction="none").reshape(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def pairwise_ms_ssim(images: Sequence[np.ndarray], max_pairs: int = 1000, seed: int = 0) -> Optional[dict]:
    """MAM-E Table 3's diversity: mean and std of MS-SSIM over pairs within one set (lower = more diverse)."""
    pairs = random_pairs(len(images), max_pairs, seed)
    if not pairs:
        return None
    values = ms_ssim(np.stack([images[i] for i, _ in pairs]), np.stack([images[j] for _, j in pairs]))
    return {"mean": float(values.mean()), "std": float(values.std()), "pairs": len(pairs)}


def ks(real: Sequence[float], synthetic: Sequence[float]) -> Optional[dict]:
    """Two-sample Kolmogorov–Smirnov test: statistic D (0 = same distribution), p-value, both means; None if a set
    is empty (e.g. no breast found in any image)."""
    import warnings

    if len(real) == 0 or len(synthetic) == 0:
        return None
    from scipy.stats import ks_2samp

    with warnings.catch_warnings():  # "exact calculation unsuccessful, switching to asymp": fine for a report
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ks_2samp(np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64))
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "real_mean": float(np.mean(real)),
            "synthetic_mean": float(np.mean(synthetic)), "n_real": len(real), "n_synthetic": len(synthetic)}
