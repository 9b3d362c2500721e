"""The module's Widget as Slicer drives it (setup, enter, exit, buttons), outside the application: PythonQt's `qt`
and the panel's widgets are stand-ins (test_slicer_standins.py) that follow PythonQt's signatures, the scene and the
DICOM files are real. Dialogs, the parameter node connection, the Slicer version and dependency checks, loading a
study from a folder or the DICOM database."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factory import mammogram_dataset, save, synthetic_breast
from test_slicer_logic import module  # noqa: F401
from test_slicer_mrml import SPACING, converter_rules, scene, slicer  # noqa: F401
from test_slicer_standins import UI, QInputDialog, Widget

ROOT = Path(__file__).resolve().parents[1]
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


class Dialogs:
    """slicer.util's message boxes: what was shown, and the answer the user gives to questions."""

    def __init__(self, answer: bool = True):
        self.shown: list[tuple[str, str]] = []
        self.answer = answer

    def show(self, kind):
        def display(text, windowTitle=None, *args, **kwargs):
            self.shown.append((kind, text))
            return self.answer
        return display


@pytest.fixture()
def dialogs(monkeypatch):
    found = Dialogs()
    for kind in ("errorDisplay", "warningDisplay", "infoDisplay", "confirmOkCancelDisplay", "confirmYesNoDisplay"):
        monkeypatch.setattr(slicer.util, kind, found.show(kind))
    monkeypatch.setattr(QInputDialog, "answer", None)
    monkeypatch.setattr(QInputDialog, "shown", [])
    return found


@pytest.fixture()
def panel(module, dialogs, monkeypatch, scene):
    """The Widget after Slicer's setup(), with the stand-in panel."""
    import contextlib

    @contextlib.contextmanager
    def show_errors(message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as error:  # what tryWithErrorDisplay shows
            dialogs.shown.append(("errorDisplay", f"{message} {error}"))

    ui = UI()
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: Widget())
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui)
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", show_errors)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: None)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda *args, **kwargs: None)
    monkeypatch.setattr(slicer, "app", Widget(), raising=False)
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "restartPending", [])
    node = ParameterNode58(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "getParameterNode", lambda self: node)
    widget = module.SlicerMammoSynthWidget()
    widget.setup()
    yield widget
    widget.cleanup()  # as Slicer does when the module goes: no scene observer outlives the widget


# ------------------------------------------------------------------ dialogs under PythonQt


def test_cancelling_the_study_picker_loads_nothing(panel, monkeypatch):
    """PythonQt's static getItem returns the first study on Cancel (no `ok` flag): the module must see Cancel."""
    studies = [("1.2.3", "Doe^Jane - 20200101 - screening"), ("1.2.4", "Roe^Ann - 20210101 - diagnostic")]
    loaded = []
    monkeypatch.setattr(panel.logic, "databaseStudies", lambda: studies)
    monkeypatch.setattr(panel.logic, "loadDatabaseStudy", lambda uid: loaded.append(uid) or ([], [], []))
    QInputDialog.answer = None  # the user presses Cancel
    panel.onLoadDatabase()
    assert loaded == []
    QInputDialog.answer = "Roe^Ann - 20210101 - diagnostic"
    panel.onLoadDatabase()
    assert loaded == ["1.2.4"]
    assert QInputDialog.shown[-1].items == [label for _, label in studies]


# ------------------------------------------------------------------ parameter node connection


