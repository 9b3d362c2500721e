"""The prepared-image cache on disk: images as uint16 `.npy` arrays read through memory maps, 8-bit PNG breast
masks, lesion masks, metadata.json + metadata.csv, and arrays derived from the images for one training set-up.

Why `.npy` memory maps: training cuts small crops (s or k·s pixels) out of images of ~3,000 × 5,000 pixels, at
random places of random images. A memory map reads only the pages a crop touches, so nothing but a small index is
kept per image and every data-loader worker and every rank on a machine shares the operating system's page cache;
`np.load(mmap_mode="r")` needs no extra library. Streaming shards (WebDataset, Arrow) read whole records in order,
which suits whole-image training but would read a whole mammogram to cut one patch.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

METADATA = "metadata.json"
CSV_FIELDS = ("id", "source", "view", "laterality", "vendor", "density", "healthy", "pathology", "abnormality",
              "split", "patient_id", "size")
UNIT = 65535.0  # uint16 full scale = 1.0


def save_array(path: Path, array: np.ndarray) -> None:
    """Write an .npy file atomically (several ranks may derive the same array at once: last rename wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def to_uint16(pixels01: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (rounded)."""
    return np.round(np.clip(pixels01, 0, 1) * UNIT).astype(np.uint16)


def open_array(path: Path) -> np.ndarray:
    """A read-only memory map of an .npy file."""
    if path.suffix != ".npy":
        raise ValueError(f"{path}: cache written by an older version (PNG images); run `mammosynth-train "
                         f"prepare-data` again")
    return np.load(path, mmap_mode="r")


class Unit:
    """Float32 [0, 1] view of a uint16 array: slicing reads (through the memory map) only the slice."""

    def __init__(self, array: np.ndarray):
        self.array, self.shape = array, array.shape

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.array[key], dtype=np.float32) / np.float32(UNIT)


def breast_box(pixels: np.ndarray) -> list[int]:
    """[y0, x0, y1, x1] bounding the non-zero pixels (the whole image when there are none)."""
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return [0, 0, int(pixels.shape[0]), int(pixels.shape[1])]
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


def write_entry(root: Path, entry_id: str, pixels01: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Write one prepared image (uint16 .npy) and its breast mask (PNG) under root; return their metadata."""
    image_rel, mask_rel = f"images/{entry_id}.npy", f"masks/{entry_id}.png"
    stored = to_uint16(pixels01)
    save_array(root / image_rel, stored)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / mask_rel)
    return {"image": image_rel, "mask": mask_rel, "breast_box": breast_box(stored)}


def write_lesion_mask(root: Path, entry_id: str, mask: np.ndarray) -> str:
    """Save a lesion mask in the source frame as an 8-bit PNG under root/lesions; return its relative path."""
    (root / "lesions").mkdir(parents=True, exist_ok=True)
    rel = f"lesions/{entry_id}.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / rel)
    return rel


def write_metadata(root: Path, entries: list[dict[str, Any]], description: str) -> None:
    """Write metadata.json (everything) and metadata.csv (one row per image, main fields)."""
    root.mkdir(parents=True, exist_ok=True)
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


def selected_entries(root: str | Path, views=(), healthy_only=False) -> list[dict[str, Any]]:
    """The cache's entries that match the filters; ValueError when none does."""
    entries = select(read_metadata(root)["images"], views, (), healthy_only)
    if not entries:
        raise ValueError(f"{root}: no cached image matches the filters (views={tuple(views)}, "
                         f"healthy_only={healthy_only})")
    return entries


def derived(root: Path, name: str, entry: dict[str, Any], compute: Callable[[], np.ndarray]) -> Path:
    """Path of an array derived from a cached image (root/derived/<name>/<id>.npy), computed once if missing."""
    path = root / "derived" / name / f"{entry['id']}.npy"
    if not path.is_file():
        save_array(path, compute())
    return path
