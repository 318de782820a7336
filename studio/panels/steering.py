"""Steering in the generation panel: the LoRA list, the IP-Adapter model, and the Control section
listing the document's control and reference layers.

The LoRA list and the IP-Adapter model are the app's (``operations.steering.AppSteering``, kept in
the settings); the Control section edits the document: every change of a layer's kind, model,
strength or range is an undoable document change (a value stepped several times in a row is one
step), and the section follows the document when layers change or a step is undone.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QSizePolicy,
    QSlider, QToolButton, QVBoxLayout, QWidget,
)

from backend.steering import CONTROL_KINDS, LORA_WEIGHT, REFERENCE_MODES, display_name, kind_from_name, steering_dir
from canvas.errors import DocumentError
from canvas.role import ControlRole, ReferenceRole
from operations.steering import AppSteering, LoraEntry

from .fields import compact

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


def start_folder(kind: str) -> str:
    """Where a file dialog for ``kind`` ("loras", "controlnets", "ip-adapters") opens: that folder
    beside the model folder, made if it is missing, else the home folder."""
    folder = steering_dir(kind)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)
    except OSError:
        return str(Path.home())


def folder_models(kind: str) -> list[str]:
    """The model files and folders in the ``kind`` folder (paths), for the model pickers."""
    folder = steering_dir(kind)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [str(p) for p in entries if p.is_dir() or p.suffix.lower() in MODEL_SUFFIXES]


def _spin(low: float, high: float, value: float = 1.0, step: float = 0.05) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(2)
    box.setSingleStep(step)
    box.setValue(value)
    box.setKeyboardTracking(False)
    return box


def _set(widget, value) -> None:
    """Sets a widget's value without its signals (the document changed, not the painter)."""
    widget.blockSignals(True)
    try:
        if isinstance(widget, QDoubleSpinBox):
            widget.setValue(value)
        elif isinstance(widget, QComboBox):
            widget.setCurrentText(value) if widget.isEditable() else widget.setCurrentIndex(max(widget.findData(value), 0))
    finally:
        widget.blockSignals(False)


# --- the LoRA list ------------------------------------------------------------------------------------

class LoraRow(QWidget):
    """One LoRA: enable, name, weight (slider and spin box, -2 to 2), remove."""

    changed = Signal()
    remove_requested = Signal(object)

    def __init__(self, entry: LoraEntry, parent=None):
        super().__init__(parent)
        self.name = entry.name
        self.enabled = QCheckBox(entry.label)
        self.enabled.setChecked(entry.enabled)
        self.enabled.setToolTip(f"{entry.name}\nUse this LoRA in the next jobs")
        self.enabled.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)  # a long name never widens the panel
        self.enabled.setMinimumWidth(60)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(int(LORA_WEIGHT[0] * 100), int(LORA_WEIGHT[1] * 100))
        self.slider.setMaximumWidth(90)
        self.slider.setToolTip("Weight, -2 to 2 (1 is usual)")
        self.weight = _spin(*LORA_WEIGHT, entry.weight)
        self.weight.setToolTip("Weight, -2 to 2 (1 is usual)")
        self.slider.setValue(round(entry.weight * 100))
        remove = self.remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this LoRA from the list")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.enabled, 1)
        layout.addWidget(self.slider)
        layout.addWidget(self.weight)
        layout.addWidget(remove)
        self.enabled.toggled.connect(self.changed)
        self.slider.valueChanged.connect(self._on_slider)
        self.weight.valueChanged.connect(self._on_spin)
        remove.clicked.connect(lambda: self.remove_requested.emit(self))

    def _on_slider(self, value: int) -> None:
        if round(self.weight.value() * 100) != value:
            self.weight.setValue(value / 100)

    def _on_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * 100))
        self.slider.blockSignals(False)
        self.changed.emit()

    def entry(self) -> LoraEntry:
        return LoraEntry(self.name, round(self.weight.value(), 2), self.enabled.isChecked())


