"""Public mammography data sets as distributed -> the training images and their labels (`Source`s).

- `cbis-ddsm`: the TCIA tree (`<subject>/<study>/<series>/1-1.dcm`; a subject is e.g. `Mass-Training_P_00001_LEFT_CC`,
  its abnormality n's ROI images are under `<subject>_<n>`) and the four
  `{mass,calc}_case_description_{train,test}_set.csv`.
  Only full mammograms are training images; each ROI subject holds a binary mask and a cropped lesion image in either
  order (told apart by content), the masks become the full image's `lesion_mask`.
- `vindr-mammo`: `images/<study_id>/<image_id>.dicom`, `breast-level_annotations.csv`, `finding_annotations.csv`.
- `inbreast`: `AllDICOMs/<file name>_..._MG_<side>_<view>_ANON.dcm`, `AllXML/<file name>.xml` (OsiriX plist ROIs)
  and the release's spreadsheet `INbreast.xls` (or the same saved as `;`-separated `INbreast.csv`).
- `csv`: any DICOM folders with an optional CSV (`path` or `sop_uid`, then any label column).
"""
from __future__ import annotations

import ast
import csv
import json
import plistlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

FORMATS = ("cbis-ddsm", "vindr-mammo", "inbreast", "csv")
CSV_COLUMNS = ("path", "sop_uid", "laterality", "view", "density", "vendor", "healthy", "lesion_boxes", "lesion_mask",
               "pathology", "abnormality", "split")
DENSITY_LETTERS = {"1": "A", "2": "B", "3": "C", "4": "D"}
PATHOLOGY_RANK = {"MALIGNANT": 2, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 0}
CBIS_SUBJECT = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(?:_(\d+))?$", re.IGNORECASE)
INBREAST_FILE = re.compile(r"^(\d+)_[0-9a-f]+_MG_([LR])_([A-Z]+)_ANON", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "y", "healthy"}

MaskFn = Callable[[tuple[int, int]], np.ndarray]  # source shape -> bool lesion mask in the source frame


