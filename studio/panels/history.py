"""History panel: the undo steps; clicking one undoes or redoes up to it."""
from __future__ import annotations

from PySide6.QtWidgets import QListWidget, QVBoxLayout, QWidget


class HistoryPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc = None
        self.list = QListWidget()
        self.list.itemClicked.connect(self._on_click)
        QVBoxLayout(self).addWidget(self.list)

    def set_document(self, doc) -> None:
        if self.doc is not None and self.refresh in self.doc.history.listeners:
            self.doc.history.listeners.remove(self.refresh)
        self.doc = doc
        self._shown = None
        doc.history.listeners.append(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        h = self.doc.history
        state = (tuple(h.undo_descriptions), tuple(h.redo_descriptions))
        if state == getattr(self, "_shown", None):
            return  # e.g. the dabs of one stroke merging into the same step
        self._shown = state
        self.list.clear()
        self.list.addItem("Start")
        for text in h.undo_descriptions:
            self.list.addItem(text)
        for text in h.redo_descriptions:
            self.list.addItem(f"{text}  (undone)")
        self.list.setCurrentRow(len(h))

    def _on_click(self, item) -> None:
        target = self.list.row(item)
        h = self.doc.history
        while len(h) > target and self.doc.undo():
            pass
        while len(h) < target and self.doc.redo():
            pass
