"""`mammosynth inpaint`: a synthetic lesion inside a mask, at the image's native resolution and bit depth."""
from __future__ import annotations

import argparse
import dataclasses
import secrets
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, finish, new_study, output_options

ORDER = 55


def register(sub, parents) -> None:
    from MammoSynthLogic.commands.text2mammo import sd_options
    from MammoSynthLogic.lesions import CALCIFICATION_FORMS, KINDS, MARGINS, SHAPES

    p = sub.add_parser("inpaint", parents=parents, help="synthetic lesion inside a mask, native resolution",
                       description="Inpaint a synthetic lesion inside MASK at the source's own size and bit depth. "
                       "sd: a square crop around the mask (with --margin context, at least the model size) goes "
                       "through a Stable Diffusion inpainting model (MAM-E) and back; repaint: RePaint with the MAMBO "
                       "models. The result is blended in over --feather pixels outside the mask (repaint regenerates "
                       "that ring too, so both routes blend alike); every pixel further out is the source's stored "
                       "value, bit for bit, except outside the breast: the output is a synthetic image (new patient "
                       "identity) with provenance, so burned-in labels and markers outside the breast are set to "
                       "background (unless --keep-identity). With --lesion, an analytic mass or calcification cluster "
                       "of known shape and size in mm is drawn in (at the mask, or at a random place in the breast "
                       "without --mask), harmonised with the tissue by RePaint from --strength, and its exact mask "
                       "is written beside the image (DICOM SEG for a .dcm output). The inputs are only read.")
    p.add_argument("source", type=Path, metavar="SRC", help="the mammogram (DICOM)")
    p.add_argument("--mask", type=Path, metavar="MASK",
                   help="NRRD label map or PNG on the image's grid (nonzero = inside), or a DICOM SEG of the image "
                   "(required unless --lesion places one)")
    p.add_argument("--label", type=int, help="NRRD/PNG: only the pixels with this label value")
    p.add_argument("--segment", metavar="N_OR_LABEL", help="DICOM SEG: the segment number or label (default: all)")
    p.add_argument("--method", choices=["auto", "sd", "repaint"], default="auto",
                   help="auto (default): sd when --model is a Stable Diffusion inpainting model, else repaint with "
                   "the MAMBO models; sd without --model uses the embedded mame-inpaint bundle")
    p.add_argument("--model", nargs="+", metavar="DIR_OR_HUB_ID",
                   help="sd: a diffusers inpainting folder or hub id, e.g. Likalto4/vindr_lesion-inpainting; "
                   "repaint: the MAMBO bundles (default: the embedded ones)")
    p.add_argument("--prompt", metavar="TEXT", help="sd: the prompt (default 'a mammogram with a lesion', MAM-E's)")
    p.add_argument("--context", type=float, default=0.5,
                   help="sd: context on each side of the mask, as a fraction of its size (default 0.5)")
    p.add_argument("--feather", type=float, default=8.0,
                   help="pixels outside the mask over which the result fades into the source (default 8)")
    p.add_argument("--jumps", type=int, default=1, help="repaint: resampling jumps per step (default 1)")
    p.add_argument("--lesion-contrast", type=float, metavar="C",
                   help="repaint: brightness (0-1) of the lesion: without --lesion, of the soft mass drawn into the "
                   "model's coarse contexts inside the mask, which the patch model renders as a lesion (default "
                   "0.15; 0 = re-create the tissue that was there); with --lesion, of the analytic lesion at its "
                   "thickest point (default 0.2 for a mass, 0.6 for calcifications)")
    g = p.add_argument_group("analytic lesion (repaint route)")
    g.add_argument("--lesion", choices=KINDS, help="draw an analytic mass or calcification cluster and "
                   "harmonise it with the tissue (BI-RADS shapes and margins; sizes in mm)")
    g.add_argument("--shape", choices=SHAPES, default="oval", help="mass shape (default oval)")
    g.add_argument("--margin", choices=MARGINS, default="circumscribed", help="mass margin (default "
                   "circumscribed)")
    g.add_argument("--size-mm", type=float, help="mass diameter, or mean calcification diameter, in mm (default: 0.8 "
                   "of the painted mask's equivalent diameter for a mass, else 12 mm; 0.4 mm per calcification)")
    g.add_argument("--count", type=int, default=12, help="calcifications in the cluster (default 12)")
    g.add_argument("--spread-mm", type=float, help="cluster diameter in mm (default: the painted mask's equivalent "
                   "diameter, else 10 mm)")
    g.add_argument("--form", choices=CALCIFICATION_FORMS, default="punctate", help="calcification form (default punctate)")
    g.add_argument("--spacing-mm", type=float, help="pixel spacing in mm when the DICOM has none (scanned film: "
                   "e.g. 0.05 for DDSM)")
    g.add_argument("--strength", type=float, default=0.5, help="how much of the diffusion chain re-draws the drawn-in "
                   "lesion and its surroundings (0-1, default 0.5: noise to 0.5·T, then denoise)")
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

    check_out(args.out, *[p for p in (args.source, args.mask) if p is not None])
    if args.mask is None and not args.lesion:
        raise MammoSynthError("--mask", "required: paint the region to inpaint, or let --lesion place a lesion")
    if args.lesion and args.method == "sd":
        raise MammoSynthError("--lesion", "draws an analytic lesion harmonised by RePaint; use --method repaint or auto")
    if args.context < 0:
        raise MammoSynthError(f"--context {args.context}", "must be 0 or more")
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
    synthetic, box = inpaint_sd(bundle, image.pixels, mask, settings, seed, margin=args.context,
                                pad=int(args.feather) + 1, side=side, reporter=reporter)
    return synthetic, {"prompt": settings.prompt, "negative_prompt": settings.negative_prompt,
                       "guidance": settings.guidance, "steps": settings.steps, "sampler": settings.sampler,
                       "box": box._asdict(), "models": [bundle.describe()]}


