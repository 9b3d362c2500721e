"""The Text and Inpaint panels (MAM-E): a segment painted in the Segment Editor becomes the engine's lesion mask on
the source image's pixel grid (against Slicer's libraries, PyPI `slicer-core`), the module's `text2mammo` and
`inpaint` command lines, the panel (.ui in PySide6, button states through the module's own Widget code) and both
jobs run end to end through the module's Logic with tiny random Stable Diffusion bundles."""
from __future__ import annotations

import contextlib
import os
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pydicom
import pytest
import vtk
from vtk.util import numpy_support

from test_slicer_logic import loaded_view, module  # noqa: F401
from test_slicer_mrml import OBLIQUE_IOP, ORIGIN_LPS, SPACING, converter_rules, scene, slicer  # noqa: F401

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SlicerMammoSynth"))

from SlicerMammoSynthLib import mrml  # noqa: E402
from SlicerMammoSynthLib import study  # noqa: E402
from MammoSynthLogic import dicom_io  # noqa: E402
from SlicerMammoSynthLib.runner import engine_command  # noqa: E402

UI_FILE = ROOT / "Resources" / "UI" / "SlicerMammoSynth.ui"
PANEL_SIZE = (440, 1900)
# kept in step by the widget's own code (the folder fields through PATH_FIELDS)
UNBOUND = {"textVendor", "inpaintSegmentation", "inpaintSegmentID", "textModelPath", "inpaintModelPath"}


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _engine_mask(path: Path, source) -> np.ndarray:
    """The mask NRRD as the engine's `inpaint` reads it over the source volume's DICOM file."""
    from MammoSynthLogic.masks import read_mask

    return read_mask(path, dicom_io.read_mammogram(study.view_info(source)[2]))


def _engine_parser_with(command: str):
    from MammoSynthLogic.cli import build_parser

    parser = build_parser()
    if command not in parser._subparsers._group_actions[0].choices:
        pytest.skip(f"the engine has no `{command}` command yet")
    return parser


@pytest.fixture()
def real_source(scene, tmp_path, real_dicom):
    """A real CBIS-DDSM mammogram, downsized, written as the engine writes DICOM with an oblique geometry and loaded
    as the module loads a folder: its array is the engine's (rows, columns) array of the same file."""
    pixels = dicom_io.read_mammogram(real_dicom).pixels[::24, ::24]
    path = dicom_io.write_synthetic_dicom(tmp_path / "study" / "LCC.dcm", pixels, provenance={"model": "test"},
                                          view="CC", laterality="L", spacing_mm=SPACING)
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = list(ORIGIN_LPS)
    ds.ImageOrientationPatient = list(OBLIQUE_IOP)
    ds.save_as(path)
    [view], errors = study.load_folder(scene, path.parent)
    assert errors == []
    assert np.array_equal(mrml.volume_node_to_array(view.node), study.stored_values(dicom_io.read_mammogram(path))), \
        "pixel (row, column) of the volume is pixel (row, column) of the engine's array"
    return view.node


def _segment_from_labels(scene, labels: np.ndarray, ijk_to_ras: np.ndarray, name: str = "lesion"):
    """A segmentation whose one segment is painted on its own grid (as a label map imported into it)."""
    labelmap = mrml.image_to_volume_node(scene, labels.astype(np.uint8), f"{name} labels", ijk_to_ras_matrix=ijk_to_ras,
                                         node_class="vtkMRMLLabelMapVolumeNode", display=False)
    segmentation = mrml.labelmap_to_segmentation_node(scene, labelmap, name)
    scene.RemoveNode(labelmap)
    return segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)


# ------------------------------------------------------------------ (a) segment -> the engine's mask


