"""`reader-study prepare`: pick real and synthetic mammograms, blind them, shuffle them, and keep the key apart.

Every picked image, real or synthetic, is read with `read_mammogram` (tissue bright, [0, 1]) and cleaned and sized
the same way: scaled to a fixed height (2,048 rows by default, aspect kept; never enlarged more than 2x unless
allowed), chest wall flush with its side, padded with black, background outside the breast zeroed by the one
`deidentify.outside_breast` rule (this removes burned-in film labels and markers, which synthetic images never
have), quantised to one common bit depth, and written by the one neutral writer (`blinded.write_blinded_dicom`) as
`case-0001.dcm` … in a random order. The answer key (CSV) and a manifest (seed, sources, hashes, and how well a
trivial classifier tells real from synthetic in the export: `telltales`) go to `_key/` beside `reader/`, or to
`key_out`.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import io
import json
import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom

from MammoSynthLogic import __version__
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.fileio import write_text_atomic
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.reader_study.blinded import write_blinded_dicom
from MammoSynthLogic.reader_study.telltales import features, telltales

READER_DIR = "reader"
KEY_DIR = "_key"
KEY_FILE = "key.csv"
MANIFEST_FILE = "manifest.json"
DEFAULT_ROWS = 2048  # a reading-room size: the films keep detail, a 512-pixel synthetic image is enlarged at most 4x
MAX_UPSCALE = 2.0  # beyond this an enlarged image looks soft next to the others: refused unless allowed
KEY_COLUMNS = ("case", "file", "truth", "source", "source_sha256", "reader_sha256", "source_rows", "source_columns",
               "scale")
READER_README = """This folder is a reader study made by mammosynth.

It mixes real mammograms (de-identified) and synthetic, computer-generated mammograms in a random order.
Every file was re-written the same way, so nothing but the image itself tells them apart.
For each case, say how sure you are that it is synthetic:
  0 definitely real, 1 probably real, 2 not sure, 3 probably synthetic, 4 definitely synthetic.
Open the study with:  mammosynth-reader THIS_FOLDER --reader YOUR_NAME
"""


@dataclasses.dataclass(frozen=True)
class Canvas:
    """The one matrix and bit depth every reader copy has."""

    rows: int
    columns: int
    bits: int


@dataclasses.dataclass(frozen=True)
class StudyPaths:
    reader: Path
    key: Path
    manifest: Path
    telltales: dict  # `telltales.telltales` of the exported set


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _header(path: Path) -> tuple[int, int, int]:
    """(rows, columns, bits stored) from the header alone; bad files fail later in `read_mammogram`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns), int(ds.get("BitsStored", 16))
    except Exception:
        raise MammoSynthError(path, "not a readable DICOM image header; remove it from the input folder") from None


def pick(paths: Sequence[Path], n: Optional[int], rng: np.random.Generator, what: str) -> list[Path]:
    """n of the paths at random (all of them when n is None), in their sorted order."""
    if n is None:
        return list(paths)
    if n < 0 or n > len(paths):
        raise MammoSynthError(what, f"asked for {n} images but {len(paths)} were found; lower --n-{what}")
    chosen = rng.choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(chosen)]


def common_canvas(sizes: dict[Path, tuple[int, int, int]], rows: Optional[int] = None, columns: Optional[int] = None,
                  bits: Optional[int] = None, allow_upscale: bool = False) -> Canvas:
    """`rows` (default 2,048) high, as wide as the widest image scaled to that height, the lowest bit depth; refuses
    a mix in which an image would be enlarged more than `MAX_UPSCALE` times unless `allow_upscale`."""
    rows = rows or DEFAULT_ROWS
    columns = columns or max(round(c * rows / r) for r, c, _ in sizes.values())
    bits = bits or min(b for _, _, b in sizes.values())
    if not allow_upscale:
        for path, (r, c, _) in sizes.items():
            scale = min(rows / r, columns / c)
            if scale > MAX_UPSCALE:
                raise MammoSynthError(path, f"is {r}x{c}: fitting it to {rows}x{columns} enlarges it {scale:.1f}x "
                                            f"(more than {MAX_UPSCALE:g}x makes it stand out); lower --rows to at most "
                                            f"{int(r * MAX_UPSCALE)}, leave it out, or pass --allow-upscale")
    return Canvas(rows=int(rows), columns=int(columns), bits=int(min(16, max(8, bits))))


def fit_to_canvas(pixels: np.ndarray, canvas: Canvas, zero_background: bool) -> tuple[np.ndarray, float]:
    """Scale into the canvas keeping the aspect, chest wall flush with its side; with `zero_background`, black
    outside the breast and the background level taken off inside (film base); uint16."""
    from skimage.transform import resize

    from MammoSynthLogic.breast_mask import breast_side
    from MammoSynthLogic.deidentify import outside_breast

    scale = min(canvas.rows / pixels.shape[0], canvas.columns / pixels.shape[1])
    shape = (max(1, round(pixels.shape[0] * scale)), max(1, round(pixels.shape[1] * scale)))
    if shape != pixels.shape:
        pixels = resize(pixels, shape, order=1, anti_aliasing=scale < 1, preserve_range=True).astype(np.float32)
    outside = outside_breast(pixels)
    region = ~outside
    if zero_background:  # film base is grey, a synthetic background black: both become black, skin margin too
        base = float(np.median(pixels[outside])) if outside.any() else 0.0
        pixels = np.where(region, np.clip((pixels - base) / max(1.0 - base, 1e-6), 0.0, 1.0), 0.0)
    out = np.zeros((canvas.rows, canvas.columns), np.float32)
    top = (canvas.rows - shape[0]) // 2
    left = 0 if breast_side(pixels, region) == "left" else canvas.columns - shape[1]
    out[top:top + shape[0], left:left + shape[1]] = pixels
    top_value = (1 << canvas.bits) - 1
    return np.rint(np.clip(out, 0.0, 1.0) * top_value).astype(np.uint16), scale


