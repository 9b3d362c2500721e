"""Arrays <-> MRML nodes: volumes, label maps, segmentations and subject hierarchy placement.

Only Slicer's MRML classes and vtk are imported, so this file runs inside Slicer and, through the PyPI
package `slicer-core`, in plain Python (the test suite). Every function takes the scene it works in.

Geometry follows how Slicer shows a DICOM mammogram loaded through ITK: one slice, I along the columns,
J along the rows, spacing (column, row, 1) in mm, origin and directions from ImagePositionPatient /
ImageOrientationPatient when present (identity in LPS otherwise), converted from LPS to RAS. The array
row 0 is then at the top of the axial view and column 0 on the left, as in any DICOM viewer.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Optional, Sequence

import numpy as np
import vtk
from vtk.util import numpy_support

from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScene,
    vtkMRMLSegmentationNode,
    vtkMRMLSubjectHierarchyConstants,
    vtkMRMLSubjectHierarchyNode,
    vtkMRMLVolumeNode,
    vtkSegmentation,
    vtkSlicerSegmentationsModuleLogic,
)



def terminology(type_code: str, type_meaning: str) -> str:
    """A SNOMED CT finding (category Morphologically Altered Structure) in the form the Segment Editor stores it."""
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            f"~SCT^49755003^Morphologically Altered Structure~SCT^{type_code}^{type_meaning}~^^"
            "~Anatomic codes - DICOM master list~^^~^^")


MASS_TERMINOLOGY = terminology("4147007", "Mass")
MASS_COLOR = (0.9, 0.35, 0.2)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# Colour tables for heat maps, first found wins: Slicer's file tables (the application loads them), then the
# procedural and built-in ones that every scene has (also with slicer-core).
HEAT_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
    "vtkMRMLColorTableNodeFileInferno.txt",
    "vtkMRMLPETProceduralColorNodePET-Heat",
    "vtkMRMLColorTableNodeIron",
)
HEAT_VISIBLE_FRACTION = 0.01  # heat below this fraction of the maximum is transparent in the slice views


def ijk_to_ras(spacing_mm: Optional[Sequence[float]] = None, origin_lps: Optional[Sequence[float]] = None,
               orientation_lps: Optional[Sequence[float]] = None) -> np.ndarray:
    """4x4 IJK-to-RAS of a 2D image: spacing (row, column) mm, ImagePositionPatient, ImageOrientationPatient."""
    row_mm, col_mm = (float(spacing_mm[0]), float(spacing_mm[1])) if spacing_mm else (1.0, 1.0)
    along_row, along_col = (np.asarray(orientation_lps[:3], float), np.asarray(orientation_lps[3:6], float)) \
        if orientation_lps else (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
    normal = np.cross(along_row, along_col)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.column_stack([along_row * col_mm, along_col * row_mm, normal])
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin_lps if origin_lps is not None else (0.0, 0.0, 0.0), float)
    return matrix


def _vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(matrix[r, c]))
    return out


def ijk_to_ras_of(node: vtkMRMLVolumeNode) -> np.ndarray:
    """The node's IJK-to-RAS as a 4x4 array."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _image_data(array: np.ndarray) -> vtk.vtkImageData:
    """vtkImageData of a (rows, columns) array: VTK's x (fastest) is the column."""
    array = np.ascontiguousarray(array)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[1], array.shape[0], 1)
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def image_to_volume_node(scene: vtkMRMLScene, pixels: np.ndarray, name: str, *,
                         ijk_to_ras_matrix: Optional[np.ndarray] = None,
                         reference: Optional[vtkMRMLVolumeNode] = None,
                         node_class: str = "vtkMRMLScalarVolumeNode", display: bool = True) -> vtkMRMLScalarVolumeNode:
    """A new volume node holding a 2D array, with the geometry of `reference` or the given matrix."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {pixels.shape}")
    if reference is not None:
        ijk_to_ras_matrix = ijk_to_ras_of(reference)
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveImageData(_image_data(pixels))
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras() if ijk_to_ras_matrix is None else ijk_to_ras_matrix))
    if display:
        node.CreateDefaultDisplayNodes()
    return node


def volume_node_to_array(node: vtkMRMLVolumeNode) -> np.ndarray:
    """The (rows, columns) array of a one-slice volume node (a copy)."""
    image = node.GetImageData()
    if image is None:
        raise ValueError(f"{node.GetName()}: the volume has no image data")
    nx, ny, nz = image.GetDimensions()
    if nz != 1:
        raise ValueError(f"{node.GetName()}: expected one slice, the volume has {nz}")
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx).copy()


def mask_to_labelmap_node(scene: vtkMRMLScene, mask: np.ndarray, reference: vtkMRMLVolumeNode, name: str,
                          label: int = 1, display: bool = True) -> vtkMRMLLabelMapVolumeNode:
    """A label-map node (value `label` inside the mask) on the reference image's grid."""
    _check_shape(mask, reference)
    values = np.where(np.asarray(mask) > 0, label, 0).astype(np.uint8)
    return image_to_volume_node(scene, values, name, reference=reference, node_class="vtkMRMLLabelMapVolumeNode",
                                display=display)


