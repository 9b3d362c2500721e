"""The prepared-image cache on disk: 16-bit PNG images, 8-bit PNG masks, metadata.json + metadata.csv."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

METADATA = "metadata.json"
CSV_FIELDS = ("id", "source", "view", "laterality", "vendor", "density", "healthy", "patient_id", "size")


@dataclass
class CachedImage:
    """One prepared image: pixels float32 [0,1], square, breast on the left; its mask; its metadata."""

    pixels: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any]


def write_png16(path: Path, pixels01: np.ndarray) -> None:
    """Save float [0,1] pixels as a 16-bit grayscale PNG."""
    Image.fromarray(np.round(np.clip(pixels01, 0, 1) * 65535).astype(np.uint16)).save(path)


def read_png16(path: Path) -> np.ndarray:
    """Read a 16-bit (or 8-bit) grayscale PNG as float32 [0,1]."""
    arr = np.asarray(Image.open(path))
    return arr.astype(np.float32) / (65535.0 if arr.dtype == np.uint16 else 255.0)


def write_entry(root: Path, entry_id: str, pixels01: np.ndarray, mask: np.ndarray) -> dict[str, str]:
    """Write one image and its mask under root; return their relative paths."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image_rel, mask_rel = f"images/{entry_id}.png", f"masks/{entry_id}.png"
    write_png16(root / image_rel, pixels01)
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / mask_rel)
    return {"image": image_rel, "mask": mask_rel}


def write_metadata(root: Path, entries: list[dict[str, Any]], description: str) -> None:
    """Write metadata.json (everything) and metadata.csv (one row per image, main fields)."""
    (root / METADATA).write_text(json.dumps({"description": description, "images": entries}, indent=1))
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(entries)


def read_metadata(root: str | Path) -> dict[str, Any]:
    """The cache's metadata.json as a dict with `description` and `images`."""
    path = Path(root) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no prepared cache here; run `mammosynth-train prepare-data` first")
    return json.loads(path.read_text())


def select(entries: list[dict[str, Any]], views=(), vendors=(), healthy_only=False) -> list[dict[str, Any]]:
    """Entries matching the view / vendor filters (empty = any) and, optionally, healthy ones only."""
    views = {v.upper() for v in views}
    vendors = {v.lower() for v in vendors}
    return [e for e in entries
            if (not views or str(e.get("view") or "").upper() in views)
            and (not vendors or str(e.get("vendor") or "").lower() in vendors)
            and (not healthy_only or e.get("healthy") is True)]


def load_images(root: str | Path, views=(), vendors=(), healthy_only=False) -> list[CachedImage]:
    """Load the selected cached images into memory."""
    root = Path(root)
    entries = select(read_metadata(root)["images"], views, vendors, healthy_only)
    if not entries:
        raise ValueError(f"{root}: no cached image matches the filters (views={views}, healthy_only={healthy_only})")
    return [CachedImage(read_png16(root / e["image"]), np.asarray(Image.open(root / e["mask"])) > 0, e)
            for e in entries]
