"""Layers panel: the stack (top first), visibility, rename, reorder by drag, opacity, blend mode, lock, mask."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
    QSlider, QToolButton, QVBoxLayout, QWidget,
)

from canvas.blend import BLEND_MODES
from canvas.errors import DocumentError


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
        form2.addWidget(self.blend)
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
                item = QListWidgetItem(layer.name + ("  [mask]" if layer.mask is not None else ""))
                item.setData(Qt.UserRole, layer.id)
                item.setFlags(item.flags() | Qt.ItemIsEditable | Qt.ItemIsUserCheckable | Qt.ItemIsDragEnabled)
                item.setCheckState(Qt.Checked if layer.visible else Qt.Unchecked)
                if layer.parameters:
                    item.setToolTip(layer.parameters + "\n\n(right-click: Use these settings)")
                self.list.addItem(item)
                if layer is active:
                    self.list.setCurrentItem(item)
            if active is not None:
                self.opacity.setValue(round(active.opacity * 100))
                self.blend.setCurrentText(active.blend_mode)
                self.lock.setChecked(active.locked)
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
            self.opacity.setValue(round(layer.opacity * 100))
            self.blend.setCurrentText(layer.blend_mode)
            self.lock.setChecked(layer.locked)
            self._syncing = False
            self.active_changed.emit(layer)

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
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def _on_item_changed(self, item) -> None:
        if self._syncing:
            return
        layer = next((l for l in self.doc.layers if l.id == item.data(Qt.UserRole)), None)
        if layer is None:
            return
        visible = item.checkState() == Qt.Checked
        name = item.text().replace("  [mask]", "").strip()
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
                    blend_mode=copy.blend_mode, mask=copy.mask, parameters=copy.parameters)
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
