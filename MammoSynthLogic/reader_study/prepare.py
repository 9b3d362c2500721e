"""`reader-study prepare`: pick real and synthetic mammograms, blind them, shuffle them, and keep the key apart.

Every picked image, real or synthetic, is read with `read_mammogram` (tissue bright, [0, 1]) and cleaned and sized
the same way: background outside the breast zeroed by the one `deidentify.outside_breast` rule (this removes
burned-in film labels and markers, which synthetic images never have), cropped to the breast and fitted to one
canvas (`canvas`: 2,048 x 1,638 by default; never enlarged more than 2x unless allowed), quantised to one common bit
depth, brought to one noise floor at full and at half resolution (shrinking averages a film's grain away, enlarging
spreads a synthetic image's over neighbouring pixels; every copy, whatever its class, gets the white and the
smoothed grain it lacks to reach the set's largest of each), and written by the one neutral writer
(`blinded.write_blinded_dicom`) as `case-0001.dcm` … in a random order. The answer key (CSV) and a manifest (seed, sources, hashes, and how well a
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
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from MammoSynthLogic import __version__
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.fileio import write_text_atomic
from MammoSynthLogic.memory import check_reader_study
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.reader_study.blinded import write_blinded_dicom
from MammoSynthLogic.reader_study.canvas import (PREVIEW_SIDE, canvas_shape, clean_canvas, common_canvas,
                                                 copy_noise_floors, equalise_grain, fit_to_canvas, grain_gains,
                                                 grain_units, plan_crop, size_policy)
from MammoSynthLogic.reader_study.telltales import features, telltales

READER_DIR = "reader"
KEY_DIR = "_key"
KEY_FILE = "key.csv"
MANIFEST_FILE = "manifest.json"
KEY_COLUMNS = ("case", "file", "truth", "source", "source_sha256", "reader_sha256", "source_rows", "source_columns",
               "crop", "mirrored", "scale", "noise_floor", "noise_floor_half", "grain_white", "grain_smooth")
READER_README = """This folder is a reader study made by mammosynth.

It mixes real mammograms (de-identified) and synthetic, computer-generated mammograms in a random order.
Every file was re-written the same way, so nothing but the image itself tells them apart.
For each case, say how sure you are that it is synthetic:
  0 definitely real, 1 probably real, 2 not sure, 3 probably synthetic, 4 definitely synthetic.