def test_a_disc_painted_on_the_volume_is_the_mask_at_its_pixels_and_the_nrrd_reads_back(module, scene, real_source,
                                                                                         tmp_path):
    shape = mrml.volume_node_to_array(real_source).shape
    disc = _disk(shape, (shape[0] // 3, shape[1] // 2), 6)
    segmentation, segment_id = _segment_from_labels(scene, disc, mrml.ijk_to_ras_of(real_source))
    mask = mrml.segment_to_mask(segmentation, segment_id, real_source)
    assert mask.dtype == bool and np.array_equal(mask, disc), "exactly the painted pixels, same (row, column)"

    path = module.SlicerMammoSynthLogic.writeSegmentMask(segmentation, segment_id, real_source, tmp_path / "mask.nrrd")
    assert np.array_equal(_engine_mask(path, real_source), disc)
    import nrrd

    data, header = nrrd.read(str(path))
    assert data.shape == (shape[1], shape[0]) and set(np.unique(data)) == {0, 1}, "columns first, as the engine's"
    np.testing.assert_allclose(np.diag(header["space directions"]), (SPACING[1], SPACING[0]))


def test_a_segment_painted_on_another_grid_and_extent_is_resampled_into_the_volume(scene):
    shape = (60, 44)
    matrix = mrml.ijk_to_ras(SPACING, ORIGIN_LPS, OBLIQUE_IOP)
    volume = mrml.image_to_volume_node(scene, np.zeros(shape, np.uint16), "L CC", ijk_to_ras_matrix=matrix)

    # half the pixel size, starting at volume pixel (row 10, column 6), 40 x 30 fine pixels: every volume pixel
    # centre is a fine pixel centre, so nearest-neighbour resampling keeps fine[::2, ::2]
    fine = _disk((40, 30), (20, 14), 8)
    fine_matrix = mrml.ijk_to_ras((SPACING[0] / 2, SPACING[1] / 2), ORIGIN_LPS, OBLIQUE_IOP)
    fine_matrix[:3, 3] = (matrix @ np.array([6, 10, 0, 1.0]))[:3]
    segmentation, segment_id = _segment_from_labels(scene, fine, fine_matrix)
    expected = np.zeros(shape, bool)
    expected[10:30, 6:21] = fine[::2, ::2]
    assert np.array_equal(mrml.segment_to_mask(segmentation, segment_id, volume), expected)

    # a binary labelmap of a small extent (as a brush leaves it), partly outside the volume: cropped into its grid
    patch = np.zeros((12, 10), np.uint8)
    patch[3:9, 2:8] = 1
    image = slicer.vtkOrientedImageData()
    image.SetExtent(40, 49, 54, 65, 0, 0)  # columns 40-49 and rows 54-65 of the volume's grid (rows 60+ outside)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)

    image.GetPointData().GetScalars().DeepCopy(numpy_support.numpy_to_vtk(patch.ravel()))
    image.SetImageToWorldMatrix(mrml._vtk_matrix(matrix))
    stroke_id = segmentation.GetSegmentation().AddEmptySegment("", "stroke")
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation, stroke_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    expected = np.zeros(shape, bool)
    expected[57:60, 42:48] = True  # patch rows 3-8 are volume rows 57-62, of which 57-59 exist
    assert np.array_equal(mrml.segment_to_mask(segmentation, stroke_id, volume), expected)
    assert np.array_equal(mrml.segment_to_mask(segmentation, segment_id, volume)[10:30, 6:21], fine[::2, ::2]), \
        "each segment alone, even when they share a label map"


def test_an_empty_or_missing_segment_is_a_clear_error_and_starts_no_job(module, scene, loaded_view, tmp_path):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(loaded_view)
    empty = segmentation.GetSegmentation().AddEmptySegment("", "Lesion")
    logic = module.SlicerMammoSynthLogic()
    with pytest.raises(ValueError, match=r"segment 'Lesion' is empty over L CC: paint the lesion region"):
        logic.startInpaint(loaded_view, segmentation, empty, outputDirectory=tmp_path / "out")
    with pytest.raises(ValueError, match="select the segment"):
        logic.startInpaint(loaded_view, segmentation, "no such segment", outputDirectory=tmp_path / "out")
    with pytest.raises(ValueError, match="select the segment"):
        logic.startInpaint(loaded_view, None, "", outputDirectory=tmp_path / "out")
    assert not (tmp_path / "out").exists(), "no job folder, no mask, no job"


def test_the_segment_editors_selection_is_found(scene):
    assert mrml.segment_editor_selection(scene) == (None, None)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "Lesion")
    editor = slicer.vtkMRMLSegmentEditorNode()
    editor.SetSingletonTag("SegmentEditor")
    scene.AddNode(editor)
    editor.SetAndObserveSegmentationNode(segmentation)
    assert mrml.segment_editor_selection(scene) == (None, None), "no segment selected yet"
    editor.SetSelectedSegmentID(segment_id)
    assert mrml.segment_editor_selection(scene) == (segmentation, segment_id)
    assert mrml.has_segment(segmentation, segment_id) and not mrml.has_segment(segmentation, "other")
    assert not mrml.has_segment(None, segment_id) and not mrml.has_segment(segmentation, "")


# ------------------------------------------------------------------ (b) command lines


def test_text2mammo_command_line(module):
    arguments = module.SlicerMammoSynthLogic.text2mammoArguments
    assert arguments("/o/t.dcm") == ["text2mammo", "--view", "CC", "--laterality", "L", "--guidance", "5", "--steps",
                                     "24", "--seed", "0", "--device", "auto", "--out", "/o/t.dcm"]
    full = arguments("/o/t.dcm", model="/m/text", vendor=" hologic ", view="MLO", laterality="R", density="very high",
                     area="small", prompt=" a mammogram with a lesion ", negativePrompt="blurry", guidance=7.5,
                     steps=30, seed=9, device="cpu")
    assert full == ["text2mammo", "--model", "/m/text", "--vendor", "hologic", "--view", "MLO", "--laterality", "R",
                    "--density", "very high", "--area", "small", "--prompt", "a mammogram with a lesion",
                    "--negative-prompt", "blurry", "--guidance", "7.5", "--steps", "30", "--seed", "9", "--device",
                    "cpu", "--out", "/o/t.dcm"]
    parser = _engine_parser_with("text2mammo")
    from MammoSynthLogic import prompts

    assert (module.VIEWS, module.DENSITIES, module.AREAS) == \
        (list(prompts.VIEWS), ["", *prompts.DENSITIES], ["", *prompts.AREAS]), "the panel offers the engine's words"
    args = parser.parse_args(engine_command(full)[3:])
    assert (args.command, str(args.out), args.view, args.laterality, args.vendor, args.prompt, args.negative_prompt,
            args.guidance, args.steps, args.seed, args.device) == \
        ("text2mammo", "/o/t.dcm", "MLO", "R", "hologic", "a mammogram with a lesion", "blurry", 7.5, 30, 9, "cpu")
    assert args.progress_json and "very high" in str(args.density)
    assert parser.parse_args(engine_command(arguments("/o/t.dcm"))[3:]).command == "text2mammo"


def test_inpaint_command_line(module):
    arguments = module.SlicerMammoSynthLogic.inpaintArguments
    assert arguments("/s.dcm", "/j/mask.nrrd", "/j/i.dcm") == [
        "inpaint", "/s.dcm", "--mask", "/j/mask.nrrd", "--method", "auto", "--seed", "0", "--device", "auto",
        "--out", "/j/i.dcm"]
    full = arguments("/s.dcm", "/j/mask.nrrd", "/j/i.dcm", model="/m/inpaint", method="sd", prompt="a lesion",
                     guidance=4.0, steps=20, feather=8, label=2, seed=3, device="cpu")
    assert full == ["inpaint", "/s.dcm", "--mask", "/j/mask.nrrd", "--label", "2", "--method", "sd", "--model",
                    "/m/inpaint", "--prompt", "a lesion", "--guidance", "4", "--steps", "20", "--feather", "8",
                    "--seed", "3", "--device", "cpu", "--out", "/j/i.dcm"]
    with pytest.raises(ValueError, match="source image and a lesion mask"):
        arguments("", "/j/mask.nrrd", "/j/i.dcm")
    parser = _engine_parser_with("inpaint")
    args = parser.parse_args(engine_command(full)[3:])
    assert (args.command, str(args.mask), args.label, args.method, args.guidance, args.steps, args.feather,
            args.seed, str(args.out)) == ("inpaint", "/j/mask.nrrd", 2, "sd", 4.0, 20, 8, 3, "/j/i.dcm")
    assert "/s.dcm" in map(str, vars(args).values()) and args.progress_json


def test_inpaint_job_writes_the_mask_in_its_folder_and_cancel_removes_it(module, scene, loaded_view, tmp_path):
    shape = mrml.volume_node_to_array(loaded_view).shape
    disc = _disk(shape, (80, 40), 9)
    segmentation, segment_id = _segment_from_labels(scene, disc, mrml.ijk_to_ras_of(loaded_view))
    job = module.SlicerMammoSynthLogic().startInpaint(loaded_view, segmentation, segment_id, seed=4, method="repaint",
                                                      device="cpu", outputDirectory=tmp_path / "out")
    out, folder = job.outputs
    command = job.command[3:]
    assert command[:2] == ["inpaint", study.view_info(loaded_view)[2]]
    assert command[command.index("--mask") + 1] == str(folder / "mask.nrrd")
    assert command[command.index("--out") + 1] == str(out) and out.parent == folder
    assert folder.name.startswith("inpaint-") and folder.name.endswith("-seed4") and out.name == folder.name + ".dcm"
    assert np.array_equal(_engine_mask(folder / "mask.nrrd", loaded_view), disc)
    job.cancel()
    assert job.cancelled and not folder.exists(), "cancel leaves neither the mask nor a result"


# ------------------------------------------------------------------ (c) the panel


def parameter_defaults(module) -> dict:
    """The parameter node's fields with defaults, as written (the stand-in wrapper leaves the class as it is)."""
    return {name: value for name, value in vars(module.SlicerMammoSynthParameterNode).items()
            if not name.startswith("_")}


class FakeWidget:
    """What the Widget code sets on a button or label (PythonQt properties as attributes)."""

    def __init__(self, text=""):
        self.text, self.enabled, self.toolTip = text, True, ""


@pytest.fixture()
def widget(module, monkeypatch):
    """The module's Widget without Qt: its buttons and labels are plain objects, its parameter node a namespace."""
    cls = module.SlicerMammoSynthWidget
    self = cls.__new__(cls)
    self.logic = module.SlicerMammoSynthLogic()
    self._job, self._jobButton, self._jobLoader = None, None, None
    names = ["applyButton", "anomalyButton", "generatePairButton", "completeViewButton", "textGenerateButton",
             "inpaintButton", "statusLabel"]
    self.ui = types.SimpleNamespace(**{name: FakeWidget() for name in names})
    self._parameterNode = types.SimpleNamespace(**{**parameter_defaults(module), "sourceVolume": None,
                                                   "inpaintSegmentation": None, "seed": 1, "device": "cpu",
                                                   "outputDirectory": None})

    @contextlib.contextmanager
    def no_dialog(message=None, show=True, waitCursor=False):
        yield

    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", no_dialog)
    return self


def test_inpaint_is_enabled_only_with_a_source_and_a_segment(widget, scene, loaded_view):
    p, ui = widget._parameterNode, widget.ui
    widget.updateApplyButton()
    assert ui.textGenerateButton.enabled and ui.textGenerateButton.text == "Generate from text"
    assert not ui.inpaintButton.enabled and "segment" in ui.inpaintButton.toolTip
    p.sourceVolume = loaded_view
    widget.updateApplyButton()
    assert not ui.inpaintButton.enabled, "no segment selected"
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    p.inpaintSegmentation, p.inpaintSegmentID = segmentation, "gone"
    widget.updateApplyButton()
    assert not ui.inpaintButton.enabled, "a segment ID the segmentation does not hold"
    p.inpaintSegmentID = segmentation.GetSegmentation().AddEmptySegment("", "Lesion")
    widget.updateApplyButton()
    assert ui.inpaintButton.enabled and ui.inpaintButton.text == "Inpaint lesion"
    widget._job, widget._jobButton = types.SimpleNamespace(running=True), ui.textGenerateButton
    widget.updateApplyButton()
    assert ui.textGenerateButton.text == "Cancel" and ui.textGenerateButton.enabled and not ui.inpaintButton.enabled


def test_inpaint_with_an_empty_segment_says_why_in_the_status_line(widget, scene, loaded_view, tmp_path):
    p = widget._parameterNode
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    p.sourceVolume, p.inpaintSegmentation = loaded_view, segmentation
    p.inpaintSegmentID = segmentation.GetSegmentation().AddEmptySegment("", "Lesion")
    p.outputDirectory = tmp_path / "out"
    widget.onInpaint()
    assert widget.ui.statusLabel.text == \
        "Inpaint: segment 'Lesion' is empty over L CC: paint the lesion region in the Segment Editor first"
    assert widget._job is None and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def app():
    QtWidgets = pytest.importorskip("PySide6.QtWidgets")
    pytest.importorskip("PySide6.QtUiTools")
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _load_panel(app):
    """The panel loaded with test_slicer_ui's stand-ins for Slicer's widgets."""
    import test_slicer_ui as ui_test

    return ui_test, ui_test.SLICER_WIDGETS, ui_test._load(app, register=True)


def test_text_and_inpaint_panels_bind_every_new_parameter(app):
    from PySide6 import QtWidgets

    ui_test, stand_ins, panel = _load_panel(app)
    titles = [w.title() for w in panel.findChildren(ui_test.ctkCollapsibleButton)]
    assert titles[titles.index("Dual view") + 1:][:2] == ["Text", "Inpaint"]
    declared = {c.findtext("class") for c in ET.parse(UI_FILE).getroot().iter("customwidget")}
    assert "qMRMLSegmentSelectorWidget" in declared
    assert isinstance(panel.findChild(QtWidgets.QWidget, "inpaintSegmentSelector"),
                      stand_ins["qMRMLSegmentSelectorWidget"])
    assert panel.findChild(QtWidgets.QPushButton, "textGenerateButton").isEnabled()
    assert not panel.findChild(QtWidgets.QPushButton, "inpaintButton").isEnabled(), "no segment when the panel opens"

    bound = {w.property("SlicerParameterName"): w for w in panel.findChildren(QtWidgets.QWidget)
             if w.property("SlicerParameterName")}
    fields = ui_test._parameter_fields()
    new = {name: field for name, field in fields.items() if name.startswith(("text", "inpaint"))}
    assert set(new) - set(bound) == UNBOUND, "every other new parameter has a widget"
    source = ui_test.MODULE_FILE.read_text()
    for name in UNBOUND:
        assert f'"{name}"' in source, f"{name}: the widget keeps it in step (setUnboundParameter)"
    kinds = {"Path": ui_test.ctkPathLineEdit, "int": QtWidgets.QSpinBox,
             "float": (ui_test.ctkSliderWidget, QtWidgets.QDoubleSpinBox)}
    for name, (kind, extras, default) in new.items():
        if name in UNBOUND:
            continue
        control = bound[name]
        calls = {e.func.id: e.args for e in extras if hasattr(e, "func")}
        if kind == "str":
            expected = QtWidgets.QComboBox if "Choice" in calls else QtWidgets.QLineEdit
            assert type(control) is expected, f"{name}: {type(control).__name__}"  # what Slicer's connectors take
            if "Choice" in calls:
                assert default in ui_test._module_constant(calls["Choice"][0].id)
            continue
        assert isinstance(control, kinds[kind]), f"{name}: {kind} bound to {type(control).__name__}"
        if "WithinRange" in calls:
            low, high = (float(a.value) for a in calls["WithinRange"])
            span, value = ui_test.range_and_value(control, kind)
            assert span == (low, high)
            assert value == pytest.approx(default), f"{name} opens at {value}, not {default}"
    vendor = panel.findChild(QtWidgets.QComboBox, "textVendorComboBox")
    assert vendor.isEditable() and "SlicerParameterName" not in [bytes(p).decode() for p in
                                                                 vendor.dynamicPropertyNames()]
    panel.deleteLater()


def test_the_panel_renders_with_the_text_and_inpaint_sections(app, widget, scene, loaded_view, tmp_path):
    from PySide6 import QtWidgets

    ui_test, stand_ins, panel = _load_panel(app)
    # the button and lesion option states the module's own Widget code computes with a source, a painted segment
    # and an analytic spiculated irregular mass of 10 mm selected
    p = widget._parameterNode
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "L CC lesion")
    p.sourceVolume, p.inpaintSegmentation = loaded_view, segmentation
    p.inpaintSegmentID = segmentation.GetSegmentation().AddEmptySegment("", "Mass")
    lesion = {"inpaintLesionComboBox": "analytic mass", "lesionShapeComboBox": "irregular",
              "lesionMarginComboBox": "spiculated"}
    p.inpaintLesion, p.lesionShape, p.lesionMargin, p.lesionSizeMm = *lesion.values(), 10.0
    for name in ("inpaintMethodComboBox", *lesion, "lesionSizeSpinBox", "lesionCountSpinBox", "lesionSpreadSpinBox",
                 "lesionFormComboBox", "lesionStrengthSlider", "lesionContrastSpinBox"):
        setattr(widget.ui, name, FakeWidget())
    widget.updateApplyButton()
    widget.updateLesionWidgets()
    for name, fake in vars(widget.ui).items():
        control = panel.findChild(QtWidgets.QWidget, name)
        control.setEnabled(fake.enabled)
        if name.endswith("Button"):
            control.setText(fake.text)
            control.setToolTip(fake.toolTip)
    constants = {"taskComboBox": "TASKS", "presetComboBox": "PRESETS", "deviceComboBox": "DEVICES",
                 "anomalyLevelComboBox": "LEVELS", "dualviewLateralityComboBox": "LATERALITIES",
                 "textVendorComboBox": "VENDORS", "textViewComboBox": "VIEWS", "textLateralityComboBox": "LATERALITIES",
                 "textDensityComboBox": "DENSITIES", "textAreaComboBox": "AREAS",
                 "inpaintMethodComboBox": "INPAINT_METHODS", "inpaintLesionComboBox": "LESION_KINDS",
                 "lesionShapeComboBox": "LESION_SHAPES", "lesionMarginComboBox": "LESION_MARGINS",
                 "lesionFormComboBox": "CALCIFICATION_FORMS"}
    for name, constant in constants.items():
        panel.findChild(QtWidgets.QComboBox, name).addItems(ui_test._module_constant(constant))
    panel.findChild(ui_test.qMRMLNodeComboBox, "sourceVolumeSelector").addItems(["L CC"])
    panel.findChild(QtWidgets.QComboBox, "textVendorComboBox").setCurrentText("hologic")
    panel.findChild(QtWidgets.QComboBox, "textViewComboBox").setCurrentText("MLO")
    panel.findChild(QtWidgets.QComboBox, "textDensityComboBox").setCurrentText("high")
    panel.findChild(QtWidgets.QComboBox, "textAreaComboBox").setCurrentText("medium")
    for name, value in lesion.items():
        panel.findChild(QtWidgets.QComboBox, name).setCurrentText(value)
    panel.findChild(QtWidgets.QDoubleSpinBox, "lesionSizeSpinBox").setValue(p.lesionSizeMm)
    selector = panel.findChild(stand_ins["qMRMLSegmentSelectorWidget"], "inpaintSegmentSelector")
    selector.nodes.addItem("L CC lesion")
    selector.segments.addItem("Mass")
    panel.findChild(QtWidgets.QLabel, "statusLabel").setText("Done: Text seed 42 (synthetic)")
    panel.findChild(QtWidgets.QSpinBox, "seedSpinBox").setValue(42)
    panel.resize(*PANEL_SIZE)
    panel.show()
    app.processEvents()
    text, inpaint = (panel.findChild(ui_test.ctkCollapsibleButton, n)
                     for n in ("textCollapsibleButton", "inpaintCollapsibleButton"))
    for name in ("textGenerateButton", "inpaintButton", "textNegativePromptLineEdit", "textGuidanceSlider"):
        child = panel.findChild(QtWidgets.QWidget, name)
        assert child.isVisible() and child.mapTo(panel, child.rect().bottomLeft()).y() < PANEL_SIZE[1], name
    image = panel.grab().toImage()
    top = text.mapTo(panel, text.rect().topLeft()).y()
    bottom = inpaint.mapTo(panel, inpaint.rect().bottomLeft()).y()
    png = ui_test.screenshot_path(tmp_path, "slicer-text-inpaint.png")
    assert image.copy(0, top - 4, PANEL_SIZE[0], bottom - top + 10).save(str(png), "PNG")
    assert png.stat().st_size > 5000
    panel.close()
    panel.deleteLater()


