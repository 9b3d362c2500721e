"""The module's Logic class and self-test (SlicerMammoSynth.py), outside the Slicer application: Qt, CTK and the
scripted-module base classes are replaced by stand-ins (test_slicer_standins.py), `slicer.mrmlScene` is a `slicer-core`
scene. The self-test then runs as in Slicer (real engine jobs in the background with the embedded bundles), and a
dual-view completion runs through the Logic as the panel starts it."""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from test_slicer_mrml import SPACING, converter_rules, scene, slicer  # noqa: F401
from test_slicer_standins import standin_modules

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def module(monkeypatch, scene):
    """SlicerMammoSynth.py imported with stand-ins for what only the application provides."""
    for name, stub in standin_modules().items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "startupEnvironment", lambda: dict(os.environ))
    monkeypatch.syspath_prepend(str(ROOT / "SlicerMammoSynth"))
    monkeypatch.delitem(sys.modules, "SlicerMammoSynth", raising=False)
    return importlib.import_module("SlicerMammoSynth")


@pytest.fixture()
def loaded_view(module, tmp_path):
    """An L CC mammogram loaded through the Logic, as the panel's Load folder does."""
    from dicom_factory import synthetic_breast
    from MammoSynthLogic.dicom_io import write_synthetic_dicom

    write_synthetic_dicom(tmp_path / "study" / "LCC.dcm", synthetic_breast(160, 128) / 65535.0,
                          provenance={"model": "test"}, view="CC", laterality="L", spacing_mm=SPACING)
    views, errors = module.SlicerMammoSynthLogic().loadFolder(str(tmp_path / "study"))
    assert errors == [] and [v.label for v in views] == ["L CC"]
    return views[0].node


def test_the_self_test_runs_a_real_job_of_each_kind_with_the_embedded_bundles(module, monkeypatch, tmp_path):
    """runTest as Slicer's self-test button runs it: generate, cancel, anomaly, inpaint and a dual-view pair with the
    embedded bundles through the Logic, outputs loaded into a slicer-core scene."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    test = module.SlicerMammoSynthTest("runTest")
    test.shown = []
    test.runTest()
    passed = [message for message in test.shown if message.endswith("passed")]
    assert passed == ["MRML conversion passed", "Generate passed", "Anomaly passed", "Inpaint passed",
                      "Dual view passed"]
    [anomaly_folder] = tmp_path.glob("MammoSynthTest-*/out/anomaly-*-seed1")
    assert (anomaly_folder / "seg.dcm").is_file()


def test_the_self_test_fails_with_the_reason_when_dependencies_are_missing(module, monkeypatch):
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "missingRequirements",
                        staticmethod(lambda readingOnly=False: ["torch>=2.1"]))
    test = module.SlicerMammoSynthTest("runTest")
    test.shown = []
    with pytest.raises(AssertionError, match=r"dependencies are missing \(torch>=2.1\): press Install dependencies"):
        test.runTest()
    assert not any(message.endswith("passed") for message in test.shown), "no step ran"


def test_dual_view_through_the_logic(module, loaded_view, scene, tmp_path):
    from SlicerMammoSynthLib import study
    from test_slicer_dualview import make_tiny_dualview_bundle

    bundle = make_tiny_dualview_bundle(tmp_path / "dualview")
    logic = module.SlicerMammoSynthLogic()
    # a pair: started as the panel does, then cancelled (its loading is tested with the engine's output in
    # test_slicer_dualview.py): the panel's laterality, size and model reach the engine; nothing is left behind
    job = logic.startDualView(model=bundle, seed=6, laterality="R", size=128, device="cpu",
                              outputDirectory=tmp_path / "out")
    from MammoSynthLogic.cli import build_parser

    args = build_parser().parse_args(job.command[3:])
    assert (args.command, args.complete, args.laterality, args.size, args.seed, args.model, args.out) == \
        ("dualview", None, "R", 128, 6, str(bundle), job.outputs[0])
    job.cancel()
    assert job.cancelled and not job.outputs[0].exists()
    sh = module.mrml.subject_hierarchy(scene)

    # completion: laterality is taken from the source's header, so the panel's choice is not passed
    job = logic.startDualView(complete=loaded_view, model=bundle, seed=6, laterality="R", device="cpu",
                              outputDirectory=tmp_path / "out")
    assert "--laterality" not in job.command and job.command[job.command.index("--complete") + 1] == \
        study.view_info(loaded_view)[2]
    job.wait(timeout=240)
    [completed] = logic.loadDualViewResult(job, loaded_view)
    assert completed.GetName() == "L MLO dual-view seed 6 (synthetic)"
    assert sh.GetItemParent(sh.GetItemByDataNode(completed)) == sh.GetItemParent(sh.GetItemByDataNode(loaded_view))
    assert np.array_equal(module.mrml.volume_node_to_array(completed).shape, (64, 64))
