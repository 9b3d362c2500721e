"""`mammosynth anomaly`: MAMBO anomaly heat map, label map and DICOM SEG in the source image's pixel grid."""
from __future__ import annotations

import argparse
import csv
import io
import json
import secrets
import sys
from pathlib import Path

from MammoSynthLogic.commands._output import check_send, deliver, output_options

ORDER = 30


def register(sub, parents) -> None:
    p = sub.add_parser("anomaly", parents=parents, help="anomaly heat map, label map and DICOM SEG (MAMBO §3.3)",
                       description="Noise the image to λ of 1000 steps, denoise it with a model of healthy tissue, "
                       "histogram-match inside the breast mask, keep positive differences above 30 %% of the maximum, "
                       "blur. Writes heat.nrrd (float), labels.nrrd and labels.png, seg.dcm (DICOM SEG referencing the "
                       "source) and overlay.png, all in the source image's pixel grid; a folder input gets one "
                       "sub-folder per image and summary.csv.")
    p.add_argument("paths", nargs="+", type=Path, metavar="SRC", help="DICOM files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--model", nargs="+", metavar="DIR_OR_HUB_ID",
                   help="folder with a mambo-anomaly or mambo-global bundle (and mambo-patch for --level native); "
                        "default: the embedded bundles")
    p.add_argument("--lambda", dest="lam", type=int,
                   help="noising steps of 1000 (default: the model's measured best, from its manifest; else 700, "
                        "MAMBO's λ*)")
    p.add_argument("--level", choices=["global", "native"], default="global",
                   help="global: the paper, at the model size; native: patch model on full-resolution tiles")
    p.add_argument("--draws", type=int, help="noise draws averaged (default: the model's manifest, else 1)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps from λ to 0 (default 50; λ = full chain)")
    p.add_argument("--threshold", type=float, default=0.3, help="label map: heat above this fraction of its maximum")
    p.add_argument("--min-difference", type=float,
                   help="absolute floor on differences in [0, 1] intensity (beyond the paper; default: the model's "
                        "manifest, else 0 = off)")
    p.add_argument("--invert", action="store_true", help="dark lesions: reconstruction minus original")
    p.add_argument("--seed", type=int, help="random seed (default: a fresh one, recorded)")
    output_options(p, identity=False)
    p.set_defaults(func=run)


def _bundle_paths(refs, level: str):
    """The global (or anomaly) bundle's folder, and the patch bundle's for --level native (else None)."""
    from MammoSynthLogic.bundles import default_bundle_dir, find_bundles
    from MammoSynthLogic.errors import MammoSynthError

    roles: dict = {}
    for ref in refs or [default_bundle_dir()]:
        for role, path in find_bundles(ref).items():
            roles.setdefault(role, path)
    global_path = roles.get("mambo-anomaly") or roles.get("mambo-global")
    if global_path is None:
        raise MammoSynthError(", ".join(map(str, refs or [default_bundle_dir()])), "no mambo-anomaly or mambo-global bundle")
    if level == "native" and "mambo-patch" not in roles:
        raise MammoSynthError("--level native", "needs a mambo-patch bundle in --model")
    return global_path, roles["mambo-patch"] if level == "native" else None


def _load(paths, device: str):
    """The bundles at `_bundle_paths`, loaded (the patch one: None at the global level)."""
    from MammoSynthLogic.bundles import load_bundle

    global_path, patch_path = paths
    patch = None if patch_path is None else load_bundle(patch_path, device=device)
    return load_bundle(global_path, device=device), patch


def _bundles(refs, level: str, device: str):
    """The global (or anomaly) bundle and, for --level native, the patch bundle, loaded."""
    return _load(_bundle_paths(refs, level), device)


