"""`prepare-data`: DICOM folders (+ optional metadata CSV) -> cache of prepared 16-bit images, masks, metadata."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from .cache import write_entry, write_metadata

# CSV columns understood (any subset; one row per file, matched on `path` or `sop_uid`).
CSV_COLUMNS = ("path", "sop_uid", "laterality", "view", "density", "vendor", "healthy", "lesion_boxes", "lesion_mask")
_TRUE = {"1", "true", "yes", "y", "healthy"}


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    """Rows of the metadata CSV keyed by resolved file path and by SOP Instance UID."""
    rows: dict[str, dict[str, str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if row.get("path"):
                p = Path(row["path"])
                rows[str((path.parent / p).resolve() if not p.is_absolute() else p.resolve())] = row
            if row.get("sop_uid"):
                rows[row["sop_uid"]] = row
    return rows


def _entry_id(path: Path, sop_uid: str | None) -> str:
    return hashlib.sha1((sop_uid or str(path)).encode()).hexdigest()[:16]


def _record(image, row: dict[str, str], prepared, entry_id: str) -> dict[str, Any]:
    healthy_raw = row.get("healthy", "")
    ds = image.dataset
    return {
        "id": entry_id,
        "source": str(image.path),
        "sop_uid": image.sop_uid,
        "patient_id": image.patient_id,
        "view": (row.get("view") or image.view or "").upper() or None,
        "laterality": (row.get("laterality") or image.laterality or "").upper() or None,
        "vendor": row.get("vendor") or str(getattr(ds, "Manufacturer", "") or "") or None,
        "density": row.get("density") or None,
        "healthy": (healthy_raw.lower() in _TRUE) if healthy_raw else None,
        "lesion_boxes": json.loads(row["lesion_boxes"]) if row.get("lesion_boxes") else None,
        "lesion_mask": row.get("lesion_mask") or None,
        "spacing_mm": list(image.spacing_mm) if image.spacing_mm else None,
        "size": int(prepared.pixels.shape[0]),
        "transform": json.loads(prepared.transform.to_json()),
    }


def prepare_data(dicom_dirs: list[Path], out: Path, *, csv_path: Path | None = None, healthy_only: bool = False,
                 views: tuple[str, ...] = (), vendors: tuple[str, ...] = (), multiple: int = 256,
                 log=print) -> list[dict[str, Any]]:
    """Read, filter and prepare every DICOM under dicom_dirs; write the cache at out; return its entries."""
    from MammoSynthLogic.dicom_io import find_dicoms, read_mammogram
    from MammoSynthLogic.preparation import prepare

    from .cache import select

    rows = read_csv(csv_path) if csv_path else {}
    paths, problems = find_dicoms(dicom_dirs)
    for problem in problems:
        log(f"skipped: {problem}")
    entries = []
    for path in paths:
        image = read_mammogram(path)
        row = rows.get(str(Path(path).resolve())) or rows.get(image.sop_uid or "") or {}
        prepared = prepare(image, multiple=multiple)
        entry_id = _entry_id(Path(path), image.sop_uid)
        record = _record(image, row, prepared, entry_id)
        if not select([record], views, vendors, healthy_only):
            log(f"filtered out: {path} (view={record['view']}, vendor={record['vendor']}, healthy={record['healthy']})")
            continue
        record.update(write_entry(out, entry_id, prepared.pixels, prepared.mask))
        entries.append(record)
        log(f"prepared: {path} -> {record['image']} ({record['size']}², view={record['view']})")
    description = (f"{len(entries)} images prepared from {', '.join(map(str, dicom_dirs))}"
                   f"{' (healthy only)' if healthy_only else ''}"
                   f"{' views ' + ','.join(views) if views else ''}{' vendors ' + ','.join(vendors) if vendors else ''}")
    write_metadata(out, entries, description)
    return entries
