"""Saving and loading off the GUI thread, with progress and a cancel flag."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal


class BackgroundTask(QObject):
    """Runs ``fn(progress)`` on a thread; reports ``progress(done, total, message)`` and ``finished(result, error)``.

    Signals cross threads queued because this object lives on the GUI thread
    and the receivers are methods there.
    """

    progressed = Signal(int, int, str)
    finished = Signal(object, object)  # result, exception or None

    def __init__(self, fn, parent=None):
        super().__init__(parent)
        self._fn = fn
        self._cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name="latent-studio-file", daemon=True)

    def start(self) -> "BackgroundTask":
        self.thread.start()
        return self

    # canvas.progress.Progress protocol
    def update(self, done: int, total: int, message: str) -> None:
        self._emit(self.progressed, done, total, message)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def _run(self) -> None:
        try:
            result = self._fn(self)
        except BaseException as exc:  # handed to the GUI thread, which shows it
            self._emit(self.finished, None, exc)
        else:
            self._emit(self.finished, result, None)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the window closed meanwhile; the work itself is done
            pass
