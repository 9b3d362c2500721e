"""The reader's window: one case at a time, the 0–4 rating, optional findings, keyboard shortcuts."""
from __future__ import annotations

from qtpy import QtCore, QtWidgets

from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.reader_app.session import ReaderSession
from MammoSynthLogic.reader_app.viewer import ImageView
from MammoSynthLogic.reader_study.responses import BIRADS, RATINGS

HELP = ("Keys: 0-4 rate · M mass · C calcification · B BI-RADS · N/→/Space next · P/← previous · "
        "wheel or +/- zoom · F fit · A 1:1 · left-drag pan · right-drag window/level · R reset window")


class ReaderWindow(QtWidgets.QMainWindow):
    """Shows the session's current case and records every change through the session (saved at once)."""

    def __init__(self, session: ReaderSession, parent=None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"MammoSynth reader study — reader {session.reader}")
        self.view = ImageView()
        self.view.windowChanged.connect(self._show_window)
        panel = QtWidgets.QWidget()
        panel.setFixedWidth(280)
        layout = QtWidgets.QVBoxLayout(panel)

        self.case_label = QtWidgets.QLabel()
        self.case_label.setStyleSheet("font-size: 16pt; font-weight: bold")
        self.progress_label = QtWidgets.QLabel()
        layout.addWidget(self.case_label)
        layout.addWidget(self.progress_label)

        rating_box = QtWidgets.QGroupBox("Real or synthetic?")
        rating_box.setStyleSheet("QPushButton { padding: 6px; text-align: left }"
                                 "QPushButton:checked { background: #1f6fb2; color: white; font-weight: bold }")
        rating_layout = QtWidgets.QVBoxLayout(rating_box)
        self.rating_group = QtWidgets.QButtonGroup(self)
        self.rating_group.setExclusive(True)
        for value, text in RATINGS.items():
            button = QtWidgets.QPushButton(f"{value}  {text[0].upper()}{text[1:]}")
            button.setCheckable(True)
            button.setFocusPolicy(QtCore.Qt.NoFocus)
            self.rating_group.addButton(button, value)
            rating_layout.addWidget(button)
        self.rating_group.idClicked.connect(self.rate)
        layout.addWidget(rating_box)

        findings_box = QtWidgets.QGroupBox("Findings (optional)")
        findings_layout = QtWidgets.QFormLayout(findings_box)
        self.mass_box = QtWidgets.QCheckBox("Mass (M)")
        self.calc_box = QtWidgets.QCheckBox("Calcification (C)")
        self.birads_combo = QtWidgets.QComboBox()
        self.birads_combo.addItems(["—", *BIRADS])
        for widget in (self.mass_box, self.calc_box, self.birads_combo):
            widget.setFocusPolicy(QtCore.Qt.NoFocus)
        self.mass_box.clicked.connect(lambda checked: self.set_finding(mass=checked))
        self.calc_box.clicked.connect(lambda checked: self.set_finding(calcification=checked))
        self.birads_combo.activated.connect(lambda index: self.set_finding(birads=BIRADS[index - 1] if index else None))
        findings_layout.addRow(self.mass_box)
        findings_layout.addRow(self.calc_box)
        findings_layout.addRow("BI-RADS (B)", self.birads_combo)
        layout.addWidget(findings_box)

        nav = QtWidgets.QHBoxLayout()
        self.prev_button = QtWidgets.QPushButton("◀ Previous")
        self.next_button = QtWidgets.QPushButton("Next ▶")
        for button, step in ((self.prev_button, -1), (self.next_button, 1)):
            button.setFocusPolicy(QtCore.Qt.NoFocus)
            button.clicked.connect(lambda _=False, s=step: self.go(self.session.index + s))
            nav.addWidget(button)
        layout.addLayout(nav)
        self.window_label = QtWidgets.QLabel()
        self.saved_label = QtWidgets.QLabel()
        self.saved_label.setWordWrap(True)
        help_label = QtWidgets.QLabel(HELP)
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: gray")
        for widget in (self.window_label, self.saved_label, help_label):
            layout.addWidget(widget)
        layout.addStretch(1)

        splitter = QtWidgets.QSplitter()
        splitter.addWidget(self.view)
        splitter.addWidget(panel)
        splitter.setStretchFactor(0, 1)
        self.setCentralWidget(splitter)
        self._shortcuts()
        self.go(session.index)

    def _shortcuts(self) -> None:
        """Key -> action; every control has no keyboard focus, so the keys reach the window."""
        K = QtCore.Qt
        self._keys = {**{getattr(K, f"Key_{v}"): (lambda v=v: self.rate(v)) for v in RATINGS},
                      K.Key_M: lambda: self.set_finding(mass=not self.mass_box.isChecked()),
                      K.Key_C: lambda: self.set_finding(calcification=not self.calc_box.isChecked()),
                      K.Key_B: self.cycle_birads,
                      K.Key_N: self.next, K.Key_Right: self.next, K.Key_Space: self.next, K.Key_Return: self.next,
                      K.Key_Enter: self.next, K.Key_P: self.previous, K.Key_Left: self.previous,
                      K.Key_F: self.view.fit, K.Key_A: self.view.actual_size, K.Key_R: self.view.reset_window,
                      K.Key_Plus: lambda: self.view.zoom(1.25), K.Key_Equal: lambda: self.view.zoom(1.25),
                      K.Key_Minus: lambda: self.view.zoom(0.8)}

    def keyPressEvent(self, event) -> None:
        chord = event.modifiers() & (QtCore.Qt.ControlModifier | QtCore.Qt.AltModifier | QtCore.Qt.MetaModifier)
        action = None if chord else self._keys.get(event.key())  # Shift is fine: "+" is Shift+= on many keyboards
        if action is None:
            super().keyPressEvent(event)
            return
        action()
        if event.key() in (QtCore.Qt.Key_Plus, QtCore.Qt.Key_Equal, QtCore.Qt.Key_Minus, QtCore.Qt.Key_F,
                           QtCore.Qt.Key_A):
            self._show_window(self.view.center, self.view.width)

    def go(self, index: int) -> None:
        """Show case `index` (clamped) with its saved answer."""
        self.session.go(index)
        image = read_mammogram(self.session.cases[self.session.index])
        self.view.set_image(image.pixels)
        self._set_finding_widgets(False, False, None)  # findings ticked before a rating are saved with it
        self._refresh()
        self._show_window(self.view.center, self.view.width)

    def next(self) -> None:
        self.go(self.session.index + 1)

    def previous(self) -> None:
        self.go(self.session.index - 1)

    def rate(self, value: int) -> None:
        self.session.record(rating=value, **self._findings())
        self._refresh()

    def set_finding(self, **finding) -> None:
        self._set_finding_widgets(**finding)
        self.session.record(**self._findings())
        self._refresh()

    def cycle_birads(self) -> None:
        index = (self.birads_combo.currentIndex() + 1) % self.birads_combo.count()
        self.set_finding(birads=BIRADS[index - 1] if index else None)

    def _findings(self) -> dict:
        index = self.birads_combo.currentIndex()
        return {"mass": self.mass_box.isChecked(), "calcification": self.calc_box.isChecked(),
                "birads": BIRADS[index - 1] if index else None}

    def _set_finding_widgets(self, mass=None, calcification=None, birads=...) -> None:
        if mass is not None:
            self.mass_box.setChecked(mass)
        if calcification is not None:
            self.calc_box.setChecked(calcification)
        if birads is not ...:
            self.birads_combo.setCurrentIndex(0 if birads is None else BIRADS.index(birads) + 1)

    def _refresh(self) -> None:
        s = self.session
        answer = s.answer()
        self.case_label.setText(f"Case {s.index + 1} of {len(s.cases)}")
        self.progress_label.setText(f"{s.current} · answered {s.answered} of {len(s.cases)}")
        self.rating_group.setExclusive(False)
        for button in self.rating_group.buttons():
            button.setChecked(answer is not None and self.rating_group.id(button) == answer.rating)
        self.rating_group.setExclusive(True)
        if answer is not None:
            self._set_finding_widgets(answer.mass, answer.calcification, answer.birads)
        self.prev_button.setEnabled(s.index > 0)
        self.next_button.setEnabled(s.index < len(s.cases) - 1)
        self.saved_label.setText(f"Saved {s.answered} answer(s) to {s.responses_dir / (s.reader + '.json')}"
                                 if s.answered else "Answers are saved as you give them.")

    def _show_window(self, center: float, width: float) -> None:
        self.window_label.setText(f"Window {width:.2f} / level {center:.2f} · zoom {self.view.zoom_level:.2f}×")
