"""`mammosynth inpaint`: a synthetic lesion inside a mask, at the image's native resolution and bit depth."""
from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, finish, new_study, output_options

ORDER = 55


def register(sub, parents) -> None:
    from MammoSynthLogic.commands.text2mammo import sd_options

    p = sub.add_parser("inpaint", parents=parents, help="synthetic lesion inside a mask, native resolution",
                       description="Inpaint a synthetic lesion inside MASK at the source's own size and bit depth. "
                       "sd: a square crop around the mask (with --margin context, at least the model size) goes "
                       "through a Stable Diffusion inpainting model (MAM-E) and back; repaint: RePaint with the MAMBO "
                       "models. The result is blended in over --feather pixels outside the mask (repaint regenerates "
                       "that ring too, so both routes blend alike); every pixel further out is the source's stored "
                       "value, bit for bit, except outside the breast: the output is a synthetic image (new patient "
                       "identity) with provenance, so burned-in labels and markers outside the breast are set to "
                       "background (unless --keep-identity). The inputs are only read.")
    p.add_argument("source", type=Path, metavar="SRC", help="the mammogram (DICOM)")
    p.add_argument("--mask", required=True, type=Path, metavar="MASK",
                   help="NRRD label map or PNG on the image's grid (nonzero = inside), or a DICOM SEG of the image")
    p.add_argument("--label", type=int, help="NRRD/PNG: only the pixels with this label value")
    p.add_argument("--segment", metavar="N_OR_LABEL", help="DICOM SEG: the segment number or label (default: all)")
    p.add_argument("--method", choices=["auto", "sd", "repaint"], default="auto",
                   help="auto (default): sd when --model is a Stable Diffusion inpainting model, else repaint with "
                   "the MAMBO models; sd without --model uses the embedded mame-inpaint bundle")
    p.add_argument("--model", nargs="+", metavar="DIR_OR_HUB_ID",
                   help="sd: a diffusers inpainting folder or hub id, e.g. Likalto4/vindr_lesion-inpainting; "
                   "repaint: the MAMBO bundles (default: the embedded ones)")
    p.add_argument("--prompt", metavar="TEXT", help="sd: the prompt (default 'a mammogram with a lesion', MAM-E's)")
    p.add_argument("--margin", type=float, default=0.5,
                   help="sd: context on each side of the mask, as a fraction of its size (default 0.5)")
    p.add_argument("--feather", type=float, default=8.0,
                   help="pixels outside the mask over which the result fades into the source (default 8)")
    p.add_argument("--jumps", type=int, default=1, help="repaint: resampling jumps per step (default 1)")
    p.add_argument("--lesion-contrast", type=float, default=0.15, metavar="C",
                   help="repaint: brightness (0-1) of the soft mass drawn into the model's coarse contexts inside the "
                   "mask, which the patch model renders as a lesion (default 0.15; 0 = re-create the tissue that "
                   "was there)")
    sd_options(p, 4.0, "denoising steps (default: 24 for sd, MAM-E used 40; 50 for repaint)")
    p.add_argument("--keep-identity", action="store_true",
                   help="put the result into the source patient's study with every pixel outside the blend zone as "
                   "it was (burned-in text included; BurnedInAnnotation copied from the source)")
    output_options(p)
    p.set_defaults(func=run)


def _is_sd_model(refs) -> bool:
    """One --model that is a diffusers pipeline folder (or hub repo)."""
    from MammoSynthLogic.bundles import resolve_bundle_path
    from MammoSynthLogic.sd_bundles import SD_HUB_PATTERNS

    return bool(refs) and len(refs) == 1 and (resolve_bundle_path(refs[0], SD_HUB_PATTERNS)
                                             / "model_index.json").is_file()


def _check(args) -> None:
    from MammoSynthLogic.commands.text2mammo import check_out
    from MammoSynthLogic.errors import MammoSynthError

    check_out(args.out, args.source, args.mask)
    if args.margin < 0:
        raise MammoSynthError(f"--margin {args.margin}", "must be 0 or more")
    if args.feather < 0:
        raise MammoSynthError(f"--feather {args.feather}", "must be 0 or more")
    if args.method == "sd" and args.model and len(args.model) > 1:
        raise MammoSynthError("--model", "sd takes one Stable Diffusion inpainting model")
    if args.keep_identity and (args.patient_id or args.study_uid):
        raise MammoSynthError("--keep-identity", "keeps the source's patient and study; drop --patient-id/--study-uid")
    check_send(args)


