"""`mammosynth evaluate KIND`: offline metrics, one sub-command per kind of evaluation.

Each kind is a function that adds its parser to the `evaluate` sub-parsers; `EVALUATORS` lists them. A kind's run
function returns a JSON-ready dict and a Markdown text, and `write_report` writes both into `--out`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Optional

ORDER = 80


def write_report(out: Path, name: str, result: dict, markdown: str) -> dict[str, Path]:
    """`NAME.json` and `NAME.md` in `out`, written atomically."""
    from MammoSynthLogic.fileio import write_text_atomic

    paths = {"json": out / f"{name}.json", "markdown": out / f"{name}.md"}
    write_text_atomic(paths["json"], json.dumps(result, indent=2, default=str) + "\n")
    write_text_atomic(paths["markdown"], markdown)
    return paths


def finish(args: argparse.Namespace, name: str, result: dict, markdown: str,
           extra: Optional[dict[str, Path]] = None) -> int:
    """Write the report and tell the user where it and `extra` outputs are (a result line with --progress-json,
    else the table)."""
    from MammoSynthLogic.progress import emit_result

    paths = {**write_report(args.out, name, result, markdown), **(extra or {})}
    if args.progress_json:
        emit_result({"outputs": [str(p) for p in paths.values()]})
    else:
        print(markdown)
    return 0


def add_generation(kinds, parents) -> None:
    p = kinds.add_parser("generation", parents=parents, help="synthetic vs real images: FID/KID, LPIPS, MS-SSIM, KS",
                         description="Compare a folder of synthetic mammograms with a folder of real ones: FID and KID "
                         "on whole images and on full-resolution patches (random inside the breast, and ROI patches "
                         "at the same places of same-named pairs; MAMBO Table 1), LPIPS, MS-SSIM diversity (MAM-E "
                         "Table 3), and KS tests of breast area and intensity. Weights are read from local files only.")
    p.add_argument("--real", required=True, type=Path, metavar="DIR", help="real images (.dcm, .png, .nrrd)")
    p.add_argument("--synthetic", required=True, type=Path, metavar="DIR", help="synthetic images")
    p.add_argument("--features", type=Path, metavar="FILE", help="FID Inception-v3 weights (safetensors; without it "
                   "FID/KID are skipped)")
    p.add_argument("--lpips-weights", type=Path, metavar="FILE", help="LPIPS weights (safetensors; without it LPIPS "
                   "is skipped)")
    p.add_argument("--size", type=int, help="resize every prepared square to N×N first, so that both sets share a "
                   "pixel scale (default: native resolution)")
    p.add_argument("--global-size", type=int, default=256, help="side of the whole-image versions (default 256)")
    p.add_argument("--patch-size", type=int, default=256, help="side of full-resolution patches (default 256 = s)")
    p.add_argument("--patches", type=int, default=4, help="random patches per image (default 4, as MAMBO)")
    p.add_argument("--diversity-images", type=int, default=100,
                   help="images per set (a random subset) whose pairs give MS-SSIM/LPIPS diversity (default 100)")
    p.add_argument("--max-pairs", type=int, default=1000, help="at most this many of those pairs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of patch positions, pairs and KID subsets")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="writes generation.json and generation.md")
    p.set_defaults(func=run_generation)


def run_generation(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic import memory
    from MammoSynthLogic.devices import select_device
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.metrics.generation import evaluate_generation, generation_markdown
    from MammoSynthLogic.metrics.images import SummaryOptions, find_images

    for flag in ("global_size", "patch_size", "patches", "max_pairs", "diversity_images"):
        if getattr(args, flag) < 1:
            raise MammoSynthError(f"--{flag.replace('_', '-')}", "must be a positive number")
    real, synthetic = (memory.found_images([folder], find_images) for folder in (args.real, args.synthetic))
    memory.check_terms(memory.generation_terms(
        memory.ImageSet.read(real + synthetic), args.size, args.global_size, args.patch_size, args.patches,
        args.diversity_images, memory.Networks(args.features, args.lpips_weights), max(len(real), len(synthetic)),
        args.max_pairs))
    options = SummaryOptions(size=args.size, global_size=args.global_size, patch_size=args.patch_size,
                             patches=args.patches, seed=args.seed)
    result = evaluate_generation(args.real, args.synthetic, features=args.features, lpips=args.lpips_weights,
                                 options=options, max_pairs=args.max_pairs,
                                 diversity_images=args.diversity_images, reporter=reporter,
                                 device=select_device(args.device))
    return finish(args, "generation", result, generation_markdown(result))


def add_dualview(kinds, parents) -> None:
    p = kinds.add_parser("dualview", parents=parents, help="CC/MLO consistency: Otsu-mask IoU/DSC, EMD and KS",
                         description="Otsu breast masks per view, IoU and DSC between the CC and MLO masks of each "
                         "real and synthetic pair, the two distributions compared with EMD and the two-sample KS test, "
                         "a violin plot (the dual-view DDPM papers' Tables 1-2).")
    p.add_argument("--real", required=True, nargs="+", type=Path, metavar="DIR",
                   help="real DICOMs; CC/MLO pairs found by patient, study and laterality")
    p.add_argument("--synthetic", required=True, nargs="+", type=Path, metavar="DIR",
                   help="synthetic pairs (e.g. folders written by `mammosynth dualview`)")
    p.add_argument("--work-size", type=int, default=256,
                   help="side of the square frame both views are resized to before Otsu (default 256)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="writes dualview.json, dualview.md and dualview-violin.png")
    p.set_defaults(func=run_dualview)


def run_dualview(args: argparse.Namespace, reporter) -> int:
    """Pairs of both sets, Tables 1-2, the report and the violin plot."""
    from MammoSynthLogic import dualview_metrics as dm
    from MammoSynthLogic import memory
    from MammoSynthLogic.dicom_io import find_dicoms
    from MammoSynthLogic.errors import MammoSynthError

    sets = {name: getattr(args, name) for name in ("real", "synthetic")}
    memory.check_terms(memory.dualview_terms({f"--{name} {' '.join(map(str, paths))}": memory.ImageSet.read(
        find_dicoms(paths)[0]) for name, paths in sets.items()}, args.work_size))
    found = {}
    for n, name in enumerate(("real", "synthetic")):
        reporter.update("finding pairs", n, 2)
        found[name] = dm.find_pairs(getattr(args, name), args.work_size, reporter.log)
        if not found[name]:
            raise MammoSynthError(", ".join(map(str, getattr(args, name))), "no CC/MLO pair found (both views of "
                                  "one breast, same patient, study and laterality)")
    reporter.update("finding pairs", 2, 2)
    real, synthetic = dm.overlaps(found["real"]), dm.overlaps(found["synthetic"])
    result = dm.evaluate(real, synthetic)
    result["pairs"] = {name: [{"key": p["key"], "cc": p["cc"], "mlo": p["mlo"]} for p in pairs]
                       for name, pairs in found.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    plot = dm.violin_plot(real, synthetic, args.out / "dualview-violin.png")
    return finish(args, "dualview", result, dm.markdown(result), {"plot": plot})


def add_realism(kinds, parents) -> None:
    p = kinds.add_parser("realism", parents=parents, help="texture (power-law beta), shape, intensity, tile seams",
                         description="Compare real and synthetic mammograms at one pixel scale without network "
                         "weights: the power-law exponent beta of the breast texture's power spectrum (Burgess et al. "
                         "2001), breast area fraction and extents, the intensity histogram inside the breast (KS), "
                         "tile-seam visibility per MAMBO stage, and a radial power-spectrum plot. With --masks, also "
                         "beta inside each inpainted mask vs the tissue around it. Works on any output: generate, "
                         "upscale, dualview, text2mammo, inpaint.")
    p.add_argument("real", nargs="+", type=Path, metavar="REAL", help="real images or folders (.dcm, .png, .nrrd)")
    p.add_argument("--synthetic", required=True, nargs="+", type=Path, metavar="SYN", help="synthetic images or folders")
    p.add_argument("--size", type=int, default=1024, help="side every prepared square is resized to (default 1024, "
                   "the embedded models' default size)")
    p.add_argument("--tile-size", type=int, default=64, help="MAMBO tile side s for the seam measure when a synthetic "
                   "image does not record it in its provenance (default 64, the embedded models)")
    p.add_argument("--k", type=int, default=4, help="MAMBO scale factor k, likewise (default 4)")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels, likewise (default s/8)")
    p.add_argument("--masks", nargs="+", type=Path, metavar="MASK", help="inpainting masks (NRRD, PNG, DICOM SEG), one "
                   "per synthetic DICOM in the same order: beta inside the mask vs around it, at native resolution")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="writes realism.json, realism.md and realism-spectra.png")
    p.set_defaults(func=run_realism)


def _images(paths: list[Path]) -> list[Path]:
    """Files as given, folders searched recursively."""
    from MammoSynthLogic.metrics.images import find_images

    return [f for p in paths for f in (find_images(p) if p.is_dir() else [p])]


def run_realism(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic import memory
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.metrics import realism

    if args.size < 2 * realism.MIN_ROI or args.tile_size < 1 or args.k < 1:
        raise MammoSynthError("--size/--tile-size/--k", f"--size must be at least {2 * realism.MIN_ROI}, the others "
                              "positive")
    real, synthetic = _images(args.real), _images(args.synthetic)
    if args.masks and len(args.masks) != len(synthetic):
        raise MammoSynthError("--masks", f"{len(args.masks)} masks for {len(synthetic)} synthetic images; give one "
                              "per image, in the same order")
    memory.check_terms(memory.realism_terms(memory.ImageSet.read(real + synthetic), args.size))
    options = realism.RealismOptions(size=args.size, tile_size=args.tile_size, k=args.k, overlap=args.overlap)
    result, real_measured, synthetic_measured = realism.compare(real, synthetic, options, reporter)
    if args.masks:
        from MammoSynthLogic.breast_mask import breast_region
        from MammoSynthLogic.dicom_io import read_mammogram
        from MammoSynthLogic.masks import read_mask

        result["lesions"] = []
        for path, mask_path in zip(synthetic, args.masks):
            image = read_mammogram(path)
            lesion = read_mask(mask_path, image)
            texture = realism.lesion_texture(image.pixels, lesion, breast_region(image.pixels))
            result["lesions"].append({"name": path.name, "mask": str(mask_path), **texture})
    args.out.mkdir(parents=True, exist_ok=True)
    plot = realism.plot_report(real_measured, synthetic_measured, args.out / "realism-spectra.png")
    return finish(args, "realism", result, realism.realism_markdown(result), {"plot": plot})


EVALUATORS: dict[str, Callable] = {
    "generation": add_generation,
    "dualview": add_dualview,
    "realism": add_realism,
}


def register(sub, parents) -> None:
    p = sub.add_parser("evaluate", help="offline metrics (FID/KID, LPIPS, MS-SSIM, KS, ...)",
                       description="Offline evaluation; every weights file is local. Kinds: " + ", ".join(EVALUATORS))
    kinds = p.add_subparsers(dest="evaluation", metavar="KIND")
    kinds.required = True
    for add in EVALUATORS.values():
        add(kinds, parents)