@dataclass
class Source:
    """One training image: its DICOM, the labels the data set gives it, and its lesion mask when annotated."""

    path: Path
    labels: dict[str, Any] = field(default_factory=dict)
    lesion_mask: MaskFn | None = None


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    """CSV rows with keys stripped and lower-cased, values stripped."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(f, delimiter=delimiter)]


def _xls_rows(path: Path) -> list[dict[str, str]]:
    """The first sheet of an Excel 97-2003 workbook as `_rows` gives a CSV (header row first); whole numbers
    without '.0' (INbreast stores file names, ACR and most BI-RADS as numbers)."""
    import xlrd

    try:
        sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
    except xlrd.XLRDError as e:
        raise ValueError(f"{path}: not an Excel 97-2003 workbook ({e}); "
                         f"save it as INbreast.csv (';'-separated)") from None
    if not sheet.nrows:
        return []

    def text(cell) -> str:
        if cell.ctype == xlrd.XL_CELL_NUMBER and float(cell.value).is_integer():
            return str(int(cell.value))
        return str(cell.value).strip()

    header = [text(cell).lower() for cell in sheet.row(0)]
    return [{key: text(cell) for key, cell in zip(header, sheet.row(r)) if key} for r in range(1, sheet.nrows)]


def _files(dirs: Iterable[Path], pattern: str) -> list[Path]:
    """Files matching a glob pattern anywhere under the folders (or the paths themselves when they are files)."""
    found = []
    for d in dirs:
        found += [d] if d.is_file() and d.match(pattern) else sorted(d.rglob(pattern)) if d.is_dir() else []
    return found


def density_letter(value: str) -> str | None:
    """BI-RADS density as A-D from 1-4, 'DENSITY C', 'C' or 'ACR 3'; None when absent."""
    value = re.sub(r"^(DENSITY|ACR)\s*", "", str(value or "").strip().upper())
    return DENSITY_LETTERS.get(value, value if value in ("A", "B", "C", "D") else None)


def detect_format(dirs: list[Path]) -> str:
    """The data set layout of the folders; ValueError when two layouts match."""
    found = set()
    for d in dirs:
        if d.is_dir():
            names = {p.name for p in d.iterdir()}
            if (d / "breast-level_annotations.csv").is_file():
                found.add("vindr-mammo")
            if {"AllDICOMs", "AllXML", "INbreast.csv", "INbreast.xls"} & names:
                found.add("inbreast")
            if CBIS_SUBJECT.match(d.name) or any(CBIS_SUBJECT.match(n) for n in names) \
                    or any(re.match(r"(mass|calc)_case_description_", n) for n in names):
                found.add("cbis-ddsm")
    if len(found) > 1:
        raise ValueError(f"{', '.join(map(str, dirs))}: looks like {' and '.join(sorted(found))}; "
                         f"choose one with --format")
    return found.pop() if found else "csv"


def sources(fmt: str, dirs: list[Path], csv_path: Path | None = None, log=print) -> list[Source]:
    """The training images of the folders read as `fmt` (one of FORMATS, or 'auto')."""
    fmt = detect_format(dirs) if fmt == "auto" else fmt
    readers = {"cbis-ddsm": cbis_ddsm, "vindr-mammo": vindr_mammo, "inbreast": inbreast, "csv": generic_csv}
    if fmt not in readers:
        raise ValueError(f"--format {fmt}: unknown; choose one of {', '.join(FORMATS)} or auto")
    log(f"format: {fmt}")
    return readers[fmt](dirs, csv_path, log)


# --- generic: DICOM folders + optional CSV -------------------------------------------------------------------

def _csv_labels(row: dict[str, str]) -> dict[str, Any]:
    healthy = row.get("healthy", "")
    labels = {key: row[key] for key in ("laterality", "view", "vendor", "pathology", "abnormality", "split",
                                        "lesion_mask") if row.get(key)}
    labels.update({k: v.upper() for k, v in labels.items() if k in ("laterality", "view")})
    if row.get("density"):
        labels["density"] = density_letter(row["density"]) or row["density"]
    if healthy:
        labels["healthy"] = healthy.lower() in _TRUE
    if row.get("lesion_boxes"):
        labels["lesion_boxes"] = json.loads(row["lesion_boxes"])
    return labels


def generic_csv(dirs: list[Path], csv_path: Path | None, log=print) -> list[Source]:
    """Every DICOM under the folders; labels from the CSV row matching its path (relative to the CSV) or UID."""
    import pydicom
    from MammoSynthLogic.dicom_io import find_dicoms

    paths, problems = find_dicoms(dirs)
    for problem in problems:
        log(f"skipped: {problem}")
    by_path, by_uid = {}, {}
    for row in _rows(csv_path) if csv_path else []:
        if row.get("path"):
            p = Path(row["path"])
            by_path[(p if p.is_absolute() else csv_path.parent / p).resolve()] = row
        if row.get("sop_uid"):
            by_uid[row["sop_uid"]] = row
    found = []
    for path in paths:
        row = by_path.get(Path(path).resolve())
        if row is None and by_uid:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                      .get("SOPInstanceUID", ""))
            row = by_uid.get(uid)
        labels = _csv_labels(row or {})
        if labels.get("lesion_mask") and csv_path and not Path(labels["lesion_mask"]).is_absolute():
            labels["lesion_mask"] = str((csv_path.parent / labels["lesion_mask"]).resolve())
        found.append(Source(Path(path), labels))
    return found


# --- CBIS-DDSM ---------------------------------------------------------------------------------------------

def _is_mask(pixels: np.ndarray) -> bool:
    """A ROI mask holds two values, 0 and one other (255); a cropped lesion image holds many."""
    values = np.unique(pixels[::4, ::4])
    return values.size <= 2 and values[0] == 0 and np.unique(pixels).size <= 2


def _union_of_masks(paths: list[Path]) -> MaskFn:
    def build(shape: tuple[int, int]) -> np.ndarray:
        from MammoSynthLogic.preparation import resize

        out = np.zeros(shape, dtype=bool)
        for path in paths:
            out |= resize(_read_pixels(path) > 0, shape)  # a few CBIS masks are a few pixels off the image size
        return out
    return build


def _read_pixels(path: Path) -> np.ndarray:
    import pydicom

    return pydicom.dcmread(path).pixel_array


def cbis_ddsm(dirs: list[Path], csv_path: Path | None, log=print) -> list[Source]:
    """Full mammograms of a CBIS-DDSM tree with density, abnormality, pathology and split from the description
    CSVs, and the union of their abnormalities' ROI masks as lesion mask. A mammogram with masses and
    calcifications is in the tree twice (a Mass-* and a Calc-* subject): it is cached once, with both."""
    descriptions = _files(dirs + ([csv_path] if csv_path else []), "*_case_description_*.csv")
    if not descriptions:
        raise ValueError(f"{', '.join(map(str, dirs))}: no CBIS-DDSM description CSVs "
                         f"(mass_case_description_train_set.csv, ...); put them in the folder or give --csv FOLDER")
    rows: dict[str, list[dict[str, str]]] = {}
    for path in descriptions:
        for row in _rows(path):
            subject = re.split(r"[\\/]", row.get("image file path", ""))[0]
            if not CBIS_SUBJECT.match(subject):
                log(f"skipped: {path.name}: row without a subject folder in its image file path")
                continue
            rows.setdefault(subject.upper(), []).append(row)
    subjects = {p.name.upper(): p for d in dirs for p in ([d] if d.is_dir() else []) + sorted(d.rglob("*"))
                if p.is_dir() and CBIS_SUBJECT.match(p.name)}
    mammograms: dict[tuple[str, ...], list[str]] = {}  # (patient, side, view) -> its Mass-* and Calc-* subjects
    for name in sorted(subjects):
        match = CBIS_SUBJECT.match(name)
        if not match.group(6):  # (ROI folders, `<subject>_<n>`, are read with their full image)
            mammograms.setdefault(match.group(3, 4, 5), []).append(name)
    found = []
    for (_, side, view), names in sorted(mammograms.items()):
        dicoms = sorted(subjects[names[0]].rglob("*.dcm"))
        if not dicoms:
            log(f"skipped: {subjects[names[0]]}: no DICOM file")
            continue
        for extra in dicoms[1:] + [p for name in names[1:] for p in sorted(subjects[name].rglob("*.dcm"))]:
            log(f"not cached twice: {extra} (the same mammogram as {dicoms[0]}: labels and masks merged)")
        masks, described = [], []
        for name in names:
            described += rows.get(name, [])
            for roi in sorted(n for n in subjects if n.startswith(name + "_")):
                for path in sorted(subjects[roi].rglob("*.dcm")):
                    kind = "ROI mask" if _is_mask(_read_pixels(path)) else "cropped lesion image"
                    log(f"not a training image: {path} ({kind} of {name})")
                    if kind == "ROI mask":
                        masks.append(path)
        labels = {"laterality": side[0], "view": view,
                  "split": "train" if CBIS_SUBJECT.match(names[0]).group(2) == "TRAINING" else "test"}
        if described:
            labels.update(_cbis_labels(described))
        else:
            log(f"no description row: {', '.join(names)} (labels from the folder name only)")
        found.append(Source(dicoms[0], labels, _union_of_masks(masks) if masks else None))
    for name in sorted(set(rows) - set(subjects)):
        log(f"not found: {name} (in the description CSVs, not under {', '.join(map(str, dirs))})")
    return found


def _cbis_labels(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Labels of one full image from its abnormalities' rows (the calc CSVs spell 'breast density' with a space)."""
    density = rows[0].get("breast_density") or rows[0].get("breast density") or ""
    pathologies = [r.get("pathology", "").upper() for r in rows if r.get("pathology")]
    assessments = [int(r["assessment"]) for r in rows if r.get("assessment", "").isdigit()]
    return {"density": density_letter(density), "healthy": False,
            "abnormality": ",".join(sorted({r.get("abnormality type", "").lower() for r in rows} - {""})) or None,
            "pathology": max(pathologies, key=lambda p: PATHOLOGY_RANK.get(p, -1)) if pathologies else None,
            "birads": max(assessments) if assessments else None}


