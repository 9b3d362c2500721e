"""MAMBO generation benchmark: paper vs fast preset on one bundle set and size; counts and memory at 3840².

Prints one JSON object. Without --model it builds tiny random bundles (s = 32 for the timing run, s = 256 for the
3840² memory run), so wall times compare presets, not image quality.

    nice -n 10 python Testing/benchmarks/bench_generate.py [--model DIR] [--size 288] [--rss-steps 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seams(result, pipe, overlap: int) -> dict:
    """MAMBO Fig. 7: neighbour MSE across tile borders vs across tile middles, inside the breast, per stage."""
    import numpy as np

    from MammoSynthLogic import tiling

    out = {}
    for stage, image in (("mid", result.mid), ("full", result.image)):
        n = image.shape[0]
        tiles = tiling.grid(n, n, pipe.s, overlap)
        mask = image > 0
        border = tiling.seam_mse(image.astype(np.float64), tiles, mask=mask)
        inside = tiling.seam_mse(image.astype(np.float64), tiles, inside=True, mask=mask)
        out[stage] = {"seam_mse_border": border, "seam_mse_inside": inside, "ratio": border / max(inside, 1e-12)}
    return out


def run_preset(pipe, name: str, size: int, seed: int, images_dir: Path | None = None, global01=None) -> dict:
    """One preset; with `global01` both presets tile the same global image (stages 2 and 3 compared alone)."""
    from MammoSynthLogic.pipelines.mambo import MamboSettings, forwards, sequential_batches

    settings = MamboSettings.preset(name)
    start = time.perf_counter()
    result = pipe(size, seed, settings, global01=global01)
    wall = time.perf_counter() - start
    if images_dir is not None:
        from MammoSynthLogic.dicom_io import write_png16

        write_png16(images_dir / f"{name}-full.png", result.image)
        write_png16(images_dir / f"{name}-mid.png", result.mid)
        write_png16(images_dir / f"{name}-global.png", result.global_image)
    return {"wall_s": round(wall, 2), "unet_forwards": forwards(result.counters),
            "sequential_unet_batches": sequential_batches(result.counters), "tiles": result.tiles,
            "seams": seams(result, pipe, result.settings.overlap), "settings": result.settings.__dict__}


def sampler_check(bundle, n: int = 4, images_dir: Path | None = None) -> dict:
    """Each sampler on the (trained) global model: background fraction and neighbour-difference MSE per image.
    Trained-model images have a large zero background and smooth tissue; flat noise has neither."""
    import numpy as np

    from MammoSynthLogic.sampling import generators, make_scheduler, randn, sample, unet_predictor

    out = {}
    for kind, steps, eta in (("ddpm", 1000, 0.0), ("ddim", 50, 0.0), ("ddim", 150, 1.0), ("dpm++", 25, 0.0),
                             ("dpm++", 20, 0.0), ("dpm++", 15, 0.0)):
        gens = generators(0, [("check", i) for i in range(n)])
        s = bundle.image_size
        start = time.perf_counter()
        x = sample(unet_predictor(bundle.unet, None, chunk=n), make_scheduler(kind, bundle.scheduler_config),
                   randn((n, 1, s, s), gens), gens, steps, eta=eta)
        imgs = ((x[:, 0].numpy() + 1) / 2).clip(0, 1)
        name = f"{kind}-{steps}-eta{eta:g}"
        out[name] = {"wall_s": round(time.perf_counter() - start, 1),
                     "background_fraction": [round(float((im < 0.05).mean()), 3) for im in imgs],
                     "neighbour_mse": [round(float(np.mean(np.diff(im, axis=1) ** 2)), 5) for im in imgs],
                     "mean": round(float(imgs.mean()), 3)}
        if images_dir is not None:
            from MammoSynthLogic.dicom_io import write_png16

            write_png16(images_dir / f"global-{name}.png", np.concatenate(list(imgs), axis=1))
    return out


def rss_child(model: str, size: int, preset: str, steps: int) -> None:
    """Run in a fresh process: one generation at `size`, print peak RSS."""
    import torch

    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings, forwards

    torch.set_num_threads(1)
    pipe = MamboPipeline(*load_mambo_set([model]))
    settings = MamboSettings.preset(preset, steps=steps, global_steps=steps)
    start = time.perf_counter()
    result = pipe(size, 0, settings)
    print(json.dumps({"preset": preset, "size": size, "steps": steps, "wall_s": round(time.perf_counter() - start, 1),
                      "unet_forwards": forwards(result.counters), "tiles": result.tiles,
                      "peak_rss_mb": round(peak_rss_mb(), 1)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="folder with the three MAMBO bundles (default: tiny random ones)")
    ap.add_argument("--size", type=int, default=288)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rss-size", type=int, default=3840)
    ap.add_argument("--rss-steps", type=int, default=3, help="steps for the memory run (memory does not depend on it; "
                    "3 leaves the fast preset one step below its strength)")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--shared-global", action="store_true",
                    help="sample the global image once and give it to both presets (compares the tiled stages)")
    ap.add_argument("--images", type=Path, help="also write the generated images (PNG) here, to look at them")
    ap.add_argument("--rss-child", nargs=3, metavar=("MODEL", "SIZE", "PRESET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child[0], int(args.rss_child[1]), args.rss_child[2], args.rss_steps)

    import torch

    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings, expected_counts
    from tiny_bundles import make_tiny_mambo_set

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_generate."))
    model = args.model or str(make_tiny_mambo_set(tmp / "s32", size=32, k=3))
    pipe = MamboPipeline(*load_mambo_set([model]))
    report = {"bundles": model if args.model else "tiny random (s=32, k=3)", "size": args.size,
              "device": "cpu (1 thread)", "torch": torch.__version__}
    shared = None
    if args.shared_global:  # the presets' own global samplers can draw different breasts (or none): same input
        from MammoSynthLogic.pipelines.mambo import to01
        from MammoSynthLogic.progress import Reporter
        from MammoSynthLogic.sampling import Counter

        shared = to01(pipe.sample_global(args.seed, MamboSettings.preset("fast"), Counter(), Reporter()))
        report["global_image"] = "shared: sampled once (DPM-Solver++ 25), stages 2-3 timed"
    for name in ("fast", "paper"):
        report[name] = run_preset(pipe, name, args.size, args.seed, args.images, global01=shared)
    if args.model:
        report["sampler_check_global"] = sampler_check(pipe.global_, images_dir=args.images)
    report["speedup_fast_vs_paper"] = round(report["paper"]["wall_s"] / report["fast"]["wall_s"], 1)
    report["counts_3840_s256_k3"] = {
        "paper": expected_counts(3840, 256, 3, MamboSettings.preset("paper")),
        "fast_one_call_per_step": expected_counts(3840, 256, 3, MamboSettings.preset("fast")),
        "fast_chunk_8": expected_counts(3840, 256, 3, MamboSettings.preset("fast"), chunk=8),
        "fast_chunk_64": expected_counts(3840, 256, 3, MamboSettings.preset("fast"), chunk=64),
    }
    if not args.skip_rss:
        big = args.model or str(make_tiny_mambo_set(tmp / "s256", size=256, k=3))
        report["rss_3840"] = []
        for preset in ("fast", "paper"):
            proc = subprocess.run([sys.executable, __file__, "--rss-steps", str(args.rss_steps),
                                   "--rss-child", big, str(args.rss_size), preset],
                                  capture_output=True, text=True, check=True)
            report["rss_3840"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
