"""The result strip: thumbnails of the variations; click to preview in place; Apply, Discard, More like this."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListView, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

THUMB = 80


class VariationsStrip(QWidget):
    picked = Signal(int)  # index into results
    apply_requested = Signal()
    discard_requested = Signal()
    more_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setViewMode(QListView.IconMode)
        self.list.setFlow(QListView.LeftToRight)
        self.list.setWrapping(False)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setFixedHeight(THUMB + 30)
        self.list.currentRowChanged.connect(self._on_row)
        self.apply = QPushButton("Apply")
        self.apply.clicked.connect(self.apply_requested)
        self.discard = QPushButton("Discard")
        self.discard.clicked.connect(self.discard_requested)
        self.more = QPushButton("More like this")
        self.more.clicked.connect(self.more_requested)
        buttons = QVBoxLayout()
        buttons.setSpacing(2)
        for b in (self.apply, self.discard, self.more):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.results: list = []
        self._update_buttons()

    def set_results(self, results) -> None:
        self.results = list(results)
        self.list.clear()
        for r in self.results:
            item = QListWidgetItem(_icon(r.image), f"{r.seed}")
            item.setToolTip(f"Seed {r.seed}")
            self.list.addItem(item)
        if self.results:
            self.list.setCurrentRow(0)
        self._update_buttons()

    def clear(self) -> None:
        self.results = []
        self.list.clear()
        self._update_buttons()

    def current(self):
        row = self.list.currentRow()
        return self.results[row] if 0 <= row < len(self.results) else None

    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.results):
            self.picked.emit(row)

    def _update_buttons(self) -> None:
        for b in (self.apply, self.discard, self.more):
            b.setEnabled(bool(self.results))


def _icon(rgba: np.ndarray) -> QIcon:
    h, w = rgba.shape[:2]
    data = np.ascontiguousarray(rgba)
    image = QImage(data.data, w, h, w * 4, QImage.Format_RGBA8888).copy()
    return QIcon(QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation)))
