"""The Inpaint panel's analytic lesions (`inpaint --lesion`): every choice of the panel reaches the engine's command
line (parsed by the engine's own parser), the spacing comes from the volume, and a real engine run's lesion DICOM SEG
is loaded as a segmentation beside the result, pixel for pixel (tiny MAMBO bundles, a real CBIS-DDSM film)."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from test_slicer_logic import loaded_view, module  # noqa: F401
from test_slicer_mame import parameter_defaults
from test_slicer_mrml import SPACING, converter_rules, scene, slicer  # noqa: F401
from test_slicer_standins import UI

from SlicerMammoSynthLib import mrml, study  # noqa: E402  (test_slicer_mrml put the module folder on sys.path)

MASS, CLUSTER, PAINTED = "analytic mass", "analytic calcification cluster", "painted region"
DDSM_SPACING = 0.05  # DDSM films were scanned at 50 µm; the files carry no PixelSpacing


@pytest.fixture()
def panel(module, monkeypatch, loaded_view, tmp_path):
    """The Widget with stand-in widgets and a parameter node of the defaults, L CC selected; engine starts are
    recorded (`panel.started`: the engine arguments of each), not run."""
    import contextlib

    widget = module.SlicerMammoSynthWidget()
    widget.ui, widget.logic = UI(), module.SlicerMammoSynthLogic()
    widget._parameterNode = types.SimpleNamespace(**{**parameter_defaults(module), "sourceVolume": loaded_view,
                                                     "inpaintSegmentation": None, "outputDirectory": tmp_path / "out"})
    widget.started = []

    def start(args, out, *owned):
        widget.started.append(args)
        return types.SimpleNamespace(running=False)

    @contextlib.contextmanager
    def no_dialog(message=None, show=True, waitCursor=False):
        yield

    monkeypatch.setattr(module.SlicerMammoSynthLogic, "_start", staticmethod(start))
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "missingRequirements", staticmethod(lambda **kw: []))
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "restartPending", [])
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", no_dialog)
    return widget


def _parsed(panel):
    """The panel's Inpaint click as the engine parses it."""
    from MammoSynthLogic.cli import build_parser

    panel.onInpaint()
    assert panel.started, f"no job started: {panel.ui.statusLabel.text}"
    return build_parser().parse_args(panel.started.pop() + ["--progress-json"])


def test_panel_choices_are_the_engines_choices(module):
    from MammoSynthLogic import lesions

    assert module.LESION_SHAPES == list(lesions.SHAPES) and module.LESION_MARGINS == list(lesions.MARGINS)
    assert module.CALCIFICATION_FORMS == list(lesions.CALCIFICATION_FORMS)
    assert list(module.LESION_ENGINE_KINDS) == module.LESION_KINDS
    assert [k for k in module.LESION_ENGINE_KINDS.values() if k] == list(lesions.KINDS)


@pytest.mark.parametrize("kind, name, value, dest", [
    (MASS, "lesionShape", "irregular", "shape"),
    (MASS, "lesionMargin", "spiculated", "margin"),
    (MASS, "lesionSizeMm", 7.5, "size_mm"),
    (CLUSTER, "lesionSizeMm", 0.6, "size_mm"),
    (CLUSTER, "lesionCount", 25, "count"),
    (CLUSTER, "lesionSpreadMm", 6.5, "spread_mm"),
    (CLUSTER, "lesionForm", "pleomorphic", "form"),
    (MASS, "lesionStrength", 0.8, "strength"),
    (CLUSTER, "lesionStrength", 0.3, "strength"),
    (MASS, "lesionContrast", 0.4, "lesion_contrast"),
])
def test_each_lesion_option_reaches_the_engine(panel, kind, name, value, dest):
    p = panel._parameterNode
    p.inpaintLesion = kind
    before = getattr(_parsed(panel), dest)
    assert before != value, "the default must differ for the test to see the option"
    setattr(p, name, value)
    after = _parsed(panel)
    assert getattr(after, dest) == value
    assert after.lesion == {MASS: "mass", CLUSTER: "calcification"}[kind]