def labelmap_node_to_mask(node: vtkMRMLVolumeNode) -> np.ndarray:
    return volume_node_to_array(node) > 0


def _check_shape(mask: np.ndarray, reference: vtkMRMLVolumeNode) -> None:
    dims = reference.GetImageData().GetDimensions()
    if tuple(np.shape(mask)) != (dims[1], dims[0]):
        raise ValueError(f"mask shape {np.shape(mask)} differs from {reference.GetName()} ({dims[1]}, {dims[0]})")


def labelmap_to_segmentation_node(scene: vtkMRMLScene, labelmap: vtkMRMLLabelMapVolumeNode, name: str,
                                  reference: Optional[vtkMRMLVolumeNode] = None, segment_name: str = "Mass",
                                  terminology: str = MASS_TERMINOLOGY) -> vtkMRMLSegmentationNode:
    """A segmentation node with one segment per label, named and coded with the given terminology."""
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference or labelmap)
    _import_labels(segmentation_node, labelmap, segment_name, terminology)
    return segmentation_node


def _import_labels(segmentation_node: vtkMRMLSegmentationNode, labelmap: vtkMRMLLabelMapVolumeNode,
                   segment_name: str, terminology: str) -> None:
    """Add one segment per label value of the label map (in label order), named "Mass" or "Mass 1", "Mass 2"..."""
    if not vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
        raise RuntimeError(f"{labelmap.GetName()}: import into a segmentation failed")
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segment.SetName(segment_name if segmentation.GetNumberOfSegments() == 1 else f"{segment_name} {index + 1}")
        segment.SetTerminology(terminology)
        segment.SetColor(*MASS_COLOR)


def findings_to_labels(findings: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """One label value per connected finding: i + 1 inside finding i, 0 elsewhere (uint8, uint16 past 255)."""
    values = np.zeros(shape, np.uint8 if len(findings) < 256 else np.uint16)
    for index, mask in enumerate(findings):
        if np.shape(mask) != tuple(shape):
            raise ValueError(f"finding {index + 1} has shape {np.shape(mask)}, expected {tuple(shape)}")
        values[np.asarray(mask, bool)] = index + 1
    return values


def heat_color_node_id(scene: vtkMRMLScene) -> str:
    """The first heat colour table of HEAT_COLOR_NODE_IDS present in the scene."""
    for node_id in HEAT_COLOR_NODE_IDS:
        if scene.GetNodeByID(node_id) is not None:
            return node_id
    raise RuntimeError("no heat colour table in the scene (the Colors module adds them to every Slicer scene)")


def heat_to_volume_node(scene: vtkMRMLScene, heat: np.ndarray, reference: vtkMRMLVolumeNode,
                        name: str) -> vtkMRMLScalarVolumeNode:
    """A float heat map on the reference grid, coloured with a heat table from 0 to its maximum; values below
    HEAT_VISIBLE_FRACTION of the maximum (no finding) are transparent, so it overlays the image."""
    _check_shape(heat, reference)
    node = image_to_volume_node(scene, np.asarray(heat, np.float32), name, reference=reference)
    peak = float(np.max(heat)) if np.size(heat) else 0.0
    top = peak if peak > 0 else 1.0
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_node_id(scene))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, top)
    display.AutoThresholdOff()
    display.SetThreshold(HEAT_VISIBLE_FRACTION * top, top)
    display.ApplyThresholdOn()
    return node