# --- VinDr-Mammo -------------------------------------------------------------------------------------------

def _vindr_root(dirs: list[Path]) -> Path:
    for d in dirs:
        for path in [d / "breast-level_annotations.csv"] + _files([d], "breast-level_annotations.csv"):
            if path.is_file():
                return path.parent
    raise ValueError(f"{', '.join(map(str, dirs))}: no breast-level_annotations.csv (VinDr-Mammo); "
                     f"give the folder that holds it and images/")


def _birads(value: str) -> int | None:
    digits = re.findall(r"\d", str(value or ""))
    return int(digits[0]) if digits else None


def vindr_mammo(dirs: list[Path], csv_path: Path | None, log=print) -> list[Source]:
    """VinDr-Mammo images with density, BI-RADS, split, finding boxes (source pixels) and categories; an image whose
    breast is BI-RADS 1 with no finding is healthy."""
    root = _vindr_root(dirs)
    images = {p.stem: p for p in sorted((root / "images").rglob("*.dicom"))} if (root / "images").is_dir() else {}
    findings: dict[str, list[dict[str, str]]] = {}
    if (root / "finding_annotations.csv").is_file():
        for row in _rows(root / "finding_annotations.csv"):
            findings.setdefault(row["image_id"], []).append(row)
    found = []
    for row in _rows(root / "breast-level_annotations.csv"):
        path = images.pop(row["image_id"], None)
        if path is None:
            log(f"not found: image {row['image_id']} of study {row.get('study_id')} under {root / 'images'}")
            continue
        categories, boxes = set(), []
        for finding in findings.get(row["image_id"], []):
            categories |= set(ast.literal_eval(finding.get("finding_categories") or "[]")) - {"No Finding"}
            box = [finding.get(k, "") for k in ("xmin", "ymin", "xmax", "ymax")]
            if all(box):
                boxes.append([float(v) for v in box])
        birads = _birads(row.get("breast_birads"))
        found.append(Source(path, {
            "laterality": row.get("laterality", "").upper() or None,
            "view": row.get("view_position", "").upper() or None,
            "density": density_letter(row.get("breast_density")), "birads": birads,
            "healthy": birads == 1 and not categories and not boxes,
            "abnormality": ",".join(sorted(c.lower() for c in categories)) or None,
            "lesion_boxes": boxes or None,
            "split": {"training": "train"}.get(row.get("split", "").lower(), row.get("split") or None)}))
    for image_id, path in sorted(images.items()):
        log(f"skipped: {path}: image {image_id} has no row in breast-level_annotations.csv")
    return found