def test_the_lesion_kind_spacing_and_placement_reach_the_engine(panel, module, scene, loaded_view):
    p = panel._parameterNode
    p.inpaintLesion = MASS
    mass = _parsed(panel)
    column_mm, row_mm = loaded_view.GetSpacing()[:2]
    assert (mass.lesion, mass.mask) == ("mass", None), "no segment: placed at random in the breast"
    assert mass.spacing_mm == pytest.approx((column_mm + row_mm) / 2) == pytest.approx(sum(SPACING) / 2)
    p.inpaintMethod = "sd"  # the engine refuses sd with --lesion: the panel leaves the method out
    panel.onInpaint()
    assert "--method" not in panel.started.pop()
    p.inpaintLesion = CLUSTER
    assert _parsed(panel).lesion == "calcification"
    loaded_view.SetSpacing(0.05, 0.05, 1.0)  # edited in Volumes > Volume Information: lesions follow
    assert _parsed(panel).spacing_mm == pytest.approx(0.05)

    shape = mrml.volume_node_to_array(loaded_view).shape
    disc = np.zeros(shape, bool)
    disc[70:90, 30:50] = True
    labelmap = mrml.mask_to_labelmap_node(scene, disc, loaded_view, "painted", display=False)
    segmentation = mrml.labelmap_to_segmentation_node(scene, labelmap, "painted", loaded_view)
    p.inpaintSegmentation, p.inpaintSegmentID = segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)
    placed = _parsed(panel)
    assert placed.lesion == "calcification" and Path(placed.mask).name == "mask.nrrd", "the segment places it"
    p.inpaintLesion = PAINTED
    plain = _parsed(panel)
    assert (plain.lesion, plain.spacing_mm, plain.method) == (None, None, "sd") and plain.mask is not None


def test_an_analytic_lesion_needs_no_segment_and_a_painted_one_does(panel):
    p, ui = panel._parameterNode, panel.ui
    panel.updateApplyButton()
    assert not ui.inpaintButton.enabled and "segment" in ui.inpaintButton.toolTip
    p.inpaintLesion = MASS
    panel.updateApplyButton()
    assert ui.inpaintButton.enabled and "random place" in ui.inpaintButton.toolTip
    p.sourceVolume = None
    panel.updateApplyButton()
    assert not ui.inpaintButton.enabled and ui.inpaintButton.toolTip == "Select a source image"


@pytest.mark.parametrize("kind, editable", [
    (PAINTED, {"inpaintMethodComboBox"}),
    (MASS, {"lesionShapeComboBox", "lesionMarginComboBox", "lesionSizeSpinBox", "lesionStrengthSlider",
            "lesionContrastSpinBox"}),
    (CLUSTER, {"lesionCountSpinBox", "lesionSpreadSpinBox", "lesionFormComboBox", "lesionSizeSpinBox",
               "lesionStrengthSlider", "lesionContrastSpinBox"}),
])
def test_only_the_chosen_lesions_options_are_editable(panel, kind, editable):
    names = {"inpaintMethodComboBox", "lesionShapeComboBox", "lesionMarginComboBox", "lesionSizeSpinBox",
             "lesionCountSpinBox", "lesionSpreadSpinBox", "lesionFormComboBox", "lesionStrengthSlider",
             "lesionContrastSpinBox"}
    panel._parameterNode.inpaintLesion = kind
    panel.updateLesionWidgets()
    assert {name for name in names if getattr(panel.ui, name).enabled} == editable


def test_a_film_without_spacing_asks_for_one_and_starts_nothing(panel, module, scene, real_dicoms):
    [view], errors = study.load_files(scene, [real_dicoms[0]])
    assert errors == [] and view.node.GetAttribute(study.SPACING_ATTRIBUTE) == "0"
    p = panel._parameterNode
    p.sourceVolume, p.inpaintLesion = view.node, MASS
    panel.onInpaint()
    assert panel.started == [] and "no pixel spacing" in panel.ui.statusLabel.text \
        and "Volumes > Volume Information" in panel.ui.statusLabel.text
    view.node.SetSpacing(DDSM_SPACING, DDSM_SPACING, 1.0)
    assert _parsed(panel).spacing_mm == pytest.approx(DDSM_SPACING)


