"""Files: new, open, save, save as, export PNG, import a layer, recent files, drag and drop.

Loading and saving run off the GUI thread on a snapshot (``doc.copy()``, cheap), atomically;
a damaged file or a full disk is one sentence in the message bar, and the document is unchanged.
Opening or saving a document also removes what killed saves left in its folder (our own
``.<name>.<random>.part`` files, untouched for ten minutes).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QMessageBox, QSpinBox

from canvas.atomic import remove_stray_parts
from canvas.document import Document
from canvas.errors import DocumentError

log = logging.getLogger(__name__)
OPEN_FILTER = "Images (*.ora *.png *.jpg *.jpeg *.webp);;OpenRaster (*.ora);;All files (*)"


def new_document(width: int = 1024, height: int = 768) -> Document:
    import numpy as np

    doc = Document(width, height)
    white = np.full((height, width, 4), 255, np.uint8)
    doc.add_image_layer(white, 0, 0, name="Background", description="New document")
    doc.add_layer("Layer 1")
    doc.history.clear()
    return doc


class FileController(QObject):
    def __init__(self, session, tasks, settings, *, dialogs, show_message: Callable, status: Callable,
                 recent_menu, layer_added: Callable, parent=None):
        """``dialogs``: the widget that parents file dialogs; ``status(text, ms)``: the status bar;
        ``layer_added(layer)``: an imported layer becomes the active one."""
        super().__init__(parent)
        self.session = session
        self.tasks = tasks
        self.settings = settings
        self.dialogs = dialogs
        self.show_message = show_message
        self.status = status
        self.recent_menu = recent_menu
        self.layer_added = layer_added
        self.update_recent()

    # --- asking ------------------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """True when it is fine to drop the current document (saved, or the painter says so)."""
        if not self.session.modified:
            return True
        answer = QMessageBox.question(
            self.dialogs, "Unsaved changes", "The document has unsaved changes. Save them first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save,
        )
        if answer == QMessageBox.Save:
            return self.save(wait=True)
        return answer == QMessageBox.Discard

    def new_file(self) -> None:
        if not self.confirm_discard():
            return
        dialog = QDialog(self.dialogs)
        dialog.setWindowTitle("New document")
        form = QFormLayout(dialog)
        w, h = QSpinBox(), QSpinBox()
        for box, value in ((w, 1024), (h, 768)):
            box.setRange(8, 32768)
            box.setValue(value)
        form.addRow("Width", w)
        form.addRow("Height", h)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        if dialog.exec() == QDialog.Accepted:
            self.session.set_document(new_document(w.value(), h.value()), None)

    # --- opening -------------------------------------------------------------------------------------
    def open_file(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self.dialogs, "Open", "", OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path, after=None) -> None:
        """Loads in the background; the window stays usable."""
        from canvas.image_io import load_image

        path = Path(path)
        self.status(f"Opening {path.name}…", 0)

        def done(doc, error):
            if error is not None:
                self.show_message(file_error_text(error, path), error_details(error))
            else:
                self.session.set_document(doc, path if path.suffix.lower() == ".ora" else None)
                self.add_recent(path)
                self.status(f"Opened {path.name}", 3000)
            if after is not None:
                after(error)

        def load(progress):
            try:
                return load_image(path, progress)
            finally:
                remove_stray_parts(path.parent)  # what killed saves left in the folder we use

        self.tasks.run(load, done, self._progress)

    def import_layer(self, path=None) -> None:
        from canvas.image_io import import_layer

        if not path:
            path, _ = QFileDialog.getOpenFileName(self.dialogs, "Import image as layer", "", OPEN_FILTER)
        if not path:
            return
        try:
            layer = import_layer(self.session.doc, path)
        except DocumentError as exc:
            self.show_message(str(exc))
            return
        self.layer_added(layer)

    def drop(self, paths) -> None:
        """Files dropped on the window: an .ora replaces the document (asking first), images become layers."""
        for path in paths:
            if str(path).lower().endswith(".ora"):
                if self.confirm_discard():
                    self.open_path(path)
            else:
                self.import_layer(path)

    # --- saving -------------------------------------------------------------------------------------------
    def save(self, wait: bool = False) -> bool:
        if self.session.path is None:
            return self.save_as(wait)
        return self.save_to(self.session.path, wait)

    def save_as(self, wait: bool = False) -> bool:
        current = self.session.path
        path, _ = QFileDialog.getSaveFileName(self.dialogs, "Save as", str(current or "untitled.ora"),
                                              "OpenRaster (*.ora)")
        if not path:
            return False
        if not path.lower().endswith(".ora"):
            path += ".ora"
        return self.save_to(Path(path), wait)

    def save_to(self, path: Path, wait: bool = False, after=None) -> bool:
        """Saves a snapshot of the document on a background thread, atomically."""
        from canvas.ora import save_ora

        doc = self.session.doc
        snapshot, revision = doc.copy(), doc.history.revision
        self.status(f"Saving {path.name}…", 0)
        outcome = {}

        def done(_result, error):
            outcome["error"] = error
            if error is not None:
                self.show_message(file_error_text(error, path), error_details(error))
            else:
                self.session.mark_saved(path, revision)
                self.add_recent(path)
                self.status(f"Saved {path.name}", 3000)
            if after is not None:
                after(error)

        def save(progress):
            save_ora(snapshot, path, progress)
            remove_stray_parts(path.parent)  # what killed saves left in the folder we use

        task = self.tasks.run(save, done, self._progress)
        if wait:
            task.thread.join()
            QCoreApplication.processEvents()
            return outcome.get("error") is None
        return True

    def export_png(self) -> None:
        from canvas.image_io import export_png

        path, _ = QFileDialog.getSaveFileName(self.dialogs, "Export PNG", "", "PNG (*.png)")
        if not path:
            return
        doc = self.session.doc
        snapshot, params = doc.copy(), doc.generation_parameters()

        def done(_result, error):
            if error is not None:
                self.show_message(file_error_text(error, Path(path)), error_details(error))
            else:
                self.status(f"Exported {Path(path).name}", 3000)

        self.tasks.run(lambda progress: export_png(snapshot, path, params, progress), done, self._progress)

    def _progress(self, done: int, total: int, message: str) -> None:
        self.status(f"{message} ({done}/{total})" if total else message, 0)

    # --- recent files ------------------------------------------------------------------------------------------
    def add_recent(self, path: Path) -> None:
        recent = [str(path)] + [p for p in self.settings.recent_files if p != str(path)]
        self.settings.recent_files = recent[:10]
        self.update_recent()

    def update_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_files:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.confirm_discard() and self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))


def file_error_text(error, path: Path) -> str:
    if isinstance(error, DocumentError):
        return str(error)
    if isinstance(error, OSError):
        return f"{path.name} could not be written or read ({error.strerror or error}): check the folder and disk space."
    return f"Something went wrong with {path.name} ({type(error).__name__}: {error}); your document is unchanged."


def error_details(error) -> str:
    import traceback

    return "".join(traceback.format_exception(error)) if error is not None else ""
