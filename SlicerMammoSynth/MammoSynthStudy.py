"""Mammograms from a plain folder (the engine's DICOM reader) or a result file as volume nodes under their study.

No Qt and no Slicer application: it needs a scene (Slicer's or one from `slicer-core`), the engine package
`MammoSynthLogic` and the MRML conversion in `MammoSynthMRML`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional

import numpy as np

import MammoSynthMRML as mrml
from MammoSynthLogic import dicom_io
from MammoSynthLogic.errors import MammoSynthError

# Node attributes the module reads back (set by either loader).
VIEW_ATTRIBUTE = "MammoSynth.View"
LATERALITY_ATTRIBUTE = "MammoSynth.Laterality"
SOURCE_ATTRIBUTE = "MammoSynth.SourcePath"
SYNTHETIC_ATTRIBUTE = "MammoSynth.Synthetic"


def view_label(laterality: Optional[str], view: Optional[str]) -> str:
    """"L CC", "R MLO", "? CC" ...: how a view is named in the panel and the Data module."""
    return f"{laterality or '?'} {view or '?'}"


@dataclasses.dataclass
class LoadedView:
    label: str
    node: object  # vtkMRMLScalarVolumeNode
    path: Path
    laterality: Optional[str]
    view: Optional[str]


def image_geometry(image: dicom_io.MammogramImage) -> np.ndarray:
    """IJK-to-RAS of a mammogram as Slicer's DICOM loader (ITK) computes it from the header."""
    ds = image.dataset
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    return mrml.ijk_to_ras(
        image.spacing_mm,
        [float(v) for v in position] if position is not None and len(position) == 3 else None,
        [float(v) for v in orientation] if orientation is not None and len(orientation) == 6 else None,
    )


def stored_values(image: dicom_io.MammogramImage) -> np.ndarray:
    """Pixels as unsigned integers of the image's bit depth, tissue bright (MONOCHROME1 already inverted)."""
    bits = min(max(image.bits_stored, 8), 16)
    return np.rint(np.clip(image.pixels, 0.0, 1.0) * ((1 << bits) - 1)).astype(np.uint16 if bits > 8 else np.uint8)


def add_image(scene, image: dicom_io.MammogramImage, name: Optional[str] = None, synthetic: bool = False):
    """One mammogram as a scalar volume node under its patient/study in subject hierarchy."""
    label = view_label(image.laterality, image.view)
    node = mrml.image_to_volume_node(scene, stored_values(image), name or label,
                                     ijk_to_ras_matrix=image_geometry(image))
    node.SetAttribute(VIEW_ATTRIBUTE, image.view or "")
    node.SetAttribute(LATERALITY_ATTRIBUTE, image.laterality or "")
    node.SetAttribute(SOURCE_ATTRIBUTE, str(image.path) if image.path else "")
    node.SetAttribute(SYNTHETIC_ATTRIBUTE, "1" if synthetic else "0")
    ds = image.dataset
    study = mrml.study_item(scene, str(ds.get("PatientName", "")), image.patient_id,
                            str(ds.get("StudyDescription", "")) or str(ds.get("StudyDate", "")), image.study_uid)
    mrml.place_under(scene, node, study)
    return node


def load_folder(scene, folder: str | os.PathLike) -> tuple[list[LoadedView], list[MammoSynthError]]:
    """Every readable mammogram in a folder (recursively) as a volume node; unreadable files become errors."""
    paths, errors = dicom_io.find_dicoms([folder])
    views = []
    for path in paths:
        try:
            image = dicom_io.read_mammogram(path)
        except MammoSynthError as error:
            errors.append(error)
            continue
        node = add_image(scene, image)
        views.append(LoadedView(node.GetName(), node, path, image.laterality, image.view))
    views.sort(key=lambda v: (v.laterality or "?", v.view or "?", str(v.path)))
    return views, errors


def load_result(scene, path: str | os.PathLike, source_node=None, name: Optional[str] = None):
    """A result DICOM written by the engine as a volume; placed in the source's study when there is a source
    (e.g. an upscaled real image), else under its own synthetic patient and study."""
    image = dicom_io.read_mammogram(path)
    node = add_image(scene, image, name=name or f"{view_label(image.laterality, image.view)} synthetic",
                     synthetic=True)
    if source_node is not None:
        mrml.place_beside(scene, node, source_node)
    return node


def view_info(node) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(laterality, view, source path) recorded on a node by either loader."""
    return (node.GetAttribute(LATERALITY_ATTRIBUTE) or None, node.GetAttribute(VIEW_ATTRIBUTE) or None,
            node.GetAttribute(SOURCE_ATTRIBUTE) or None)