class LoraList(QWidget):
    """The app's LoRAs, in order; Add… picks files in the loras folder (or anywhere)."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[LoraRow] = []
        self._rows = QVBoxLayout()
        self._rows.setContentsMargins(0, 0, 0, 0)
        self._rows.setSpacing(2)
        self.empty = QLabel("No LoRAs: Add… picks .safetensors files.")
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self.add = QToolButton()
        self.add.setText("Add…")
        self.add.setToolTip("Add LoRA files (.safetensors) to the list")
        self.add.clicked.connect(self.add_files)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.empty)
        layout.addLayout(self._rows)
        layout.addWidget(self.add, 0, Qt.AlignLeft)

    def value(self) -> tuple:
        return tuple(row.entry() for row in self.rows)

    def set_value(self, entries) -> None:
        for row in list(self.rows):
            self._drop(row)
        for entry in entries:
            self._append(entry)
        self._update()

    def add_entry(self, entry: LoraEntry) -> bool:
        """Appends ``entry`` unless its file is listed already; True when added."""
        if any(row.name == entry.name for row in self.rows):
            return False
        self._append(entry)
        self._update()
        self.changed.emit()
        return True

    def add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add LoRAs", start_folder("loras"),
                                                "LoRA files (*.safetensors);;All files (*)")
        for path in paths:
            self.add_entry(LoraEntry(path))

    def remove(self, row: LoraRow) -> None:
        self._drop(row)
        self._update()
        self.changed.emit()

    def _append(self, entry: LoraEntry) -> None:
        row = LoraRow(entry)
        row.changed.connect(self.changed)
        row.remove_requested.connect(self.remove)
        self.rows.append(row)
        self._rows.addWidget(row)

    def _drop(self, row: LoraRow) -> None:
        self.rows.remove(row)
        self._rows.removeWidget(row)
        row.setParent(None)
        row.deleteLater()

    def _update(self) -> None:
        self.empty.setVisible(not self.rows)


# --- model pickers ----------------------------------------------------------------------------------------

class ModelField(QWidget):
    """An editable model reference (file, folder or name) with the models of its folder listed and a
    browse button; ``committed(text)`` when the painter has chosen one (not at every key)."""

    committed = Signal(str)

    def __init__(self, kind: str, placeholder: str, title: str, parent=None):
        super().__init__(parent)
        self.kind = kind
        self.title = title
        self.box = compact(QComboBox())
        self.box.setEditable(True)
        self.box.setInsertPolicy(QComboBox.NoInsert)
        self.box.lineEdit().setPlaceholderText(placeholder)
        self.box.setToolTip(f"A file, a folder, or a name in {steering_dir(kind)}")
        for path in folder_models(kind):
            self.box.addItem(display_name(path), path)
        self.box.setCurrentText("")
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip(f"Choose a {title} file")
        self.browse.clicked.connect(self.choose_file)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.box, 1)
        layout.addWidget(self.browse)
        self.box.activated.connect(lambda _i: self._commit())
        self.box.lineEdit().editingFinished.connect(self._commit)
        self._last = ""

    def value(self) -> str:
        text = self.box.currentText().strip()
        index = self.box.findText(text)
        data = self.box.itemData(index) if index >= 0 else None
        return data if isinstance(data, str) and data else text

    def set_value(self, ref: str) -> None:
        self._last = ref
        index = self.box.findData(ref)
        self.box.blockSignals(True)
        self.box.setCurrentText(self.box.itemText(index) if index >= 0 else ref)
        self.box.blockSignals(False)
        self.box.setToolTip(ref or f"A file, a folder, or a name in {steering_dir(self.kind)}")

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Choose a {self.title}", start_folder(self.kind),
                                              "Models (*.safetensors);;All files (*)")
        if path:
            self.set_value(path)
            self._commit()

    def _commit(self) -> None:
        value = self.value()
        if value != self._last:
            self._last = value
            self.committed.emit(value)


# --- the Control section ---------------------------------------------------------------------------------

class RoleEditor(QGroupBox):
    """The settings of one marked layer; edits go to the document through ``section.edit``."""

    def __init__(self, section, layer):
        super().__init__()
        self.section = section
        self.layer = layer

    def sync(self) -> None:
        self.setTitle(f"{self.layer.name}  ({self.layer.role.name})")
        self.setToolTip(f"The {self.layer.role.name} layer “{self.layer.name}”: its pixels are edited in the canvas, "
                        "its settings here")


class ControlEditor(RoleEditor):
    def __init__(self, section, layer):
        super().__init__(section, layer)
        role = layer.role
        self.kind = compact(QComboBox())
        for kind in CONTROL_KINDS + (() if role.kind in CONTROL_KINDS else (role.kind,)):
            self.kind.addItem(kind, kind)
        self.kind.setToolTip("How the layer's pixels are read: lines, edges, a depth map…")
        self.model = ModelField("controlnets", "ControlNet model", "ControlNet")
        self.strength = _spin(0.0, 2.0, role.strength)
        self.strength.setToolTip("Control strength, 0 to 2 (1 is usual)")
        self.start = _spin(0.0, 1.0, role.start)
        self.end = _spin(0.0, 1.0, role.end)
        for box, tip in ((self.start, "the first"), (self.end, "the last")):
            box.setToolTip(f"Acts from {tip} fraction of the steps (0 = start, 1 = end)")
        span = QHBoxLayout()
        span.setSpacing(3)
        span.addWidget(self.start, 1)
        span.addWidget(QLabel("to"))
        span.addWidget(self.end, 1)
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setContentsMargins(6, 4, 6, 4)
        form.addRow("Kind", self.kind)
        form.addRow("Model", self.model)
        form.addRow("Strength", self.strength)
        form.addRow("Steps", span)
        self.sync()
        self.kind.currentIndexChanged.connect(lambda _i: self.section.edit(self.layer, "kind", kind=self.kind.currentData()))
        self.model.committed.connect(self._on_model)
        self.strength.valueChanged.connect(lambda v: self.section.edit(self.layer, "strength", merge=True, strength=v))
        self.start.valueChanged.connect(lambda v: self.section.edit(self.layer, "start", merge=True, start=v))
        self.end.valueChanged.connect(lambda v: self.section.edit(self.layer, "end", merge=True, end=v))
        for box in (self.strength, self.start, self.end):
            box.editingFinished.connect(self.section.seal)

    def _on_model(self, model: str) -> None:
        changes = {"model": model}
        guessed = kind_from_name(model) if model else "other"
        if guessed != "other" and self.layer.role.kind != guessed:
            changes["kind"] = guessed  # a canny model reads edges: the kind follows the model's name
        self.section.edit(self.layer, "model", **changes)

    def sync(self) -> None:
        super().sync()
        role = self.layer.role
        if self.kind.findData(role.kind) < 0:
            self.kind.addItem(role.kind, role.kind)
        _set(self.kind, role.kind)
        if self.model.value() != role.model:
            self.model.set_value(role.model)
        _set(self.strength, role.strength)
        self.start.setMaximum(max(role.end - 0.01, 0.0))
        self.end.setMinimum(min(role.start + 0.01, 1.0))
        _set(self.start, role.start)
        _set(self.end, role.end)


class ReferenceEditor(RoleEditor):
    def __init__(self, section, layer):
        super().__init__(section, layer)
        self.weight = _spin(0.0, 2.0, layer.role.weight)
        self.weight.setToolTip("How closely to follow the reference, 0 to 2 (0.5 to 1 is usual)")
        self.mode = compact(QComboBox())
        for mode in REFERENCE_MODES:
            self.mode.addItem(mode, mode)
        self.mode.setToolTip("What of the reference to follow: everything, its style, or its composition")
        row = QHBoxLayout()
        row.setSpacing(3)
        row.addWidget(self.weight)
        row.addWidget(self.mode, 1)
        form = QFormLayout(self)
        form.setContentsMargins(6, 4, 6, 4)
        form.addRow("Weight", row)
        self.sync()
        self.weight.valueChanged.connect(lambda v: self.section.edit(self.layer, "weight", merge=True, weight=v))
        self.weight.editingFinished.connect(self.section.seal)
        self.mode.currentIndexChanged.connect(lambda _i: self.section.edit(self.layer, "mode", mode=self.mode.currentData()))

    def sync(self) -> None:
        super().sync()
        _set(self.weight, self.layer.role.weight)
        _set(self.mode, self.layer.role.mode)


class ControlSection(QWidget):
    """The document's control and reference layers (topmost first), each with its settings."""

    def __init__(self, show_message=None, parent=None):
        super().__init__(parent)
        self.show_message = show_message or (lambda *a: None)
        self.doc = None
        self.editors: list[RoleEditor] = []
        self._shape = ()
        self._last_edit = None
        self.empty = QLabel("No control or reference layers: mark one in the Layers panel (right-click a layer).")
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self._list = QVBoxLayout()
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty)
        layout.addLayout(self._list)

    def set_document(self, doc) -> None:
        if self.doc is not None and self._on_doc in self.doc.listeners:
            self.doc.listeners.remove(self._on_doc)
        self.doc = doc
        doc.listeners.append(self._on_doc)
        self._shape = None
        self.refresh()

    def _on_doc(self, kind, _rect) -> None:
        if kind in ("layers", "bounds"):
            self.refresh()

    def refresh(self) -> None:
        """Rebuilds the list when the marked layers changed; otherwise updates the values in place (so
        a value being edited keeps its focus)."""
        marked = [l for l in reversed(self.doc.layers) if l.role is not None] if self.doc is not None else []
        shape = tuple((l.id, type(l.role)) for l in marked)
        if shape == self._shape:
            for editor in self.editors:
                editor.sync()
            return
        self._shape = shape
        for editor in self.editors:
            self._list.removeWidget(editor)
            editor.setParent(None)
            editor.deleteLater()
        self.editors = [ControlEditor(self, l) if isinstance(l.role, ControlRole) else ReferenceEditor(self, l)
                        for l in marked]
        for editor in self.editors:
            self._list.addWidget(editor)
        self.empty.setVisible(not self.editors)

    def editor_for(self, layer) -> RoleEditor | None:
        return next((e for e in self.editors if e.layer is layer), None)

    def edit(self, layer, what: str, merge: bool = False, **changes) -> None:
        """Changes ``layer``'s role; a value stepped again and again (``merge``) is one undo step until
        another value is edited or the editing ends."""
        if self.doc is None or layer not in self.doc.layers or layer.role is None:
            return
        key = (layer.id, what)
        if not merge or self._last_edit != key:
            self.doc.history.seal()
        self._last_edit = key if merge else None
        try:
            role = dataclasses.replace(layer.role, **changes)
            self.doc.set_layer_role(layer, role, merge=merge)
        except (ValueError, DocumentError) as exc:
            self.show_message(str(exc))
            self.refresh()

    def seal(self) -> None:
        self._last_edit = None
        if self.doc is not None:
            self.doc.history.seal()