def _fresh_folder(path: Path, what: str) -> None:
    if path.exists() and any(path.iterdir()):
        raise MammoSynthError(path, f"{what} folder exists and is not empty; choose a new folder")


def case_name(index: int, total: int) -> str:
    return f"case-{index:0{max(4, len(str(total)))}d}.dcm"


def prepare_study(real: Sequence[str | os.PathLike], synthetic: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                  n_real: Optional[int] = None, n_synthetic: Optional[int] = None, seed: Optional[int] = None,
                  rows: Optional[int] = None, columns: Optional[int] = None, bits: Optional[int] = None,
                  zero_background: bool = True, key_out: Optional[str | os.PathLike] = None,
                  allow_upscale: bool = False, reporter: Optional[Reporter] = None) -> StudyPaths:
    """Write `out/reader/case-*.dcm` (blinded, shuffled) and the key + manifest (in `out/_key/` or `key_out`)."""
    from MammoSynthLogic.dicom_io import find_dicoms, read_mammogram

    reporter = reporter or Reporter()
    seed = secrets.randbits(63) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    secret = f"{seed}-{secrets.token_hex(16)}"  # UIDs: fresh per export, so two exports never share one
    found = {}
    for label, inputs in (("real", real), ("synthetic", synthetic)):
        files, errors = find_dicoms(inputs)
        if errors:
            raise errors[0]
        if not files:
            raise MammoSynthError(label, "no input images given")
        found[label] = sorted(files)
    chosen = {"real": pick(found["real"], n_real, rng, "real"),
              "synthetic": pick(found["synthetic"], n_synthetic, rng, "synthetic")}
    items = [(label, path) for label in ("real", "synthetic") for path in chosen[label]]
    if not items:
        raise MammoSynthError(out, "no images picked; --n-real and --n-synthetic are both 0")
    order = rng.permutation(len(items))
    sizes = {path: _header(path) for _, path in items}
    canvas = common_canvas(sizes, rows, columns, bits, allow_upscale)

    out = Path(out)
    reader_dir = out / READER_DIR
    key_dir = Path(key_out) if key_out is not None else out / KEY_DIR
    _fresh_folder(reader_dir, "reader")
    _fresh_folder(key_dir, "key")
    staging = out / f".{READER_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows_out, looks = [], []
    try:
        for done, item_index in enumerate(order):
            label, path = items[item_index]
            reporter.update("reader-study", done, len(items))
            image = read_mammogram(path)
            pixels, scale = fit_to_canvas(image.pixels, canvas, zero_background)
            looks.append(features(pixels, canvas.bits))
            name = case_name(done + 1, len(items))
            write_blinded_dicom(staging / name, pixels, bits=canvas.bits, case_number=done + 1, secret=secret,
                                clean_pixels=zero_background)
            rows_out.append({"case": name[:-4], "file": name, "truth": label, "source": str(Path(path).resolve()),
                             "source_sha256": sha256_file(path), "reader_sha256": sha256_file(staging / name),
                             "source_rows": image.rows, "source_columns": image.columns, "scale": f"{scale:.6f}"})
        write_text_atomic(staging / "README.txt", READER_README)
        reader_dir.mkdir(parents=True, exist_ok=True)
        stamp = int(datetime.datetime.now().timestamp())  # one time for all: write times would tell slow reads apart
        for entry in sorted(staging.iterdir()):
            os.utime(entry, (stamp, stamp))
            os.replace(entry, reader_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    reporter.update("reader-study", len(items), len(items))

    key_path = key_dir / KEY_FILE
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=KEY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows_out)
    write_text_atomic(key_path, buffer.getvalue())
    manifest = {
        "tool": "mammosynth reader-study prepare", "mammosynth_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed, "inputs": {"real": [str(Path(p).resolve()) for p in real],
                                 "synthetic": [str(Path(p).resolve()) for p in synthetic]},
        "counts": {"real": len(chosen["real"]), "synthetic": len(chosen["synthetic"]), "total": len(items)},
        "canvas": dataclasses.asdict(canvas), "background_zeroed": zero_background,
        "reader_folder": str(reader_dir.resolve()), "key_sha256": sha256_file(key_path),
        "deidentification": "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile: every reader copy is "
                            "re-written from its pixels with a fixed tag set; no source attribute is carried over; "
                            "new UIDs, empty dates" + ("; background outside the breast zeroed (Clean Pixel Data)"
                                                       if zero_background else ""),
        "files": {row["file"]: row["reader_sha256"] for row in rows_out},
        "telltales": (told := telltales(looks, [row["truth"] == "synthetic" for row in rows_out])),
        "contains_synthetic_images": True,
    }
    manifest_path = key_dir / MANIFEST_FILE
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2))
    return StudyPaths(reader=reader_dir, key=key_path, manifest=manifest_path, telltales=told)