class ParameterNode58:
    """The parameter node wrapper as Slicer 5.6/5.8 connect it to a panel: connectGui returns no tag, so
    disconnectGui(tag) removes nothing, and each connection fills the Choice combo box anew, which makes it report
    its first item to every connection made before (QComboBoxToEnumConnector before Slicer 5.10)."""

    CHOICES = {"task": ("taskComboBox", ["Generate", "Upscale"]), "preset": ("presetComboBox", ["fast", "paper"]),
               "inpaintLesion": ("inpaintLesionComboBox", ["painted region", "analytic mass",
                                                           "analytic calcification cluster"]),
               "lesionShape": ("lesionShapeComboBox", ["round", "oval", "irregular"]),
               "lesionMargin": ("lesionMarginComboBox", ["circumscribed", "obscured", "microlobulated", "indistinct",
                                                         "spiculated"]),
               "lesionForm": ("lesionFormComboBox", ["punctate", "pleomorphic"])}

    def __init__(self, node):
        self.parameterNode = node
        for name, (_, choices) in self.CHOICES.items():
            setattr(self, name, choices[0])
        self.inpaintSegmentation, self.inpaintSegmentID = None, ""
        self.sourceVolume, self.textVendor = None, ""
        for name in ("modelPath", "outputDirectory", "anomalyModelPath", "dualviewModelPath", "textModelPath",
                     "inpaintModelPath"):
            setattr(self, name, "")
        self.connections: list[tuple[object, str]] = []

    def connectGui(self, ui):
        for name, (widgetName, choices) in self.CHOICES.items():
            combo = getattr(ui, widgetName)
            combo.currentText = choices[0]  # cleared and filled again
            for widget, parameter in self.connections:
                if widget is combo:
                    setattr(self, parameter, combo.currentText)
        for name, (widgetName, _) in self.CHOICES.items():
            combo = getattr(ui, widgetName)
            self.connections.append((combo, name))
            combo.currentText = getattr(self, name)
        return None

    def disconnectGui(self, tag):
        pass

    def AddObserver(self, event, callback, priority=0.0):
        return 1

    def RemoveObserver(self, tag):
        pass


