"""The module panel (.ui) loads in Qt with Slicer's custom widgets replaced by their Qt base classes, matches the
names the module code uses, and is rendered to docs/images/slicer-panel.png."""
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
from PySide6.QtCore import Property, QBuffer, QByteArray, QIODevice  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UI_FILE = ROOT / "Resources" / "UI" / "SlicerMammoSynth.ui"
MODULE_FILE = ROOT / "SlicerMammoSynth" / "SlicerMammoSynth.py"
PANEL_PNG = ROOT / "docs" / "images" / "slicer-panel.png"


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


class qMRMLWidget(QtWidgets.QWidget):
    pass


SLICER_WIDGETS = {cls.__name__: cls for cls in (ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox, qMRMLWidget)}


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


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the module's parameterNodeWrapper class."""
    for node in ast.walk(_module_tree()):
        if isinstance(node, ast.ClassDef) and node.name == "SlicerMammoSynthParameterNode":
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no SlicerMammoSynthParameterNode class in the module")


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


def test_ui_loads_with_custom_widgets_falling_back_to_base_classes(app):
    widget = _load(app, register=False)
    for name in ("studyCollapsibleButton", "sourceVolumeSelector", "folderPathLineEdit"):
        child = widget.findChild(QtWidgets.QWidget, name)
        assert child is not None and type(child) is QtWidgets.QWidget, f"{name} should fall back to QWidget"
    assert isinstance(widget.findChild(QtWidgets.QPushButton, "applyButton"), QtWidgets.QPushButton)
    widget.deleteLater()


def test_every_widget_the_module_references_exists(app):
    widget = _load(app, register=False)
    names = {w.objectName() for w in widget.findChildren(QtWidgets.QWidget)}
    used = _ui_names_used_by_module()
    assert {"applyButton", "progressBar", "logTextEdit", "viewsTable", "sourceVolumeSelector"} <= used
    assert used <= names, f"referenced by SlicerMammoSynth.py but missing in the .ui: {sorted(used - names)}"
    widget.deleteLater()


def test_parameter_node_fields_and_widgets_match(app):
    widget = _load(app, register=True)
    bound = {w.property("SlicerParameterName"): w for w in widget.findChildren(QtWidgets.QWidget)
             if w.property("SlicerParameterName")}
    fields = _parameter_fields()
    assert set(bound) == set(fields), f"widgets {sorted(bound)} vs parameters {sorted(fields)}"
    expected = {"vtkMRMLScalarVolumeNode": qMRMLNodeComboBox, "Path": ctkPathLineEdit, "int": QtWidgets.QSpinBox,
                "Choice": QtWidgets.QComboBox}
    for name, annotation in fields.items():
        kind = next(k for k in expected if k in annotation)
        assert isinstance(bound[name], expected[kind]), f"{name}: {annotation} bound to {type(bound[name]).__name__}"
    widget.deleteLater()


def test_panel_renders_to_the_docs_png(app):
    widget = _load(app, register=True)
    assert isinstance(widget, qMRMLWidget)
    assert widget.findChild(ctkCollapsibleButton, "studyCollapsibleButton").title() == "Study"
    # what the panel shows after loading the two-view study of one breast
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
    for name, constant in (("taskComboBox", "TASKS"), ("presetComboBox", "PRESETS"), ("deviceComboBox", "DEVICES")):
        widget.findChild(QtWidgets.QComboBox, name).addItems(_module_constant(constant))
    widget.findChild(QtWidgets.QComboBox, "taskComboBox").setCurrentText("Upscale")
    widget.findChild(QtWidgets.QSpinBox, "seedSpinBox").setValue(42)
    apply = widget.findChild(QtWidgets.QPushButton, "applyButton")
    apply.setText("Cancel")
    apply.setEnabled(True)
    widget.findChild(QtWidgets.QProgressBar, "progressBar").setRange(0, 24)
    widget.findChild(QtWidgets.QProgressBar, "progressBar").setValue(9)
    widget.findChild(QtWidgets.QLabel, "statusLabel").setText("patch tiles: 9/24")
    widget.findChild(QtWidgets.QPlainTextEdit, "logTextEdit").setPlainText(
        "loaded bundles mambo-global, mambo-local, mambo-patch (cpu)\nglobal image done (20 steps)")
    widget.findChild(QtWidgets.QLabel, "dependencyStatusLabel").setText("All dependencies installed")
    widget.findChild(QtWidgets.QPushButton, "installDependenciesButton").setEnabled(False)
    widget.resize(440, 760)
    widget.show()
    app.processEvents()
    image = widget.grab().toImage()
    assert image.width() == 440 and image.height() == 760
    PANEL_PNG.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(PANEL_PNG), "PNG")
    assert PANEL_PNG.stat().st_size > 5000
    widget.close()
    widget.deleteLater()
