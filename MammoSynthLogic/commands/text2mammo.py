"""`mammosynth text2mammo`: MAM-E text-conditioned synthesis with a fine-tuned Stable Diffusion model."""
from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, finish, new_study, output_options

ORDER = 50
OUT_SUFFIXES = (".dcm", ".dicom", ".png", ".nrrd")


def sd_options(p: argparse.ArgumentParser, guidance: float, steps_help: str) -> None:
    """Text and sampling options shared by text2mammo and inpaint (values checked by SDSettings)."""
    p.add_argument("--negative-prompt", default="", metavar="TEXT", help="what the image should not look like")
    p.add_argument("--guidance", type=float, default=guidance,
                   help=f"classifier-free guidance scale (default {guidance:g}; MAM-E uses 4-6, 1 = off)")
    p.add_argument("--steps", type=int, help=steps_help)
    p.add_argument("--sampler", default="dpm++", metavar="NAME",
                   help="scheduler: dpm++ (default: DPM-Solver++ multistep, as MAM-E), ddim, ddpm, euler or unipc")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the output)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="output .dcm, .png (16-bit) or .nrrd")


def register(sub, parents) -> None:
    from MammoSynthLogic.prompts import AREAS, VIEWS

    p = sub.add_parser("text2mammo", parents=parents, help="MAM-E text-conditioned synthetic mammogram",
                       description="Generate a synthetic mammogram with a Stable Diffusion model fine-tuned on "
                       "mammograms (MAM-E) from a prompt built as 'a {vendor} mammogram in {view} view with {area} "
                       "area and {density} density' (unknown parts left out), or from --prompt. DPM-Solver++ 24 "
                       "steps, guidance 5. The output is marked synthetic and records the prompt, seed and every "
                       "parameter.")
    p.add_argument("--model", metavar="DIR_OR_HUB_ID",
                   help="a diffusers Stable Diffusion folder or hub id, e.g. Likalto4/fusion_healthy (default: the "
                   "embedded mame-text bundle)")
    p.add_argument("--like", type=Path, metavar="SRC", help="take vendor, view, laterality and breast area from a "
                   "real mammogram (the options below win)")
    p.add_argument("--vendor", help="manufacturer, e.g. siemens or hologic")
    p.add_argument("--view", choices=VIEWS, type=str.upper)
    p.add_argument("--laterality", choices=["L", "R"], type=str.upper,
                   help="L (default): as generated, chest wall on the left; R: mirrored")
    p.add_argument("--density", help="BI-RADS density A, B, C, D (1-4) or 'very low', 'low', 'high', 'very high'")
    p.add_argument("--area", choices=AREAS, type=str.lower, help="breast area: small, medium or big")
    p.add_argument("--prompt", metavar="TEXT", help="the whole prompt (overrides the built one)")
    p.add_argument("--size", type=int, help="side of the square output (default: the model's, 512 for MAM-E); a "
                   "multiple of 8")
    sd_options(p, 5.0, "denoising steps (default 24)")
    output_options(p)
    p.set_defaults(func=run)


def check_out(out: Path, *inputs: Path) -> None:
    """Fail before any work on an output type we cannot write or an output that would replace an input."""
    from MammoSynthLogic.errors import MammoSynthError

    if out.suffix.lower() not in OUT_SUFFIXES:
        raise MammoSynthError(out, "unknown output type: use a .dcm, .png or .nrrd file name")
    if any(out.resolve() == Path(p).resolve() for p in inputs):
        raise MammoSynthError(out, "would overwrite an input; choose another output file")


def run(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.devices import select_device
    from MammoSynthLogic.dicom_io import read_mammogram, write_image
    from MammoSynthLogic.memory import check_fits, sd_bytes
    from MammoSynthLogic.pipelines.text2mammo import SDSettings, text2mammo
    from MammoSynthLogic.prompts import build_prompt, prompt_for_image
    from MammoSynthLogic.sd_bundles import load_sd_bundle

    check_out(args.out, *([args.like] if args.like else []))
    study = new_study(args)
    check_send(args)
    like = read_mammogram(args.like) if args.like else None
    choices = dict(vendor=args.vendor, view=args.view, area=args.area, density=args.density)
    prompt = args.prompt or (prompt_for_image(like, **choices) if like else build_prompt(**choices))
    view = args.view or (like.view if like and like.view in ("CC", "MLO") else None)
    laterality = args.laterality or (like.laterality if like and like.laterality else "L")
    settings = SDSettings(prompt=prompt, negative_prompt=args.negative_prompt, guidance=args.guidance,
                          steps=args.steps or 24, sampler=args.sampler)
    bundle = load_sd_bundle(args.model, "mame-text", device=select_device(args.device))
    check_fits(f"--size {args.size or bundle.image_size}", sd_bytes(bundle.pipeline, args.size or bundle.image_size))
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.time()
    pixels = text2mammo(bundle, settings, seed, size=args.size, laterality=laterality, reporter=reporter)
    provenance = {"pipeline": "mame-text2mammo", "command": "text2mammo", "seed": seed, "prompt": settings.prompt,
                  "negative_prompt": settings.negative_prompt, "guidance": settings.guidance, "steps": settings.steps,
                  "sampler": settings.sampler, "size": pixels.shape[0], "laterality": laterality, "view": view,
                  "choices": choices, "device": bundle.pipeline.device.type, "model": bundle.describe(),
                  "seconds": round(time.time() - start, 1)}
    path = write_image(args.out, pixels, provenance=provenance, view=view, laterality=laterality,
                       attributes={"ViewPosition": view} if view else None,
                       breast_side="left" if laterality == "L" else "right",
                       study=study, series_description=f"SYNTHETIC MAM-E seed {seed}")
    return finish(args, [path], seed, reporter)
