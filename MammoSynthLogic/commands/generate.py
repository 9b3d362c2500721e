"""`mammosynth generate` and `mammosynth upscale`: MAMBO full-resolution synthesis and super-resolution."""
from __future__ import annotations

import argparse
import dataclasses
import secrets
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, finish, new_study, output_options
from MammoSynthLogic.memory import check_fits, check_mambo, mambo_bytes, source_bytes

ORDER = 20


def sampling_options(p: argparse.ArgumentParser) -> None:
    """--model and the sampling options shared by generate, upscale and batch-generate."""
    p.add_argument("--model", nargs="+", metavar="DIR_OR_HUB_ID",
                   help="a folder (or hub id) holding mambo-global, mambo-local and mambo-patch bundles, or the three "
                   "bundles (default: the embedded bundles in Resources/models)")
    p.add_argument("--preset", choices=["fast", "paper"], default="fast",
                   help="fast (default): parallel tiling with blended predictions, tiles started from the previous stage "
                   "(strength 0.6: 12 of 20 DPM-Solver++ steps; the global image: 25 SDE-DPM-Solver++ steps), background "
                   "skip; paper: MAMBO's code, DDIM 150 steps (eta 1 for tiles), tiles one after another in row order")
    p.add_argument("--steps", type=int, help="denoising steps per tile stage (and the global image)")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm++", "sde-dpm++"], help="override the preset's scheduler")
    p.add_argument("--tiling", choices=["parallel", "wavefront", "sequential"], help="override the preset's tiling")
    p.add_argument("--overlap", type=int, help="tile overlap in pixels (default s/8 = 32 at s = 256)")
    p.add_argument("--strength", type=float, help="tile stages start from the previous stage upsampled, noised to "
                   "strength·T (fast: 0.6, fewer steps, the coarse image kept); 1 = from pure noise (paper)")
    p.add_argument("--batch", type=int, help="tiles per U-Net call (memory bound; results do not depend on it)")
    p.add_argument("--compile", action="store_true", default=None,
                   help="CUDA only: U-Net calls through torch.compile with CUDA graphs (mode reduce-overhead); "
                   "off by default, no effect on CPU/MPS")


def register(sub, parents) -> None:
    p = sub.add_parser("generate", parents=parents, help="MAMBO full-resolution synthetic mammogram",
                       description="Generate a synthetic full-resolution mammogram with MAMBO's three diffusion models: "
                       "a global s×s image, the mid-resolution image in tiles, the full-resolution image in patches. "
                       "The output is marked synthetic and records the models, seed and every parameter.")
    p.add_argument("--size", type=int, help="side of the square output in pixels (default: from the bundles, s·k²)")
    p.add_argument("--laterality", choices=["L", "R"], default="L",
                   help="L (default): chest wall on the left as generated; R: mirrored, chest wall on the right")
    sampling_options(p)
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the output)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output .dcm, .png (16-bit) or .nrrd")
    output_options(p)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("upscale", parents=parents, help="MAMBO super-resolution of a real mammogram",
                       description="Prepare a real mammogram (breast on the left, square), use its s×s version as the "
                       "global context, generate the mid- and full-resolution images and map the result back to the "
                       "source frame. The output is a synthetic image (new patient identity) with provenance; the "
                       "source is cleaned outside the breast first, so its burned-in labels do not reach the result.")
    p.add_argument("source", type=Path, metavar="SRC")
    p.add_argument("--size", type=int, help="side of the square the models work at (default: the full size the "
                   "bundles were trained for, s·k² unless the manifest says); the result is resized back to the source")
    sampling_options(p)
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the output)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output .dcm, .png (16-bit) or .nrrd")
    output_options(p)
    p.set_defaults(func=run_upscale)


def _settings(args):
    from MammoSynthLogic.pipelines.mambo import MamboSettings

    steps = args.steps
    return MamboSettings.preset(args.preset, steps=steps, global_steps=steps, sampler=args.sampler,
                                global_sampler=args.sampler, tiling=args.tiling, overlap=args.overlap, chunk=args.batch,
                                strength=args.strength, compile=args.compile)


def _pipeline(args):
    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.devices import select_device
    from MammoSynthLogic.pipelines.mambo import MamboPipeline

    device = select_device(args.device)
    return MamboPipeline(*load_mambo_set(args.model, device=device), device=device)


def _provenance(command: str, pipe, seed: int, result, seconds: float, **extra) -> dict:
    from MammoSynthLogic.pipelines.mambo import forwards, sequential_batches

    return {"pipeline": "mambo", "command": command, "seed": seed, "device": pipe.device, "s": pipe.s, "k": pipe.k,
            "settings": dataclasses.asdict(result.settings), "seconds": round(seconds, 1),
            "models": [b.describe() for b in (pipe.global_, pipe.local, pipe.patch)],
            "tiles": {k: list(v) for k, v in result.tiles.items()},
            "unet_forwards": forwards(result.counters), "unet_batches": sequential_batches(result.counters), **extra}


def run_generate(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.dicom_io import write_image

    settings = _settings(args)
    study = new_study(args)
    check_send(args)
    if args.size:
        check_fits(f"--size {args.size}", mambo_bytes(args.size))
    pipe = _pipeline(args)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    size = args.size or pipe.default_size()
    check_mambo(size, pipe, settings.chunk, pipe.device)
    start = time.time()
    result = pipe(size, seed, settings, reporter)
    provenance = _provenance("generate", pipe, seed, result, time.time() - start, size=size,
                             laterality=args.laterality)
    # MAMBO images have the chest wall on the left: a left breast as stored; mirrored for a right one.
    pixels = result.image if args.laterality == "L" else result.image[:, ::-1]
    path = write_image(args.out, pixels, provenance=provenance, laterality=args.laterality,
                       breast_side="left" if args.laterality == "L" else "right", study=study,
                       series_description=f"SYNTHETIC MAMBO {size}px seed {seed}")
    return finish(args, [path], seed, reporter)


def run_upscale(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.deidentify import clean_image
    from MammoSynthLogic.dicom_io import read_mammogram, write_image
    from MammoSynthLogic.preparation import prepare, resize

    settings = _settings(args)
    study = new_study(args)
    check_send(args)
    if args.size:
        check_fits(f"--size {args.size}", mambo_bytes(args.size))
    image = clean_image(read_mammogram(args.source))
    prepared = prepare(image)
    pipe = _pipeline(args)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.time()
    size = args.size or pipe.default_size()
    check_mambo(size, pipe, settings.chunk, pipe.device, extra=source_bytes(image.rows, image.columns))
    work = resize(prepared.pixels, (size, size))
    result = pipe.upscale(work, seed, settings, reporter)
    pixels = prepared.transform.to_source(result.image)
    provenance = _provenance("upscale", pipe, seed, result, time.time() - start,
                             size=size, transform=prepared.transform.to_json())
    path = write_image(args.out, pixels, provenance=provenance, source=image, breast_side=prepared.breast_side,
                       study=study, series_description=f"SYNTHETIC MAMBO super-resolution seed {seed}")
    return finish(args, [path], seed, reporter)