def _repaint_route(args, image, mask, seed: int, side: str, device: str, reporter, start=None):
    """RePaint with the MAMBO models (harmonising `start` when given): (synthetic image, provenance entries)."""
    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.pipelines.repaint import inpaint_repaint

    bundles = load_mambo_set(args.model, device=device)
    steps = args.steps or 50
    contrast = 0.15 if args.lesion_contrast is None else args.lesion_contrast
    synthetic = inpaint_repaint(image.pixels, mask, bundles, seed=seed, steps=steps, jumps=args.jumps,
                                jump_length=min(10, steps),
                                reporter=reporter, side=side, lesion=0.0 if start is not None else contrast,
                                start=start, strength=args.strength if start is not None else 1.0)
    return synthetic, {"steps": steps, "jumps": args.jumps, "models": [b.describe() for b in bundles],
                       **({"strength": args.strength} if start is not None else {"lesion_contrast": contrast})}


def _draw_lesion(args, image, painted, seed: int) -> tuple:
    """The analytic lesion of the --lesion options drawn into the image: (image with it, exact mask, provenance)."""
    import numpy as np

    from MammoSynthLogic.breast_mask import breast_mask, breast_region
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.lesions import LesionSpec, draw, insert

    spacing = args.spacing_mm or (float(np.mean(image.spacing_mm)) if image.spacing_mm else None)
    if not spacing or spacing <= 0:
        raise MammoSynthError(args.source, "no pixel spacing in the file; lesion sizes are in mm: pass --spacing-mm "
                                           "(e.g. 0.05 for DDSM films)")
    if painted is not None:
        rows, cols = np.nonzero(painted)
        centre = int(round(rows.mean())), int(round(cols.mean()))
        across_mm = 2 * np.sqrt(painted.sum() / np.pi) * spacing
    else:
        centre, across_mm = None, None
    size = args.size_mm
    if size is None and args.lesion == "mass" and across_mm is not None:
        size = 0.8 * across_mm
    spread = args.spread_mm or (across_mm if across_mm is not None else 10.0)
    contrast = args.lesion_contrast if args.lesion_contrast is not None else (0.2 if args.lesion == "mass" else 0.6)
    spec = LesionSpec(kind=args.lesion, shape=args.shape, margin=args.margin, size_mm=size, contrast=contrast,
                      count=args.count, spread_mm=spread, form=args.form)
    profile, drawn = draw(spec, spacing, seed)
    if centre is None:
        reach = float(np.hypot(*(np.argwhere(drawn) - profile.shape[0] // 2).T).max())
        centre = _random_place(breast_mask(image.pixels), reach, seed, args.source)
    start, lesion = insert(image.pixels, profile, centre, spec.contrast, breast_region(image.pixels))
    if not lesion.any():
        raise MammoSynthError("--lesion", "the lesion falls outside the breast; paint the --mask inside it")
    record = {**dataclasses.asdict(spec), "size_mm": spec.diameter_mm, "centre": list(centre),
              "spacing_mm": spacing, "lesion_pixels": int(lesion.sum())}
    return start, lesion, record


def _random_place(breast, reach_px: float, seed: int, source) -> tuple[int, int]:
    """A seeded point of the inner breast at least `reach_px` from its edge (the deepest point when none is)."""
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    from MammoSynthLogic.errors import MammoSynthError

    step = max(1, int(max(breast.shape) // 1024))  # the distance on a ≤1024-px copy is plenty for placement
    # padded: the image border (where the chest wall meets it) is an edge too
    depth = distance_transform_edt(np.pad(breast[::step, ::step], 1))[1:-1, 1:-1] * step
    if depth.max() == 0:
        raise MammoSynthError(source, "no breast found to place the lesion in; paint a --mask")
    rows, cols = np.nonzero(depth >= min(reach_px, depth.max()))
    pick = np.random.default_rng([seed, 11]).integers(len(rows))
    return int(rows[pick] * step), int(cols[pick] * step)


def _lesion_region(lesion, painted, spacing_mm: float):
    """What RePaint re-draws around a drawn lesion: the lesion grown by 1 mm (its edge meets the tissue there), with
    the painted mask."""
    from scipy.ndimage import binary_dilation

    grow = max(2, int(round(1.0 / spacing_mm)))
    region = binary_dilation(lesion, iterations=grow)
    return region | painted if painted is not None else region


def _write_lesion_mask(out: Path, lesion, written: Path, kind: str) -> Path:
    """The exact lesion mask beside the image: a DICOM SEG of the written image, else NRRD or PNG like the image."""
    import numpy as np

    from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_png16, write_segmentation

    suffix = out.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return write_segmentation(out.with_name(f"{out.stem}_lesion_seg.dcm"), lesion, read_mammogram(written),
                                  label="Mass" if kind == "mass" else "Calcification cluster", finding=kind,
                                  algorithm="mammosynth analytic lesion", description=f"SYNTHETIC {kind} ground truth")
    path = out.with_name(f"{out.stem}_lesion_mask{suffix}")
    return write_nrrd(path, lesion.astype(np.uint8)) if suffix == ".nrrd" else write_png16(path, lesion.astype(np.uint8) * 255)


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
    mask = None if args.mask is None else read_mask(args.mask, image, label=args.label, segment=args.segment)
    if not args.keep_identity:
        image = clean_image(image)
    device = select_device(args.device)
    method = "repaint" if args.lesion else (args.method if args.method != "auto" else
                                            ("sd" if _is_sd_model(args.model) else "repaint"))
    side = breast_side(image.pixels)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.time()
    lesion = None
    if args.lesion:
        drawn, lesion, record = _draw_lesion(args, image, mask, seed)
        mask = _lesion_region(lesion, mask, record["spacing_mm"])
    weights = feather_weights(mask, args.feather)
    if method == "sd":
        synthetic, entries = _sd_route(args, image, mask, seed, side, device, reporter)
    else:  # RePaint keeps every pixel outside its mask: it regenerates the feather ring so there is one to blend
        synthetic, entries = _repaint_route(args, image, weights > 0, seed, side, device, reporter,
                                            start=drawn if args.lesion else None)
        if args.lesion:
            entries["lesion"] = record
    stored = blend_into(image.stored_pixels, image.pixels, synthetic, weights)
    provenance = {"pipeline": f"inpaint-{method}", "command": "inpaint", "method": method, "seed": seed,
                  "context": args.context, "feather": args.feather, "mask_pixels": int(mask.sum()),
                  "label": args.label, "segment": args.segment, "breast_side": side, "device": device,
                  "bits_stored": image.bits_stored, "pixels_outside_breast": "kept" if args.keep_identity else
                  "cleaned", **entries, "seconds": round(time.time() - start, 1)}
    written = [_write(args.out, stored, image, provenance, side, study)]
    if lesion is not None:
        written.append(_write_lesion_mask(args.out, lesion, written[0], args.lesion))
    return finish(args, written, seed, reporter)
