"""Mammograms from a plain folder (the engine's DICOM reader) or a result file as volume nodes under their study.

No Qt and no Slicer application: it needs a scene (Slicer's or one from `slicer-core`), the engine package
`MammoSynthLogic` and the MRML conversion in `SlicerMammoSynthLib.mrml`.
"""
from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom

from SlicerMammoSynthLib import mrml
from MammoSynthLogic import dicom_io
from MammoSynthLogic.errors import MammoSynthError

# Node attributes the module reads back (set by either loader).
VIEW_ATTRIBUTE = "MammoSynth.View"
LATERALITY_ATTRIBUTE = "MammoSynth.Laterality"
SOURCE_ATTRIBUTE = "MammoSynth.SourcePath"
SYNTHETIC_ATTRIBUTE = "MammoSynth.Synthetic"
ANOMALY_FOLDER_ATTRIBUTE = "MammoSynth.AnomalyFolder"
SPACING_ATTRIBUTE = "MammoSynth.PixelSpacingInFile"  # "0": the file gave none (the volume's 1 mm is a stand-in)
MAMMOGRAM_ATTRIBUTE = "MammoSynth.Mammogram"  # "1" on every mammogram (not on heat or label maps): source candidates
MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


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


def _volume(scene, image: dicom_io.MammogramImage, name: str, synthetic: bool):
    """One mammogram as a scalar volume node with the attributes the module reads back (not yet placed)."""
    node = mrml.image_to_volume_node(scene, stored_values(image), name, ijk_to_ras_matrix=image_geometry(image))
    node.SetAttribute(VIEW_ATTRIBUTE, image.view or "")
    node.SetAttribute(LATERALITY_ATTRIBUTE, image.laterality or "")
    node.SetAttribute(SOURCE_ATTRIBUTE, str(image.path) if image.path else "")
    node.SetAttribute(SYNTHETIC_ATTRIBUTE, "1" if synthetic else "0")
    node.SetAttribute(MAMMOGRAM_ATTRIBUTE, "1")
    node.SetAttribute(SPACING_ATTRIBUTE, "1" if image.spacing_mm else "0")
    return node


def add_image(scene, image: dicom_io.MammogramImage, name: Optional[str] = None, synthetic: bool = False):
    """One mammogram as a scalar volume node under its patient/study in subject hierarchy."""
    node = _volume(scene, image, name or view_label(image.laterality, image.view), synthetic)
    ds = image.dataset
    study = mrml.study_item(scene, str(ds.get("PatientName", "")), image.patient_id,
                            str(ds.get("StudyDescription", "")) or str(ds.get("StudyDate", "")), image.study_uid)
    mrml.place_under(scene, node, study)
    return node


def load_files(scene, paths: Sequence[str | os.PathLike]) -> tuple[list[LoadedView], list[MammoSynthError]]:
    """Each file as a volume node; a file that fails to read becomes an error and adds nothing to the scene."""
    views, errors = [], []
    for path in map(Path, paths):
        try:
            image = dicom_io.read_mammogram(path)
        except MammoSynthError as error:
            errors.append(error)
            continue
        node = add_image(scene, image)
        views.append(LoadedView(node.GetName(), node, path, image.laterality, image.view))
    views.sort(key=lambda v: (v.laterality or "?", v.view or "?", str(v.path)))
    return views, errors


def load_folder(scene, folder: str | os.PathLike) -> tuple[list[LoadedView], list[MammoSynthError]]:
    """Every readable mammogram in a folder (recursively) as a volume node; unreadable files become errors."""
    paths, errors = dicom_io.find_dicoms([folder])
    views, unreadable = load_files(scene, paths)
    return views, errors + unreadable


def load_database_study(scene, database, study_uid: str) -> tuple[list[LoadedView], list[str], list[MammoSynthError]]:
    """The MG "For Presentation" images of one study of Slicer's DICOM database (a ctkDICOMDatabase) as views:
    (views, what was skipped, errors). Other instances (For Processing images, presentation states, SR, other
    modalities) are skipped, counted by kind, e.g. "2 x Digital Mammography X-Ray Image Storage - For Processing"."""
    paths, skipped = [], collections.Counter()
    for series in database.seriesForStudy(study_uid):
        for path in database.filesForSeries(series):
            sop_class = database.fileValue(path, "0008,0016")
            if sop_class == MG_FOR_PRESENTATION:
                paths.append(path)
            else:
                skipped[pydicom.uid.UID(sop_class).name if sop_class else "unknown instance"] += 1
    views, errors = load_files(scene, paths)
    return views, [f"{count} x {kind}" for kind, count in sorted(skipped.items())], errors


