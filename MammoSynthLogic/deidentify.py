"""Pixel de-identification for outputs that drop a real image's identity but keep some of its pixels.

Everything outside the breast region (the engine's own segmentation, grown a little so the skin line stays) is set
to the image's darkest value: burned-in labels, names, dates, film markers and rulers go with it (DICOM PS3.15
Clean Pixel Data Option), so `BurnedInAnnotation NO` is true of the result. Inpainting, dual-view completion copies
and reader-study copies all go through `outside_breast`, so real and synthetic images are cleaned alike.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from pydicom.dataset import Dataset

from MammoSynthLogic.breast_mask import breast_region
from MammoSynthLogic.dicom_io import MammogramImage

GROW = 0.01  # the breast region grows by 1 % of the longer side: skin line and a margin of air are kept
# DICOM CID 7050 de-identification method codes (PS3.16).
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXELS = ("113101", "Clean Pixel Data Option")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")


def outside_breast(pixels01: np.ndarray) -> np.ndarray:
    """True where a pixel is background to be cleaned: outside the grown breast region (bool, same shape)."""
    return ~breast_region(pixels01, GROW)


def clean_image(image: MammogramImage) -> MammogramImage:
    """A copy whose pixels (and stored pixels, when kept) outside the breast hold the image's darkest value."""
    if image.pixel_step != 1:
        raise ValueError("clean_image needs the full-resolution pixels, not a preview")
    outside = outside_breast(image.pixels)
    darkest = int(np.argmin(image.pixels))  # one pixel gives both the display and the stored background value
    pixels = np.where(outside, image.pixels.flat[darkest], image.pixels).astype(np.float32)
    stored = image.stored_pixels
    if stored is not None:
        stored = np.where(outside, stored.flat[darkest], stored).astype(stored.dtype)
    return dataclasses.replace(image, pixels=pixels, stored_pixels=stored)


def code_item(value: tuple[str, str]) -> Dataset:
    """One DCM code sequence item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value[0], "DCM", value[1]
    return item


def deidentification_attributes(description: str, methods: tuple[tuple[str, str], ...]) -> dict[str, object]:
    """PatientIdentityRemoved and the method description and codes, as DICOM keyword: value."""
    return {"PatientIdentityRemoved": "YES", "DeidentificationMethod": description[:64],
            "DeidentificationMethodCodeSequence": [code_item(m) for m in methods]}
