"""The Anomaly panel's results as MRML nodes, for real against Slicer's libraries (PyPI `slicer-core`): heat map,
label map and one "Mass" segment per connected finding on the source volume's grid, under its study; and the
engine's own `anomaly` output, run through the module's command line and background runner, loaded the same way."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from test_slicer_mrml import ORIGIN_LPS, OBLIQUE_IOP, SPACING, converter_rules, scene, slicer  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SlicerMammoSynth"))

from SlicerMammoSynthLib import mrml  # noqa: E402
from SlicerMammoSynthLib import study  # noqa: E402
from MammoSynthLogic.anomaly import findings, label_map  # noqa: E402
from MammoSynthLogic.dicom_io import write_nrrd, write_synthetic_dicom  # noqa: E402
from MammoSynthLogic.errors import MammoSynthError  # noqa: E402
from SlicerMammoSynthLib.runner import EngineJob, engine_command  # noqa: E402

SHAPE = (60, 44)


def _blob(shape, centre, sigma):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma ** 2))


def _heat():
    """Two separate findings of different size and strength on a zero background."""
    heat = 0.4 * _blob(SHAPE, (18, 12), 4.0) + 0.25 * _blob(SHAPE, (45, 30), 2.5)
    return np.where(heat > 0.01, heat, 0.0).astype(np.float32)


def _source_in_study(scene):
    source = mrml.image_to_volume_node(scene, np.zeros(SHAPE, np.uint16), "L CC",
                                       ijk_to_ras_matrix=mrml.ijk_to_ras(SPACING, ORIGIN_LPS, OBLIQUE_IOP))
    item = mrml.study_item(scene, "Doe^Jane", "P1", "Screening", "1.2.3.4")
    mrml.place_under(scene, source, item)
    return source, item


def _mass_code(segment) -> tuple[str, str]:
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic().DeserializeTerminologyEntry(segment.GetTerminology(), entry)
    return entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()


def _segments(node):
    segmentation = node.GetSegmentation()
    return [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i))
            for i in range(segmentation.GetNumberOfSegments())]


def test_heat_map_and_findings_become_nodes_on_the_source_grid(scene):
    source, study_item = _source_in_study(scene)
    heat = _heat()
    masks = findings(label_map(heat, 0.3))
    assert len(masks) == 2 and masks[0].sum() > masks[1].sum()
    nodes = mrml.anomaly_to_nodes(scene, heat, masks, source, "L CC anomaly")

    geometry = mrml.ijk_to_ras_of(source)
    for node in (nodes.heat, nodes.labels):
        np.testing.assert_allclose(mrml.ijk_to_ras_of(node), geometry, atol=1e-12)
    assert nodes.labels.IsA("vtkMRMLLabelMapVolumeNode")
    back = mrml.volume_node_to_array(nodes.heat)
    assert back.dtype == np.float32 and np.array_equal(back, heat)

    # colour overlay: a heat table from 0 to the maximum; "no finding" (below 1 % of it) is transparent
    display = nodes.heat.GetDisplayNode()
    assert display.GetColorNodeID() == mrml.heat_color_node_id(scene) and display.GetColorNodeID() in \
        mrml.HEAT_COLOR_NODE_IDS and scene.GetNodeByID(display.GetColorNodeID()) is not None
    assert display.GetApplyThreshold() and not display.GetAutoThreshold() and not display.GetAutoWindowLevel()
    peak = float(heat.max())
    assert display.GetLowerThreshold() == pytest.approx(mrml.HEAT_VISIBLE_FRACTION * peak)
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, peak))

    # label map: value i + 1 on finding i (largest first), 0 elsewhere
    labels = mrml.volume_node_to_array(nodes.labels)
    assert set(np.unique(labels)) == {0, 1, 2}
    for index, mask in enumerate(masks):
        assert np.array_equal(labels == index + 1, mask)

    # segmentation: one "Mass" segment per connected finding, coded SNOMED CT 4147007, outlined over the label map
    segments = _segments(nodes.segmentation)
    assert [segment.GetName() for _, segment in segments] == ["Mass 1", "Mass 2"]
    for (segment_id, segment), mask in zip(segments, masks):
        assert _mass_code(segment) == ("4147007", "Mass")
        assert np.array_equal(mrml.segment_to_mask(nodes.segmentation, segment_id, source), mask)
    seg_display = nodes.segmentation.GetDisplayNode()
    assert not seg_display.GetVisibility2DFill() and seg_display.GetVisibility2DOutline()

    sh = mrml.subject_hierarchy(scene)
    for node in (nodes.heat, nodes.labels, nodes.segmentation):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study_item, f"{node.GetName()} not in the study"
    assert [n.GetName() for n in (nodes.heat, nodes.labels, nodes.segmentation)] == \
        ["L CC anomaly heat", "L CC anomaly labels", "L CC anomaly findings"]


def test_set_findings_replaces_label_values_and_segments_in_place(scene):
    source, _ = _source_in_study(scene)
    heat = _heat()
    nodes = mrml.anomaly_to_nodes(scene, heat, findings(label_map(heat, 0.3)), source, "a")
    ids = (nodes.labels.GetID(), nodes.segmentation.GetID())
    count = scene.GetNumberOfNodes()

    strong = findings(label_map(heat, 0.8))  # only the stronger blob is left
    assert len(strong) == 1
    mrml.set_findings(nodes, strong)
    assert (nodes.labels.GetID(), nodes.segmentation.GetID()) == ids and scene.GetNumberOfNodes() == count
    assert np.array_equal(mrml.volume_node_to_array(nodes.labels), strong[0].astype(np.uint8))
    np.testing.assert_allclose(mrml.ijk_to_ras_of(nodes.labels), mrml.ijk_to_ras_of(source), atol=1e-12)
    [(segment_id, segment)] = _segments(nodes.segmentation)
    assert segment.GetName() == "Mass" and _mass_code(segment) == ("4147007", "Mass")
    assert np.array_equal(mrml.segment_to_mask(nodes.segmentation, segment_id, source), strong[0])

    mrml.set_findings(nodes, [])
    assert _segments(nodes.segmentation) == [] and not mrml.volume_node_to_array(nodes.labels).any()


def test_labels_of_many_findings_and_shape_errors(scene):
    dots = np.zeros((40, 40), bool)
    dots[::2, ::2] = True  # 400 separate one-pixel findings
    masks = findings(dots)
    labels = mrml.findings_to_labels(masks, dots.shape)
    assert len(masks) == 400 and labels.dtype == np.uint16 and labels.max() == 400
    with pytest.raises(ValueError, match="finding 1"):
        mrml.findings_to_labels([dots[:-1]], dots.shape)
    source, _ = _source_in_study(scene)
    with pytest.raises(ValueError, match="differs"):
        mrml.heat_to_volume_node(scene, np.zeros((SHAPE[0] - 1, SHAPE[1]), np.float32), source, "bad")


def test_an_empty_map_gives_no_segments(scene):
    source, _ = _source_in_study(scene)
    nodes = mrml.anomaly_to_nodes(scene, np.zeros(SHAPE, np.float32), [], source, "empty")
    assert _segments(nodes.segmentation) == []
    assert not mrml.volume_node_to_array(nodes.labels).any()
    assert nodes.heat.GetDisplayNode().GetWindowLevelMax() == pytest.approx(1.0)  # no division by a zero maximum


@pytest.fixture(scope="module")
def engine_anomaly(tmp_path_factory):
    """The engine's real `anomaly` command, started as the module starts it, on a small mammogram with a tiny
    random bundle: (source DICOM, output folder, the job)."""
    from dicom_factory import synthetic_breast
    from test_slicer_runner import _module_logic_function
    from tiny_bundles import make_tiny_bundle

    work = tmp_path_factory.mktemp("anomaly")
    # written by the engine (a complete header: highdicom's SEG needs the source's type-2 patient/study attributes)
    source = write_synthetic_dicom(work / "study" / "LCC.dcm", synthetic_breast(160, 128) / 65535.0,
                                   provenance={"model": "test", "seed": 0}, view="CC", laterality="L",
                                   spacing_mm=SPACING)
    make_tiny_bundle(work / "models" / "mambo-global", "mambo-global")
    out = work / "anomaly-1"
    args = _module_logic_function("anomalyArguments")(str(source), str(out), model=str(work / "models"), lam=500.0,
                                                       threshold=0.3, seed=3, device="cpu")
    job = EngineJob(engine_command(args + ["--steps", "3"], python=sys.executable), outputs=[out],
                    engine_path=ROOT).start()
    events = job.wait(timeout=240)
    assert any(e.get("type") == "progress" for e in events)
    return source, out, job


def test_the_engines_anomaly_output_loads_under_the_source_study(scene, engine_anomaly):
    import nrrd

    source_path, out, job = engine_anomaly
    assert job.result["outputs"] == [str(out)] and job.result["settings"]["lam"] == 500
    views, errors = study.load_folder(scene, source_path.parent)
    assert errors == [] and len(views) == 1
    source = views[0].node
    nodes = study.load_anomaly(scene, job.result["outputs"][0], source, name="L CC anomaly")

    heat, _ = nrrd.read(str(out / "heat.nrrd"))
    assert np.array_equal(mrml.volume_node_to_array(nodes.heat), heat.T), "NRRD (columns, rows) read upright"
    for node in (nodes.heat, nodes.labels):
        np.testing.assert_allclose(mrml.ijk_to_ras_of(node), mrml.ijk_to_ras_of(source), atol=1e-12)
    record = json.loads((out / "anomaly.json").read_text())
    assert record["findings"] >= 1, "a random model reconstructs nothing: something must differ"
    segments = _segments(nodes.segmentation)
    assert len(segments) == record["findings"]
    assert all(_mass_code(segment) == ("4147007", "Mass") for _, segment in segments)
    labels_file, _ = nrrd.read(str(out / "labels.nrrd"))
    labels = mrml.volume_node_to_array(nodes.labels)
    assert np.array_equal(labels > 0, labels_file.T > 0) and int((labels > 0).sum()) == record["label_pixels"]
    assert nodes.heat.GetAttribute(study.ANOMALY_FOLDER_ATTRIBUTE) == str(out)
    sh = mrml.subject_hierarchy(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(source))
    assert sh.GetItemLevel(parent) == "Study"
    for node in (nodes.heat, nodes.labels, nodes.segmentation):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == parent

    # the threshold slider: at the run's threshold the engine's own labels come back; higher keeps fewer pixels
    assert study.relabel_anomaly(nodes, 0.3) == record["findings"]
    assert np.array_equal(mrml.volume_node_to_array(nodes.labels) > 0, labels_file.T > 0)
    count = study.relabel_anomaly(nodes, 0.9)
    assert count == len(_segments(nodes.segmentation)) >= 1
    assert 0 < int((mrml.volume_node_to_array(nodes.labels) > 0).sum()) < record["label_pixels"]


def test_a_result_that_does_not_fit_the_source_is_refused(scene, tmp_path):
    source, _ = _source_in_study(scene)
    with pytest.raises(MammoSynthError, match="did not finish"):
        study.load_anomaly(scene, tmp_path / "nothing", source)
    write_nrrd(tmp_path / "heat.nrrd", np.zeros((SHAPE[1], SHAPE[0]), np.float32), SPACING)  # transposed
    write_nrrd(tmp_path / "labels.nrrd", np.zeros((SHAPE[1], SHAPE[0]), np.uint8), SPACING)
    count = scene.GetNumberOfNodes()
    with pytest.raises(MammoSynthError, match="run it on this view again"):
        study.load_anomaly(scene, tmp_path, source)
    assert scene.GetNumberOfNodes() == count, "nothing half-loaded"
