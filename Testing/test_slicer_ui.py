"""The module panel (.ui) loads in Qt with Slicer's custom widgets replaced by their Qt base classes, matches the
names the module code uses, and renders with every section in view. The picture goes to a temporary folder, or to
$MAMMOSYNTH_SCREENSHOTS (scripts/make_slicer_screenshots.py: docs/images/slicer-panel.png)."""
from __future__ import annotations

import ast
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtWidgets = pytest.importorskip("PySide6.QtWidgets")
QtUiTools = pytest.importorskip("PySide6.QtUiTools")
from PySide6.QtCore import Property, QBuffer, QByteArray, QIODevice, Qt, Signal  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "Resources" / "UI" / "SlicerMammoSynth.ui"
MODULE_FILE = ROOT / "SlicerMammoSynth" / "SlicerMammoSynth.py"
PANEL_SIZE = (440, 1900)
# Kept in step by the module's own code: an editable combo box, the segment selector and the folder fields (PATH_FIELDS),
# which no GUI connector binds (Slicer's Path connector would show an unset folder as ".").
WIDGET_KEPT = {"textVendor", "inpaintSegmentation", "inpaintSegmentID"}


# Stand-ins for Slicer's CTK/MRML widgets, registered under their class names: what Qt Designer would show.
class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def _text(self):
        return self.title()

    def _set_text(self, value):
        self.setTitle(value)

    text = Property(str, _text, _set_text)
    collapsed = Property(bool, lambda self: False, lambda self, value: None)


class ctkPathLineEdit(QtWidgets.QLineEdit):
    pass


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    pass


class ctkSliderWidget(QtWidgets.QWidget):
    """A slider and a spin box of one float value, with ctkSliderWidget's properties and valueChanged(double)."""

    valueChanged = Signal(float)
    TICKS = 1000

    def __init__(self, parent=None):
        super().__init__(parent)
        self._slider = QtWidgets.QSlider(Qt.Horizontal)
        self._slider.setRange(0, self.TICKS)
        self._spin = QtWidgets.QDoubleSpinBox()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._slider, 1)
        layout.addWidget(self._spin)
        self._spin.valueChanged.connect(self._from_spin)
        self._slider.valueChanged.connect(
            lambda tick: self._spin.setValue(self.minimum + (self.maximum - self.minimum) * tick / self.TICKS))

    def _from_spin(self, value):
        span = (self.maximum - self.minimum) or 1.0
        self._slider.blockSignals(True)
        self._slider.setValue(round((value - self.minimum) / span * self.TICKS))
        self._slider.blockSignals(False)
        self.valueChanged.emit(value)

    def _set_range(self, low, high):
        self._spin.setRange(low, high)
        self._from_spin(self._spin.value())

    decimals = Property(int, lambda self: self._spin.decimals(), lambda self, v: self._spin.setDecimals(v))
    singleStep = Property(float, lambda self: self._spin.singleStep(), lambda self, v: self._spin.setSingleStep(v))
    pageStep = Property(float, lambda self: self._spin.singleStep() * 10, lambda self, v: None)
    minimum = Property(float, lambda self: self._spin.minimum(), lambda self, v: self._set_range(v, self.maximum))
    maximum = Property(float, lambda self: self._spin.maximum(), lambda self, v: self._set_range(self.minimum, v))
    value = Property(float, lambda self: self._spin.value(), lambda self, v: self._spin.setValue(v))
    suffix = Property(str, lambda self: self._spin.suffix(), lambda self, v: self._spin.setSuffix(v))


class qMRMLWidget(QtWidgets.QWidget):
    pass


class qMRMLSegmentSelectorWidget(qMRMLWidget):
    """A segmentation combo box over a segment combo box, with the segment selector's signals."""

    currentNodeChanged = Signal(object)
    currentSegmentChanged = Signal(str)
    noneEnabled = Property(bool, lambda self: True, lambda self, value: None)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.nodes, self.segments = QtWidgets.QComboBox(), QtWidgets.QComboBox()
        layout.addWidget(self.nodes)
        layout.addWidget(self.segments)