def overlay_png(image01, heat, labels, max_side: int = 1024):
    """RGB quick look: the image in grey, the heat map in red, the label outline in yellow."""
    import numpy as np
    from scipy import ndimage

    step = max(1, -(-max(image01.shape) // max_side))
    img, h, lab = image01[::step, ::step], heat[::step, ::step], labels[::step, ::step]
    peak = float(h.max()) or 1.0
    rgb = np.stack([img, img, img], axis=-1)
    rgb[..., 0] = np.clip(rgb[..., 0] + h / peak, 0, 1)
    edge = lab & ~ndimage.binary_erosion(lab, iterations=2)
    rgb[edge] = (1.0, 1.0, 0.0)
    return (rgb * 255).astype(np.uint8)


def run_one(src: Path, out: Path, pipe, settings, seed: int, reporter) -> dict:
    import dataclasses

    import numpy as np

    from MammoSynthLogic.anomaly import findings
    from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_png16, write_segmentation
    from MammoSynthLogic.fileio import write_text_atomic
    from MammoSynthLogic.preparation import prepare

    image = read_mammogram(src)
    prepared = prepare(image)
    result = pipe(prepared, settings, seed, reporter)
    spacing = image.spacing_mm
    write_nrrd(out / "heat.nrrd", result.heat, spacing)
    write_nrrd(out / "labels.nrrd", result.labels.astype(np.uint8), spacing)
    write_png16(out / "labels.png", result.labels.astype(np.uint8) * np.uint8(255))
    write_png16(out / "overlay.png", overlay_png(image.pixels, result.heat, result.labels))
    write_segmentation(out / "seg.dcm", result.labels, image, label="Mass", algorithm="mammosynth anomaly (MAMBO)",
                       description="mammosynth anomaly map (MAMBO)", breast_side=prepared.breast_side)
    record = {"source": str(src), "out": str(out), "seed": seed, "lambda": settings.lam, "level": settings.level,
              "findings": len(findings(result.labels)), "label_pixels": int(result.labels.sum()),
              "heat_max": round(float(result.heat.max()), 5)}
    write_text_atomic(out / "anomaly.json", json.dumps({**record, "settings": dataclasses.asdict(settings),
                                                        "model": pipe.global_.describe()}, indent=2))
    return record


def run(args: argparse.Namespace, reporter) -> int:
    import dataclasses

    from MammoSynthLogic.anomaly import AnomalySettings
    from MammoSynthLogic.bundles import read_manifest
    from MammoSynthLogic.devices import default_chunk, select_device
    from MammoSynthLogic.dicom_io import find_dicoms
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.fileio import write_text_atomic
    from MammoSynthLogic.memory import ModelSize, anomaly_bytes, check_anomaly, check_fits, largest_image
    from MammoSynthLogic.progress import emit_result

    if args.lam is not None and not 0 < args.lam < 1000:
        raise MammoSynthError(f"--lambda {args.lam}", "must be between 1 and 999")
    check_send(args)
    files, errors = find_dicoms(args.paths)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not files:
        return 2
    largest, pixels = largest_image(files)
    check_fits(str(largest), anomaly_bytes(pixels))  # a lower bound, before any model is looked for
    paths = _bundle_paths(args.model, args.level)
    measured = read_manifest(paths[0]).get("anomaly", {})  # the model's own best settings, when its card measured them
    draws = args.draws if args.draws is not None else int(measured.get("draws", 1))
    device = select_device(args.device)
    check_anomaly(largest, pixels, ModelSize.read(paths[0]), paths[1] and ModelSize.read(paths[1]), args.level, draws,
                  default_chunk(device))  # from the bundles' files, before any is loaded

    from MammoSynthLogic.pipelines.anomaly import AnomalyPipeline  # torch and diffusers: after the check

    pipe = AnomalyPipeline(*_load(paths, device), device=device)
    settings = AnomalySettings(
        lam=args.lam if args.lam is not None else int(measured.get("lambda", 700)),
        min_difference=args.min_difference if args.min_difference is not None else float(measured.get("min_difference", 0.0)),
        draws=draws,
        steps=args.steps, threshold=args.threshold, invert=args.invert, level=args.level)
    seed = args.seed if args.seed is not None else secrets.randbelow(2 ** 31)
    single = len(files) == 1 and args.paths[0].is_file()
    records = []
    for path in files:
        out = args.out if single else args.out / path.stem
        try:
            record = run_one(path, out, pipe, settings, seed, reporter)
        except MammoSynthError as e:
            errors.append(e)
            print(f"error: {e}", file=sys.stderr)
            continue
        records.append(record)
        if not args.progress_json:
            print(json.dumps(record), flush=True)
    if not single and records:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        write_text_atomic(args.out / "summary.csv", buffer.getvalue())
    deliver(args, [Path(r["out"]) / "seg.dcm" for r in records], reporter)
    if args.progress_json:
        emit_result({"outputs": [r["out"] for r in records], "settings": dataclasses.asdict(settings)})
    return 0 if not errors else (1 if records else 2)
