"""`mammosynth dualview`: a synthetic CC/MLO pair of one breast, or the missing view of a real one (MammoRGB).

Generation writes CC and MLO of one synthetic patient and study. Completion (`--complete REAL.dcm`) writes only the
generated view, as a synthetic image of a new synthetic patient; with `--copy-known` the real view joins it as a
de-identified copy (same new patient and study, pixels outside the breast cleaned of burned-in labels). With
`--keep-identity` the generated view joins the real patient's study and `--copy-known` copies the real file unchanged.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import time
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, finish, new_study, output_options

ORDER = 40
FORMATS = ("dcm", "png", "nrrd")


def register(sub, parents) -> None:
    p = sub.add_parser("dualview", parents=parents, help="synthetic CC/MLO pair, or the missing view of a real one",
                       description="Generate a CC and an MLO view of one synthetic breast with a 3-channel diffusion "
                       "model (R = CC, G = MLO, B = |CC - MLO|), written as two images of one synthetic study; or, "
                       "with --complete, keep a real view and generate the other one. Outputs are marked synthetic "
                       "and record the model, seed and every parameter.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the views (CC.dcm, MLO.dcm)")
    p.add_argument("--complete", type=Path, metavar="REAL.dcm",
                   help="a real CC or MLO: generate the other view of that breast")
    p.add_argument("--view", choices=["CC", "MLO"], help="with --complete: the real image's view when its header "
                   "does not say")
    p.add_argument("--copy-known", action="store_true",
                   help="with --complete: also write the real view into --out, de-identified into the synthetic "
                   "study (outside the breast cleaned), or with --keep-identity the real file unchanged")
    p.add_argument("--keep-identity", action="store_true",
                   help="with --complete: put the generated view into the real patient's study (default: a new "
                   "synthetic patient; the real identity is never copied otherwise)")
    p.add_argument("--model", metavar="DIR_OR_HUB_ID",
                   help="dual-view bundle (default: the embedded Resources/models/dualview)")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded in the outputs)")
    p.add_argument("--laterality", choices=["L", "R"],
                   help="L or R (default: L; with --complete, the real image's laterality)")
    p.add_argument("--size", type=int, help="side of the square outputs (default: the model size); larger sizes are "
                   "reached view by view with the MAMBO stages (each view is its own global context)")
    p.add_argument("--mambo-model", nargs="+", metavar="DIR_OR_HUB_ID",
                   help="MAMBO bundles for --size above the model size (default: the embedded ones)")
    p.add_argument("--preset", choices=["fast", "paper"], default="paper",
                   help="paper (default): DDPM with all 1000 steps, x0 clipped as the papers do; fast: SDE-DPM-Solver++ "
                   "25 steps")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "dpm++", "sde-dpm++"], help="override the preset's scheduler")
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--resample", type=int, help="with --complete: RePaint resampling passes per step (default 1 = "
                   "none; needs --sampler ddpm or ddim)")
    p.add_argument("--format", choices=FORMATS, default="dcm", help="output type (default dcm)")
    output_options(p)
    p.set_defaults(func=run)


def load_dualview_bundle(ref, device: str):
    """The given bundle, or the embedded one (a one-line error when it is not installed)."""
    from MammoSynthLogic.bundles import MANIFEST, default_bundle_dir, load_bundle
    from MammoSynthLogic.errors import MammoSynthError

    if ref is None:
        ref = default_bundle_dir() / "dualview"
        if not (ref / MANIFEST).is_file():
            raise MammoSynthError(ref, "the embedded dual-view bundle is not installed; pass --model DIR or train "
                                       "one with python -m mammosynth_training.dualview_fit")
    return load_bundle(ref, device=device)


def _known_view(args, image) -> str:
    from MammoSynthLogic.errors import MammoSynthError

    view = args.view or image.view
    if view not in ("CC", "MLO"):
        raise MammoSynthError(args.complete, f"view {image.view!r} is neither CC nor MLO; pass --view CC or --view MLO")
    return view


def run(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.devices import select_device
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.pipelines.dualview import DualViewPipeline, DualViewSettings

    if not args.complete and (args.copy_known or args.keep_identity or args.view or args.resample):
        raise MammoSynthError("--copy-known/--keep-identity/--view/--resample", "these only apply with --complete")
    if args.keep_identity and (args.patient_id or args.study_uid):
        raise MammoSynthError("--keep-identity", "keeps the real patient and study; drop --patient-id/--study-uid")
    check_send(args)
    settings = DualViewSettings.preset(args.preset, sampler=args.sampler, steps=args.steps, resample=args.resample)
    device = select_device(args.device)
    pipe = DualViewPipeline(load_dualview_bundle(args.model, device), device=device)
    size = args.size or pipe.s
    if size < pipe.s:
        raise MammoSynthError(f"--size {size}", f"the output must be at least the model size {pipe.s}")
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    start = time.time()
    if args.complete:
        written = _complete(args, pipe, settings, seed, size, reporter, start)
    else:
        written = _generate(args, pipe, settings, seed, size, reporter, start)
    return finish(args, list(written.values()), seed, reporter, views={k: str(v) for k, v in written.items()})


def _generate(args, pipe, settings, seed: int, size: int, reporter, start: float) -> dict[str, Path]:
    from MammoSynthLogic.dualview import decode

    laterality = args.laterality or "L"
    result = pipe(seed, settings, reporter)
    views, upscaler = _full_size(args, pipe.device, decode(result.rgb, laterality=None), size, seed, reporter)
    study = new_study(args)
    provenance = _provenance(args, pipe, result, size, laterality, time.time() - start, upscaler,
                             generated=["CC", "MLO"])
    written = {}
    for view in ("CC", "MLO"):
        written[view] = _write(args, view, views[view], laterality, provenance, study, spacing_mm=None)
    return written


def _complete(args, pipe, settings, seed: int, size: int, reporter, start: float) -> dict[str, Path]:
    from MammoSynthLogic.dicom_io import SyntheticStudy, read_mammogram
    from MammoSynthLogic.dualview import decode, encode_view
    from MammoSynthLogic.errors import MammoSynthError

    image = read_mammogram(args.complete)
    known = _known_view(args, image)
    other = "MLO" if known == "CC" else "CC"
    laterality = args.laterality or image.laterality
    if laterality not in ("L", "R"):
        raise MammoSynthError(args.complete, "laterality unknown (no ImageLaterality or other hint); pass --laterality")
    encoded = encode_view(image, pipe.s)
    result = pipe.complete(encoded.pixels, known, seed, settings, reporter)
    views, upscaler = _full_size(args, pipe.device, {other: decode(result.rgb, laterality=None)[other]}, size, seed,
                                 reporter)
    study = SyntheticStudy.of_source(image) if args.keep_identity else new_study(args)
    spacing = None
    if image.spacing_mm:  # the encoding frame is the prepared square, resized to `size`
        factor = encoded.prepared.transform.size / size
        spacing = (image.spacing_mm[0] * factor, image.spacing_mm[1] * factor)
    provenance = _provenance(args, pipe, result, size, laterality, time.time() - start, upscaler,
                             generated=[other], known_view=known)
    written = {other: _write(args, other, views[other], laterality, provenance, study, spacing_mm=spacing)}
    if args.copy_known and args.keep_identity:
        target = args.out / f"{known}{args.complete.suffix or '.dcm'}"
        if target.resolve() != args.complete.resolve():
            shutil.copyfile(args.complete, target)
        written[known] = target
    elif args.copy_known:
        written[known] = _write_known(args, known, laterality, study)
    return written


def _write_known(args, view: str, laterality: str, study) -> Path:
    """The real view, cleaned outside the breast, as a de-identified member of the synthetic study (any format)."""
    from MammoSynthLogic.deidentify import clean_image
    from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_png16, write_synthetic_dicom

    image = clean_image(read_mammogram(args.complete, keep_stored=True))
    path = args.out / f"{view}.{args.format}"
    if args.format == "png":
        return write_png16(path, image.stored_pixels.astype("uint16"))
    if args.format == "nrrd":
        return write_nrrd(path, image.stored_pixels, image.spacing_mm)
    from MammoSynthLogic.breast_mask import breast_side

    return write_synthetic_dicom(path, image.stored_pixels, provenance={"command": "dualview --complete --copy-known",
                                 "source": "real image, de-identified"}, source=image, stored_like=image, study=study,
                                 view=view, laterality=laterality, breast_side=breast_side(image.pixels),
                                 synthetic=False, series_description=f"DE-IDENTIFIED real {laterality}{view}")


def _full_size(args, device: str, views: dict, size: int, seed: int, reporter) -> tuple[dict, list | None]:
    """Views at the model size as they are; larger through the MAMBO stages (and the MAMBO bundles used)."""
    if size == next(iter(views.values())).shape[0]:
        return views, None
    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.memory import check_mambo
    from MammoSynthLogic.pipelines.dualview import upscale_views
    from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings

    mambo = MamboPipeline(*load_mambo_set(args.mambo_model, device=device), device=device)
    check_mambo(size, mambo, None, device)
    upscaler = [b.describe() for b in (mambo.global_, mambo.local, mambo.patch)]
    return upscale_views(views, size, mambo, seed, MamboSettings.preset("fast"), reporter), upscaler


def _provenance(args, pipe, result, size: int, laterality: str, seconds: float, upscaler, **extra) -> dict:
    import dataclasses

    return {"pipeline": "dualview", "command": "dualview --complete" if args.complete else "dualview",
            "seed": result.seed, "device": pipe.device, "s": pipe.s, "size": size, "laterality": laterality,
            "blue_channel": pipe.blue, "settings": dataclasses.asdict(result.settings),
            "percentile_clip": [0.5, 99.5], "model": pipe.bundle.describe(),
            "upscaled_with": upscaler, "seconds": round(seconds, 1), **extra}


def _write(args, view: str, pixels01, laterality: str, provenance: dict, study, spacing_mm) -> Path:
    """One view, mirrored for a right breast, as args.format."""
    from MammoSynthLogic.dicom_io import write_image
    from MammoSynthLogic.dualview import to_laterality

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{view}.{args.format}"
    options = {}
    if args.format == "dcm":
        options = dict(provenance=provenance, view=view, laterality=laterality, study=study,
                       breast_side="right" if laterality == "R" else "left", spacing_mm=spacing_mm,
                       series_description=f"SYNTHETIC dual-view {laterality}{view} seed {provenance['seed']}")
    return write_image(path, to_laterality(pixels01, laterality), **options)
