"""`evaluate generation`: a synthetic image set against a real one.

- FID and KID on whole images (the prepared square at `global_size`²; MAMBO's "gl. context" row), on random
  full-resolution patches inside the breast mask (MAMBO Table 1 "Random"), and on ROI patches: the same places in
  paired images, a synthetic file pairing with the real file of the same name (MAMBO Table 1 "ROI", where the
  synthetic patch was generated with the real image's context, e.g. `mammosynth upscale`). The FID between two
  halves of the real set is reported as the lower bound MAMBO gives.
- LPIPS between paired ROI patches, and within each set (diversity).
- MS-SSIM diversity: mean pairwise MS-SSIM within each set (MAM-E Table 3; lower = more diverse).
- Breast-area fraction, mean breast intensity and breast pixel intensities compared by two-sample KS.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Union

import numpy as np
from torch import nn

from MammoSynthLogic.metrics import distances
from MammoSynthLogic.metrics.features import FeatureSpec, as_batch, extract, feature_model
from MammoSynthLogic.metrics.images import Summary, SummaryOptions, find_images, read_pixels, summarize
from MammoSynthLogic.progress import Reporter

NO_FEATURES = ("no --features given: pass the FID Inception weights as a local safetensors file "
               "(docs/metrics.md says where to get and how to convert them)")
NO_LPIPS = "no --lpips-weights given (docs/metrics.md says where to get and how to convert them)"
MSSSIM_MIN_SIDE = 161  # 5 scales of an 11-px window


@dataclasses.dataclass
class SetStats:
    """What one image set contributes to the metrics, accumulated image by image (full images are never kept)."""

    areas: list[float] = dataclasses.field(default_factory=list)
    mean_intensities: list[float] = dataclasses.field(default_factory=list)
    intensities: list[np.ndarray] = dataclasses.field(default_factory=list)
    global_features: list[np.ndarray] = dataclasses.field(default_factory=list)
    patch_features: list[np.ndarray] = dataclasses.field(default_factory=list)
    thumbs: list[np.ndarray] = dataclasses.field(default_factory=list)  # the diversity subset only

    def add(self, s: Summary, model: Optional[nn.Module], keep_thumb: bool) -> Optional[np.ndarray]:
        """Record one summary; returns its patch features (the ROI metrics reuse them)."""
        self.areas.append(s.area)
        self.mean_intensities.append(s.mean_intensity)
        self.intensities.append(s.intensities)
        if keep_thumb:
            self.thumbs.append(s.thumb)
        if model is None:
            return None
        patch_features = extract(model, list(s.patches))
        self.global_features.append(extract(model, [s.thumb])[0])
        self.patch_features.append(patch_features)
        return patch_features


@dataclasses.dataclass
class RoiStats:
    """Paired patches at the same places of a real image and the synthetic image of the same name."""

    pairs: int = 0
    real_features: list[np.ndarray] = dataclasses.field(default_factory=list)
    synthetic_features: list[np.ndarray] = dataclasses.field(default_factory=list)
    lpips: list[np.ndarray] = dataclasses.field(default_factory=list)


def diversity_subset(n: int, size: int, seed: int) -> set[int]:
    """Indices of the images whose whole-image versions are kept for the within-set diversity metrics."""
    return set(np.random.default_rng([seed, n]).permutation(n)[:size].tolist())


def feature_distances(real: Sequence[np.ndarray], synthetic: Sequence[np.ndarray], seed: int) -> dict:
    """FID, KID and the real split-half FID of two feature sets (rows = samples)."""
    if len(real) < 2 or len(synthetic) < 2:
        return {"skipped": f"FID needs at least 2 samples in each set ({len(real)} real, {len(synthetic)} synthetic)"}
    fr, fs = np.stack(real), np.stack(synthetic)
    kid_mean, kid_std = distances.kid(fr, fs, seed=seed)
    out = {"fid": distances.fid(fr, fs), "kid_mean": kid_mean, "kid_std": kid_std,
           "n_real": len(fr), "n_synthetic": len(fs), "feature_dims": int(fr.shape[1])}
    if len(fr) >= 4:
        out["fid_real_split"] = distances.split_fid(fr, seed)
    return out


def lpips_pairs(model: nn.Module, a: Sequence[np.ndarray], b: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """LPIPS of image pairs (a[i], b[i])."""
    import torch

    device = next(model.parameters(), torch.empty(0)).device
    values = [np.zeros(0, np.float32)]
    with torch.no_grad():
        for i in range(0, len(a), batch):
            x, y = as_batch(a[i:i + batch]).to(device), as_batch(b[i:i + batch]).to(device)
            values.append(model(x, y).reshape(-1).cpu().numpy())
    return np.concatenate(values)


def _spread_of(values: np.ndarray) -> Optional[dict]:
    return {"mean": float(values.mean()), "std": float(values.std()), "pairs": int(len(values))} if len(values) else None


def lpips_diversity(model: nn.Module, images: Sequence[np.ndarray], max_pairs: int, seed: int) -> Optional[dict]:
    pairs = distances.random_pairs(len(images), max_pairs, seed)
    return _spread_of(lpips_pairs(model, [images[i] for i, _ in pairs], [images[j] for _, j in pairs]))


def _fid_section(model: Optional[nn.Module], real: SetStats, synthetic: SetStats, roi: RoiStats, seed: int) -> dict:
    if model is None:
        return {key: {"skipped": NO_FEATURES} for key in ("global", "patch_random", "patch_roi")}
    return {
        "global": feature_distances(real.global_features, synthetic.global_features, seed),
        "patch_random": feature_distances([f for fs in real.patch_features for f in fs],
                                          [f for fs in synthetic.patch_features for f in fs], seed),
        "patch_roi": (feature_distances([f for fs in roi.real_features for f in fs],
                                        [f for fs in roi.synthetic_features for f in fs], seed) if roi.pairs else
                      {"skipped": "no synthetic file has the name of a real one (ROI patches compare the same places "
                                  "in paired images, e.g. `mammosynth upscale` outputs named like their sources)"}),
    }


def _lpips_section(model: Optional[nn.Module], real: SetStats, synthetic: SetStats, roi: RoiStats,
                   max_pairs: int, seed: int) -> dict:
    if model is None:
        return {"skipped": NO_LPIPS}
    return {"roi_pairs": _spread_of(np.concatenate([np.zeros(0, np.float32), *roi.lpips])),
            "diversity_synthetic": lpips_diversity(model, synthetic.thumbs, max_pairs, seed),
            "diversity_real": lpips_diversity(model, real.thumbs, max_pairs, seed)}


def _ms_ssim_section(real: SetStats, synthetic: SetStats, options: SummaryOptions, max_pairs: int) -> dict:
    if options.global_size < MSSSIM_MIN_SIDE:
        return {"skipped": f"MS-SSIM needs images of at least {MSSSIM_MIN_SIDE} px a side (--global-size)"}
    return {"synthetic": distances.pairwise_ms_ssim(synthetic.thumbs, max_pairs, options.seed),
            "real": distances.pairwise_ms_ssim(real.thumbs, max_pairs, options.seed)}


def _caveats(n_real: int, n_synthetic: int, feature_info: dict, dims: Optional[int]) -> list[str]:
    notes = []
    if dims is not None and min(n_real, n_synthetic) < dims:
        notes.append(f"FID from {min(n_real, n_synthetic)} images with {dims}-d features: the covariances are "
                     "rank-deficient and FID is biased upwards at small N; compare only values computed with the same "
                     "N and extractor (MAMBO used thousands of images and ~5000 patches)")
    if feature_info.get("kind") == "module given by the caller":
        notes.append(f"features from {feature_info['name']}, not the FID Inception: values are not comparable with "
                     "published FIDs")
    notes.append("KS on pooled pixel intensities has a huge sample: read the statistic D, not the p-value")
    return notes


def evaluate_generation(real: Union[str, os.PathLike], synthetic: Union[str, os.PathLike], *,
                        features: FeatureSpec = None, lpips: Union[str, os.PathLike, nn.Module, None] = None,
                        options: SummaryOptions = SummaryOptions(), max_pairs: int = 1000,
                        diversity_images: int = 100, reporter: Optional[Reporter] = None, device: str = "cpu") -> dict:
    """Every generation metric of a synthetic folder against a real folder, as one JSON-ready dict.

    Images stream through one at a time (a real image, then the synthetic image of the same name if there is one):
    memory holds features, statistics and `diversity_images` small whole-image versions per set, whatever N is.
    """
    from MammoSynthLogic.metrics.lpips import load_lpips

    reporter = reporter or Reporter()
    model, feature_info = feature_model(features)  # weights first: a bad path fails before any image is read
    lpips_model = lpips if lpips is None or isinstance(lpips, nn.Module) else load_lpips(lpips)
    for m in (model, lpips_model):
        if m is not None:
            m.to(device)
    real_files, synthetic_files = find_images(real), find_images(synthetic)
    partner_of = {p.stem: j for j, p in enumerate(synthetic_files)}
    keep = [diversity_subset(len(files), diversity_images, options.seed) for files in (real_files, synthetic_files)]
    real_stats, synth_stats, roi = SetStats(), SetStats(), RoiStats()
    total, done = len(real_files) + len(synthetic_files), 0
    synth_done: set[int] = set()

    def add_synthetic(j: int, partner: Optional[Summary] = None, partner_features: Optional[np.ndarray] = None):
        s = summarize(read_pixels(synthetic_files[j]), synthetic_files[j].stem, options, (1, j),
                      None if partner is None else partner.centres)
        synth_stats.add(s, model, j in keep[1])
        synth_done.add(j)
        if partner is not None:
            roi.pairs += 1
            if model is not None:
                roi.real_features.append(partner_features)
                roi.synthetic_features.append(extract(model, list(s.roi)))
            if lpips_model is not None:
                roi.lpips.append(lpips_pairs(lpips_model, list(partner.patches), list(s.roi)))

    for i, path in enumerate(real_files):
        r = summarize(read_pixels(path), path.stem, options, (0, i))
        patch_features = real_stats.add(r, model, i in keep[0])
        done += 1
        if path.stem in partner_of:
            add_synthetic(partner_of[path.stem], r, patch_features)
            done += 1
        reporter.update("images", done, total)
    for j in range(len(synthetic_files)):
        if j not in synth_done:
            add_synthetic(j)
            done += 1
            reporter.update("images", done, total)

    reporter.update("metrics", 0, 3)
    fid_section = _fid_section(model, real_stats, synth_stats, roi, options.seed)
    reporter.update("metrics", 1, 3)
    lpips_section = _lpips_section(lpips_model, real_stats, synth_stats, roi, max_pairs, options.seed)
    ms_ssim_section = _ms_ssim_section(real_stats, synth_stats, options, max_pairs)
    reporter.update("metrics", 2, 3)
    ks_section = {
        "breast_area": distances.ks(real_stats.areas, synth_stats.areas),
        "mean_intensity": distances.ks(real_stats.mean_intensities, synth_stats.mean_intensities),
        "pixel_intensity": distances.ks(np.concatenate(real_stats.intensities),
                                        np.concatenate(synth_stats.intensities)),
    }
    reporter.update("metrics", 3, 3)
    return {
        "evaluation": "generation",
        "real": {"folder": str(real), "images": len(real_files)},
        "synthetic": {"folder": str(synthetic), "images": len(synthetic_files), "paired_with_real": roi.pairs},
        "settings": {**dataclasses.asdict(options), "max_pairs": max_pairs, "diversity_images": diversity_images},
        "feature_extractor": feature_info,
        "lpips_net": getattr(lpips_model, "net_name", None if lpips_model is None else type(lpips_model).__name__),
        "fid": fid_section, "lpips": lpips_section, "ms_ssim": ms_ssim_section, "ks": ks_section,
        "caveats": _caveats(len(real_files), len(synthetic_files), feature_info,
                            fid_section["global"].get("feature_dims")),
    }


def _num(x: Optional[float], digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _fid_rows(label: str, d: dict) -> list[tuple[str, str, str]]:
    if "skipped" in d:
        return [(f"FID / KID {label}", "skipped", d["skipped"])]
    return [(f"FID {label}", _num(d["fid"]), f"{d['n_real']} real vs {d['n_synthetic']} synthetic; real split-half "
                                             f"{_num(d.get('fid_real_split'))} (lower bound)"),
            (f"KID {label}", f"{_num(d['kid_mean'])} ± {_num(d['kid_std'], 2)}", "cubic-kernel MMD², mean ± std")]


def _spread(d: Optional[dict]) -> str:
    return "–" if d is None else f"{d['mean']:.3f} ± {d['std']:.3f} ({d['pairs']} pairs)"


def generation_markdown(result: dict) -> str:
    """The result as a Markdown table with a short header and the caveats."""
    s = result["settings"]
    rows: list[tuple[str, str, str]] = []
    rows += _fid_rows(f"whole image ({s['global_size']}²)", result["fid"]["global"])
    rows += _fid_rows(f"random patches ({s['patch_size']}², {s['patches']}/image)", result["fid"]["patch_random"])
    rows += _fid_rows(f"ROI patches ({s['patch_size']}², paired)", result["fid"]["patch_roi"])
    lp = result["lpips"]
    if "skipped" in lp:
        rows.append(("LPIPS", "skipped", lp["skipped"]))
    else:
        rows += [("LPIPS ROI pairs", _spread(lp["roi_pairs"]), "real vs synthetic patch at the same place"),
                 ("LPIPS diversity, synthetic", _spread(lp["diversity_synthetic"]), "higher = more diverse"),
                 ("LPIPS diversity, real", _spread(lp["diversity_real"]), "reference")]
    ms = result["ms_ssim"]
    if "skipped" in ms:
        rows.append(("MS-SSIM diversity", "skipped", ms["skipped"]))
    else:
        rows += [("MS-SSIM diversity, synthetic", _spread(ms["synthetic"]), "MAM-E Table 3; lower = more diverse"),
                 ("MS-SSIM diversity, real", _spread(ms["real"]), "reference")]
    for key, label in (("breast_area", "breast-area fraction"), ("mean_intensity", "mean breast intensity"),
                       ("pixel_intensity", "breast pixel intensities")):
        k = result["ks"][key]
        rows.append((f"KS {label}", "–", "no breast pixels in one of the sets") if k is None else
                    (f"KS {label}", f"D = {k['statistic']:.3f}, p = {k['pvalue']:.3g}",
                     f"mean real {k['real_mean']:.3f}, synthetic {k['synthetic_mean']:.3f}"))
    fe = result["feature_extractor"]
    lines = ["# Generation metrics", "",
             f"- real: `{result['real']['folder']}` ({result['real']['images']} images)",
             f"- synthetic: `{result['synthetic']['folder']}` ({result['synthetic']['images']} images, "
             f"{result['synthetic']['paired_with_real']} paired with a real one)",
             f"- features: {fe.get('name') or 'none'}; LPIPS: {result['lpips_net'] or 'none'}",
             f"- image side: {s['size'] or 'native'}; diversity from up to {s['diversity_images']} images per set; "
             f"seed {s['seed']}", "",
             "| metric | value | note |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "Caveats:", *[f"- {c}" for c in result["caveats"]], ""]
    return "\n".join(lines)
