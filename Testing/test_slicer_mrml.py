"""MRML conversion of the Slicer module, run for real against Slicer's libraries (PyPI `slicer-core`)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="install slicer-core (pip install slicer-core) to test MRML conversion")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the `slicer` package here has no MRML classes", allow_module_level=True)

import vtk  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SlicerMammoSynth"))

from SlicerMammoSynthLib import mrml  # noqa: E402
from SlicerMammoSynthLib import study  # noqa: E402
from MammoSynthLogic import dicom_io  # noqa: E402

SPACING = (0.085, 0.07)  # row, column (mm)
ORIGIN_LPS = (12.5, -40.0, 7.0)
OBLIQUE_IOP = (0.0, 1.0, 0.0, 0.6, 0.0, -0.8)  # rows along +y, columns down-and-left: not the identity


@pytest.fixture(scope="module", autouse=True)
def converter_rules():
    """Inside Slicer the Segmentations module registers these; with slicer-core the test does."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())


@pytest.fixture()
def scene():
    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()  # default color tables (grey, labels), as in the application
    colors.SetMRMLScene(scene)
    yield scene
    scene.Clear(1)


def _image(shape=(48, 36), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * (65535 if dtype == np.uint16 else 1)).astype(dtype)


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def test_ijk_to_ras_is_itk_lps_flipped_to_ras():
    matrix = mrml.ijk_to_ras(SPACING, ORIGIN_LPS)
    # column index i moves along patient left (LPS +x) = RAS -x; row index j along posterior = RAS -y
    np.testing.assert_allclose(matrix[:3, :3], np.diag([-SPACING[1], -SPACING[0], 1.0]))
    np.testing.assert_allclose(matrix[:3, 3], [-12.5, 40.0, 7.0])
    np.testing.assert_allclose(mrml.ijk_to_ras(None), np.diag([-1.0, -1.0, 1.0, 1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_volume_round_trip_keeps_pixels_and_geometry(scene, dtype, tmp_path):
    pixels = _image(dtype=dtype)
    matrix = mrml.ijk_to_ras(SPACING, ORIGIN_LPS, OBLIQUE_IOP)
    node = mrml.image_to_volume_node(scene, pixels, "L CC", ijk_to_ras_matrix=matrix)
    assert node.GetImageData().GetDimensions() == (36, 48, 1)
    np.testing.assert_allclose(node.GetSpacing(), (SPACING[1], SPACING[0], 1.0))
    np.testing.assert_allclose(mrml.ijk_to_ras_of(node), matrix, atol=1e-12)
    back = mrml.volume_node_to_array(node)
    assert back.dtype == dtype and np.array_equal(back, pixels)

    # through Slicer's own storage (NRRD) and back: geometry and values survive
    path = str(tmp_path / "volume.nrrd")
    storage = slicer.vtkMRMLNRRDStorageNode()  # the archetype (ITK) reader has no IO factories in slicer-core
    scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.WriteData(node)
    loaded = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(loaded)
    assert storage.ReadData(loaded)
    np.testing.assert_allclose(mrml.ijk_to_ras_of(loaded), matrix, atol=1e-6)
    assert np.array_equal(mrml.volume_node_to_array(loaded), pixels)


def test_geometry_matches_itk_reading_of_the_same_dicom(tmp_path):
    """Slicer's DICOM scalar-volume loader reads through ITK: our geometry must equal ITK's, LPS->RAS."""
    sitk = pytest.importorskip("SimpleITK")
    pixels = _image((96, 80))
    path = dicom_io.write_synthetic_dicom(tmp_path / "syn.dcm", pixels, provenance={"model": "test", "seed": 1},
                                          view="CC", laterality="L", spacing_mm=SPACING)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = list(ORIGIN_LPS)
    ds.ImageOrientationPatient = list(OBLIQUE_IOP)
    ds.save_as(path)
    image = dicom_io.read_mammogram(path)
    ours = study.image_geometry(image)
    itk = sitk.ReadImage(str(path))
    direction = np.array(itk.GetDirection()).reshape(3, 3)
    expected = np.eye(4)
    expected[:3, :3] = mrml.LPS_TO_RAS @ direction @ np.diag(itk.GetSpacing())
    expected[:3, 3] = mrml.LPS_TO_RAS @ np.array(itk.GetOrigin())
    np.testing.assert_allclose(ours[:3, :2], expected[:3, :2], atol=1e-6)  # in-plane axes and spacing
    np.testing.assert_allclose(ours[:3, 3], expected[:3, 3], atol=1e-6)
    assert itk.GetSize()[:2] == (80, 96)
    volume = sitk.GetArrayFromImage(itk)[0]
    assert np.array_equal(volume, study.stored_values(image)), "same pixel at the same (row, column)"


def test_labelmap_round_trip_on_the_reference_grid(scene):
    reference = mrml.image_to_volume_node(scene, _image(), "ref", ijk_to_ras_matrix=mrml.ijk_to_ras(SPACING, ORIGIN_LPS))
    mask = _disk((48, 36), (20, 11), 6)
    labelmap = mrml.mask_to_labelmap_node(scene, mask, reference, "mask", label=3)
    assert labelmap.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_allclose(mrml.ijk_to_ras_of(labelmap), mrml.ijk_to_ras_of(reference))
    assert set(np.unique(mrml.volume_node_to_array(labelmap))) == {0, 3}
    assert np.array_equal(mrml.labelmap_node_to_mask(labelmap), mask)
    with pytest.raises(ValueError, match="differs"):
        mrml.mask_to_labelmap_node(scene, mask[:-1], reference, "bad")


def test_segmentation_round_trip_with_terminology_and_storage(scene, tmp_path):
    reference = mrml.image_to_volume_node(scene, _image(), "ref",
                                          ijk_to_ras_matrix=mrml.ijk_to_ras(SPACING, ORIGIN_LPS, OBLIQUE_IOP))
    mask = _disk((48, 36), (30, 20), 5)
    labelmap = mrml.mask_to_labelmap_node(scene, mask, reference, "mask")
    segmentation = mrml.labelmap_to_segmentation_node(scene, labelmap, "lesion", reference=reference)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    segment = segmentation.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "Mass"
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic().DeserializeTerminologyEntry(segment.GetTerminology(), entry)
    assert entry.GetTypeObject().GetCodeValue() == "4147007" and entry.GetTypeObject().GetCodeMeaning() == "Mass"
    assert np.array_equal(mrml.segment_to_mask(segmentation, segment_id, reference), mask)

    # saved as .seg.nrrd by Slicer's storage node and read back: same mask on the same grid
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "lesion.seg.nrrd"))
    assert storage.WriteData(segmentation)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    assert storage.ReadData(loaded)
    loaded_id = loaded.GetSegmentation().GetNthSegmentID(0)
    assert loaded.GetSegmentation().GetSegment(loaded_id).GetTerminology() == mrml.MASS_TERMINOLOGY
    assert np.array_equal(mrml.segment_to_mask(loaded, loaded_id, reference), mask)


def test_painted_segment_to_engine_mask_and_back(scene, tmp_path, real_dicom):
    """A brush stroke (a sphere in RAS, as the Segment Editor stamps it) becomes the engine's mask at the
    expected pixels of the source mammogram, is written as DICOM SEG by the engine, and comes back as a segment."""
    image = dicom_io.read_mammogram(real_dicom)
    small = image.pixels[::16, ::16]
    matrix = mrml.ijk_to_ras(SPACING, ORIGIN_LPS)
    source = mrml.image_to_volume_node(scene, small, "source", ijk_to_ras_matrix=matrix)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(source)
    centre_rc = (small.shape[0] // 2, small.shape[1] // 3)
    centre_ras = matrix @ np.array([centre_rc[1], centre_rc[0], 0.0, 1.0])
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*centre_ras[:3])
    sphere.SetRadius(1.0)
    sphere.SetThetaResolution(48)
    sphere.SetPhiResolution(48)
    sphere.Update()
    segment_id = segmentation.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "stroke", [1, 0, 0])
    segmentation.CreateBinaryLabelmapRepresentation()

    mask = mrml.segment_to_mask(segmentation, segment_id, reference=source)
    assert mask.shape == small.shape and mask.dtype == bool
    rows, cols = np.nonzero(mask)
    assert (round(rows.mean()), round(cols.mean())) == centre_rc, "the stroke lands where it was painted"
    # 1 mm radius: about 1/0.085 rows and 1/0.07 columns either side; an ellipse in pixels, a disk in mm
    assert rows.max() - rows.min() == pytest.approx(2 / SPACING[0], abs=2)
    assert cols.max() - cols.min() == pytest.approx(2 / SPACING[1], abs=2)

    seg_path = dicom_io.write_segmentation(tmp_path / "mass.seg.dcm", np.kron(mask, np.ones((16, 16), bool))[
        : image.rows, : image.columns], image)
    assert seg_path.exists()

    nodes_before = scene.GetNumberOfNodes()
    back_id = mrml.mask_to_segment(segmentation, mask, source, segment_name="Mass (engine)")
    assert segmentation.GetSegmentation().GetSegment(back_id).GetName() == "Mass (engine)"
    assert np.array_equal(mrml.segment_to_mask(segmentation, back_id, source), mask)
    assert scene.GetNumberOfNodes() == nodes_before, "conversions leave no temporary nodes in the scene"