@dataclasses.dataclass
class AnomalyNodes:
    """What an anomaly result is shown as: heat map (colour overlay), label map (one value per finding) and a
    segmentation with one "Mass" segment per connected finding, all on the source image's grid."""

    heat: vtkMRMLScalarVolumeNode
    labels: vtkMRMLLabelMapVolumeNode
    segmentation: vtkMRMLSegmentationNode


def anomaly_to_nodes(scene: vtkMRMLScene, heat: np.ndarray, findings: Sequence[np.ndarray],
                     reference: vtkMRMLVolumeNode, name: str) -> AnomalyNodes:
    """Heat map and connected findings (bool masks on the reference grid) as nodes placed beside the reference
    (in its study)."""
    heat_node = heat_to_volume_node(scene, heat, reference, f"{name} heat")
    labels = image_to_volume_node(scene, findings_to_labels(findings, np.shape(heat)), f"{name} labels",
                                  reference=reference, node_class="vtkMRMLLabelMapVolumeNode")
    segmentation = labelmap_to_segmentation_node(scene, labels, f"{name} findings", reference=reference)
    display = segmentation.GetDisplayNode()
    display.SetVisibility2DFill(False)  # the label map fills the findings; the segments outline them
    display.SetVisibility2DOutline(True)
    nodes = AnomalyNodes(heat_node, labels, segmentation)
    for node in (heat_node, labels, segmentation):
        place_beside(scene, node, reference)
    return nodes


def set_findings(nodes: AnomalyNodes, findings: Sequence[np.ndarray]) -> None:
    """Replace the findings shown (label map values and segments) on the heat map's grid, e.g. after a new
    threshold; the nodes stay where they are in the scene and subject hierarchy."""
    reference = nodes.heat
    values = findings_to_labels(findings, volume_node_to_array(reference).shape)
    nodes.labels.SetAndObserveImageData(_image_data(values))
    nodes.labels.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras_of(reference)))
    segmentation = nodes.segmentation.GetSegmentation()
    segmentation.RemoveAllSegments()
    nodes.segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    _import_labels(nodes.segmentation, nodes.labels, "Mass", MASS_TERMINOLOGY)


@contextlib.contextmanager
def _temporary_nodes(scene: vtkMRMLScene) -> Iterator[None]:
    """Remove every node added to the scene inside the block (helper label maps, their display and color nodes)."""
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield
    finally:
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in before:
                scene.RemoveNode(node)


def has_segment(segmentation_node: Optional[vtkMRMLSegmentationNode], segment_id: Optional[str]) -> bool:
    """Whether the segmentation node holds a segment of that ID."""
    return bool(segmentation_node is not None and segment_id
                and segmentation_node.GetSegmentation().GetSegment(segment_id) is not None)


def segment_editor_selection(scene: vtkMRMLScene) -> tuple[Optional[vtkMRMLSegmentationNode], Optional[str]]:
    """(segmentation node, segment ID) selected in the Segment Editor module, (None, None) when nothing is."""
    editor = scene.GetSingletonNode("SegmentEditor", "vtkMRMLSegmentEditorNode") \
        or scene.GetFirstNodeByClass("vtkMRMLSegmentEditorNode")
    if editor is None or not has_segment(editor.GetSegmentationNode(), editor.GetSelectedSegmentID()):
        return None, None
    return editor.GetSegmentationNode(), editor.GetSelectedSegmentID()


