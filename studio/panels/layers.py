"""Layers panel: the stack (top first), visibility, rename, reorder by drag, opacity, blend mode, lock, mask,
and the layer's role: a plain layer, a control layer (kind and ControlNet model) or a reference layer."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
    QListWidget, QListWidgetItem, QSlider, QToolButton, QVBoxLayout, QWidget,
)

from canvas.blend import BLEND_MODES
from canvas.errors import DocumentError
from canvas.role import ControlRole, ReferenceRole

from .fields import compact

ROLES = (("plain", "Plain layer"), ("control", "Control layer"), ("reference", "Reference layer"))


def suffix(layer) -> str:
    """What the list shows after a layer's name: its mask and its role."""
    text = "  [mask]" if layer.mask is not None else ""
    if isinstance(layer.role, ControlRole):
        text += f"  [control: {layer.role.kind}]"
    elif isinstance(layer.role, ReferenceRole):
        text += "  [reference]"
    return text


class ControlDialog(QDialog):
    """Asks for a control layer's kind and ControlNet model."""

    def __init__(self, layer_name: str, role: ControlRole | None = None, parent=None):
        super().__init__(parent)
        from backend.steering import CONTROL_KINDS

        from .steering import ModelField

        self.setWindowTitle(f"Mark “{layer_name}” as a control layer")
        self.kind = compact(QComboBox())
        for kind in CONTROL_KINDS:
            self.kind.addItem(kind, kind)
        self.model = ModelField("controlnets", "ControlNet model", "ControlNet")
        self.model.committed.connect(self._on_model)
        if role is not None:
            self.kind.setCurrentIndex(max(self.kind.findData(role.kind), 0))
            self.model.set_value(role.model)
        form = QFormLayout(self)
        note = QLabel("The layer's pixels steer every generation over them (lines, edges, a depth map…); "
                      "it is no longer part of the picture.")
        note.setWordWrap(True)
        form.addRow(note)
        form.addRow("Kind", self.kind)
        form.addRow("Model", self.model)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _on_model(self, model: str) -> None:
        from backend.steering import kind_from_name

        guessed = kind_from_name(model)
        if guessed != "other":
            self.kind.setCurrentIndex(max(self.kind.findData(guessed), 0))

    def chosen(self) -> tuple[str, str]:
        return self.kind.currentData(), self.model.value()