def _sd_route(args, image, mask, seed: int, side: str, device: str, reporter):
    """The Stable Diffusion inpainting of a crop around the mask: (synthetic image, provenance entries)."""
    from MammoSynthLogic.pipelines.inpaint import inpaint_sd
    from MammoSynthLogic.pipelines.text2mammo import SDSettings
    from MammoSynthLogic.prompts import INPAINT_PROMPT
    from MammoSynthLogic.sd_bundles import load_sd_bundle

    settings = SDSettings(prompt=args.prompt or INPAINT_PROMPT, negative_prompt=args.negative_prompt,
                          guidance=args.guidance, steps=args.steps or 24, sampler=args.sampler)
    bundle = load_sd_bundle(args.model[0] if args.model else None, "mame-inpaint", device=device)
    synthetic, box = inpaint_sd(bundle, image.pixels, mask, settings, seed, margin=args.margin,
                                pad=int(args.feather) + 1, side=side, reporter=reporter)
    return synthetic, {"prompt": settings.prompt, "negative_prompt": settings.negative_prompt,
                       "guidance": settings.guidance, "steps": settings.steps, "sampler": settings.sampler,
                       "box": box._asdict(), "models": [bundle.describe()]}


def _repaint_route(args, image, mask, seed: int, side: str, device: str, reporter):
    """RePaint with the MAMBO models: (synthetic image, provenance entries)."""
    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.pipelines.repaint import inpaint_repaint

    bundles = load_mambo_set(args.model, device=device)
    steps = args.steps or 50
    synthetic = inpaint_repaint(image.pixels, mask, bundles, seed=seed, steps=steps, jumps=args.jumps,
                                reporter=reporter, side=side, lesion=args.lesion_contrast)
    return synthetic, {"steps": steps, "jumps": args.jumps, "lesion_contrast": args.lesion_contrast,
                       "models": [b.describe() for b in bundles]}


def _write(out: Path, stored, image, provenance: dict, side: str, study) -> Path:
    """The stored pixels by extension: DICOM in the source's encoding, PNG or NRRD of the integers."""
    from MammoSynthLogic.dicom_io import write_nrrd, write_png16, write_synthetic_dicom

    suffix = out.suffix.lower()
    if suffix == ".nrrd":
        return write_nrrd(out, stored, image.spacing_mm)
    if suffix == ".png":
        return write_png16(out, stored)
    description = f"SYNTHETIC lesion inpainting ({provenance['method']}) seed {provenance['seed']}"
    return write_synthetic_dicom(out, stored, provenance=provenance, source=image, stored_like=image,
                                 breast_side=side, series_description=description, study=study,
                                 keep_source_identity=study is None)


def run(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.breast_mask import breast_side
    from MammoSynthLogic.deidentify import clean_image
    from MammoSynthLogic.devices import select_device
    from MammoSynthLogic.dicom_io import read_mammogram, stored_representation
    from MammoSynthLogic.masks import read_mask
    from MammoSynthLogic.memory import PROCESS_BYTES, check_fits, source_bytes
    from MammoSynthLogic.pipelines.inpaint import blend_into, feather_weights

    _check(args)
    study = None if args.keep_identity else new_study(args)
    image = read_mammogram(args.source, keep_stored=True)
    check_fits(str(args.source), PROCESS_BYTES + source_bytes(image.rows, image.columns))
    if args.out.suffix.lower() in (".dcm", ".dicom"):
        stored_representation(image)  # fail before the work when the source cannot be written back as DICOM
    mask = read_mask(args.mask, image, label=args.label, segment=args.segment)
    if not args.keep_identity:
        image = clean_image(image)
    weights = feather_weights(mask, args.feather)
    device = select_device(args.device)
    method = args.method if args.method != "auto" else ("sd" if _is_sd_model(args.model) else "repaint")
    side = breast_side(image.pixels)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.time()
    if method == "sd":
        synthetic, entries = _sd_route(args, image, mask, seed, side, device, reporter)
    else:  # RePaint keeps every pixel outside its mask: it regenerates the feather ring so there is one to blend
        synthetic, entries = _repaint_route(args, image, weights > 0, seed, side, device, reporter)
    stored = blend_into(image.stored_pixels, image.pixels, synthetic, weights)
    provenance = {"pipeline": f"inpaint-{method}", "command": "inpaint", "method": method, "seed": seed,
                  "margin": args.margin, "feather": args.feather, "mask_pixels": int(mask.sum()),
                  "label": args.label, "segment": args.segment, "breast_side": side, "device": device,
                  "bits_stored": image.bits_stored, "pixels_outside_breast": "kept" if args.keep_identity else
                  "cleaned", **entries, "seconds": round(time.time() - start, 1)}
    return finish(args, [_write(args.out, stored, image, provenance, side, study)], seed, reporter)