def test_folder_loading_labels_views_and_places_them_under_their_study(scene, tmp_path, real_dicoms):
    folder = tmp_path / "study"
    folder.mkdir()
    for path in real_dicoms[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.dcm").write_text("not a DICOM file")
    views, errors = study.load_folder(scene, folder)
    assert len(views) == 2 and len(errors) == 1 and "notes.dcm" in str(errors[0])
    sh = mrml.subject_hierarchy(scene)
    for view in views:
        image = dicom_io.read_mammogram(view.path)
        assert view.label == study.view_label(image.laterality, image.view)
        assert view.label in {"L CC", "L MLO", "R CC", "R MLO"}
        assert view.node.GetName() == view.label
        assert study.view_info(view.node) == (image.laterality, image.view, str(view.path))
        assert mrml.volume_node_to_array(view.node).shape == (image.rows, image.columns)
        parent = sh.GetItemParent(sh.GetItemByDataNode(view.node))
        assert sh.GetItemLevel(parent) == "Study"
        assert sh.GetItemUID(parent, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()) == image.study_uid

    # a result of the source lands in the source's study
    result = mrml.image_to_volume_node(scene, np.zeros((8, 8), np.float32), "result")
    item = mrml.place_beside(scene, result, views[0].node)
    assert sh.GetItemParent(item) == sh.GetItemParent(sh.GetItemByDataNode(views[0].node))
    assert study.view_label(None, "CC") == "? CC"
