"""The backend's events as Qt signals, delivered on the GUI thread.

The engine calls ``_on_engine_event`` on its worker thread. That method only
emits ``_arrived``; because this QObject lives in the GUI thread and the
signal is connected to one of its *methods*, Qt queues the call, and
``_dispatch`` runs on the GUI thread, where it re-emits typed signals.
(Connecting a lambda or plain function instead would run it on the worker.)
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from backend.events import Cancelled, Failed, ModelState, Preview, Progress, Result, Started


class EngineBridge(QObject):
    started = Signal(int, str, int)  # job_id, operation, total
    progress = Signal(int, int, int, str)  # job_id, step, total, stage
    preview = Signal(int, object, object)  # job_id, image (h, w, 4) uint8, rect (x, y, w, h)
    result = Signal(int, object)  # job_id, tuple[ResultImage]
    failed = Signal(int, str, str)  # job_id, message, details
    cancelled = Signal(int)
    model_state = Signal(str, str, str, bool, object)  # name, state, message, ignores_prompt, inpaint defaults

    _arrived = Signal(object)

    def __init__(self, engine_factory=None, parent=None):
        super().__init__(parent)
        self._arrived.connect(self._dispatch)
        self.last_preview_sent = None  # perf_counter() when the engine emitted the latest preview (benchmarks)
        if engine_factory is None:
            from backend.engine import Engine

            engine_factory = Engine
        self.engine = engine_factory(self._on_engine_event)

    def _on_engine_event(self, event) -> None:  # the worker thread
        self._arrived.emit((time.perf_counter(), event))

    def _dispatch(self, packet) -> None:  # the GUI thread
        sent, event = packet
        if isinstance(event, Preview):
            self.last_preview_sent = sent
            self.preview.emit(event.job_id, event.image, event.rect)
        elif isinstance(event, Progress):
            self.progress.emit(event.job_id, event.step, event.total, event.stage)
        elif isinstance(event, Started):
            self.started.emit(event.job_id, event.operation, event.total)
        elif isinstance(event, Result):
            self.result.emit(event.job_id, event.images)
        elif isinstance(event, Failed):
            self.failed.emit(event.job_id, event.message, event.details)
        elif isinstance(event, Cancelled):
            self.cancelled.emit(event.job_id)
        elif isinstance(event, ModelState):
            self.model_state.emit(event.name, event.state, event.message, event.ignores_prompt,
                                  tuple(event.inpaint_defaults))

    # The engine's API, for the GUI thread.
    def submit(self, request) -> int:
        return self.engine.submit(request)

    def cancel(self, job_id: int) -> bool:
        return self.engine.cancel(job_id)

    def preload(self, model: str) -> None:
        self.engine.preload(model)

    def shutdown(self) -> None:
        self.engine.shutdown(wait=False)
