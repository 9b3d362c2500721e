"""Stand-ins for what only the Slicer application provides (PythonQt's `qt`, `ctk`, the scripted-module base classes,
the parameter node wrapper), following PythonQt's signatures where the module relies on them. No engine import here:
the factory test loads this in a process where the engine is not importable until the module puts it on sys.path."""
from __future__ import annotations

import types
import unittest


class _Base:
    def __init__(self, *args, **kwargs):
        pass


class ScriptedModule:
    """ScriptedLoadableModule: keeps the factory's `parent`, which the module fills in (title, icon ...)."""

    def __init__(self, parent):
        self.parent = parent


class ScriptedTest(unittest.TestCase):
    """ScriptedLoadableModuleTest: a TestCase whose delayDisplay only records what it would have shown."""

    shown: list[str] = []

    def delayDisplay(self, message, msec=None):
        self.shown.append(message)


class Signal:
    """A PythonQt signal: connect(callable), and emit for the tests."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


class QTimer:
    def __init__(self, *args):
        self.timeout, self.active = Signal(), False

    def setInterval(self, ms):
        pass

    def setSingleShot(self, single):
        pass

    def start(self, *args):
        self.active = True

    def stop(self):
        self.active = False


class QDialog:
    Rejected, Accepted = 0, 1


class QInputDialog(QDialog):
    """PythonQt's QInputDialog: the static getItem has no `ok` out-argument, returns only the text and, on Cancel,
    the item at `current` (Qt's own behaviour); an instance's exec_() returns Accepted or Rejected. `answer` is
    what the user does: an item's text to pick it, None to cancel."""

    answer = None
    shown: list["QInputDialog"] = []

    def __init__(self, parent=None):
        self.items, self.label, self.title, self._text = [], "", "", ""
        QInputDialog.shown.append(self)

    @staticmethod
    def getItem(parent, title, label, items, current=0, editable=True, flags=0, hints=0):
        return QInputDialog.answer if QInputDialog.answer is not None else items[current]

    def setWindowTitle(self, title):
        self.title = title

    def setLabelText(self, label):
        self.label = label

    def setComboBoxItems(self, items):
        self.items = list(items)
        self._text = self.items[0] if self.items else ""

    def setComboBoxEditable(self, editable):
        pass

    def setOption(self, option, on=True):
        pass

    def exec_(self):
        if QInputDialog.answer is None:
            return QDialog.Rejected
        self._text = QInputDialog.answer
        return QDialog.Accepted

    def textValue(self):
        return self._text


class Widget:
    """A PythonQt widget as the module's code sees it: properties are attributes, `connect("signal(args)", slot)`
    records the slot, any other method call is recorded and returns None."""

    def __init__(self):
        self.text, self.enabled, self.toolTip, self.currentText, self.currentPath = "", True, "", "", ""
        self.slots: dict[str, list] = {}
        self.calls: list[tuple] = []

    def connect(self, signal, slot):
        self.slots.setdefault(signal, []).append(slot)

    def emit(self, signal, *args):
        for slot in self.slots.get(signal, []):
            slot(*args)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args))


class UI:
    """`slicer.util.childWidgetVariables(uiWidget)`: one Widget per name, made when first used."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        widget = Widget()
        setattr(self, name, widget)
        return widget


class ScriptedWidget:
    """ScriptedLoadableModuleWidget: a parent that says whether the module is shown, a layout."""

    def __init__(self, parent=None):
        self.parent = types.SimpleNamespace(isEntered=True)

    def setup(self):
        self.layout = Widget()


def qt_module() -> types.ModuleType:
    qt = types.ModuleType("qt")
    qt.QIcon = lambda *args: None
    qt.QTimer = QTimer
    qt.QDialog = QDialog
    qt.QInputDialog = QInputDialog
    qt.Qt = types.SimpleNamespace(UserRole=32)
    qt.QTableWidgetItem = lambda text="": Widget()
    return qt


def standin_modules() -> dict[str, object]:
    """sys.modules entries for the application-only modules (`slicer` itself is slicer-core's)."""
    return {
        "qt": qt_module(),
        "ctk": types.SimpleNamespace(ctkPathLineEdit=types.SimpleNamespace(Dirs=1)),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            Choice=lambda choices: choices, WithinRange=lambda low, high: (low, high),
            parameterNodeWrapper=lambda cls: cls),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=ScriptedModule, ScriptedLoadableModuleLogic=_Base, ScriptedLoadableModuleTest=ScriptedTest,
            ScriptedLoadableModuleWidget=ScriptedWidget),
    }