def segment_to_mask(segmentation_node: vtkMRMLSegmentationNode, segment_id: str,
                    reference: vtkMRMLVolumeNode) -> np.ndarray:
    """The segment on the reference image's grid (resampled, cropped or padded from whatever geometry and extent it
    was painted on): a bool (rows, columns) mask in the engine's array layout."""
    scene = segmentation_node.GetScene()
    with _temporary_nodes(scene):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__mammosynth_export")
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        ok = vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference, vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        if not ok:
            raise RuntimeError(f"{segmentation_node.GetName()}: segment {segment_id} could not be exported")
        mask = labelmap_node_to_mask(labelmap)
    _check_shape(mask, reference)
    return mask


def mask_to_segment(segmentation_node: vtkMRMLSegmentationNode, mask: np.ndarray, reference: vtkMRMLVolumeNode,
                    segment_name: str = "Mass", terminology: str = MASS_TERMINOLOGY) -> str:
    """Add the mask as a new segment (on the reference grid) and return its ID."""
    scene = segmentation_node.GetScene()
    with _temporary_nodes(scene):
        labelmap = mask_to_labelmap_node(scene, mask, reference, "__mammosynth_import", display=False)
        if segmentation_node.GetSegmentation().GetNumberOfSegments() == 0:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", segment_name, MASS_COLOR)
        image = vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap)
        if not vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                image, segmentation_node, segment_id, vtkSlicerSegmentationsModuleLogic.MODE_REPLACE):
            raise RuntimeError(f"{segmentation_node.GetName()}: the mask could not be set to segment {segment_id}")
    segmentation_node.GetSegmentation().GetSegment(segment_id).SetTerminology(terminology)
    return segment_id


def mask_to_segmentation_node(scene: vtkMRMLScene, mask: np.ndarray, reference: vtkMRMLVolumeNode, name: str,
                              segment_name: str = "Mass",
                              terminology: str = MASS_TERMINOLOGY) -> vtkMRMLSegmentationNode:
    """A new segmentation node whose one segment is the mask (on the reference grid)."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    mask_to_segment(node, mask, reference, segment_name, terminology)
    return node


def subject_hierarchy(scene: vtkMRMLScene) -> vtkMRMLSubjectHierarchyNode:
    return vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)


def study_item(scene: vtkMRMLScene, patient_name: str, patient_id: str, study_description: str,
               study_uid: str) -> int:
    """The subject hierarchy study item of a study (created with its patient when missing), as Slicer's DICOM
    loader names them: found again by Study Instance UID."""
    sh = subject_hierarchy(scene)
    found = sh.GetItemByUID(vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), study_uid) if study_uid else 0
    if found:
        return found
    patient = sh.GetItemByUID(vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), patient_id) if patient_id else 0
    if not patient:
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), patient_name or patient_id or "Anonymous")
        if patient_id:
            sh.SetItemUID(patient, vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), patient_id)
            sh.SetItemAttribute(patient, vtkMRMLSubjectHierarchyConstants.GetDICOMPatientIDAttributeName(), patient_id)
    study = sh.CreateStudyItem(patient, study_description or "Study")
    if study_uid:
        sh.SetItemUID(study, vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), study_uid)
        sh.SetItemAttribute(study, vtkMRMLSubjectHierarchyConstants.GetDICOMStudyInstanceUIDAttributeName(), study_uid)
    return study


def place_under(scene: vtkMRMLScene, node, parent_item: int) -> int:
    """Put the node's subject hierarchy item under `parent_item` (e.g. a study) and return the node's item."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node) or sh.CreateItem(parent_item, node)
    sh.SetItemParent(item, parent_item)
    return item


def place_beside(scene: vtkMRMLScene, node, source_node) -> int:
    """Put the node under the same parent (the study) as the source node: results land in the source's study."""
    sh = subject_hierarchy(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(source_node))
    return place_under(scene, node, parent or sh.GetSceneItemID())
