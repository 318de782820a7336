"""Tool options and colour: brush size, hardness, opacity, flow, and the paint colour."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QFormLayout, QHBoxLayout, QPushButton, QSlider, QWidget

SWATCHES = ((0, 0, 0), (255, 255, 255), (200, 40, 40), (240, 180, 40), (60, 150, 60), (40, 90, 200), (120, 70, 40))


class ToolOptionsPanel(QWidget):
    changed = Signal()

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.size = self._slider(1, 500, round(settings.brush_size))
        self.hardness = self._slider(0, 100, round(settings.brush_hardness * 100))
        self.opacity = self._slider(1, 100, round(settings.brush_opacity * 100))
        self.flow = self._slider(1, 100, round(settings.brush_flow * 100))
        self._color = tuple(settings.color)
        self.color_button = QPushButton("Colour…")
        self.color_button.clicked.connect(self.choose_color)
        swatches = QHBoxLayout()
        for rgb in SWATCHES:
            b = QPushButton()
            b.setFixedSize(18, 18)
            b.setStyleSheet(f"background: rgb{rgb}; border: 1px solid #444;")
            b.clicked.connect(lambda _=False, c=rgb: self.set_color(c))
            swatches.addWidget(b)
        form = QFormLayout(self)
        form.addRow("Size", self.size)
        form.addRow("Hardness", self.hardness)
        form.addRow("Opacity", self.opacity)
        form.addRow("Flow", self.flow)
        form.addRow(self.color_button)
        form.addRow(swatches)
        self._show_color()

    def _slider(self, lo, hi, value) -> QSlider:
        s = QSlider(Qt.Horizontal)
        s.setRange(lo, hi)
        s.setValue(value)
        s.valueChanged.connect(self.changed)
        return s

    def brush(self) -> dict:
        return dict(size=float(self.size.value()), hardness=self.hardness.value() / 100,
                    opacity=self.opacity.value() / 100, flow=self.flow.value() / 100)

    def color(self) -> tuple:
        return self._color

    def set_color(self, rgb) -> None:
        self._color = tuple(int(c) for c in rgb)
        self._show_color()
        self.changed.emit()

    def _show_color(self) -> None:
        r, g, b = self._color
        text = "black" if (r * 299 + g * 587 + b * 114) > 128000 else "white"
        self.color_button.setStyleSheet(f"background: rgb({r},{g},{b}); color: {text};")

    def choose_color(self) -> None:
        color = QColorDialog.getColor(QColor(*self._color), self, "Paint colour")
        if color.isValid():
            self.set_color((color.red(), color.green(), color.blue()))

    def resize_brush(self, factor: float) -> None:
        self.size.setValue(max(1, round(self.size.value() * factor + (1 if factor > 1 else -1))))

    def store(self, settings) -> None:
        b = self.brush()
        settings.brush_size, settings.brush_hardness = b["size"], b["hardness"]
        settings.brush_opacity, settings.brush_flow = b["opacity"], b["flow"]
        settings.color = self._color
