"""Anomaly-map evaluation harness: synthetic masses of controlled size and contrast inserted into the real images.

Reports IoU per lesion-size bucket at the default λ (MAMBO Table 5 layout: buckets by area in pixels at the
model's working size) and the mean IoU for λ from 300 to 900 (Table 7 layout), as JSON and a PNG plot.

    python Testing/benchmarks/eval_anomaly.py [--model DIR] [--level global|native] [--out DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import real_mammogram_paths  # noqa: E402

from MammoSynthLogic.anomaly import AnomalySettings, insert_mass, iou  # noqa: E402
from MammoSynthLogic.breast_mask import breast_mask  # noqa: E402
from MammoSynthLogic.commands.anomaly import _bundles  # noqa: E402
from MammoSynthLogic.dicom_io import read_mammogram  # noqa: E402
from MammoSynthLogic.pipelines.anomaly import AnomalyPipeline  # noqa: E402
from MammoSynthLogic.preparation import prepare  # noqa: E402

# MAMBO Table 5 bucket medians are areas in pixels at 256²; as radii they are these fractions of the image side.
TABLE5_AREAS_256 = (64, 128, 222, 521, 951, 2187)
RADIUS_FRACTIONS = tuple(float(np.sqrt(a / np.pi) / 256) for a in TABLE5_AREAS_256)
LAMBDAS = (300, 400, 500, 600, 700, 800, 900)


def masses(image, rng: np.random.Generator, contrast: float):
    """One inserted mass per size bucket, centred on a random pixel well inside the breast."""
    inner = breast_mask(image.pixels)
    side = max(image.rows, image.columns)
    ys, xs = np.nonzero(inner)
    for fraction in RADIUS_FRACTIONS:
        radius = fraction * side
        # keep the whole mass inside the breast: centre at least a radius from the mask edge
        deep = ndimage.distance_transform_edt(inner[::8, ::8]) * 8 > radius * 1.2
        cand = np.argwhere(deep) * 8
        y, x = cand[rng.integers(len(cand))] if len(cand) else (ys[len(ys) // 2], xs[len(xs) // 2])
        pixels, truth = insert_mass(image.pixels, (int(y), int(x)), radius, contrast, rng)
        yield fraction, pixels, truth


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+")
    parser.add_argument("--level", default="global", choices=["global", "native"])
    parser.add_argument("--contrast", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--lambdas", type=int, nargs="+", default=list(LAMBDAS), help="λ sweep (Table 7)")
    parser.add_argument("--table5-lambda", type=int, default=700, help="λ of the size buckets (Table 5)")
    parser.add_argument("--out", type=Path, default=Path("out/eval-anomaly"))
    args = parser.parse_args()
    lambdas = sorted(set(args.lambdas) | {args.table5_lambda})

    import torch

    torch.set_grad_enabled(False)
    pipe = AnomalyPipeline(*_bundles(args.model, args.level, "cpu"), device="cpu")
    working = pipe.s if args.level == "global" else int(pipe.patch.manifest.get("full_size", pipe.s))
    rng = np.random.default_rng(0)
    per_lambda: dict[int, list[float]] = {lam: [] for lam in lambdas}
    per_bucket: dict[float, list[float]] = {f: [] for f in RADIUS_FRACTIONS}
    clean_pixels = []
    start = time.time()
    for path in real_mammogram_paths()[: args.images]:
        image = read_mammogram(path)
        # The image as it is: the map should stay (nearly) empty where nothing was inserted.
        clean = pipe(prepare(image), AnomalySettings(lam=args.table5_lambda, steps=args.steps, draws=args.draws,
                                                     level=args.level), 0)
        clean_pixels.append(float(clean.labels.mean()))
        for fraction, pixels, truth in masses(image, rng, args.contrast):
            prepared = prepare(dataclasses.replace(image, pixels=pixels))
            for lam in lambdas:
                result = pipe(prepared, AnomalySettings(lam=lam, steps=args.steps, draws=args.draws, level=args.level), 1)
                score = iou(result.labels, truth)
                per_lambda[lam].append(score)
                if lam == args.table5_lambda:
                    per_bucket[fraction].append(score)
    report = {
        "level": args.level, "working_size": working, "contrast": args.contrast, "steps": args.steps, "draws": args.draws,
        "images": args.images, "masses_per_lambda": len(per_lambda[args.table5_lambda]),
        "table5_lambda": args.table5_lambda, "seconds": round(time.time() - start, 1),
        "model": pipe.global_.describe(),
        "table5_iou_by_area": {
            "area_px_at_256": list(TABLE5_AREAS_256),
            "area_px_at_working_size": [round(np.pi * (f * working) ** 2, 1) for f in RADIUS_FRACTIONS],
            "iou": [round(float(np.mean(per_bucket[f])), 3) for f in RADIUS_FRACTIONS],
        },
        "table7_iou_by_lambda": {"lambda": lambdas, "iou": [round(float(np.mean(per_lambda[l])), 3) for l in lambdas]},
        "label_fraction_without_mass": round(float(np.mean(clean_pixels)), 4),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "anomaly_eval.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out / "anomaly_eval.png")
    print(json.dumps(report, indent=2))
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    t5 = report["table5_iou_by_area"]
    a.semilogx(t5["area_px_at_256"], t5["iou"], "o-", label="mammosynth (embedded)")
    a.semilogx(t5["area_px_at_256"], [0.019, 0.069, 0.125, 0.280, 0.423, 0.393], "s--", label="MAMBO Table 5")
    a.set_xlabel("lesion area (pixels at 256²)")
    a.set_ylabel("IoU")
    a.set_title(f"IoU by lesion size (λ = {report['table5_lambda']}, {report['level']})")
    a.legend()
    t7 = report["table7_iou_by_lambda"]
    b.plot(t7["lambda"], t7["iou"], "o-", label="mammosynth (embedded)")
    b.plot(LAMBDAS, [0.082, 0.139, 0.157, 0.198, 0.216, 0.200, 0.207], "s--", label="MAMBO Table 7")
    b.set_xlabel("λ (noising steps of 1000)")
    b.set_ylabel("mean IoU")
    b.set_title("IoU by λ")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