def load_result(scene, path: str | os.PathLike, source_node=None, name: Optional[str] = None):
    """A result DICOM written by the engine as a volume; placed in the source's study when there is a source
    (e.g. an upscaled real image), else under its own synthetic patient and study."""
    image = dicom_io.read_mammogram(path)
    name = name or f"{view_label(image.laterality, image.view)} synthetic"
    if source_node is None:
        return add_image(scene, image, name=name, synthetic=True)
    node = _volume(scene, image, name, synthetic=True)
    mrml.place_beside(scene, node, source_node)
    return node


def load_dualview(scene, result: dict, source_node=None) -> list:
    """The views a `dualview` job wrote (its result line: {"views": {"CC": path, ...}, "seed": s}) as volumes named
    e.g. "R MLO dual-view seed 5 (synthetic)": a pair under its own synthetic study, a completed view in the
    source's study."""
    views = result.get("views") or {}
    if not views:
        raise MammoSynthError("dualview", "the job reported no views; run it again")
    nodes = []
    for view, path in views.items():
        node = load_result(scene, path, source_node=source_node)
        laterality, header_view, _ = view_info(node)
        node.SetName(scene.GenerateUniqueName(
            f"{view_label(laterality, header_view or view)} dual-view seed {result.get('seed')} (synthetic)"))
        nodes.append(node)
    return nodes


def load_lesion(scene, seg_path: str | os.PathLike, image_path: str | os.PathLike, image_node, name: str):
    """The engine's lesion DICOM SEG of an image (read and checked against that image by the engine's mask reader)
    as a segmentation on the image volume's grid, beside it: one segment named and coded as in the SEG."""
    from MammoSynthLogic.masks import read_mask

    mask = read_mask(seg_path, dicom_io.read_mammogram(image_path))
    segment = pydicom.dcmread(seg_path, stop_before_pixels=True).SegmentSequence[0]
    code = segment.SegmentedPropertyTypeCodeSequence[0]
    node = mrml.mask_to_segmentation_node(scene, mask, image_node, name, segment.SegmentLabel,
                                          mrml.terminology(code.CodeValue, code.CodeMeaning))
    mrml.place_beside(scene, node, image_node)
    return node


def _read_nrrd_2d(path: Path) -> np.ndarray:
    """A 2D NRRD written by the engine as a (rows, columns) array (NRRD stores columns first)."""
    import nrrd

    if not path.is_file():
        raise MammoSynthError(path, "missing: the anomaly job did not finish; run it again")
    data, _ = nrrd.read(str(path))
    if data.ndim != 2:
        raise MammoSynthError(path, f"expected a 2D image, the file holds {data.ndim} dimensions")
    return np.ascontiguousarray(data.T)


def load_anomaly(scene, folder: str | os.PathLike, source_node, name: Optional[str] = None) -> mrml.AnomalyNodes:
    """The engine's anomaly result folder (heat.nrrd, labels.nrrd) as heat map, label map and one "Mass" segment
    per connected finding, on the source volume's grid and in its study."""
    from MammoSynthLogic.anomaly import findings

    folder = Path(folder)
    heat = _read_nrrd_2d(folder / "heat.nrrd")
    labels = _read_nrrd_2d(folder / "labels.nrrd") > 0
    dims = source_node.GetImageData().GetDimensions()
    if heat.shape != (dims[1], dims[0]) or labels.shape != heat.shape:
        raise MammoSynthError(folder, f"the anomaly map is {heat.shape[1]} x {heat.shape[0]} pixels but "
                                      f"{source_node.GetName()} is {dims[0]} x {dims[1]}: run it on this view again")
    name = name or f"{source_node.GetName()} anomaly"
    nodes = mrml.anomaly_to_nodes(scene, heat, findings(labels), source_node, name)
    nodes.heat.SetAttribute(ANOMALY_FOLDER_ATTRIBUTE, str(folder))
    return nodes


def relabel_anomaly(nodes: mrml.AnomalyNodes, threshold: float) -> int:
    """Findings again from the heat map at a new threshold (fraction of its maximum), with the engine's own label
    rule, without re-running the model; returns the number of findings."""
    from MammoSynthLogic.anomaly import findings, label_map

    masks = findings(label_map(mrml.volume_node_to_array(nodes.heat), threshold))
    mrml.set_findings(nodes, masks)
    return len(masks)


def view_info(node) -> tuple[Optional[str], Optional[str], Optional[str]]:
    """(laterality, view, source path) recorded on a node by either loader."""
    return (node.GetAttribute(LATERALITY_ATTRIBUTE) or None, node.GetAttribute(VIEW_ATTRIBUTE) or None,
            node.GetAttribute(SOURCE_ATTRIBUTE) or None)