# ------------------------------------------------------------------ a real engine run


@pytest.fixture(scope="module")
def mambo_dir(tmp_path_factory):
    from tiny_bundles import make_tiny_mambo_set

    return make_tiny_mambo_set(tmp_path_factory.mktemp("mambo"))


def _film(scene, path):
    """A real DDSM film loaded as the folder loader loads each file, its spacing set as a user sets it in the
    Volumes module."""
    [view], errors = study.load_files(scene, [path])
    assert errors == []
    view.node.SetSpacing(DDSM_SPACING, DDSM_SPACING, 1.0)
    return view.node


def _seg_pixels(path) -> np.ndarray:
    import highdicom as hd

    return hd.seg.segread(path).pixel_array.squeeze().astype(bool)


def _code(segment) -> tuple[str, str]:
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic().DeserializeTerminologyEntry(segment.GetTerminology(), entry)
    return entry.GetTypeObject().GetCodeValue(), entry.GetTypeObject().GetCodeMeaning()


@pytest.mark.parametrize("lesion, painted, label, code", [
    (dict(lesion="mass", shape="irregular", margin="spiculated", sizeMm=6.0), False, "Mass", ("4147007", "Mass")),
    (dict(lesion="calcification", count=7, sizeMm=0.5, spreadMm=8.0, form="pleomorphic"), True,
     "Calcification cluster",
     ("129769006", "Calcification Cluster")),
])
def test_the_lesion_seg_of_a_real_run_is_loaded_as_a_segmentation(module, scene, real_dicoms, mambo_dir, tmp_path,
                                                                  lesion, painted, label, code):
    source = _film(scene, real_dicoms[1])
    logic = module.SlicerMammoSynthLogic()
    segmentation, segment_id, region = None, "", None
    if painted:  # a disc deep in the breast: the cluster is placed and sized by it
        from MammoSynthLogic.breast_mask import breast_mask

        pixels = mrml.volume_node_to_array(source)
        rows, cols = np.nonzero(breast_mask(pixels.astype(np.float32) / pixels.max()))
        centre = int(np.median(rows)), int(np.median(cols))
        yy, xx = np.ogrid[:pixels.shape[0], :pixels.shape[1]]
        region = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < 120 ** 2  # 6 mm radius
        labelmap = mrml.mask_to_labelmap_node(scene, region, source, "painted", display=False)
        segmentation = mrml.labelmap_to_segmentation_node(scene, labelmap, "painted", source)
        scene.RemoveNode(labelmap)
        segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    job = logic.startInpaint(source, segmentation, segment_id, seed=3, model=str(mambo_dir), steps=2, device="cpu",
                             outputDirectory=tmp_path / "out", **lesion)
    job.wait(timeout=300)
    image, seg_node = logic.loadInpaintResult(job, source)

    np.testing.assert_allclose(mrml.ijk_to_ras_of(image), mrml.ijk_to_ras_of(source), atol=1e-12,
                               err_msg="the result lies over the source, at the spacing set on it")
    image_path, seg_path = map(Path, job.result["outputs"])
    assert seg_path.name == image_path.stem + "_lesion_seg.dcm"
    expected = _seg_pixels(seg_path)
    assert expected.any() and expected.shape == mrml.volume_node_to_array(image).shape
    segments = seg_node.GetSegmentation()
    assert segments.GetNumberOfSegments() == 1
    segment = segments.GetNthSegment(0)
    assert (segment.GetName(), _code(segment)) == (label, code)
    loaded = mrml.segment_to_mask(seg_node, segments.GetNthSegmentID(0), image)
    assert np.array_equal(loaded, expected), "the segmentation is the SEG, pixel for pixel"
    if painted:
        assert not (expected & ~region).any(), "the cluster lies in the painted region"
        from skimage.measure import label as components

        assert components(expected).max() == 7
    sh = mrml.subject_hierarchy(scene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(source))
    assert sh.GetItemParent(sh.GetItemByDataNode(seg_node)) == sh.GetItemParent(sh.GetItemByDataNode(image)) == parent
    assert seg_node.GetName() == f"{image.GetName()} lesion"
