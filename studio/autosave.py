"""Autosave and crash recovery for the window's document.

Every ``CHECK_MS`` the document is written to the autosave folder if it changed and the
autosaver's interval has passed (``Autosaver.due()``), and right after each applied generation.
An autosave is a recovery copy, not a save: the title keeps its ``*`` and the status bar says
"recovery copy". After a crash, the next start offers the autosave of the session that died;
the recovered document keeps its file's path, is marked modified and "(recovered)", and its
autosave stays on disk until a newer autosave of it exists (a second crash loses nothing).
On start the temporary files of killed autosaves are removed.
"""
from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMessageBox

from canvas.autosave import Autosaver, discard_recovery, find_recoverable, recover, remove_stray_files
from canvas.errors import DocumentError

log = logging.getLogger(__name__)
CHECK_MS = 30_000


class AutosaveController(QObject):
    def __init__(self, session, tasks, *, directory=None, dialogs=None, show_message=None, status=None,
                 parent=None):
        super().__init__(parent)
        self.session = session
        self.tasks = tasks
        self.directory = directory
        self.dialogs = dialogs
        self.show_message = show_message or (lambda *a: None)
        self.status = status or (lambda *a: None)
        self.saver: Autosaver | None = None
        self.writes = 0  # autosaves written (tests)
        self._writing = False
        session.document_changed.connect(self._on_document)
        session.changed.connect(self._on_changed)
        if session.doc is not None:
            self._on_document(session.doc)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(CHECK_MS)

    def _on_document(self, doc) -> None:
        if self.saver is not None:
            self.saver.discard()
        path = self.session.path
        self.saver = Autosaver(doc, self.directory, document_path=str(path) if path else None)

    def _on_changed(self) -> None:
        if self.saver is not None and self.session.path is not None:
            self.saver.document_path = str(self.session.path)

    def tick(self) -> None:
        """The timer: autosave when the document changed and the interval has passed."""
        if self.saver is not None and self.saver.due():
            self._write()

    def after_generation(self) -> None:
        if self.saver is not None and self.saver.dirty:
            self._write()

    def _write(self) -> None:
        if self._writing:  # one at a time; the next tick catches up
            return
        saver = self.saver
        snapshot, revision = saver.snapshot()
        self._writing = True

        def done(_result, error):
            self._writing = False
            if error is not None:
                log.warning("autosave failed: %s", error)
            else:
                self.writes += 1
                self.status(f"Recovery copy autosaved at {time.strftime('%H:%M')} (not a save of the file)", 4000)

        self.tasks.run(lambda progress: saver.write(snapshot, revision, progress), done)

    def offer_recovery(self) -> None:
        """On start: tidy the autosave folder, then offer the newest autosave a crash left."""
        remove_stray_files(self.directory)
        for info in find_recoverable(self.directory):
            answer = QMessageBox.question(
                self.dialogs, "Recover work?",
                f"Latent Studio closed unexpectedly while “{info.title}” was open. Recover the autosave?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes,
            )
            if answer != QMessageBox.Yes:
                discard_recovery(info)
                break
            try:
                doc = recover(info)
            except DocumentError as exc:
                self.show_message(str(exc))
                continue
            # unsaved work under its own file's name; its autosave stays until a newer one exists
            self.session.set_document(doc, info.document_path, modified=True, recovered=True)
            self.saver.recovered = info
            when = time.strftime("%H:%M", time.localtime(info.saved_at))
            self.status(f"Recovered “{info.title}” from the autosave of {when}: save it to keep it", 0)
            break

    def discard(self) -> None:
        """A clean exit: this session's autosave is not needed."""
        self.timer.stop()
        if self.saver is not None:
            self.saver.discard()
