"""Settings ▸ Engine: run jobs on this computer, or on a Latent Studio server (URL and token).

"Test connection" opens a session on the server, lists its models and closes it again; the
dialog says in one sentence what answered, or what went wrong. The status bar shows which engine
is in use.
"""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QPushButton, QRadioButton, QVBoxLayout,
)

from backend.errors import BackendError

from .settings import EngineSettings


def engine_factory_for(engine: EngineSettings):
    """The engine factory ``engine`` describes (the in-process engine for this computer)."""
    if engine.kind == "server":
        from remote.client import remote_engine_factory

        return remote_engine_factory(engine.url.strip(), engine.token.strip())
    from backend.engine import engine_factory

    return engine_factory() if engine.fast_path else engine_factory(fast_path=False)


def describe(engine: EngineSettings) -> str:
    return f"Engine: {engine.url.strip()}" if engine.kind == "server" else "Engine: this computer"


def check_connection(url: str, token: str, timeout: float = 5.0) -> str:
    """One sentence: what the server at ``url`` offers, or why it cannot be used."""
    from remote.client import RemoteEngine

    if not url.strip():
        return "Give the server's address, like http://gpu-box:7860."
    try:
        engine = RemoteEngine(lambda event: None, url.strip(), token.strip(), timeout=timeout)
        try:
            models = engine.list_models()
        finally:
            engine.shutdown(wait=False)
    except BackendError as exc:
        return str(exc)
    names = ", ".join(name for name, _, _ in models[:4]) + (" …" if len(models) > 4 else "")
    return f"Connected: the server offers {len(models)} model{'s' if len(models) != 1 else ''}" + \
        (f" ({names})." if models else ".")


class _Answer(QObject):
    """Carries the connection test's sentence from its thread to the dialog (queued to the GUI thread)."""

    ready = Signal(str)


class EngineDialog(QDialog):
    def __init__(self, engine: EngineSettings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Engine")
        layout = QVBoxLayout(self)
        self.local = QRadioButton("This computer")
        self.server = QRadioButton("A Latent Studio server (python main.py serve)")
        group = QButtonGroup(self)
        group.addButton(self.local)
        group.addButton(self.server)
        layout.addWidget(self.local)
        self.fast_path = QCheckBox("Fast path (channels_last, fused attention, torch.compile on a GPU)")
        self.fast_path.setToolTip("Off: the model is loaded exactly as diffusers loads it (slower; for comparing "
                                  "or when compiling fails on this computer). Applies from the next model loaded.")
        self.fast_path.setChecked(engine.fast_path)
        layout.addWidget(self.fast_path)
        layout.addWidget(self.server)
        form = QFormLayout()
        self.url = QLineEdit(engine.url)
        self.url.setPlaceholderText("http://gpu-box:7860")
        self.token = QLineEdit(engine.token)
        self.token.setEchoMode(QLineEdit.Password)
        self.token.setPlaceholderText("the server's token (none on this computer's own server)")
        form.addRow("Server address", self.url)
        form.addRow("Token", self.token)
        layout.addLayout(form)
        self.test = QPushButton("Test connection")
        self.test.clicked.connect(self.run_test)
        self._answer = _Answer(self)
        self._answer.ready.connect(self._show_answer)
        layout.addWidget(self.test, 0, Qt.AlignLeft)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        layout.addWidget(self.result)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        (self.server if engine.kind == "server" else self.local).setChecked(True)
        self.server.toggled.connect(self._enable)
        self._enable()

    def _enable(self) -> None:
        on = self.server.isChecked()
        self.fast_path.setEnabled(not on)  # a server's engine is the server's business
        for widget in (self.url, self.token, self.test):
            widget.setEnabled(on)

    def run_test(self) -> None:
        """Tests the connection on a thread of its own (it may wait seconds for a server), so the window
        stays responsive; the answer replaces "Connecting…"."""
        self.result.setText("Connecting…")
        self.test.setEnabled(False)
        url, token, answer = self.url.text(), self.token.text(), self._answer

        def test() -> None:
            sentence = check_connection(url, token)
            try:
                answer.ready.emit(sentence)
            except RuntimeError:  # the dialog was closed meanwhile
                pass

        threading.Thread(target=test, name="engine-connection-test", daemon=True).start()

    def _show_answer(self, sentence: str) -> None:
        self.result.setText(sentence)
        self._enable()

    def chosen(self) -> EngineSettings:
        if self.server.isChecked():
            return EngineSettings("server", self.url.text().strip(), self.token.text().strip(),
                                  self.fast_path.isChecked())
        return EngineSettings("local", self.url.text().strip(), self.token.text().strip(), self.fast_path.isChecked())