Open the study with:  mammosynth-reader THIS_FOLDER --reader YOUR_NAME
"""


NOISE_METHOD = ("zero-mean Gaussian grain on the breast, white and smoothed (Gaussian, 1 pixel), as much of each as "
                "brings the copy's noise floors at full and half resolution (MAD of neighbouring differences, the "
                "classifier's estimator) to the set's target: per grain component the largest any copy holds")


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


def pick(paths: Sequence[Path], n: Optional[int], rng: np.random.Generator, what: str) -> list[Path]:
    """n of the paths at random (all of them when n is None), in their sorted order."""
    if n is None:
        return list(paths)
    if n < 0 or n > len(paths):
        raise MammoSynthError(what, f"asked for {n} images but {len(paths)} were found; lower --n-{what}")
    chosen = rng.choice(len(paths), size=n, replace=False)
    return [paths[i] for i in sorted(chosen)]


def _fresh_folder(path: Path, what: str) -> None:
    if path.exists() and any(path.iterdir()):
        raise MammoSynthError(path, f"{what} folder exists and is not empty; choose a new folder")


def case_name(index: int, total: int) -> str:
    return f"case-{index:0{max(4, len(str(total)))}d}.dcm"


def prepare_study(real: Sequence[str | os.PathLike], synthetic: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                  n_real: Optional[int] = None, n_synthetic: Optional[int] = None, seed: Optional[int] = None,
                  rows: Optional[int] = None, columns: Optional[int] = None, bits: Optional[int] = None,
                  zero_background: bool = True, equalise_noise: bool = True,
                  key_out: Optional[str | os.PathLike] = None,
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
    check_reader_study([path for _, path in items], *canvas_shape(rows, columns))  # before any image is decoded
    crops, depths = {}, []
    for done, (_, path) in enumerate(items):  # every crop before any file: a refused mix writes nothing
        reporter.update("plan", done, len(items))
        preview = read_mammogram(path, max_side=PREVIEW_SIDE)
        crops[path] = plan_crop(preview)
        depths.append(preview.bits_stored)
    canvas = common_canvas(crops, bits or min(depths), rows, columns, allow_upscale)

    out = Path(out)
    reader_dir = out / READER_DIR
    key_dir = Path(key_out) if key_out is not None else out / KEY_DIR
    _fresh_folder(reader_dir, "reader")
    _fresh_folder(key_dir, "key")
    staging, canvases = out / f".{READER_DIR}.partial", out / ".canvases.partial"
    for folder in (staging, canvases):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    rows_out, looks, floors = [], [], []
    try:
        for done, item_index in enumerate(order):  # every copy on the canvas first: the set's noise floor
            label, path = items[item_index]
            reporter.update("reader-study", done, 2 * len(items))
            image = read_mammogram(path)
            crop = crops[path]
            pixels, scale = fit_to_canvas(image.pixels, crop, canvas, zero_background)
            np.save(canvases / f"{done}.npy", pixels)  # on disk, not in memory: a study may have hundreds
            floors.append(copy_noise_floors(pixels, canvas.bits))
            name = case_name(done + 1, len(items))
            rows_out.append({"case": name[:-4], "file": name, "truth": label, "source": str(Path(path).resolve()),
                             "source_sha256": sha256_file(path), "source_rows": image.rows,
                             "source_columns": image.columns,
                             "crop": f"{crop.top}:{crop.bottom},{crop.left}:{crop.right}",
                             "mirrored": int(crop.mirror), "scale": f"{scale:.6f}",
                             "noise_floor": f"{floors[-1][0]:.6f}", "noise_floor_half": f"{floors[-1][1]:.6f}"})
        target = grain_units(np.array(floors)).max(axis=0) if equalise_noise else None
        for done, row in enumerate(rows_out):  # then the grain each lacks, and written
            reporter.update("reader-study", len(items) + done, 2 * len(items))
            pixels, sigma = np.load(canvases / f"{done}.npy"), np.zeros(2)
            if target is not None:
                pixels, sigma = equalise_grain(pixels, canvas.bits, target, np.random.default_rng([seed, done]))
                if zero_background and sigma.any():  # grain must not bring back anything outside the breast
                    pixels = clean_canvas(pixels, canvas.bits)
            looks.append(features(pixels, canvas.bits))
            write_blinded_dicom(staging / row["file"], pixels, bits=canvas.bits, case_number=done + 1, secret=secret,
                                clean_pixels=zero_background)
            row.update(reader_sha256=sha256_file(staging / row["file"]), grain_white=f"{sigma[0]:.6f}",
                       grain_smooth=f"{sigma[1]:.6f}")
        write_text_atomic(staging / "README.txt", READER_README)
        reader_dir.mkdir(parents=True, exist_ok=True)
        stamp = int(datetime.datetime.now().timestamp())  # one time for all: write times would tell slow reads apart
        for entry in sorted(staging.iterdir()):
            os.utime(entry, (stamp, stamp))
            os.replace(entry, reader_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(canvases, ignore_errors=True)
    reporter.update("reader-study", 2 * len(items), 2 * len(items))

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
        "canvas": dataclasses.asdict(canvas), "size_policy": size_policy(allow_upscale),
        "background_zeroed": zero_background,
        "noise": {"equalised": equalise_noise,
                  "target_noise_floors": None if target is None else [round(float(v), 6) for v in
                                                                      np.sqrt(grain_gains() @ target)],
                  "method": NOISE_METHOD if equalise_noise else "each copy keeps its own noise floor"},
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
