"""Slow saves off the GUI thread.

The document is copied on the calling (GUI) thread — cheap, the tiles are
immutable and shared — and a single worker thread writes the copy, so the
painter can go on working while a large file is saved.  Results come back as
``concurrent.futures.Future`` objects (the studio wraps them in Qt signals);
errors are :class:`~canvas.errors.DocumentError` raised by ``future.result()``.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from .autosave import Autosaver
from .document import Document
from .image_io import export_png
from .ora import save_ora
from .progress import Progress


class BackgroundSaver:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canvas-save")

    def save_ora(self, doc: Document, path, progress: Progress | None = None) -> Future:
        snapshot = doc.copy()
        return self._pool.submit(save_ora, snapshot, path, progress)

    def export_png(self, doc: Document, path, parameters: str | None = None,
                   progress: Progress | None = None) -> Future:
        snapshot = doc.copy()
        if parameters is None:
            parameters = doc.generation_parameters()
        return self._pool.submit(export_png, snapshot, path, parameters, progress)

    def autosave(self, autosaver: Autosaver, progress: Progress | None = None) -> Future:
        snapshot, revision = autosaver.snapshot()
        return self._pool.submit(autosaver.write, snapshot, revision, progress)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
