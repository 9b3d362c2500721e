"""`mammosynth info` and `mammosynth prepare`: what the loader sees, and the image the models get."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from MammoSynthLogic.errors import MammoSynthError

ORDER = 10
PREVIEW_SIDE = 1024  # `info` segments a strided preview: the mask's blur makes finer detail moot


def register(sub, parents) -> None:
    p = sub.add_parser("info", parents=parents, help="what the loader sees per image (one JSON object per line)",
                       description="Read DICOM mammograms (files or folders, recursively) and print per image what "
                       "the tool understood: modality, size, spacing, photometric, view, laterality and where it came "
                       "from, the side of the chest wall in the pixels, and the breast area fraction.")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per line (the default; kept for scripts)")
    p.add_argument("--pairs", action="store_true", help="also print the images grouped by patient, study and laterality")
    p.set_defaults(func=run_info)

    p = sub.add_parser("prepare", parents=parents, help="prepared image, breast mask and transform for one image",
                       description="Prepare one mammogram as the models need it (MAMBO suppl. §9): breast mask, "
                       "background zeroed, chest wall on the left, padded to a square multiple of 256. Writes "
                       "prepared.png (16-bit), prepared.nrrd, mask.png, mask.nrrd, region.png and transform.json.")
    p.add_argument("path", metavar="FILE")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--multiple", type=int, default=256, help="pad to a square side that is a multiple of this")
    p.set_defaults(func=run_prepare)


def info_record(path: Path) -> dict:
    """The `info` JSON object of one file (raises MammoSynthError on bad input)."""
    from MammoSynthLogic.breast_mask import describe
    from MammoSynthLogic.dicom_io import breast_key, read_mammogram

    image = read_mammogram(path, max_side=PREVIEW_SIDE)
    side, area = describe(image.pixels)
    patient, study, laterality = breast_key(image)
    return {
        "path": str(path), "modality": image.modality, "rows": image.rows, "columns": image.columns,
        "pixel_spacing_mm": list(image.spacing_mm) if image.spacing_mm else None,
        "photometric": image.photometric, "bits_stored": image.bits_stored, "transfer_syntax": image.transfer_syntax,
        "view": image.view, "view_source": image.view_source,
        "laterality": image.laterality, "laterality_source": image.laterality_source,
        "breast_side": side, "breast_area_fraction": round(area, 4), "voi": image.voi_applied,
        "breast_group": f"{patient}|{study}|{laterality}",
    }


def run_info(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.dicom_io import find_dicoms

    files, errors = find_dicoms(args.paths)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    records = []
    for i, path in enumerate(files):
        try:
            record = info_record(path)
        except MammoSynthError as e:
            errors.append(e)
            print(f"error: {e}", file=sys.stderr)
        else:
            records.append(record)
            print(json.dumps(record), flush=True)
        reporter.update("info", i + 1, len(files))
    if args.pairs:
        groups: dict[str, list[str]] = {}
        for r in records:
            groups.setdefault(r["breast_group"], []).append(f"{r['view']}:{r['path']}")
        for key, members in sorted(groups.items()):
            print(json.dumps({"breast_group": key, "images": members}))
    return 0 if not errors else (1 if records else 2)


def run_prepare(args: argparse.Namespace, reporter) -> int:
    import numpy as np

    from MammoSynthLogic.dicom_io import read_mammogram, write_nrrd, write_png16
    from MammoSynthLogic.fileio import write_text_atomic
    from MammoSynthLogic.preparation import prepare
    from MammoSynthLogic.progress import emit_result

    image = read_mammogram(args.path)
    reporter.update("prepare", 0, 2)
    prepared = prepare(image, multiple=args.multiple)
    reporter.update("prepare", 1, 2)
    out: Path = args.out
    spacing = image.spacing_mm
    written = {
        "prepared_png": write_png16(out / "prepared.png", prepared.pixels),
        "prepared_nrrd": write_nrrd(out / "prepared.nrrd", prepared.pixels, spacing),
        "mask_png": write_png16(out / "mask.png", prepared.mask.astype(np.uint16) * np.uint16(65535)),
        "mask_nrrd": write_nrrd(out / "mask.nrrd", prepared.mask.astype(np.uint8), spacing),
        "region_png": write_png16(out / "region.png", prepared.region.astype(np.uint16) * np.uint16(65535)),
    }
    transform = json.loads(prepared.transform.to_json())
    transform.update({"source": str(args.path), "breast_side": prepared.breast_side, "pixel_spacing_mm": list(spacing) if spacing else None})
    write_text_atomic(out / "transform.json", json.dumps(transform, indent=2))
    written["transform"] = out / "transform.json"
    reporter.update("prepare", 2, 2)
    if args.progress_json:
        emit_result({k: str(v) for k, v in written.items()})
    else:
        print(json.dumps({k: str(v) for k, v in written.items()}))
    return 0
