"""The document being edited: the document, its file, and whether it has unsaved changes.

Controllers that work on "the current document" hold this session, never the window: a new or
opened document arrives through ``document_changed``; saves, undo and edits through ``changed``.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal


class DocumentSession(QObject):
    document_changed = Signal(object)  # the new canvas Document
    changed = Signal()  # modified state, path or history moved

    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc = None
        self.path: Path | None = None
        self.recovered = False  # the document came from a crash's autosave and was not saved since
        self._saved_revision = 0

    def set_document(self, doc, path=None, *, modified: bool = False, recovered: bool = False) -> None:
        """`recovered`: the document is an autosave recovered after a crash (the title says so
        until it is saved)."""
        if self.doc is not None and self._history_moved in self.doc.history.listeners:
            self.doc.history.listeners.remove(self._history_moved)
        self.doc = doc
        self.path = Path(path) if path else None
        self.recovered = recovered
        self._saved_revision = -1 if modified else doc.history.revision
        doc.history.listeners.append(self._history_moved)
        self.document_changed.emit(doc)
        self.changed.emit()

    def _history_moved(self, *_args) -> None:
        self.changed.emit()

    @property
    def modified(self) -> bool:
        return self.doc is not None and self.doc.history.revision != self._saved_revision

    def mark_saved(self, path: Path, revision: int) -> None:
        """The document as it was at ``revision`` is now in ``path``."""
        self.path = Path(path)
        self._saved_revision = revision
        self.recovered = False
        self.changed.emit()

    def forget_changes(self) -> None:
        """Treat the document as saved (tests, and a closing window whose painter chose Discard)."""
        self._saved_revision = self.doc.history.revision
        self.changed.emit()

    @property
    def title(self) -> str:
        name = self.path.name if self.path else "Untitled"
        return f"{name}{' (recovered)' if self.recovered else ''}{' *' if self.modified else ''} — Latent Studio"