SLICER_WIDGETS = {cls.__name__: cls for cls in (ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox,
                                                 ctkSliderWidget, qMRMLWidget, qMRMLSegmentSelectorWidget)}


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _load(app, register: bool):
    loader = QtUiTools.QUiLoader()
    if register:
        for cls in SLICER_WIDGETS.values():
            loader.registerCustomWidget(cls)
    data = QByteArray(UI_FILE.read_bytes())
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    widget = loader.load(buffer)
    assert widget is not None, loader.errorString()
    return widget


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def _ui_names_used_by_module() -> set[str]:
    return set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))


def _parameter_fields() -> dict[str, tuple[str, list[ast.expr], object]]:
    """Field name -> (value type, annotations, default) of the module's parameterNodeWrapper class."""
    for node in ast.walk(_module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == "SlicerMammoSynthParameterNode":
            fields = {}
            for field in (s for s in node.body if isinstance(s, ast.AnnAssign)):
                annotation = field.annotation
                if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
                    kind, *extras = annotation.slice.elts
                    annotation = kind
                else:
                    extras = []
                default = ast.literal_eval(field.value) if field.value is not None else None
                fields[field.target.id] = (ast.unparse(annotation), extras, default)
            return fields
    raise AssertionError("no SlicerMammoSynthParameterNode class in the module")


def _connected_signals() -> set[tuple[str, str]]:
    """(widget name, signal signature) of every `self.ui.NAME.connect("SIGNAL(...)", ...)` in the module."""
    return set(re.findall(r'self\.ui\.(\w+)\.connect\("([\w]+\([\w, ]*\))"', MODULE_FILE.read_text()))


def ui_properties(name: str) -> dict[str, str]:
    """The properties the .ui file gives one widget (name -> text of its value)."""
    for widget in ET.parse(UI_FILE).getroot().iter("widget"):
        if widget.get("name") == name:
            return {p.get("name"): (p[0].text or "") for p in widget.findall("property") if len(p)}
    raise AssertionError(f"no widget {name} in the .ui")


def range_and_value(control, kind: str) -> tuple[tuple[float, float], float]:
    """((minimum, maximum), value) a panel control opens with: a spin box's own, a slider's from the .ui (not what
    the ctkSliderWidget stand-in makes of it)."""
    if kind == "int" or isinstance(control, QtWidgets.QDoubleSpinBox):
        return (control.minimum(), control.maximum()), control.value()
    declared = ui_properties(control.objectName())
    return (float(declared["minimum"]), float(declared["maximum"])), float(declared["value"])


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a test renders a picture: the docs folder when the screenshot script asks for it, else tmp_path."""
    folder = Path(os.environ.get("MAMMOSYNTH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _module_constant(name: str) -> list[str]:
    for node in _module_tree().body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no constant {name} in the module")


def test_ui_declares_slicer_widgets_with_qwidget_bases():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class"): c.findtext("extends") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")} - {None}
    slicer_classes = {c for c in used if c.startswith(("ctk", "qMRML", "qSlicer"))}
    assert slicer_classes <= set(declared), f"undeclared custom widgets: {slicer_classes - set(declared)}"
    assert root.find("widget").get("class") == "qMRMLWidget"


FALLBACK_CHECK = """
import os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtWidgets
from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtUiTools import QUiLoader
app = QtWidgets.QApplication([])
data = QByteArray(open(sys.argv[1], "rb").read())  # kept: QBuffer does not own it
buffer = QBuffer(data)
buffer.open(QIODevice.ReadOnly)
loader = QUiLoader()
widget = loader.load(buffer)
for name in ("studyCollapsibleButton", "sourceVolumeSelector", "folderPathLineEdit", "applyButton"):
    print(name, type(widget.findChild(QtWidgets.QWidget, name)).__name__)
sys.stdout.flush()
os._exit(0)  # skip Qt's teardown, which can crash when the widget outlives the application object
"""


def test_ui_loads_with_custom_widgets_falling_back_to_base_classes():
    """Without Slicer's widget classes the panel still loads (QWidget stand-ins). In a fresh process: PySide6
    registers custom widget classes globally, so another test's stand-ins would otherwise be found."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FALLBACK_CHECK, str(UI_FILE)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    classes = dict(line.split() for line in out.splitlines() if line.strip())
    assert classes == {"studyCollapsibleButton": "QWidget", "sourceVolumeSelector": "QWidget",
                       "folderPathLineEdit": "QWidget", "applyButton": "QPushButton"}


def test_every_widget_the_module_references_exists(app):
    widget = _load(app, register=False)
    names = {w.objectName() for w in widget.findChildren(QtWidgets.QWidget)}
    used = _ui_names_used_by_module()
    assert {"applyButton", "progressBar", "logTextEdit", "viewsTable", "sourceVolumeSelector", "anomalyButton",
            "anomalyThresholdSlider", "heatOpacitySlider", "generatePairButton", "completeViewButton",
            "anomalyModelPathLineEdit", "dualviewModelPathLineEdit"} <= used
    assert used <= names, f"referenced by SlicerMammoSynth.py but missing in the .ui: {sorted(used - names)}"
    widget.deleteLater()


def test_every_signal_the_module_connects_exists(app):
    """`self.ui.X.connect("valueChanged(double)", ...)`: X has that signal (CTK widgets: their stand-ins here)."""
    widget = _load(app, register=True)
    connected = _connected_signals()
    assert ("anomalyThresholdSlider", "valueChanged(double)") in connected
    assert ("generatePairButton", "clicked(bool)") in connected
    for name, signal in connected:
        child = widget.findChild(QtWidgets.QWidget, name)
        assert child is not None, name
        assert child.metaObject().indexOfSignal(signal) >= 0, f"{name} ({type(child).__name__}) has no {signal}"
    widget.deleteLater()


def test_parameter_node_fields_and_widgets_match(app):
    """Each parameter has one widget of a kind Slicer's GUI connectors bind to its type; sliders and spin boxes
    open on the parameter's range and default."""
    widget = _load(app, register=True)
    bound = {w.property("SlicerParameterName"): w for w in widget.findChildren(QtWidgets.QWidget)
             if w.property("SlicerParameterName")}
    fields = _parameter_fields()
    path_fields = _module_constant("PATH_FIELDS")
    unbound = WIDGET_KEPT | set(path_fields)
    assert set(bound) == set(fields) - unbound, f"widgets {sorted(bound)} vs parameters {sorted(fields)}"
    module_source = MODULE_FILE.read_text()
    assert all(f'setUnboundParameter("{name}"' in module_source for name in WIDGET_KEPT)
    for name, field in path_fields.items():
        assert fields[name][0] == "str" and fields[name][2] == "", f"{name}: a str parameter that starts empty"
        assert isinstance(widget.findChild(QtWidgets.QWidget, field), ctkPathLineEdit), field
    expected = {"vtkMRMLScalarVolumeNode": qMRMLNodeComboBox, "Path": ctkPathLineEdit, "int": QtWidgets.QSpinBox,
                "float": (ctkSliderWidget, QtWidgets.QDoubleSpinBox)}  # Slicer's float connector takes either
    for name, (kind, extras, default) in fields.items():
        if name in unbound:
            continue
        control = bound[name]
        calls = {ast.unparse(e.func): e.args for e in extras if isinstance(e, ast.Call)}
        if kind == "str":  # Slicer's connectors: a plain QComboBox with Choice(...), else a plain QLineEdit
            wanted = QtWidgets.QComboBox if "Choice" in calls else QtWidgets.QLineEdit
            assert type(control) is wanted, f"{name}: str bound to {type(control).__name__}"
        else:
            assert isinstance(control, expected[kind]), f"{name}: {kind} bound to {type(control).__name__}"
        if kind == "str" and "Choice" in calls:
            choices = _module_constant(calls["Choice"][0].id)
            assert default in choices, f"{name}: default {default!r} not in {choices}"
        if "WithinRange" in calls and kind in ("int", "float"):
            low, high = (ast.literal_eval(a) for a in calls["WithinRange"])
            span, value = range_and_value(control, kind)
            assert span == (low, high), f"{name}: widget range {span} differs from WithinRange({low}, {high})"
            assert low <= default <= high
            if kind == "float":
                assert value == pytest.approx(default), f"{name}: the slider opens at {value}"
    widget.deleteLater()


def test_the_panel_renders_with_every_section_in_view(app, tmp_path):
    widget = _load(app, register=True)
    root = ET.parse(UI_FILE).getroot()
    titles = [w.find("property[@name='text']/string").text for w in root.iter("widget")
              if w.get("class") == "ctkCollapsibleButton"]
    assert titles == ["Study", "Run settings", "Synthesis", "Anomaly", "Dual view", "Text", "Inpaint", "Setup"]
    # what the panel shows after loading the two-view study of one breast and starting an anomaly map of L CC
    widget.findChild(ctkPathLineEdit, "folderPathLineEdit").setText("/data/CBIS-DDSM/P_00001")
    table = widget.findChild(QtWidgets.QTableWidget, "viewsTable")
    rows = [("L CC", "2864 x 4432", "1.000 x 1.000", "L CC"), ("L MLO", "2848 x 4464", "1.000 x 1.000", "L MLO")]
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
    table.resizeColumnsToContents()
    table.selectRow(0)
    widget.findChild(qMRMLNodeComboBox, "sourceVolumeSelector").addItems(["L CC", "L MLO"])
    for name, constant in (("taskComboBox", "TASKS"), ("presetComboBox", "PRESETS"), ("deviceComboBox", "DEVICES"),
                           ("anomalyLevelComboBox", "LEVELS"), ("dualviewLateralityComboBox", "LATERALITIES"),
                           ("textVendorComboBox", "VENDORS"), ("textViewComboBox", "VIEWS"),
                           ("textLateralityComboBox", "LATERALITIES"), ("textDensityComboBox", "DENSITIES"),
                           ("textAreaComboBox", "AREAS"), ("inpaintMethodComboBox", "INPAINT_METHODS"),
                           ("inpaintLesionComboBox", "LESION_KINDS"), ("lesionShapeComboBox", "LESION_SHAPES"),
                           ("lesionMarginComboBox", "LESION_MARGINS"), ("lesionFormComboBox", "CALCIFICATION_FORMS")):
        widget.findChild(QtWidgets.QComboBox, name).addItems(_module_constant(constant))
    widget.findChild(QtWidgets.QSpinBox, "seedSpinBox").setValue(42)
    widget.findChild(ctkSliderWidget, "anomalyThresholdSlider").value = 0.35
    for name, enabled, text in (("applyButton", False, "Generate"), ("anomalyButton", True, "Cancel"),
                                ("generatePairButton", False, "Generate pair"),
                                ("completeViewButton", False, "Complete missing view"),
                                ("textGenerateButton", False, "Generate from text"),
                                ("inpaintButton", False, "Inpaint lesion")):
        button = widget.findChild(QtWidgets.QPushButton, name)
        button.setEnabled(enabled)
        button.setText(text)
    widget.findChild(QtWidgets.QProgressBar, "progressBar").setRange(0, 50)
    widget.findChild(QtWidgets.QProgressBar, "progressBar").setValue(31)
    widget.findChild(QtWidgets.QLabel, "statusLabel").setText("anomaly: reconstruct: 31/50")
    widget.findChild(QtWidgets.QPlainTextEdit, "logTextEdit").setPlainText(
        "loaded bundle mambo-anomaly (cpu)\nL CC: breast mask, flipped, padded to 3840 x 3840")
    widget.findChild(QtWidgets.QLabel, "dependencyStatusLabel").setText("All dependencies installed")
    widget.findChild(QtWidgets.QPushButton, "installDependenciesButton").setEnabled(False)
    widget.resize(PANEL_SIZE[0], PANEL_SIZE[1])
    widget.show()
    app.processEvents()
    for name in ("anomalyLambdaSlider", "heatOpacitySlider", "dualviewSizeSpinBox", "completeViewButton",
                 "textGenerateButton", "inpaintButton", "installDependenciesButton"):
        child = widget.findChild(QtWidgets.QWidget, name)
        bottom = child.mapTo(widget, child.rect().bottomLeft()).y()
        assert child.isVisible() and bottom < PANEL_SIZE[1], f"{name} is cut off in the picture"
    image = widget.grab().toImage()
    assert (image.width(), image.height()) == PANEL_SIZE
    png = screenshot_path(tmp_path, "slicer-panel.png")
    assert image.save(str(png), "PNG")
    assert png.stat().st_size > 5000
    widget.close()
    widget.deleteLater()
