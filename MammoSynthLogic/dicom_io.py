"""DICOM in and out: `MammogramImage` from any vendor's file, synthetic images and SEG back to DICOM."""
from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import os
import re
import secrets
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from MammoSynthLogic import __version__
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.fileio import atomic_path

MIN_SIDE = 64  # smaller than this cannot be a mammogram
MANUFACTURER = "SlicerMammoSynth"

# SNOMED CT view codes (DICOM CID 4014) and their older SRT equivalents.
VIEW_CODES = {
    "399162004": "CC", "R-10242": "CC",
    "399368009": "MLO", "R-10226": "MLO",
}
VIEW_CODE_OF = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
_TEXT_VIEW = re.compile(r"(?:^|[^A-Z])(R|L|RIGHT|LEFT)?[_ ]?(CC|MLO)(?:$|[^A-Z])")
_TEXT_SIDE = re.compile(r"(?:^|[^A-Z])(RIGHT|LEFT)(?:$|[^A-Z])")
_CBIS_SUFFIX = re.compile(r"_(LEFT|RIGHT)_(CC|MLO)$", re.IGNORECASE)
# What, besides BitsStored and the photometric interpretation, gives stored values their meaning (modality and VOI).
_STORED_MEANING = ("RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence", "WindowCenter",
                   "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "VOILUTSequence")


@dataclasses.dataclass
class MammogramImage:
    """One 2D mammogram: float32 pixels in [0, 1] with tissue bright, plus what the header says."""

    pixels: np.ndarray
    path: Optional[Path]
    rows: int
    columns: int
    bits_stored: int
    stored_dtype: str
    spacing_mm: Optional[tuple[float, float]]
    photometric: str
    view: Optional[str]
    view_source: Optional[str]
    laterality: Optional[str]
    laterality_source: Optional[str]
    modality: str
    transfer_syntax: str
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    voi_applied: Optional[str]
    dataset: Dataset  # header only: the pixel data is dropped to keep memory down
    pixel_step: int = 1  # >1 when `pixels` is a strided preview (read with `max_side`)
    stored_pixels: Optional[np.ndarray] = None  # the file's decoded stored values, full size, with `keep_stored`

    def to_stored(self, pixels01: np.ndarray) -> np.ndarray:
        """Map [0, 1] pixels back to the stored integer range and dtype (exact inverse when no VOI was applied)."""
        top = (1 << self.bits_stored) - 1
        values = np.clip(pixels01, 0.0, 1.0)
        if self.photometric == "MONOCHROME1":
            values = 1.0 - values
        return np.rint(values * top).astype(self.stored_dtype)


def _fail(path, why: str) -> MammoSynthError:
    return MammoSynthError(path, why)


def _read_dataset(path: Path) -> Dataset:
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a folder: use find_dicoms() or pass files")
    if path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes), not a DICOM file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about what we report as one error line below
            ds = pydicom.dcmread(path)
            list(ds.iterall())  # converts every element's value, so truncation or a bad VR shows here
        return ds
    except InvalidDicomError:
        raise _fail(path, "not a DICOM file (no DICM preamble); export the image as DICOM") from None
    except Exception as e:  # pydicom raises many types on truncated headers
        raise _fail(path, f"corrupt or truncated DICOM header ({type(e).__name__}); re-export the file") from None


def _check_header(path: Path, ds: Dataset) -> None:
    modality = str(ds.get("Modality", "")).upper()
    if len(modality) > 16:  # a code string holds at most 16 characters: a wrong length swallowed what followed
        raise _fail(path, "corrupt DICOM header (the Modality value runs on); re-export the file")
    if modality and modality != "MG":
        raise _fail(path, f"modality {modality} is not mammography (MG); only mammograms are supported")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if "Rows" not in ds or not modality:
            raise _fail(path, "no image in this file: the header is truncated or corrupt; re-export the file")
        raise _fail(path, "no pixel data (an object without an image); pass the image file itself")
    if not modality and str(ds.get("BodyPartExamined", "")).upper() != "BREAST":
        raise _fail(path, "no Modality tag and BodyPartExamined is not BREAST; only mammograms are supported")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise _fail(path, f"colour image ({ds.get('PhotometricInterpretation', 'RGB')}, "
                          f"{ds.SamplesPerPixel} samples per pixel): mammograms are single-channel grayscale")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise _fail(path, f"multi-frame image ({frames} frames, e.g. tomosynthesis): only 2D mammograms are supported")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if min(rows, cols) < MIN_SIDE:
        raise _fail(path, f"image is {rows}x{cols} pixels: too small to be a mammogram (need at least {MIN_SIDE}x{MIN_SIDE})")


