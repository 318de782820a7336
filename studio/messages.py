"""A non-blocking message bar: one sentence, details on demand, never a modal traceback."""
from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMessageBox, QPushButton, QSizePolicy


class MessageBar(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self.setStyleSheet("#MessageBar { background: #5a3d1e; color: white; border-radius: 3px; }"
                           "#MessageBar QLabel { color: white; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # a long sentence never widens the window
        self.details_button = QPushButton("Details…")
        self.details_button.clicked.connect(self._show_details)
        close = QPushButton("✕")
        close.setFixedWidth(28)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.details_button)
        layout.addWidget(close)
        self.details = ""
        self.history: list[str] = []
        self.hide()

    def show_message(self, message: str, details: str = "") -> None:
        self.label.setText(message)
        self.details = details
        self.details_button.setVisible(bool(details))
        self.history.append(message)
        self.show()

    def _show_details(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Details")
        box.setText(self.label.text())
        box.setDetailedText(self.details)
        box.open()
