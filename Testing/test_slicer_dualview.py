"""The Dual view panel's results as volumes, against Slicer's libraries (PyPI `slicer-core`): the engine's real
`dualview` command, started with the module's command line through the background runner (tiny random bundle),
gives a pair under one new synthetic study, and a completed view placed in its source's study."""
from __future__ import annotations

import sys
from pathlib import Path

import pydicom
import pytest

from test_slicer_mrml import SPACING, converter_rules, scene, slicer  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SlicerMammoSynth"))

from SlicerMammoSynthLib import mrml  # noqa: E402
from SlicerMammoSynthLib import study  # noqa: E402
from MammoSynthLogic.dicom_io import write_synthetic_dicom  # noqa: E402
from MammoSynthLogic.errors import MammoSynthError  # noqa: E402
from SlicerMammoSynthLib.runner import EngineJob, engine_command  # noqa: E402


def make_tiny_dualview_bundle(folder: Path) -> Path:
    """A ~20k-parameter random 3-channel (R = CC, G = MLO, B = |CC - MLO|) bundle of 64² images."""
    import torch
    from diffusers import UNet2DModel

    from MammoSynthLogic.bundles import save_bundle
    from tiny_bundles import ddpm_scheduler

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=64, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    return save_bundle(folder, unet, ddpm_scheduler(),
                       {"role": "dualview", "version": "test", "step": 0, "training_data": "none (random weights)"})


@pytest.fixture(scope="module")
def dualview_bundle(tmp_path_factory) -> Path:
    return make_tiny_dualview_bundle(tmp_path_factory.mktemp("bundle") / "dualview")


def _run(args: list[str], out: Path) -> dict:
    """The engine started as the module starts it (two denoising steps to stay fast); its result line."""
    job = EngineJob(engine_command(args + ["--steps", "2"], python=sys.executable), outputs=[out],
                    engine_path=ROOT).start()
    job.wait(timeout=240)
    return job.result


def _arguments():
    from test_slicer_runner import _module_logic_function

    return _module_logic_function("dualviewArguments")


def test_generated_pair_is_two_views_of_one_new_synthetic_study(scene, dualview_bundle, tmp_path):
    out = tmp_path / "dualview-1"
    result = _run(_arguments()(str(out), model=str(dualview_bundle), seed=5, laterality="R", device="cpu"), out)
    assert sorted(result["views"]) == ["CC", "MLO"] and result["seed"] == 5
    nodes = study.load_dualview(scene, result)
    assert sorted(node.GetName() for node in nodes) == ["R CC dual-view seed 5 (synthetic)",
                                                         "R MLO dual-view seed 5 (synthetic)"]
    sh = mrml.subject_hierarchy(scene)
    parents = {sh.GetItemParent(sh.GetItemByDataNode(node)) for node in nodes}
    assert len(parents) == 1, "both views in one study"
    [parent] = parents
    uid = pydicom.dcmread(result["views"]["CC"], stop_before_pixels=True).StudyInstanceUID
    assert sh.GetItemLevel(parent) == "Study"
    assert sh.GetItemUID(parent, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()) == uid
    for node in nodes:
        assert node.GetAttribute(study.SYNTHETIC_ATTRIBUTE) == "1"
        assert study.view_info(node)[0] == "R"
        assert mrml.volume_node_to_array(node).shape == (64, 64)


def test_completed_view_lands_in_the_source_study_without_a_stray_synthetic_study(scene, dualview_bundle,
                                                                                   tmp_path):
    from dicom_factory import synthetic_breast

    source_path = write_synthetic_dicom(tmp_path / "study" / "LCC.dcm", synthetic_breast(160, 128) / 65535.0,
                                        provenance={"model": "test"}, view="CC", laterality="L",
                                        spacing_mm=SPACING)
    [view], errors = study.load_folder(scene, source_path.parent)
    assert errors == [] and view.label == "L CC"
    sh = mrml.subject_hierarchy(scene)
    source_study = sh.GetItemParent(sh.GetItemByDataNode(view.node))
    items_before = _item_count(sh)

    out = tmp_path / "complete-1"
    result = _run(_arguments()(str(out), complete=str(source_path), model=str(dualview_bundle), seed=1,
                               device="cpu"), out)
    assert list(result["views"]) == ["MLO"]
    [node] = study.load_dualview(scene, result, source_node=view.node)
    assert node.GetName() == "L MLO dual-view seed 1 (synthetic)"
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == source_study
    generated_uid = pydicom.dcmread(result["views"]["MLO"], stop_before_pixels=True).StudyInstanceUID
    assert not sh.GetItemByUID(slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), generated_uid), \
        "the generated file's own synthetic study must not appear as an empty item"
    assert _item_count(sh) == items_before + 1, "only the new volume was added to subject hierarchy"


def _item_count(sh) -> int:
    import vtk

    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids, True)
    return ids.GetNumberOfIds()


def test_a_result_without_views_is_a_one_line_error(scene):
    with pytest.raises(MammoSynthError, match="no views"):
        study.load_dualview(scene, {"outputs": [], "seed": 1})
