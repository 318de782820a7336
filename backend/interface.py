"""The engine interface every front end depends on (the studio, the CLI, and later remote clients).

An engine is made by a factory that takes the event listener::

    engine = factory(on_event)       # on_event(event) may be called on any thread
    job = engine.submit(request)     # a frozen request from backend.ops; returns the job id
    engine.cancel(job)

and answers every job with the events of :mod:`backend.events`: ``Started``, ``Progress`` /
``Preview`` …, then exactly one of ``Result``, ``Failed`` or ``Cancelled``; ``preload`` answers
with ``ModelState``. The in-process :class:`backend.engine.Engine` implements it, and so does
the scriptable :class:`backend.fake.FakeEngine` that the fast studio tests drive.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

from .events import Event


@dataclass(frozen=True)
class ModelInfo:
    """What a model says of itself without loading it."""

    name: str
    ignores_prompt: bool = False
    recommended: tuple = ()  # ((operation, setting, value), ...): the settings the model recommends
    live: tuple = ()  # (("steps", n), ("sampler", name), ("strength", s)): its live-painting setting, or ()


@runtime_checkable
class EngineInterface(Protocol):
    def submit(self, request) -> int:
        """Queues a job; returns its id. Raises InvalidRequest for a request no operation runs."""

    def cancel(self, job_id: int) -> bool:
        """Cancels a queued or running job; False when it already ended."""

    def cancel_all(self) -> None:
        """Cancels every queued and running job."""

    def preload(self, model: str = "") -> None:
        """Loads a model ahead of the first job; answers with ``ModelState`` events."""

    def check(self, request) -> None:
        """The cheap checks before a job (model files, upscaler, memory for the output): raises a
        BackendError whose text is one sentence for the user."""

    def model_info(self, model: str = "") -> ModelInfo:
        """The model's name and recommendations, without loading it; raises ModelError if not found."""

    def list_models(self) -> list[tuple[str, str, str]]:
        """(name, kind, where) of every model the engine can find."""

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Cancels everything and stops; later calls to ``submit`` raise BackendError."""


EventListener = Callable[[Event], None]
EngineFactory = Callable[[EventListener], EngineInterface]


class EngineBase:
    """What every engine shares: ``with engine:`` shuts it down, and ``_emit`` calls the listener so
    that a listener that raises is logged and cannot stop the engine's worker or stream."""

    _on_event: EventListener

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _emit(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:
            logging.getLogger(type(self).__module__).exception("event handler failed for %r", event)
