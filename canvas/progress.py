"""A GUI-free progress object passed down into slow work (save, load, autosave).

The studio implements :class:`Progress` with a small adapter that forwards
``update`` to a Qt signal and answers ``cancelled()`` from a flag set by the
Cancel button.  Slow work calls :func:`step` which raises
:class:`~canvas.errors.OperationCancelled` when the user asked to stop.
"""
from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from .errors import OperationCancelled


@runtime_checkable
class Progress(Protocol):
    def update(self, done: int, total: int, message: str) -> None: ...

    def cancelled(self) -> bool: ...


class NullProgress:
    """Progress that reports nowhere and never cancels."""

    def update(self, done: int, total: int, message: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False


class RecordingProgress:
    """Thread-safe progress that records updates; `cancel()` requests a stop.

    Useful for tests and as a base for GUI adapters.
    """

    def __init__(self) -> None:
        self.updates: list[tuple[int, int, str]] = []
        self._cancel = threading.Event()

    def update(self, done: int, total: int, message: str) -> None:
        self.updates.append((done, total, message))

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()


def step(progress: Progress | None, done: int, total: int, message: str, what: str = "The operation") -> None:
    """Report progress and raise OperationCancelled if the user cancelled."""
    if progress is None:
        return
    if progress.cancelled():
        raise OperationCancelled(f"{what} was cancelled; nothing was changed.")
    progress.update(done, total, message)