def test_settings_survive_leaving_and_entering_the_module(module, dialogs, monkeypatch, scene):
    node = ParameterNode58(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "getParameterNode", lambda self: node)
    monkeypatch.setattr(module.SlicerMammoSynthLogic, "restartPending", [])
    ui = UI()
    monkeypatch.setattr(slicer.util, "loadUI", lambda path: Widget())
    monkeypatch.setattr(slicer.util, "childWidgetVariables", lambda widget: ui)
    widget = module.SlicerMammoSynthWidget()
    widget.setup()
    widget.enter()
    picked = {"task": "Upscale", "preset": "paper", "inpaintLesion": "analytic mass", "lesionShape": "irregular",
              "lesionMargin": "spiculated", "lesionForm": "pleomorphic"}
    for name, value in picked.items():  # the user picks Upscale, the paper preset, a spiculated irregular mass ...
        setattr(node, name, value)
        getattr(ui, ParameterNode58.CHOICES[name][0]).currentText = value
    for _ in range(2):  # to the Segment Editor and back, as qSlicerScriptedLoadableModuleWidget calls the Python side
        if hasattr(widget, "exit"):
            widget.exit()
        widget.enter()
    assert {name: getattr(node, name) for name in picked} == picked
    assert ui.lesionShapeComboBox.enabled and not ui.lesionFormComboBox.enabled, "a mass's options, not a cluster's"
    assert len(node.connections) == len(ParameterNode58.CHOICES), "one connection per widget"

    # a new scene brings a new parameter node: connected once more, to that node only
    other = ParameterNode58(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    widget.setParameterNode(other)
    assert len(other.connections) == len(ParameterNode58.CHOICES)
    widget.cleanup()


# ------------------------------------------------------------------ Slicer version and dependencies


def _folder_with_one_view(tmp_path) -> Path:
    save(mammogram_dataset(synthetic_breast(96, 64), PixelSpacing=list(SPACING)), tmp_path / "study" / "LCC.dcm")
    return tmp_path / "study"


def test_an_older_slicer_is_told_what_to_do_in_one_dialog_and_nothing_is_downloaded(panel, dialogs, monkeypatch,
                                                                                       tmp_path):
    from SlicerMammoSynthLib import dependencies

    installs = []
    monkeypatch.setattr(dependencies, "python_version", lambda: (3, 9))
    monkeypatch.setattr(slicer.util, "pip_install", lambda *args, **kwargs: installs.append(args))
    panel.ui.folderPathLineEdit.currentPath = str(_folder_with_one_view(tmp_path))
    panel.onLoadFolder()
    assert [kind for kind, _ in dialogs.shown] == ["errorDisplay"]
    assert "3D Slicer 5.10 or newer" in dialogs.shown[0][1] and "Python 3.9" in dialogs.shown[0][1]
    dialogs.shown.clear()
    panel.onApply()  # a job: the same single dialog, no install offered
    assert [kind for kind, _ in dialogs.shown] == ["errorDisplay"] and installs == [] and panel._job is None
    panel.updateDependencyStatus()
    assert panel.ui.dependencyStatusLabel.text == "Needs 3D Slicer 5.10 or newer"
    assert not panel.ui.installDependenciesButton.enabled


def test_replacing_a_package_slicer_imported_asks_for_a_restart_and_blocks_jobs(panel, dialogs, monkeypatch):
    from SlicerMammoSynthLib import dependencies

    installed, restarts = [], []
    monkeypatch.setattr(dependencies, "missing",
                        lambda requirements: [r for r in requirements if r.startswith("pydicom") and not installed])
    monkeypatch.setattr(slicer.util, "pip_install", lambda requirements: installed.extend(requirements))
    monkeypatch.setattr(slicer.util, "restart", lambda: restarts.append(1))
    dialogs.answer = True
    panel.onApply()
    assert installed == ["pydicom>=3.0"] and panel._job is None
    assert panel.logic.restartPending == ["pydicom"], "pydicom is imported in this process: its files were replaced"
    assert [kind for kind, _ in dialogs.shown] == ["confirmOkCancelDisplay", "confirmYesNoDisplay"] and restarts == [1]
    dialogs.shown.clear()
    dialogs.answer = False  # not now: nothing runs in the mixed state, and the question comes again
    panel.onApply()
    assert panel._job is None and [kind for kind, _ in dialogs.shown] == ["confirmYesNoDisplay"]
    panel.updateDependencyStatus()
    assert panel.ui.dependencyStatusLabel.text == "Restart Slicer to finish the installation"


def test_loading_a_folder_needs_no_torch(panel, dialogs, monkeypatch, scene, tmp_path):
    from SlicerMammoSynthLib import dependencies

    monkeypatch.setattr(dependencies, "missing", lambda requirements: [r for r in requirements if r.startswith("torch")])
    panel.ui.folderPathLineEdit.currentPath = str(_folder_with_one_view(tmp_path))
    panel.onLoadFolder()
    assert dialogs.shown == [], "no install dialog: reading needs no torch"
    assert panel.ui.statusLabel.text == "Loaded 1 view(s)"
    assert scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1


READ_WITHOUT_TORCH = r"""
import json, sys
sys.modules["torch"] = None  # any import of torch fails
sys.path.insert(0, sys.argv[2])
import slicer
from SlicerMammoSynthLib import study
scene = slicer.vtkMRMLScene()
views, errors = study.load_folder(scene, sys.argv[1])
print(json.dumps({"views": [v.label for v in views], "errors": [str(e) for e in errors],
                  "torch": [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None]}))
"""


def test_the_study_reader_imports_no_torch(tmp_path):
    folder = _folder_with_one_view(tmp_path)
    proc = subprocess.run([sys.executable, "-c", READ_WITHOUT_TORCH, str(folder), str(ROOT / "SlicerMammoSynth")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"views": ["L CC"], "errors": [], "torch": []}


# ------------------------------------------------------------------ the source selector


def test_the_source_selector_lists_mammograms_only(panel, module, scene, tmp_path):
    from SlicerMammoSynthLib import mrml, study

    selector = panel.ui.sourceVolumeSelector
    assert selector.nodeTypes == ["vtkMRMLScalarVolumeNode"] and selector.showChildNodeTypes is False
    assert ("addAttribute", ("vtkMRMLScalarVolumeNode", study.MAMMOGRAM_ATTRIBUTE, "1")) in selector.calls
    [view], _ = study.load_folder(scene, _folder_with_one_view(tmp_path))
    assert view.node.GetAttribute(study.MAMMOGRAM_ATTRIBUTE) == "1"
    heat = np.zeros((96, 64), np.float32)
    heat[10:20, 10:20] = 1
    nodes = mrml.anomaly_to_nodes(scene, heat, [heat > 0], view.node, "L CC anomaly")
    assert nodes.heat.GetAttribute(study.MAMMOGRAM_ATTRIBUTE) is None
    assert nodes.labels.IsA("vtkMRMLLabelMapVolumeNode")  # a child type: not shown with showChildNodeTypes off


# ------------------------------------------------------------------ the DICOM database


class DicomDatabase:
    """ctkDICOMDatabase as the module uses it, over real files: series by study, files by series, tag values."""

    def __init__(self, series: dict[str, list[Path]], study_uid: str):
        self.series, self.study_uid = series, study_uid
        self.isOpen = True

    def patients(self):
        return ["1"]

    def studiesForPatient(self, patient):
        return [self.study_uid]

    def seriesForStudy(self, study):
        return list(self.series) if study == self.study_uid else []

    def filesForSeries(self, series):
        return [str(p) for p in self.series[series]]

    def fileValue(self, path, tag):
        group, element = (int(part, 16) for part in tag.split(","))
        value = pydicom.dcmread(path, stop_before_pixels=True, force=True).get((group, element))
        return "" if value is None else str(value.value)


@pytest.fixture()
def database(tmp_path, monkeypatch):
    """One study: L CC and L MLO for presentation, the L CC for processing, a presentation state, an ultrasound image
    and a for-presentation image whose pixel data is cut short."""
    study_uid = pydicom.uid.generate_uid()

    def image(name, sop_class=None, pixels=True, **tags):
        ds = mammogram_dataset(synthetic_breast(96, 64), StudyInstanceUID=study_uid, **tags)
        if sop_class:
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        if not pixels:
            del ds.PixelData, ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit
        return save(ds, tmp_path / "db" / f"{name}.dcm")

    series = {
        "cc": [image("LCC")],
        "mlo": [image("LMLO", ViewPosition="MLO")],
        "processing": [image("LCC-processing", MG_FOR_PROCESSING)],
        "gsps": [image("gsps", GSPS, pixels=False, Modality="PR")],
        "us": [image("us", US_IMAGE, Modality="US")],
        "broken": [image("broken", ViewPosition="MLO", ImageLaterality="R")],
    }
    broken = series["broken"][0]
    broken.write_bytes(broken.read_bytes()[:-4000])
    db = DicomDatabase(series, study_uid)
    monkeypatch.setattr(slicer, "dicomDatabase", db, raising=False)
    return db


def test_only_mg_for_presentation_images_become_views(module, scene, database):
    views, skipped, errors = module.SlicerMammoSynthLogic().loadDatabaseStudy(database.study_uid)
    assert [v.label for v in views] == ["L CC", "L MLO"]
    assert skipped == ["1 x Digital Mammography X-Ray Image Storage - For Processing",
                       "1 x Grayscale Softcopy Presentation State Storage", "1 x Ultrasound Image Storage"]
    assert len(errors) == 1 and "broken.dcm" in str(errors[0])
    volumes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    assert sorted(volumes.GetItemAsObject(i).GetName() for i in range(volumes.GetNumberOfItems())) == \
        ["L CC", "L MLO"], "nothing half-added for the skipped or unreadable files"


def test_the_status_line_lists_what_the_database_load_skipped(panel, dialogs, database):
    QInputDialog.answer = panel.logic.databaseStudies()[0][1]
    panel.onLoadDatabase()
    status = panel.ui.statusLabel.text
    assert status.startswith("Loaded 2 view(s); skipped (not MG For Presentation): 1 x Digital Mammography")
    assert "1 x Ultrasound Image Storage" in status and status.endswith("1 file(s) could not be read")
    assert [kind for kind, _ in dialogs.shown] == ["warningDisplay"]
