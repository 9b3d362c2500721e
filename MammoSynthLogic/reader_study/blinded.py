"""The one writer every reader copy goes through: a fixed tag set, so nothing in a file tells real from synthetic.

A reader copy is re-written from its pixels alone: no attribute of the source file is carried over (the strictest
form of the DICOM PS3.15 Basic Application Level Confidentiality Profile: every attribute of Table E.1-1 is removed
or replaced, UIDs are new, dates are empty). Real and synthetic copies get the same attributes with the same
values apart from the case number and the UIDs, the same bit depth, transfer syntax and matrix, so every file has
the same size. The study as a whole says that it contains synthetic images (StudyDescription, ImageComments);
no single file says whether it is one.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from MammoSynthLogic.deidentify import BASIC_PROFILE, CLEAN_DESCRIPTORS, CLEAN_PIXELS, code_item
from MammoSynthLogic.fileio import atomic_path

STUDY_DESCRIPTION = "READER STUDY - REAL AND SYNTHETIC MAMMOGRAMS"
COMMENT = ("Reader study copy made by mammosynth. This study mixes real (de-identified) and synthetic "
           "(computer-generated) mammograms; the answer key is kept apart from the reader copies.")
IMPLEMENTATION_UID = "2.25.231405452370914283521532372856345178461"  # fixed, so file meta is the same in every copy


def neutral_uid(secret: str, *parts: object) -> str:
    """A `2.25.` UID of fixed length (39 digits) derived from a secret and parts; unguessable without the secret."""
    counter = 0
    while True:
        digest = hashlib.sha256("|".join(map(str, (secret, *parts, counter))).encode()).digest()
        value = uuid.UUID(bytes=digest[:16], version=4).int
        if value >= 10 ** 38:  # 39 digits: every UID has the same length, so every file the same size
            return f"2.25.{value}"
        counter += 1


def blinded_dataset(pixels: np.ndarray, bits: int, case_number: int, secret: str, clean_pixels: bool) -> Dataset:
    """The reader copy's dataset: fixed attributes, the case number, UIDs from the secret, and the pixels."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f"expected a 2D uint16 image, got {pixels.dtype} {pixels.shape}")
    if not 8 <= bits <= 16 or int(pixels.max(initial=0)) >= 1 << bits:
        raise ValueError(f"pixels do not fit in {bits} bits")
    sop_uid = neutral_uid(secret, case_number, "sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MAMMOSYNTH_RS"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.Manufacturer = ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = "READER STUDY CASE"
    ds.PatientName = f"CASE^{case_number:06d}"
    ds.PatientID = f"CASE-{case_number:06d}"
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    methods = [BASIC_PROFILE, CLEAN_DESCRIPTORS] + ([CLEAN_PIXELS] if clean_pixels else [])
    ds.DeidentificationMethod = "PS3.15 E.1 basic profile; rewritten from pixels, fixed tags"
    ds.DeidentificationMethodCodeSequence = Sequence([code_item(m) for m in methods])
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = neutral_uid(secret, case_number, "study")
    ds.SeriesInstanceUID = neutral_uid(secret, case_number, "series")
    ds.StudyID = ""
    ds.Laterality = ""  # Type 2C; the reader sees the side in the image
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ImageComments = COMMENT
    if clean_pixels:
        ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).astype("<u2").tobytes()
    return ds


def write_blinded_dicom(path: str | os.PathLike, pixels: np.ndarray, *, bits: int, case_number: int, secret: str,
                        clean_pixels: bool) -> Path:
    """Write one reader copy atomically (see `blinded_dataset`)."""
    path = Path(path)
    ds = blinded_dataset(pixels, bits, case_number, secret, clean_pixels)
    with atomic_path(path) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return path
