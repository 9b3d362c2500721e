"""The reader app under Qt offscreen: records every answer at once, resumes, and never opens or shows the key."""
from __future__ import annotations

import builtins
import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qtpy")
from qtpy import QtCore, QtWidgets  # noqa: E402

from MammoSynthLogic.dicom_io import write_synthetic_dicom  # noqa: E402
from MammoSynthLogic.reader_app import main  # noqa: E402
from MammoSynthLogic.reader_app.session import ReaderSession  # noqa: E402
from MammoSynthLogic.reader_app.window import ReaderWindow  # noqa: E402
from MammoSynthLogic.reader_study.prepare import prepare_study  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_dicoms):
    root = tmp_path_factory.mktemp("app")
    yy, xx = np.mgrid[0:300, 0:200]
    synthetic = [write_synthetic_dicom(root / f"syn{i}.dcm", np.where((xx / 190) ** 2 + ((yy - 150) / 140) ** 2 < 1,
                                                                       0.3 + 0.1 * i, 0).astype(np.float32),
                                       provenance={"seed": i}) for i in range(2)]
    prepare_study(real_dicoms[:2], synthetic, root / "study", seed=3, rows=192)
    return root / "study"


def open_window(qtbot, study, reader="alice", responses=None):
    window = ReaderWindow(ReaderSession(study, reader, responses))
    qtbot.addWidget(window)
    window.resize(900, 600)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    return window


def press(qtbot, window, key):
    qtbot.keyClick(window, key)
    QtWidgets.QApplication.processEvents()


def saved(path: Path) -> dict:
    return json.loads(path.read_text())["answers"]


def test_records_every_answer_at_once_and_resumes(qtbot, study, tmp_path):
    responses = tmp_path / "responses"
    window = open_window(qtbot, study, responses=responses)
    assert window.session.current == "case-0001"
    press(qtbot, window, QtCore.Qt.Key_3)
    assert saved(responses / "alice.json")["case-0001"]["rating"] == 3  # written before any other step
    press(qtbot, window, QtCore.Qt.Key_M)
    press(qtbot, window, QtCore.Qt.Key_B)
    answer = saved(responses / "alice.json")["case-0001"]
    assert (answer["mass"], answer["calcification"], answer["birads"], answer["call"]) == (True, False, "0", "synthetic")
    press(qtbot, window, QtCore.Qt.Key_N)
    assert window.session.current == "case-0002" and not window.mass_box.isChecked()
    press(qtbot, window, QtCore.Qt.Key_C)  # a finding before the rating is kept and saved with the rating
    assert "case-0002" not in saved(responses / "alice.json")
    press(qtbot, window, QtCore.Qt.Key_0)
    answer = saved(responses / "alice.json")["case-0002"]
    assert (answer["rating"], answer["calcification"], answer["call"]) == (0, True, "real")
    with open(responses / "alice.csv", newline="") as f:
        assert [(r["case"], r["rating"]) for r in csv.DictReader(f)] == [("case-0001", "3"), ("case-0002", "0")]
    press(qtbot, window, QtCore.Qt.Key_Right)
    window.close()

    again = open_window(qtbot, study, responses=responses)
    assert again.session.current == "case-0003" and again.session.answered == 2
    assert again.rating_group.checkedId() == -1
    press(qtbot, again, QtCore.Qt.Key_P)
    assert again.session.current == "case-0002" and again.rating_group.checkedId() == 0 and again.calc_box.isChecked()
    press(qtbot, again, QtCore.Qt.Key_4)  # changing an answer overwrites it
    assert saved(responses / "alice.json")["case-0002"]["rating"] == 4
    other = open_window(qtbot, study, reader="bob", responses=responses)
    assert other.session.current == "case-0001" and other.session.answered == 0


def test_view_zoom_and_window_level(qtbot, study, tmp_path):
    window = open_window(qtbot, study, responses=tmp_path / "r")
    view = window.view
    fitted = view.zoom_level
    press(qtbot, window, QtCore.Qt.Key_Plus)
    assert view.zoom_level == pytest.approx(fitted * 1.25)
    press(qtbot, window, QtCore.Qt.Key_A)
    assert view.zoom_level == 1.0 and view.scene().sceneRect().height() == 192  # full resolution, 1:1
    center, width = view.center, view.width
    qtbot.mousePress(view.viewport(), QtCore.Qt.RightButton, pos=QtCore.QPoint(100, 100))
    qtbot.mouseMove(view.viewport(), QtCore.QPoint(160, 60))
    qtbot.mouseRelease(view.viewport(), QtCore.Qt.RightButton, pos=QtCore.QPoint(160, 60))
    assert view.center > center and view.width > width
    press(qtbot, window, QtCore.Qt.Key_R)
    assert (view.center, view.width) == pytest.approx((center, width))


def all_texts(window) -> list[str]:
    texts = [window.windowTitle(), window.statusBar().currentMessage()]
    for widget in [window, *window.findChildren(QtWidgets.QWidget)]:
        texts.append(widget.toolTip())
        for getter in ("text", "title", "placeholderText"):
            if hasattr(widget, getter):
                texts.append(getattr(widget, getter)())
        if isinstance(widget, QtWidgets.QComboBox):
            texts += [widget.itemText(i) for i in range(widget.count())]
    return texts


def test_never_opens_or_shows_the_key(qtbot, study, tmp_path, monkeypatch):
    key_dir = (study / "_key").resolve()
    with open(key_dir / "key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    touched: list[str] = []

    def spy(function):
        def wrapper(path, *args, **kwargs):
            if isinstance(path, (str, bytes, os.PathLike)):
                touched.append(os.path.abspath(os.fsdecode(path)))
            return function(path, *args, **kwargs)
        return wrapper

    for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "scandir"), (os, "listdir"), (os, "stat")):
        monkeypatch.setattr(module, name, spy(getattr(module, name)))
    window = open_window(qtbot, study, responses=tmp_path / "responses")
    texts_by_truth: dict[str, set] = {"real": set(), "synthetic": set()}
    for row in key:
        window.go(int(row["case"].split("-")[1]) - 1)
        press(qtbot, window, QtCore.Qt.Key_2)
        texts = all_texts(window)
        joined = "\n".join(texts)
        for secret in (row["source"], row["source_sha256"], row["reader_sha256"], Path(row["source"]).name, "_key"):
            assert secret not in joined
        texts_by_truth[row["truth"]].add(tuple(re.sub(r"\d", "#", t) for t in texts))
    monkeypatch.undo()
    assert touched and any("case-0001.dcm" in p for p in touched)
    assert not [p for p in touched if p.startswith(str(key_dir))], "the app touched the key folder"
    # what the widgets say is the same for real and synthetic cases once case numbers are masked
    assert texts_by_truth["real"] == texts_by_truth["synthetic"] and len(texts_by_truth["real"]) == 1
    assert len(saved(tmp_path / "responses" / "alice.json")) == len(key)


def test_main_reports_a_bad_study_on_one_line(qtbot, tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--reader", "alice"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such study folder" in err and "\n" not in err