# ------------------------------------------------------------------ (d) end to end


def test_text2mammo_job_end_to_end_with_a_tiny_bundle(module, scene, tmp_path):
    _engine_parser_with("text2mammo")
    from tiny_sd import make_tiny_sd_bundle

    bundle = make_tiny_sd_bundle(tmp_path / "mame-text", "mame-text")
    logic = module.SlicerMammoSynthLogic()
    job = logic.startText2Mammo(seed=5, model=bundle, vendor="siemens", view="MLO", laterality="R",
                                density="very high", area="small", steps=2, size=64, device="cpu",
                                outputDirectory=tmp_path / "out")
    events = job.wait(timeout=300)
    assert any(e.get("type") == "progress" for e in events)
    node = logic.loadResult(job)
    assert node.GetName() == "Text seed 5 (synthetic)" and node.GetAttribute(study.SYNTHETIC_ATTRIBUTE) == "1"
    written = dicom_io.read_mammogram(job.result["outputs"][0])
    assert mrml.volume_node_to_array(node).shape == (written.rows, written.columns) == (64, 64)
    assert study.view_info(node)[:2] == ("R", "MLO")
    sh = mrml.subject_hierarchy(scene)
    assert sh.GetItemLevel(sh.GetItemParent(sh.GetItemByDataNode(node))) == "Study", "under its synthetic study"


