"""Cross-view consistency of CC/MLO pairs, as the dual-view DDPM papers measure it (their Tables 1–2, Fig. 4).

Each view is brought to the encoding frame (chest wall on the left, square, `work_size` px), segmented with Otsu's
threshold, and the CC and MLO masks of a pair are compared with IoU and DSC. The distributions over real and
synthetic pairs are summarised (mean, std, min, quartiles, max, IQR), compared with the Earth Mover's Distance and
the two-sample Kolmogorov–Smirnov test, and drawn as violin plots. The command line is
`mammosynth evaluate dualview` (`MammoSynthLogic/commands/evaluate.py`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

METRICS = ("IoU", "DSC")
STATISTICS = ("mean", "std", "min", "q1", "median", "q3", "max", "iqr")


def otsu_mask(view01: np.ndarray) -> np.ndarray:
    """Breast mask by Otsu's threshold (bool, same shape); empty for a flat image."""
    from skimage.filters import threshold_otsu

    view01 = np.asarray(view01, dtype=np.float32)
    if float(view01.max() - view01.min()) < 1e-8:
        return np.zeros(view01.shape, dtype=bool)
    return view01 > threshold_otsu(view01)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A ∩ B| / (|A| + |B|) (0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return float(2 * np.logical_and(a, b).sum() / total) if total else 0.0


def pair_overlap(cc01: np.ndarray, mlo01: np.ndarray) -> dict[str, float]:
    """IoU and DSC of the Otsu masks of two views already in one frame."""
    a, b = otsu_mask(cc01), otsu_mask(mlo01)
    return {"IoU": iou(a, b), "DSC": dice(a, b)}


def summary(values: Sequence[float]) -> dict[str, float]:
    """Table 1's descriptive statistics."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {k: float("nan") for k in STATISTICS}
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "min": float(v.min()),
            "q1": float(q1), "median": float(median), "q3": float(q3), "max": float(v.max()), "iqr": float(q3 - q1)}


def compare(real: Sequence[float], synthetic: Sequence[float]) -> dict[str, float]:
    """Table 2: EMD (Wasserstein-1), two-sample KS statistic and p-value, difference of the means."""
    from scipy.stats import ks_2samp, wasserstein_distance

    if len(real) == 0 or len(synthetic) == 0:
        return {"emd": float("nan"), "ks_d": float("nan"), "ks_p": float("nan"), "mean_difference": float("nan")}
    ks = ks_2samp(real, synthetic)
    return {"emd": float(wasserstein_distance(real, synthetic)), "ks_d": float(ks.statistic),
            "ks_p": float(ks.pvalue), "mean_difference": float(np.mean(synthetic) - np.mean(real))}


def find_pairs(folders: Sequence[Path], work_size: int, log=print) -> list[dict]:
    """Every breast with a CC and an MLO under `folders`, both views in the encoding frame (padded to the pair's
    common square, so that square synthetic images are not padded) at work_size."""
    from MammoSynthLogic.dicom_io import find_dicoms, group_by_breast, read_mammogram
    from MammoSynthLogic.dualview import encode_view
    from MammoSynthLogic.errors import MammoSynthError

    paths, errors = find_dicoms(folders)
    for error in errors:
        log(f"skipped: {error}")
    images = []
    for path in paths:
        try:
            images.append(read_mammogram(path))
        except MammoSynthError as e:
            log(f"skipped: {e}")
    pairs = []
    for key, group in sorted(group_by_breast(images).items()):
        views = {v: sorted((im for im in group if im.view == v), key=lambda im: str(im.path)) for v in ("CC", "MLO")}
        if not views["CC"] or not views["MLO"]:
            log(f"skipped breast {'/'.join(key)}: needs both a CC and an MLO")
            continue
        cc, mlo = views["CC"][0], views["MLO"][0]
        side = max(cc.rows, cc.columns, mlo.rows, mlo.columns)  # one square for both views: one pixel scale
        pairs.append({"key": "/".join(key), "cc": str(cc.path), "mlo": str(mlo.path),
                      "CC": encode_view(cc, work_size, side).pixels, "MLO": encode_view(mlo, work_size, side).pixels})
    return pairs


def overlaps(pairs: list[dict]) -> dict[str, list[float]]:
    """IoU and DSC lists over pairs."""
    values = [pair_overlap(p["CC"], p["MLO"]) for p in pairs]
    return {m: [v[m] for v in values] for m in METRICS}


def evaluate(real: dict[str, list[float]], synthetic: dict[str, list[float]]) -> dict:
    """Tables 1 and 2 from the IoU/DSC lists of real and synthetic pairs."""
    return {"n_real": len(real["IoU"]), "n_synthetic": len(synthetic["IoU"]),
            "table1": {"real": {m: summary(real[m]) for m in METRICS},
                       "synthetic": {m: summary(synthetic[m]) for m in METRICS}},
            "table2": {m: compare(real[m], synthetic[m]) for m in METRICS},
            "values": {"real": real, "synthetic": synthetic}}


def markdown(result: dict) -> str:
    """The two tables in the papers' layout."""
    t1, t2 = result["table1"], result["table2"]
    lines = [f"Real pairs: {result['n_real']}, synthetic pairs: {result['n_synthetic']}", "",
             "| Statistic | Real IoU | Real DSC | Synthetic IoU | Synthetic DSC |", "|---|---|---|---|---|"]
    for stat in STATISTICS:
        cells = [t1[group][m][stat] for group in ("real", "synthetic") for m in METRICS]
        lines.append(f"| {stat} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines += ["", "| Statistic | IoU | DSC |", "|---|---|---|"]
    labels = {"ks_d": "KS D", "ks_p": "KS p-value", "emd": "EMD",
              "mean_difference": "mean difference (synthetic − real)"}
    for key, label in labels.items():
        lines.append(f"| {label} | {t2['IoU'][key]:.3f} | {t2['DSC'][key]:.3f} |")
    return "\n".join(lines) + "\n"


def violin_plot(real: dict[str, list[float]], synthetic: dict[str, list[float]], path: Path) -> Path:
    """Violins of IoU and DSC, real next to synthetic (the papers' Fig. 4); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from MammoSynthLogic.fileio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, metric in zip(axes, METRICS):
        data = [real[metric], synthetic[metric]]
        shown = [i for i, d in enumerate(data) if len(d) > 1]
        if shown:
            ax.violinplot([data[i] for i in shown], positions=[i + 1 for i in shown], showmedians=True)
        for i, d in enumerate(data):
            ax.scatter(np.full(len(d), i + 1.0), d, s=10, color="k", zorder=3)
        ax.set_xticks([1, 2], [f"real (n={len(data[0])})", f"synthetic (n={len(data[1])})"])
        ax.set_ylim(0, 1)
        ax.set_title(f"CC–MLO mask {metric}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