class SteeringBox(QWidget):
    """LoRAs, the IP-Adapter model, and the Control section, in the generation panel."""

    changed = Signal()

    def __init__(self, steering: AppSteering, parent=None):
        super().__init__(parent)
        self.loras = LoraList()
        self.loras.set_value(steering.loras)
        self.ip_adapter = ModelField("ip-adapters", "none (needed for reference layers)", "IP-Adapter model")
        self.ip_adapter.set_value(steering.ip_adapter)
        self.controls = ControlSection()

        lora_box = QGroupBox("LoRAs")
        QVBoxLayout(lora_box).addWidget(self.loras)
        lora_box.layout().setContentsMargins(6, 4, 6, 4)
        control_box = QGroupBox("Control")
        control_layout = QFormLayout(control_box)
        control_layout.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        control_layout.setContentsMargins(6, 4, 6, 4)
        control_layout.addRow("IP-Adapter", self.ip_adapter)
        control_layout.addRow(self.controls)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(lora_box)
        layout.addWidget(control_box)
        self.loras.changed.connect(self.changed)
        self.ip_adapter.committed.connect(lambda _v: self.changed.emit())

    def value(self) -> AppSteering:
        return AppSteering(self.loras.value(), self.ip_adapter.value())

    def set_value(self, steering: AppSteering) -> None:
        self.loras.set_value(steering.loras)
        self.ip_adapter.set_value(steering.ip_adapter)
        self.changed.emit()