def _decode(path: Path, ds: Dataset) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as e:
        why = re.split(r" - |\. ", str(e).splitlines()[0])[0][:120] if str(e) else type(e).__name__
        raise _fail(path, f"pixel data cannot be decoded, truncated or corrupt ({why})") from None
    if arr.ndim != 2:
        raise _fail(path, f"unexpected pixel array shape {arr.shape}: only single-frame grayscale is supported")
    return arr


def _to_unit_range(ds: Dataset, arr: np.ndarray) -> tuple[np.ndarray, Optional[str]]:
    """Modality LUT, then VOI LUT (preferred) or window, scaled to [0, 1]; MONOCHROME1 inverted after VOI."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = arr
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        values = apply_modality_lut(values, ds)
    voi = None
    if "VOILUTSequence" in ds:
        values, voi = apply_voi_lut(values, ds, index=0, prefer_lut=True), "VOI LUT"
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        lo, hi = 0.0, float((1 << int(descriptor[2])) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values, voi = apply_voi_lut(values, ds, index=0, prefer_lut=False), "window"
        lo, hi = _window_output_range(ds)
    elif values is arr and arr.dtype.kind == "u":  # unsigned stored values: their whole range
        lo, hi = 0.0, float((1 << int(ds.get("BitsStored", arr.dtype.itemsize * 8))) - 1)
    else:  # signed, rescaled or float values: their own range
        lo, hi = float(np.min(values)), float(np.max(values))
    scale = 1.0 / (hi - lo) if hi != lo else 0.0
    out = (np.asarray(values, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        np.subtract(np.float32(1.0), out, out=out)
    return out, voi


def _window_output_range(ds: Dataset) -> tuple[float, float]:
    """The range pydicom's linear window maps onto: the modality LUT's output range (PS3.3 C.11.1.1.1), so the
    stored range taken through RescaleSlope/Intercept; from the window's low end to its high end."""
    if "ModalityLUTSequence" in ds:
        return 0.0, float((1 << int(ds.ModalityLUTSequence[0].LUTDescriptor[2])) - 1)
    bits = int(ds.BitsStored)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if int(ds.PixelRepresentation) == 1 else (0, (1 << bits) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return float(lo), float(hi)


def _multi(value) -> list[str]:
    """A DICOM value as a list of strings, whether it holds one value or several."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        return [str(value)]
    return [str(v) for v in value]


def _laterality(ds: Dataset) -> tuple[Optional[str], Optional[str]]:
    for key in ("ImageLaterality", "Laterality"):
        value = str(ds.get(key, "")).upper()
        if value in ("L", "R"):
            return value, key
    try:
        value = str(ds.SharedFunctionalGroupsSequence[0].FrameAnatomySequence[0].FrameLaterality).upper()
        if value in ("L", "R"):
            return value, "FrameLaterality"
    except (AttributeError, IndexError):
        pass
    orientation = _multi(ds.get("PatientOrientation"))
    if len(orientation) == 2:
        # Columns run to the medial side (after F or H in oblique views): towards R means the left breast.
        medial = str(orientation[1]).upper().strip("FH")
        if medial in ("R", "L"):
            return ("L" if medial == "R" else "R"), "PatientOrientation"
    for key in ("SeriesDescription", "ProtocolName", "PatientID"):
        match = _TEXT_SIDE.search(str(ds.get(key, "")).upper())
        if match:
            return match.group(1)[0], key
    return None, None


def _view(ds: Dataset) -> tuple[Optional[str], Optional[str]]:
    try:
        code = str(ds.ViewCodeSequence[0].CodeValue)
        return VIEW_CODES.get(code, "other"), "ViewCodeSequence"
    except (AttributeError, IndexError):
        pass
    position = str(ds.get("ViewPosition", "")).upper().strip()
    if position:
        return (position if position in ("CC", "MLO") else "other"), "ViewPosition"
    values = [v.upper() for v in _multi(ds.get("PatientOrientation"))]
    if len(values) == 1 and values[0] in ("CC", "MLO"):  # CBIS-DDSM stores the view here
        return values[0], "PatientOrientation"
    for key in ("SeriesDescription", "ProtocolName", "PatientID"):
        match = _TEXT_VIEW.search(str(ds.get(key, "")).upper())
        if match:
            return match.group(2), key
    return None, None


def _spacing(ds: Dataset) -> Optional[tuple[float, float]]:
    for key in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = ds.get(key)
        if isinstance(value, MultiValue) and len(value) == 2:  # one value alone (a DSfloat) is not a spacing
            try:
                spacing = (float(value[0]), float(value[1]))
            except (TypeError, ValueError):
                continue
            if min(spacing) > 0:
                return spacing
    return None


def read_mammogram(path: str | os.PathLike, max_side: Optional[int] = None, *,
                   keep_stored: bool = False) -> MammogramImage:
    """Read one 2D mammogram; any problem raises `MammoSynthError(path, reason)`. The file is only read.

    With `max_side`, `pixels` is a strided preview of at most that many pixels a side (for quick looks like `info`);
    `rows` and `columns` stay those of the full image. With `keep_stored`, `stored_pixels` holds the decoded stored
    values as in the file (full size, the file's dtype), decoded once with `pixels`.
    """
    path = Path(path)
    ds = _read_dataset(path)
    _check_header(path, ds)
    arr = _decode(path, ds)
    step = 1 if max_side is None else max(1, -(-max(arr.shape) // max_side))
    pixels, voi = _to_unit_range(ds, arr[::step, ::step] if step > 1 else arr)
    view, view_source = _view(ds)
    laterality, laterality_source = _laterality(ds)
    header = ds.copy()
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            del header[keyword]
    return MammogramImage(
        pixels=pixels, path=path, rows=arr.shape[0], columns=arr.shape[1],
        bits_stored=int(ds.get("BitsStored", arr.dtype.itemsize * 8)), stored_dtype=str(arr.dtype),
        spacing_mm=_spacing(ds), photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        view=view, view_source=view_source, laterality=laterality, laterality_source=laterality_source,
        modality=str(ds.get("Modality", "")), transfer_syntax=ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian).name,
        patient_id=str(ds.get("PatientID", "")), study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")), sop_uid=str(ds.get("SOPInstanceUID", "")),
        voi_applied=voi, dataset=header, pixel_step=step, stored_pixels=arr if keep_stored else None,
    )


def _looks_like_dicom(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:] == b"DICM"
    except OSError:
        return False


def find_dicoms(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[MammoSynthError]]:
    """Files given directly plus every DICOM file found recursively in given folders, and one error per empty folder."""
    found: list[Path] = []
    errors: list[MammoSynthError] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(q for q in p.rglob("*") if q.is_file() and _looks_like_dicom(q))
            if not inside:
                errors.append(_fail(p, "no DICOM files found in this folder (searched recursively)"))
            found.extend(inside)
        else:
            found.append(p)
    return found, errors


def breast_key(image: MammogramImage) -> tuple[str, str, str]:
    """(patient, study, laterality) so that a CC and an MLO of one breast share a key.

    CBIS-DDSM suffixes the patient ID with side and view and gives every image its own study;
    there the suffix is dropped and the study date stands for the study.
    """
    ds = image.dataset
    patient = image.patient_id
    study = image.study_uid
    if _CBIS_SUFFIX.search(patient):
        patient = _CBIS_SUFFIX.sub("", patient)
        study = str(ds.get("StudyDate", "")) or study
    return patient, study, image.laterality or "?"


def group_by_breast(images: Sequence[MammogramImage]) -> dict[tuple[str, str, str], list[MammogramImage]]:
    groups: dict[tuple[str, str, str], list[MammogramImage]] = defaultdict(list)
    for image in images:
        groups[breast_key(image)].append(image)
    return dict(groups)


# ---------------------------------------------------------------- writing


@dataclasses.dataclass
class SyntheticStudy:
    """One synthetic patient and study shared by the files of one result (e.g. a CC/MLO pair)."""

    patient_id: str
    patient_name: str
    study_uid: str
    study_id: str
    study_date: str
    study_time: str
    accession_number: str = ""
    series_counter: int = 0

    @classmethod
    def new(cls, patient_id: Optional[str] = None, study_uid: Optional[str] = None) -> "SyntheticStudy":
        """A new synthetic patient and study, unique to this call unless pinned.

        Identities never come from the seed: two runs with one seed are two patients. A pinned study without a
        pinned patient gets a patient derived from the study UID, so every file pinned to that study has one patient.
        """
        if study_uid is not None and not pydicom.uid.UID(study_uid).is_valid:
            raise MammoSynthError(f"--study-uid {study_uid}", "not a valid DICOM UID (digits and dots, at most 64 "
                                                              "characters, e.g. 2.25.<a large number>)")
        if patient_id is not None and not 0 < len(str(patient_id)) <= 64:
            raise MammoSynthError(f"--patient-id {patient_id}", "must be 1 to 64 characters")
        token = (hashlib.sha256(study_uid.encode()).hexdigest()[:8] if study_uid else secrets.token_hex(4)).upper()
        patient = str(patient_id) if patient_id is not None else f"SYN-{token}"
        now = datetime.datetime.now()
        return cls(patient_id=patient, patient_name=f"SYNTHETIC^{patient}"[:64],
                   study_uid=study_uid or pydicom.uid.generate_uid(), study_id=token[:8],
                   study_date=now.strftime("%Y%m%d"), study_time=now.strftime("%H%M%S"))

    @classmethod
    def of_source(cls, source: MammogramImage) -> "SyntheticStudy":
        """The source's own patient and study: only when the caller asks for it explicitly."""
        ds = source.dataset
        return cls(patient_id=str(ds.get("PatientID", "")), patient_name=str(ds.get("PatientName", "")),
                   study_uid=source.study_uid or pydicom.uid.generate_uid(), study_id=str(ds.get("StudyID", ""))[:16],
                   study_date=str(ds.get("StudyDate", "")), study_time=str(ds.get("StudyTime", "")),
                   accession_number=str(ds.get("AccessionNumber", "")))

    def next_series_number(self) -> int:
        self.series_counter += 1
        return 1000 + self.series_counter


def _as_uint16(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint16:
        return pixels
    if np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(f"integer pixels must be uint16, got {pixels.dtype}")
    return np.rint(np.clip(pixels, 0.0, 1.0) * 65535.0).astype(np.uint16)


def _as_stored(pixels: np.ndarray, bits: int) -> np.ndarray:
    """Stored values (uint8 or uint16, below 2**bits) as uint16."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"stored pixels must be uint8 or uint16, got {pixels.dtype}")
    if pixels.size and int(pixels.max()) >> bits:
        raise ValueError(f"stored pixels exceed BitsStored {bits} (maximum {int(pixels.max())})")
    return pixels.astype(np.uint16, copy=False)


def stored_representation(image: MammogramImage) -> dict[str, object]:
    """The attributes that give stored values the meaning they have in `image`: bits, photometric, modality, VOI."""
    if image.stored_dtype not in ("uint8", "uint16"):
        raise MammoSynthError(image.path or "image", f"{image.stored_dtype} pixel data cannot be written as DICOM "
                                                     "here; write a .png or .nrrd")
    ds = image.dataset
    return {"BitsStored": image.bits_stored, "HighBit": image.bits_stored - 1,
            "PhotometricInterpretation": image.photometric,
            **{keyword: copy.deepcopy(ds[keyword].value) for keyword in _STORED_MEANING if keyword in ds}}


def _view_code_item(view: str) -> Dataset:
    code, meaning = VIEW_CODE_OF[view]
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", meaning
    return item


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance JSON that `write_synthetic_dicom` recorded in ImageComments."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    text = str(ds.get("ImageComments", ""))
    start = text.find("{")
    if start < 0:
        raise MammoSynthError(path, "no mammosynth provenance recorded in this file")
    return json.loads(text[start:])


def write_synthetic_dicom(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    provenance: dict,
    view: Optional[str] = None,
    laterality: Optional[str] = None,
    spacing_mm: Optional[tuple[float, float]] = None,
    breast_side: str = "left",
    study: Optional[SyntheticStudy] = None,
    source: Optional[MammogramImage] = None,
    keep_source_identity: bool = False,
    stored_like: Optional[MammogramImage] = None,
    attributes: Optional[dict[str, object]] = None,
    series_description: str = "SYNTHETIC mammogram",
    transfer_syntax_uid: str = pydicom.uid.ExplicitVRLittleEndian,
    synthetic: bool = True,
) -> Path:
    """Write a Secondary Capture marked synthetic, with provenance, in one atomic write.

    `pixels` are [0, 1] floats (or uint16), written as 16-bit MONOCHROME2. With `stored_like`, they are stored values
    in that image's representation (uint8 or uint16 below 2**BitsStored) and the file copies it
    (`stored_representation`: BitsStored/HighBit, photometric, rescale or modality LUT, window, VOI LUT), so that
    they mean what they mean there. BitsAllocated is always 16: an 8-bit source gives BitsAllocated 16, BitsStored 8,
    HighBit 7 (valid DICOM: the values sit in the low bits of 16-bit words; readers give uint16 arrays).
    `attributes` (DICOM keyword: value, e.g. ViewPosition) are set last.
    `breast_side` is the side of the pixels where the chest wall is (it sets PatientOrientation).
    The patient is synthetic unless `keep_source_identity` is set, in which case the result joins the source's study
    and copies its BurnedInAnnotation. Otherwise `BurnedInAnnotation` is NO, and with a `source` the file says the
    source's identity was removed and its pixels cleaned: callers pass pixels cleaned by `deidentify.clean_image`.
    `synthetic=False` writes a de-identified copy of a real image (not marked synthetic).
    """
    import highdicom as hd

    path = Path(path)
    if synthetic and not series_description.upper().startswith("SYNTHETIC"):
        series_description = f"SYNTHETIC {series_description}"
    if study is None:
        if keep_source_identity:
            if source is None:
                raise ValueError("keep_source_identity needs a source image")
            study = SyntheticStudy.of_source(source)
        else:
            study = SyntheticStudy.new()
    if source is not None:
        view = view or source.view
        laterality = laterality or source.laterality
        spacing_mm = spacing_mm or source.spacing_mm
    orientation = patient_orientation(breast_side, laterality, view)
    representation = stored_representation(stored_like) if stored_like is not None else {}
    if representation and pydicom.uid.UID(transfer_syntax_uid).is_encapsulated \
            and transfer_syntax_uid != pydicom.uid.RLELossless:  # these codecs encode BitsStored into the stream
        raise ValueError("stored_like needs an uncompressed or RLE transfer syntax")
    extra = {**representation, **(attributes or {})}
    unknown = [keyword for keyword in extra if pydicom.datadict.tag_for_keyword(keyword) is None]
    if unknown:
        raise ValueError(f"not DICOM keywords: {', '.join(unknown)}")
    array = np.ascontiguousarray(pixels)
    array = _as_stored(array, representation["BitsStored"]) if representation else _as_uint16(array)
    if array.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {array.shape}")
    record = {"generator": "mammosynth", "mammosynth_version": __version__, **provenance}
    what = "SYNTHETIC image made" if synthetic else "De-identified copy of a real image written"
    comments = f"{what} by mammosynth; provenance " + json.dumps(record, sort_keys=True, default=str)
    if len(comments) > 10240:
        raise ValueError("provenance too long for ImageComments (10240 characters)")
    image = hd.sc.SCImage(
        pixel_array=array,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=16,
        coordinate_system="PATIENT",
        study_instance_uid=study.study_uid,
        series_instance_uid=hd.UID(),
        series_number=study.next_series_number(),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        patient_sex="F",
        accession_number=study.accession_number or None,
        study_id=study.study_id or None,
        study_date=study.study_date or None,
        study_time=study.study_time or None,
        referring_physician_name="",
        pixel_spacing=spacing_mm,
        laterality=laterality if laterality in ("L", "R") else None,
        patient_orientation=tuple(v[0] for v in orientation),  # highdicom takes one letter a value
        transfer_syntax_uid=transfer_syntax_uid,
    )
    image.Modality = "MG"
    image.PatientOrientation = list(orientation)
    if "Laterality" not in image:  # Type 2C for a paired body part (BREAST): present, empty when unknown
        image.Laterality = ""
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.ConversionType = "SYN" if synthetic else "WSD"
    image.SeriesDescription = series_description[:64]
    image.BurnedInAnnotation = "NO"
    if keep_source_identity and source is not None:  # the source's pixels as they were: its own statement holds
        if "BurnedInAnnotation" in source.dataset:
            image.BurnedInAnnotation = source.dataset.BurnedInAnnotation
        else:
            del image.BurnedInAnnotation
    elif source is not None:
        from MammoSynthLogic.deidentify import BASIC_PROFILE, CLEAN_PIXELS, deidentification_attributes

        for keyword, value in deidentification_attributes("mammosynth: new identity; outside breast cleaned",
                                                           (BASIC_PROFILE, CLEAN_PIXELS)).items():
            setattr(image, keyword, value)
    image.RecognizableVisualFeatures = "NO"
    image.BodyPartExamined = "BREAST"
    image.ImageComments = comments
    image.DerivationDescription = (f"Synthetic image generated by mammosynth {__version__} (seed {provenance.get('seed')})"
                                   if synthetic else f"Real image de-identified by mammosynth {__version__}: new "
                                   "identity, pixels outside the breast set to background")[:1024]
    image.SoftwareVersions = __version__
    image.ContentDate = datetime.date.today().strftime("%Y%m%d")
    image.ContentTime = datetime.datetime.now().strftime("%H%M%S")
    image.PatientBirthDate = ""
    if view in VIEW_CODE_OF:
        image.ViewCodeSequence = [_view_code_item(view)]
    for keyword, value in extra.items():
        setattr(image, keyword, value)
    with atomic_path(path) as tmp:
        image.save_as(tmp, enforce_file_format=True)
    return path


_SEG_TYPE2_FROM_SOURCE = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _add_patient_geometry(reference: Dataset, source: MammogramImage) -> None:
    """Give a reference copy of a mammogram the geometry Slicer loads it with, for highdicom to copy into the SEG.

    A projection image has no patient geometry, but dcmqi (Slicer's SEG reader) needs a Frame of Reference, plane
    orientation and position, and pixel measures: Slicer puts an image without them at the origin with the axes of
    the patient coordinate system, so the SEG says the same. The frame of reference is derived from the source
    instance so that every SEG of one image shares it.
    """
    if "FrameOfReferenceUID" not in reference:
        reference.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=["frame of reference", source.sop_uid])
    if "ImagePositionPatient" not in reference:
        reference.ImagePositionPatient = [0.0, 0.0, 0.0]
    if "ImageOrientationPatient" not in reference:
        reference.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if "PixelSpacing" not in reference:
        reference.PixelSpacing = list(source.spacing_mm or (1.0, 1.0))
    if "SliceThickness" not in reference:  # required in the Pixel Measures item; a projection has no slice
        reference.SliceThickness = 1.0


def write_segmentation(
    path: str | os.PathLike,
    mask: np.ndarray,
    source: MammogramImage,
    *,
    label: str = "Mass",
    algorithm: str = "mammosynth",
    description: str = "mammosynth finding",
    breast_side: Optional[str] = None,
    finding: str = "mass",
) -> Path:
    """Binary DICOM Segmentation in the source image's pixel grid, referencing the source instance; atomic.
    `finding`: the segment's property type, "mass" or "calcification" (a cluster)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    path = Path(path)
    mask = np.asarray(mask)
    if mask.shape != (source.rows, source.columns):
        raise ValueError(f"mask shape {mask.shape} differs from the source image {(source.rows, source.columns)}")
    algorithm_id = hd.AlgorithmIdentificationSequence(name=algorithm, version=__version__, family=codes.DCM.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type={"mass": codes.SCT.Mass, "calcification": codes.SCT.CalcificationCluster}[finding],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_id,
        anatomic_regions=[codes.SCT.Breast],
    )
    side = {"L": codes.SCT.Left, "R": codes.SCT.Right}.get(source.laterality or "")
    if side is not None:  # a SEG states laterality on its segments: dciodvfy refuses the series Laterality there
        segment.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
            hd.sr.CodedConcept(side.value, side.scheme_designator, side.meaning)]
    reference = source.dataset.copy()
    for keyword in _SEG_TYPE2_FROM_SOURCE:  # Type 2 in SEG: present, possibly empty; some sources lack them
        if keyword not in reference:
            setattr(reference, keyword, "")
    _add_patient_geometry(reference, source)
    seg = hd.seg.Segmentation(
        source_images=[reference],
        pixel_array=mask.astype(bool)[np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=2000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="mammosynth",
        software_versions=__version__,
        device_serial_number="0",
        series_description=description[:64],
        omit_empty_frames=False,
    )
    orientation = _multi(source.dataset.get("PatientOrientation"))
    if len(orientation) != 2:
        if breast_side is None:
            from MammoSynthLogic.breast_mask import breast_side as detect_side

            breast_side = detect_side(source.pixels)
        orientation = list(patient_orientation(breast_side, source.laterality, source.view))
    seg.PatientOrientation = orientation
    with atomic_path(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path


def write_png16(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """16-bit grayscale PNG of [0, 1] pixels (uint16 as is; uint8 and RGB uint8 as 8-bit PNG); atomic."""
    from PIL import Image

    array = np.ascontiguousarray(pixels)
    with atomic_path(path) as tmp:
        Image.fromarray(array if array.dtype == np.uint8 else _as_uint16(array)).save(tmp, format="PNG")
    return Path(path)


def write_nrrd(path: str | os.PathLike, array: np.ndarray, spacing_mm: Optional[tuple[float, float]] = None) -> Path:
    """NRRD of a 2D array (rows, columns) with spacing when known; atomic. Float arrays stay float."""
    import nrrd

    header = {"space dimension": 2, "space directions": np.diag([spacing_mm[1], spacing_mm[0]]) if spacing_mm else np.eye(2),
              "space origin": np.zeros(2), "encoding": "gzip"}
    with atomic_path(path) as tmp:
        # NRRD's fastest axis comes first: store (columns, rows) so that readers see the image upright.
        nrrd.write(str(tmp), np.ascontiguousarray(array.T), header, index_order="F")
    return Path(path)


def write_image(path: str | os.PathLike, pixels: np.ndarray, **dicom_options) -> Path:
    """Write a result by extension: .dcm (synthetic Secondary Capture), .png (16-bit), .nrrd."""
    suffix = Path(path).suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return write_synthetic_dicom(path, pixels, **dicom_options)
    if suffix == ".png":
        return write_png16(path, pixels)
    if suffix == ".nrrd":
        return write_nrrd(path, np.asarray(pixels, dtype=np.float32), dicom_options.get("spacing_mm"))
    raise MammoSynthError(path, "unknown output type: use a .dcm, .png or .nrrd file name")


def patient_orientation(breast_side: str, laterality: Optional[str], view: Optional[str]) -> tuple[str, str]:
    """PatientOrientation of a mammogram: rows point anterior when the chest wall is on the left, columns to the
    medial side (and the feet for MLO), e.g. A\\R for a left CC with its chest wall on the left."""
    row = "A" if breast_side == "left" else "P"
    medial = {"L": "R", "R": "L"}.get(laterality or "", "")
    column = ("F" + medial) if view == "MLO" else (medial or "F")
    return row, column
