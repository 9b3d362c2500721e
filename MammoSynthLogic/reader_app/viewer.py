"""A full-resolution mammogram view: wheel zoom, left-drag pan, right-drag window/level."""
from __future__ import annotations

import numpy as np
from qtpy import QtCore, QtGui, QtWidgets

LEVELS = 4096  # the [0, 1] image is indexed into a lookup table of this many entries


def default_window(pixels: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 0.5–99.5 percentiles of the non-black pixels."""
    inside = pixels[pixels > 1e-3]
    if inside.size < 16:
        return 0.5, 1.0
    low, high = np.percentile(inside[:: max(1, inside.size // 200_000)], [0.5, 99.5])
    return float(low + high) / 2, float(max(high - low, 1e-3))


def window_lut(center: float, width: float) -> np.ndarray:
    """8-bit display values of the LEVELS lookup indices for a window (center, width) on [0, 1]."""
    x = np.linspace(0.0, 1.0, LEVELS, dtype=np.float32)
    return np.rint(np.clip((x - (center - width / 2)) / width, 0.0, 1.0) * 255).astype(np.uint8)


class ImageView(QtWidgets.QGraphicsView):
    """Shows one image at full resolution; emits `windowChanged(center, width)`."""

    windowChanged = QtCore.Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QtWidgets.QGraphicsScene(self))
        self._item = QtWidgets.QGraphicsPixmapItem()
        self._item.setTransformationMode(QtCore.Qt.SmoothTransformation)
        self.scene().addItem(self._item)
        self.setBackgroundBrush(QtGui.QColor("#2b2b2b"))  # dark gray: the image edge stays visible
        self.setDragMode(QtWidgets.QGraphicsView.ScrollHandDrag)
        self.setTransformationAnchor(QtWidgets.QGraphicsView.AnchorUnderMouse)
        self.setFocusPolicy(QtCore.Qt.NoFocus)
        self._indices = np.zeros((1, 1), np.uint16)
        self._default = (0.5, 1.0)
        self.center, self.width = 0.5, 1.0
        self._drag_from = None

    def set_image(self, pixels: np.ndarray) -> None:
        """New image (float [0, 1], tissue bright), shown whole with its default window."""
        self._indices = np.rint(np.clip(pixels, 0, 1) * (LEVELS - 1)).astype(np.uint16)
        self._default = default_window(pixels)
        self.scene().setSceneRect(0, 0, pixels.shape[1], pixels.shape[0])
        self.set_window(*self._default)
        self.fit()

    def set_window(self, center: float, width: float) -> None:
        self.center, self.width = float(np.clip(center, 0, 1)), float(np.clip(width, 1e-3, 2))
        shown = np.ascontiguousarray(window_lut(self.center, self.width)[self._indices])
        h, w = shown.shape
        image = QtGui.QImage(shown.data, w, h, w, QtGui.QImage.Format_Grayscale8).copy()
        self._item.setPixmap(QtGui.QPixmap.fromImage(image))
        self.windowChanged.emit(self.center, self.width)

    def reset_window(self) -> None:
        self.set_window(*self._default)

    def fit(self) -> None:
        self.fitInView(self._item, QtCore.Qt.KeepAspectRatio)

    def actual_size(self) -> None:
        self.resetTransform()

    def zoom(self, factor: float) -> None:
        self.scale(factor, factor)

    @property
    def zoom_level(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event) -> None:
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def mousePressEvent(self, event) -> None:
        if event.button() == QtCore.Qt.RightButton:
            self._drag_from = (event.position() if hasattr(event, "position") else event.pos(), self.center, self.width)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag_from is not None:
            start, center, width = self._drag_from
            pos = event.position() if hasattr(event, "position") else event.pos()
            scale = 1.0 / max(200, min(self.viewport().width(), self.viewport().height()))
            self.set_window(center - (pos.y() - start.y()) * scale, width * 2 ** ((pos.x() - start.x()) * scale * 2))
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == QtCore.Qt.RightButton and self._drag_from is not None:
            self._drag_from = None
            return
        super().mouseReleaseEvent(event)
