"""One editor widget per typed setting, made from the setting's metadata (``operations.spec.setting``).

An editor has ``value()``, ``set_value(v)`` and a ``changed`` signal; the generation panel builds
its forms from these, so an operation's settings appear without panel code of their own.
"""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QPlainTextEdit, QSizePolicy, QSpinBox, QWidget

BUNDLED_UPSCALER_LABEL = "Real-ESRGAN x4plus (bundled)"


class Editor(QObject):
    """A setting's widget and its typed value."""

    changed = Signal()

    def __init__(self, f: dataclasses.Field, widget: QWidget):
        super().__init__(widget)
        self.field = f
        self.widget = widget
        self.label = f.metadata.get("label", f.name)
        tip = f.metadata.get("help", "")
        if tip:
            widget.setToolTip(tip[:1].upper() + tip[1:])

    def value(self):
        raise NotImplementedError

    def set_value(self, value) -> None:
        raise NotImplementedError


class IntEditor(Editor):
    def __init__(self, f):
        m = f.metadata
        box = QSpinBox()
        box.setRange(int(m["minimum"]) if m.get("minimum") is not None else -2**31,
                     int(m["maximum"]) if m.get("maximum") is not None else 2**31 - 1)
        if m.get("step"):
            box.setSingleStep(int(m["step"]))
        if m.get("special"):
            box.setSpecialValueText(m["special"])
        super().__init__(f, box)
        box.valueChanged.connect(self.changed)

    def value(self) -> int:
        return self.widget.value()

    def set_value(self, value) -> None:
        self.widget.setValue(int(value))


class FloatEditor(Editor):
    def __init__(self, f):
        m = f.metadata
        box = QDoubleSpinBox()
        box.setDecimals(int(m.get("decimals", 2)))
        box.setRange(float(m["minimum"]) if m.get("minimum") is not None else -1e9,
                     float(m["maximum"]) if m.get("maximum") is not None else 1e9)
        box.setSingleStep(float(m.get("step") or 0.1))
        super().__init__(f, box)
        box.valueChanged.connect(self.changed)

    def value(self) -> float:
        return round(self.widget.value(), self.widget.decimals())

    def set_value(self, value) -> None:
        self.widget.setValue(float(value))


class SeedEditor(Editor):
    """Seeds run to 2³²−1, past a QSpinBox's range: a spin box of whole doubles."""

    def __init__(self, f):
        box = QDoubleSpinBox()
        box.setDecimals(0)
        box.setRange(0, float(f.metadata.get("maximum") or 2**32 - 1))
        box.setMinimumWidth(60)
        box.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        super().__init__(f, box)
        box.valueChanged.connect(self.changed)

    def value(self) -> int:
        return int(self.widget.value())

    def set_value(self, value) -> None:
        self.widget.setValue(float(value))


class BoolEditor(Editor):
    def __init__(self, f):
        super().__init__(f, QCheckBox(f.metadata.get("label", f.name)))
        self.widget.toggled.connect(self.changed)

    def value(self) -> bool:
        return self.widget.isChecked()

    def set_value(self, value) -> None:
        self.widget.setChecked(bool(value))


def compact(box: QComboBox) -> QComboBox:
    """A combo box as narrow as its panel: long entries are elided, not widening the dock."""
    box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(8)
    return box


class ChoiceEditor(Editor):
    def __init__(self, f):
        box = compact(QComboBox())
        for choice in f.metadata.get("choices", ()):
            box.addItem(_choice_label(f, choice), choice)
        super().__init__(f, box)
        box.currentIndexChanged.connect(self.changed)

    def value(self):
        return self.widget.currentData()

    def set_value(self, value) -> None:
        index = self.widget.findData(value)
        if index >= 0:
            self.widget.setCurrentIndex(index)


class TextEditor(Editor):
    def __init__(self, f):
        box = QPlainTextEdit()
        box.setPlaceholderText(f.metadata.get("label", f.name))
        box.setMaximumHeight(64 if f.name == "prompt" else 44)
        super().__init__(f, box)
        box.textChanged.connect(self.changed)

    def value(self) -> str:
        return self.widget.toPlainText()

    def set_value(self, value) -> None:
        if value != self.widget.toPlainText():
            self.widget.setPlainText(str(value))


class PathEditor(Editor):
    """An editable list of references; ``labels`` maps a shown label to the reference it stands for."""

    def __init__(self, f, labels: dict[str, str]):
        box = compact(QComboBox())
        box.setEditable(True)
        self.labels = dict(labels)
        for label in self.labels:
            box.addItem(label)
        super().__init__(f, box)
        box.currentTextChanged.connect(self.changed)

    def value(self) -> str:
        text = self.widget.currentText().strip()
        return self.labels.get(text, text)

    def set_value(self, value) -> None:
        shown = next((label for label, ref in self.labels.items() if ref == value), value)
        self.widget.setCurrentText(shown)


def _choice_label(f, choice) -> str:
    if f.name == "sampler":
        from backend.samplers import sampler_label

        return sampler_label(choice)
    return str(choice)


def make_editor(f: dataclasses.Field) -> Editor:
    widget = f.metadata.get("widget", "")
    default = f.default
    if widget == "seed":
        return SeedEditor(f)
    if widget == "multiline":
        return TextEditor(f)
    if widget == "upscaler":
        return PathEditor(f, {BUNDLED_UPSCALER_LABEL: "", "lanczos": "lanczos"})
    if widget == "choice" or f.metadata.get("choices"):
        return ChoiceEditor(f)
    if isinstance(default, bool):
        return BoolEditor(f)
    if isinstance(default, int):
        return IntEditor(f)
    if isinstance(default, float):
        return FloatEditor(f)
    return PathEditor(f, {})
