"""Work off the GUI thread (saving, loading, autosaving), with progress, and the tasks still running."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal


class BackgroundTask(QObject):
    """Runs ``fn(progress)`` on a thread, then ``done(result, error)`` on the GUI thread.

    ``finished`` is emitted on the worker thread and connected to this object's own method;
    the object lives on the GUI thread, so Qt queues the call there.
    """

    progressed = Signal(int, int, str)
    finished = Signal(object, object)  # result, exception or None

    def __init__(self, fn, done=None, parent=None):
        super().__init__(parent)
        self._fn = fn
        self._done = done
        self.finished.connect(self._on_finished)
        self._cancel = threading.Event()
        self.thread = threading.Thread(target=self._run, name="latent-studio-file", daemon=True)

    def _on_finished(self, result, error) -> None:
        if self._done is not None:
            self._done(result, error)

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


class BackgroundTasks(QObject):
    """The background tasks of one window: started here, awaited before the window closes."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._tasks: set[BackgroundTask] = set()

    def run(self, fn, done, progress=None) -> BackgroundTask:
        """Starts ``fn(progress)``; ``done(result, error)`` and ``progress(done, total, text)`` run on the GUI thread."""
        def finished(result, error):
            self._tasks.discard(task)
            done(result, error)

        task = BackgroundTask(fn, finished, self)
        self._tasks.add(task)
        if progress is not None:
            task.progressed.connect(progress)
        return task.start()

    def wait_all(self, timeout: float = 60) -> None:
        """Lets a save or autosave in progress finish: never lose work."""
        for task in list(self._tasks):
            task.thread.join(timeout=timeout)

    @property
    def running(self) -> int:
        return len(self._tasks)
