"""`prepare-data`: a data set (CBIS-DDSM, VinDr-Mammo, INbreast, or DICOM folders + CSV) -> cache of prepared images,
breast masks, lesion masks and metadata (`cache.py`)."""
from __future__ import annotations

import hashlib
import shutil
import json
from pathlib import Path
from typing import Any

from .adapters import Source, sources
from .cache import select, write_entry, write_lesion_mask, write_metadata

LABELS = ("view", "laterality", "vendor", "density", "healthy", "lesion_boxes", "lesion_mask", "pathology",
          "abnormality", "split", "birads")


def _entry_id(path: Path, sop_uid: str | None) -> str:
    return hashlib.sha1((sop_uid or str(path)).encode()).hexdigest()[:16]


def _record(image, labels: dict[str, Any], prepared, entry_id: str) -> dict[str, Any]:
    """The metadata of one cached image: the data set's labels win over the DICOM header."""
    record = {key: labels.get(key) for key in LABELS}
    record.update({
        "id": entry_id,
        "source": str(image.path),
        "sop_uid": image.sop_uid,
        "patient_id": image.patient_id,
        "view": (labels.get("view") or image.view or "").upper() or None,
        "laterality": (labels.get("laterality") or image.laterality or "").upper() or None,
        "vendor": labels.get("vendor") or str(getattr(image.dataset, "Manufacturer", "") or "") or None,
        "spacing_mm": list(image.spacing_mm) if image.spacing_mm else None,
        "size": int(prepared.pixels.shape[0]),
        "transform": json.loads(prepared.transform.to_json()),
    })
    return record


def prepare_data(dicom_dirs: list[Path], out: Path, *, csv_path: Path | None = None, fmt: str = "auto",
                 healthy_only: bool = False, views: tuple[str, ...] = (), vendors: tuple[str, ...] = (),
                 multiple: int = 256, log=print) -> list[dict[str, Any]]:
    """Read, filter and prepare every training image of the data set; write the cache at out; return its entries."""
    found = sources(fmt, list(dicom_dirs), csv_path, log)
    shutil.rmtree(out / "derived", ignore_errors=True)  # arrays derived from a previous cache here
    entries = [entry for source in found if (entry := _prepare_one(source, out, healthy_only, views, vendors,
                                                                    multiple, log))]
    description = (f"{len(entries)} images prepared from {', '.join(map(str, dicom_dirs))}"
                   f"{' (healthy only)' if healthy_only else ''}"
                   f"{' views ' + ','.join(views) if views else ''}"
                   f"{' vendors ' + ','.join(vendors) if vendors else ''}")
    write_metadata(out, entries, description)
    return entries


def _prepare_one(source: Source, out: Path, healthy_only: bool, views, vendors, multiple: int,
                 log) -> dict[str, Any] | None:
    from MammoSynthLogic.dicom_io import read_mammogram
    from MammoSynthLogic.preparation import prepare

    image = read_mammogram(source.path)
    prepared = prepare(image, multiple=multiple)
    entry_id = _entry_id(source.path, image.sop_uid)
    record = _record(image, source.labels, prepared, entry_id)
    if not select([record], views, vendors, healthy_only):
        log(f"filtered out: {source.path} (view={record['view']}, vendor={record['vendor']}, "
            f"healthy={record['healthy']})")
        return None
    if source.lesion_mask is not None:
        record["lesion_mask"] = write_lesion_mask(out, entry_id, source.lesion_mask(image.pixels.shape))
    record.update(write_entry(out, entry_id, prepared.pixels, prepared.mask))
    log(f"prepared: {source.path} -> {record['image']} ({record['size']}², view={record['view']}"
        f"{', lesion mask' if record['lesion_mask'] else ''})")
    return record
