"""The engine's events, delivered whole on the GUI thread.

The engine calls ``_on_engine_event`` on its worker thread. That method only emits ``_arrived``;
because this QObject lives in the GUI thread and the signal is connected to one of its *methods*,
Qt queues the call, and ``_dispatch`` runs on the GUI thread, where it re-emits the event object
itself (``event``), and model states also as ``model_state``. (Connecting a lambda or plain
function instead would run it on the worker.) The engine is anything that implements
:class:`backend.interface.EngineInterface`: the in-process one by default, a fake in tests.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal

from backend.events import ModelState, Preview


class EngineBridge(QObject):
    event = Signal(object)  # every backend event, as the engine sent it
    model_state = Signal(object)  # ModelState events (preload), also sent on `event`

    _arrived = Signal(object)

    def __init__(self, engine_factory=None, parent=None):
        super().__init__(parent)
        self._arrived.connect(self._dispatch)
        self.last_preview_sent = None  # perf_counter() when the engine emitted the latest preview (benchmarks)
        self._generation = 0  # events of an engine switched away from are dropped
        if engine_factory is None:
            from backend.engine import engine_factory as make_factory

            engine_factory = make_factory()
        self.engine = engine_factory(self._on_engine_event)

    def switch(self, engine_factory) -> None:
        """Runs later jobs on the engine ``engine_factory`` makes (raises BackendError, keeping the engine
        in use, when it cannot be made: a server that cannot be reached or refuses the token)."""
        generation = self._generation + 1

        def on_event(event, generation=generation):
            self._arrived.emit((time.perf_counter(), event, generation))

        engine = engine_factory(on_event)
        old, self.engine, self._generation = self.engine, engine, generation
        old.shutdown(wait=False)

    def _on_engine_event(self, event) -> None:  # the worker thread
        self._arrived.emit((time.perf_counter(), event, 0))

    def _dispatch(self, packet) -> None:  # the GUI thread
        sent, event, generation = packet
        if generation != self._generation:
            return
        if isinstance(event, Preview):
            self.last_preview_sent = sent
        if isinstance(event, ModelState):
            self.model_state.emit(event)
        self.event.emit(event)

    # The engine interface, for the GUI thread.
    def submit(self, request) -> int:
        return self.engine.submit(request)

    def cancel(self, job_id: int) -> bool:
        return self.engine.cancel(job_id)

    def check(self, request) -> None:
        self.engine.check(request)

    def model_info(self, model: str = ""):
        return self.engine.model_info(model)

    def preload(self, model: str) -> None:
        self.engine.preload(model)

    def list_models(self) -> list:
        return self.engine.list_models()

    def shutdown(self) -> None:
        self.engine.shutdown(wait=False)