class LayersPanel(QWidget):
    active_changed = Signal(object)  # the Layer, or None
    use_settings_requested = Signal(object)  # a generated Layer whose settings the generation panel should take

    def __init__(self, show_message=None, parent=None):
        super().__init__(parent)
        self.show_message = show_message or (lambda *a: None)
        self.doc = None
        self._active = None
        self._syncing = False
        self.list = QListWidget()
        self.list.setDragDropMode(QAbstractItemView.InternalMove)
        self.list.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
        self.list.currentRowChanged.connect(self._on_row)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.model().rowsMoved.connect(self._on_rows_moved)
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)

        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.opacity.sliderReleased.connect(self._seal)
        self.blend = QComboBox()
        self.blend.addItems(list(BLEND_MODES))
        self.blend.currentTextChanged.connect(self._on_blend)
        self.lock = QCheckBox("Lock")
        self.lock.toggled.connect(self._on_lock)
        self.role = compact(QComboBox())
        for key, label in ROLES:
            self.role.addItem(label, key)
        self.role.setToolTip("The layer's role: a plain layer is part of the picture; a control layer (kind and "
                             "ControlNet model asked for) or a reference layer steers generations instead")
        self.role.activated.connect(self._on_role)

        buttons = QHBoxLayout()
        for text, tip, slot in (
            ("+", "Add a layer", self.add_layer), ("−", "Delete the layer", self.delete_layer),
            ("Dup", "Duplicate the layer", self.duplicate_layer), ("▲", "Move up", lambda: self.move(1)),
            ("▼", "Move down", lambda: self.move(-1)), ("Mask", "Add or remove a layer mask", self.toggle_mask),
        ):
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            buttons.addWidget(b)

        form = QHBoxLayout()
        form.addWidget(QLabel("Opacity"))
        form.addWidget(self.opacity)
        form2 = QHBoxLayout()
        form2.addWidget(self.blend, 1)
        form2.addWidget(self.role, 1)
        form2.addWidget(self.lock)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(form)
        layout.addLayout(form2)
        layout.addLayout(buttons)

    # --- document ----------------------------------------------------------
    def set_document(self, doc) -> None:
        if self.doc is not None and self._on_doc in self.doc.listeners:
            self.doc.listeners.remove(self._on_doc)
        self.doc = doc
        doc.listeners.append(self._on_doc)
        self._active = doc.layers[-1] if doc.layers else None
        self.refresh()

    def _on_doc(self, kind, rect) -> None:
        if kind == "layers":
            self.refresh()

    def active_layer(self):
        if self._active is not None and self.doc is not None and self._active in self.doc.layers:
            return self._active
        return self.doc.layers[-1] if self.doc is not None and self.doc.layers else None

    def set_active(self, layer) -> None:
        self._active = layer
        self.refresh()
        self.active_changed.emit(layer)

    def refresh(self) -> None:
        self._syncing = True
        try:
            self.list.clear()
            layers = list(reversed(self.doc.layers)) if self.doc is not None else []
            active = self.active_layer()
            for layer in layers:
                item = QListWidgetItem(layer.name + suffix(layer))
                item.setData(Qt.UserRole, layer.id)
                item.setData(Qt.UserRole + 1, suffix(layer))
                item.setFlags(item.flags() | Qt.ItemIsEditable | Qt.ItemIsUserCheckable | Qt.ItemIsDragEnabled)
                item.setCheckState(Qt.Checked if layer.visible else Qt.Unchecked)
                if layer.parameters:
                    item.setToolTip(layer.parameters + "\n\n(right-click: Use these settings)")
                self.list.addItem(item)
                if layer is active:
                    self.list.setCurrentItem(item)
            if active is not None:
                self._show_properties(active)
        finally:
            self._syncing = False

    def _layer_at(self, row: int):
        if self.doc is None or row < 0:
            return None
        layers = list(reversed(self.doc.layers))
        return layers[row] if row < len(layers) else None

    # --- edits ----------------------------------------------------------------
    def _set(self, **props) -> None:
        layer = self.active_layer()
        if layer is None or self._syncing:
            return
        try:
            self.doc.set_layer_properties(layer, **props)
        except (DocumentError, ValueError) as exc:
            self.show_message(str(exc))

    def _seal(self) -> None:
        if self.doc is not None:
            self.doc.history.seal()

    def _on_row(self, row: int) -> None:
        if self._syncing:
            return
        layer = self._layer_at(row)
        if layer is not None:
            self._active = layer
            self._syncing = True
            self._show_properties(layer)
            self._syncing = False
            self.active_changed.emit(layer)

    def _show_properties(self, layer) -> None:
        self.opacity.setValue(round(layer.opacity * 100))
        self.blend.setCurrentText(layer.blend_mode)
        self.lock.setChecked(layer.locked)
        self.role.setCurrentIndex(self.role.findData(role_key(layer.role)))

    def _context_menu(self, pos) -> None:
        from PySide6.QtWidgets import QMenu

        layer = self._layer_at(self.list.row(self.list.itemAt(pos))) if self.list.itemAt(pos) else None
        if layer is None:
            return
        menu = QMenu(self)
        use = menu.addAction("Use these settings")
        use.setEnabled(bool(layer.parameters))
        use.setToolTip("Put the settings this layer was generated with into the generation panel")
        use.triggered.connect(lambda: self.use_settings_requested.emit(layer))
        menu.addSeparator()
        for key, label in ROLES:
            action = menu.addAction(f"Mark as {label[0].lower()}{label[1:]}{'…' if key == 'control' else ''}")
            action.setCheckable(True)
            action.setChecked(role_key(layer.role) == key)
            action.triggered.connect(lambda _checked=False, k=key, l=layer: self.mark(l, k))
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def _on_item_changed(self, item) -> None:
        if self._syncing:
            return
        layer = next((l for l in self.doc.layers if l.id == item.data(Qt.UserRole)), None)
        if layer is None:
            return
        visible = item.checkState() == Qt.Checked
        text, shown = item.text(), item.data(Qt.UserRole + 1) or ""
        name = (text[: -len(shown)] if shown and text.endswith(shown) else text).strip()
        if visible != layer.visible:
            self.doc.set_layer_properties(layer, visible=visible)
            self.doc.history.seal()
        elif name and name != layer.name:
            self.doc.set_layer_properties(layer, name=name)
            self.doc.history.seal()

    def _on_rows_moved(self, *args) -> None:
        if self._syncing:
            return
        layer = self.active_layer()
        ids = [self.list.item(i).data(Qt.UserRole) for i in range(self.list.count())]
        if layer is None or layer.id not in ids:
            return
        new_index = len(ids) - 1 - ids.index(layer.id)
        if new_index != self.doc.layer_index(layer):
            self.doc.move_layer(layer, new_index)

    def _on_opacity(self, value: int) -> None:
        self._set(opacity=value / 100)

    def _on_blend(self, mode: str) -> None:
        self._set(blend_mode=mode)
        self._seal()

    def _on_lock(self, locked: bool) -> None:
        self._set(locked=locked)
        self._seal()

    # --- roles ------------------------------------------------------------------
    def _on_role(self, _index: int) -> None:
        layer = self.active_layer()
        if layer is not None:
            self.mark(layer, self.role.currentData())
        self.refresh()  # a cancelled dialog: the combo shows the layer's role again

    def mark(self, layer, key: str) -> bool:
        """Makes ``layer`` a plain, control or reference layer (one undo step); a control layer's kind and
        model are asked for. False when nothing changed."""
        if key == "plain":
            role = None
        elif key == "reference":
            role = layer.role if isinstance(layer.role, ReferenceRole) else ReferenceRole()
        else:
            current = layer.role if isinstance(layer.role, ControlRole) else None
            chosen = self.ask_control(layer, current)
            if chosen is None:
                return False
            kind, model = chosen
            base = current or ControlRole()
            role = ControlRole(kind, model, base.strength, base.start, base.end)
        if role == layer.role:
            return False
        try:
            self.doc.set_layer_role(layer, role)
        except (DocumentError, ValueError) as exc:
            self.show_message(str(exc))
            return False
        return True

    def ask_control(self, layer, role: ControlRole | None) -> tuple[str, str] | None:
        """(kind, model) for a control layer, from a small dialog; None when cancelled."""
        dialog = ControlDialog(layer.name, role, self)
        if dialog.exec() != QDialog.Accepted:
            return None
        return dialog.chosen()

    def add_layer(self) -> None:
        active = self.active_layer()
        index = self.doc.layer_index(active) + 1 if active is not None else None
        self.set_active(self.doc.add_layer(index=index))

    def delete_layer(self) -> None:
        layer = self.active_layer()
        if layer is not None:
            self.doc.remove_layer(layer)
            self.set_active(self.active_layer())

    def duplicate_layer(self) -> None:
        layer = self.active_layer()
        if layer is None:
            return
        copy = layer.copy()
        from canvas.layer import Layer

        dup = Layer(name=f"{layer.name} copy", pixels=copy.pixels, visible=copy.visible, opacity=copy.opacity,
                    blend_mode=copy.blend_mode, mask=copy.mask, parameters=copy.parameters, role=copy.role)
        self.set_active(self.doc.insert_layer(dup, self.doc.layer_index(layer) + 1, "Duplicate layer"))

    def move(self, direction: int) -> None:
        layer = self.active_layer()
        if layer is None:
            return
        index = self.doc.layer_index(layer) + direction
        if 0 <= index < len(self.doc.layers):
            self.doc.move_layer(layer, index)

    def toggle_mask(self) -> None:
        layer = self.active_layer()
        if layer is None:
            return
        if layer.mask is None:
            self.doc.add_layer_mask(layer, from_selection=not self.doc.selection.is_empty)
        else:
            self.doc.remove_layer_mask(layer)


def role_key(role) -> str:
    return "control" if isinstance(role, ControlRole) else "reference" if isinstance(role, ReferenceRole) else "plain"