def test_inpaint_job_end_to_end_with_a_tiny_bundle(module, scene, loaded_view, tmp_path):
    _engine_parser_with("inpaint")
    from scipy import ndimage

    from tiny_sd import make_tiny_sd_bundle

    bundle = make_tiny_sd_bundle(tmp_path / "mame-inpaint", "mame-inpaint")
    source = mrml.volume_node_to_array(loaded_view)
    disc = _disk(source.shape, (80, 40), 9)
    segmentation, segment_id = _segment_from_labels(scene, disc, mrml.ijk_to_ras_of(loaded_view))
    logic = module.SlicerMammoSynthLogic()
    job = logic.startInpaint(loaded_view, segmentation, segment_id, seed=2, model=bundle, method="sd", steps=2,
                             device="cpu", outputDirectory=tmp_path / "out")
    job.wait(timeout=300)
    node = logic.loadResult(job, loaded_view)
    assert node.GetName() == "Inpaint seed 2 (synthetic)" and node.GetAttribute(study.SYNTHETIC_ATTRIBUTE) == "1"
    sh = mrml.subject_hierarchy(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == sh.GetItemParent(sh.GetItemByDataNode(loaded_view))
    np.testing.assert_allclose(mrml.ijk_to_ras_of(node), mrml.ijk_to_ras_of(loaded_view), atol=1e-9)
    result = mrml.volume_node_to_array(node)
    assert result.shape == source.shape
    outside = ndimage.distance_transform_edt(~disc) > 9  # past the 8-pixel feather
    assert np.array_equal(result[outside], source[outside]), "only the painted region (and its feather) changes"
    assert not np.array_equal(result[disc], source[disc]), "a lesion was painted in"
