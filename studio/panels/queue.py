"""Queue panel: the jobs waiting and running; each can be cancelled."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget


class QueuePanel(QWidget):
    cancel_requested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.cancel = QPushButton("Cancel selected job")
        self.cancel.clicked.connect(self._cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.cancel)
        self._items: dict[int, QListWidgetItem] = {}

    def add(self, job_id: int, text: str) -> None:
        item = QListWidgetItem(f"#{job_id} {text} — queued")
        item.setData(Qt.UserRole, job_id)
        self.list.addItem(item)
        self._items[job_id] = item

    def set_state(self, job_id: int, state: str) -> None:
        item = self._items.get(job_id)
        if item is None:
            return
        if state in ("done", "failed", "cancelled"):
            self.list.takeItem(self.list.row(item))
            del self._items[job_id]
        else:
            base = item.text().rsplit(" — ", 1)[0]
            item.setText(f"{base} — {state}")

    def jobs(self) -> list[int]:
        return list(self._items)

    def _cancel(self) -> None:
        item = self.list.currentItem() or (self.list.item(0) if self.list.count() else None)
        if item is not None:
            self.cancel_requested.emit(item.data(Qt.UserRole))