# --- INbreast ----------------------------------------------------------------------------------------------

def inbreast_rois(xml: Path) -> list[tuple[str, np.ndarray]]:
    """(name, [N, 2] x/y points in source pixels) of each ROI of an INbreast OsiriX XML (plist) file."""
    with open(xml, "rb") as f:
        document = plistlib.load(f)
    rois = []
    for image in document.get("Images", []):
        for roi in image.get("ROIs", []):
            points = [tuple(float(v) for v in p.strip("() ").split(",")) for p in roi.get("Point_px", [])]
            if points:
                rois.append((str(roi.get("Name", "")), np.array(points, dtype=np.float64)))
    return rois


def _polygons(rois: list[tuple[str, np.ndarray]], radius: float = 3.0) -> MaskFn:
    """Filled polygons (and discs of `radius` px for one- or two-point ROIs such as single calcifications)."""
    def build(shape: tuple[int, int]) -> np.ndarray:
        from skimage.draw import disk, polygon

        out = np.zeros(shape, dtype=bool)
        for _, points in rois:
            if len(points) >= 3:
                out[polygon(points[:, 1], points[:, 0], shape)] = True
            else:
                for x, y in points:
                    out[disk((y, x), radius, shape=shape)] = True
        return out
    return build


def inbreast(dirs: list[Path], csv_path: Path | None, log=print) -> list[Source]:
    """INbreast DICOMs with ACR density and BI-RADS from the spreadsheet (INbreast.csv if there is one, else the
    release's INbreast.xls) and lesion masks from the XML ROIs."""
    places = dirs + ([csv_path] if csv_path else [])
    sheets = _files(places, "INbreast.csv") + _files(places, "INbreast.xls")
    if not sheets:
        raise ValueError(f"{', '.join(map(str, places))}: no INbreast.xls (or INbreast.csv); give the release folder "
                         f"that holds it, or its path with --csv")
    table = _xls_rows(sheets[0]) if sheets[0].suffix.lower() == ".xls" else _rows(sheets[0], delimiter=";")
    log(f"spreadsheet: {sheets[0]}")
    rows = {row["file name"]: row for row in table if row.get("file name")}
    xmls = {p.stem: p for p in _files(dirs, "*.xml")}
    found = []
    for path in _files(dirs, "*.dcm"):
        match = INBREAST_FILE.match(path.name)
        if not match:
            log(f"skipped: {path}: not an INbreast file name (<file name>_<id>_MG_<side>_<view>_ANON.dcm)")
            continue
        name, row = match.group(1), rows.pop(match.group(1), None)
        view = (row or {}).get("view") or match.group(3)
        labels = {"laterality": ((row or {}).get("laterality") or match.group(2)).upper(),
                  "view": {"ML": "MLO"}.get(view.upper(), view.upper())}
        rois = inbreast_rois(xmls[name]) if name in xmls else []
        if row is None:
            log(f"no spreadsheet row: {path.name} (file name {name})")
        else:
            birads = (row.get("bi-rads") or "").lower() or None
            labels.update(density=density_letter(row.get("acr")), birads=birads,
                          healthy=birads == "1" and not rois)
        labels["abnormality"] = ",".join(sorted({n.lower() for n, _ in rois})) or None
        found.append(Source(path, labels, _polygons(rois) if rois else None))
    for name in sorted(rows):
        log(f"not found: file name {name} (in {sheets[0].name}, no DICOM)")
    return found
