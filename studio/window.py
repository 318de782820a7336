"""The main window: canvas view in the middle, panels around it, menus and shortcuts."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QDockWidget, QFileDialog, QFormLayout, QLabel, QMainWindow, QMessageBox, QSpinBox,
    QToolBar, QVBoxLayout, QWidget,
)

from canvas.document import Document
from canvas.errors import DocumentError

from . import settings as settings_mod
from .bridge import EngineBridge
from .canvas_view import CanvasView
from .fileops import BackgroundTask
from .jobs import JobController
from .messages import MessageBar
from .panels.generation import GenerationPanel
from .panels.history import HistoryPanel
from .panels.layers import LayersPanel
from .panels.queue import QueuePanel
from .panels.tool_options import ToolOptionsPanel
from .panels.variations import VariationsStrip
from .tools import make_tools

log = logging.getLogger(__name__)
OPEN_FILTER = "Images (*.ora *.png *.jpg *.jpeg *.webp);;OpenRaster (*.ora);;All files (*)"
AUTOSAVE_CHECK_MS = 30_000


def new_document(width: int = 1024, height: int = 768) -> Document:
    import numpy as np

    doc = Document(width, height)
    white = np.full((height, width, 4), 255, np.uint8)
    doc.add_image_layer(white, 0, 0, name="Background", description="New document")
    doc.add_layer("Layer 1")
    doc.history.clear()
    return doc


class MainWindow(QMainWindow):
    def __init__(self, settings=None, engine_factory=None, autosave_dir=None):
        super().__init__()
        self.settings = settings or settings_mod.Settings()
        self.setWindowTitle("Latent Studio")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.doc: Document | None = None
        self.path: Path | None = None
        self._saved_revision = 0
        self._autosave_dir = autosave_dir
        self.autosaver = None
        self._tasks: set = set()

        self.view = CanvasView()
        self.messages = MessageBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.messages)
        layout.addWidget(self.view, 1)
        self.setCentralWidget(central)

        self.tool_options = ToolOptionsPanel(self.settings)
        self.layers = LayersPanel(self)
        self.generation = GenerationPanel(self.settings)
        self.variations = VariationsStrip()
        self.history_panel = HistoryPanel()
        self.queue = QueuePanel()
        generation = self._dock("Generation", self.generation, Qt.RightDockWidgetArea)
        self._dock("Layers", self.layers, Qt.RightDockWidgetArea)
        tool_options = self._dock("Tool options", self.tool_options, Qt.LeftDockWidgetArea)
        history = self._dock("History", self.history_panel, Qt.LeftDockWidgetArea)
        self.tabifyDockWidget(history, self._dock("Queue", self.queue, Qt.LeftDockWidgetArea))
        history.raise_()
        self._dock("Variations", self.variations, Qt.BottomDockWidgetArea)
        self.variations.setMaximumHeight(170)
        self.resizeDocks([generation, tool_options], [340, 210], Qt.Horizontal)

        self.bridge = EngineBridge(engine_factory, self)
        self.jobs = JobController(self, self.bridge)
        self.bridge.model_state.connect(self.generation.set_model_state)
        self.generation.generate_requested.connect(self.generate)
        self.generation.cancel_requested.connect(self.cancel_jobs)
        self.generation.model_changed.connect(self.bridge.preload)
        self.variations.picked.connect(self.jobs.pick)
        self.variations.apply_requested.connect(self.jobs.apply)
        self.variations.discard_requested.connect(self.jobs.discard)
        self.variations.more_requested.connect(self.jobs.more_like_this)
        self.queue.cancel_requested.connect(self.jobs.cancel)
        self.view.cursor_moved.connect(self._show_cursor)
        self.view.zoom_changed.connect(self._show_zoom)

        self.tools = make_tools(self)
        self._build_actions()
        self.status_zoom = QLabel()
        self.status_pos = QLabel()
        self.statusBar().addPermanentWidget(self.status_pos)
        self.statusBar().addPermanentWidget(self.status_zoom)
        self.set_document(new_document(), None)
        self.select_tool("brush")

        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self._autosave_tick)
        self._autosave_timer.start(AUTOSAVE_CHECK_MS)

    def _dock(self, title, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # --- actions -----------------------------------------------------------
    def _action(self, menu, text, slot, shortcut=None, checkable=False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcuts([QKeySequence(s) for s in shortcut] if isinstance(shortcut, (list, tuple))
                                else [QKeySequence(shortcut)])
            action.setShortcutContext(Qt.WindowShortcut)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        m = self.menuBar()
        f = m.addMenu("&File")
        self._action(f, "&New…", self.new_file, QKeySequence.New)
        self._action(f, "&Open…", self.open_file, QKeySequence.Open)
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "&Save", self.save, QKeySequence.Save)
        self._action(f, "Save &as…", self.save_as, QKeySequence.SaveAs)
        self._action(f, "&Export PNG…", self.export_png, "Ctrl+E")
        self._action(f, "&Import image as layer…", self.import_layer, "Ctrl+Shift+O")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.Quit)
        self._update_recent()

        e = m.addMenu("&Edit")
        self.undo_action = self._action(e, "&Undo", self.undo, "Ctrl+Z")
        self.redo_action = self._action(e, "&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        e.addSeparator()
        self._action(e, "Smaller brush", lambda: self.tool_options.resize_brush(1 / 1.25), "[")
        self._action(e, "Bigger brush", lambda: self.tool_options.resize_brush(1.25), "]")
        self._action(e, "E&xtend canvas…", self.extend_canvas_dialog, "Ctrl+Alt+C")

        s = m.addMenu("&Select")
        self._action(s, "Select &all", self.select_all, "Ctrl+A")
        self._action(s, "&Deselect", lambda: self.doc.clear_selection(), "Ctrl+Shift+A")
        self._action(s, "&Invert", lambda: self.doc.set_selection(self.doc.selection.inverted(), "Invert selection"),
                     "Ctrl+I")
        self._action(s, "&Grow by 8 px", lambda: self.doc.set_selection(self.doc.selection.grow(8), "Grow selection"))
        self._action(s, "&Shrink by 8 px",
                     lambda: self.doc.set_selection(self.doc.selection.shrink(8), "Shrink selection"))
        self._action(s, "&Feather by 8 px",
                     lambda: self.doc.set_selection(self.doc.selection.feather(8), "Feather selection"))
        self._action(s, "From layer &alpha", self.select_layer_alpha)

        v = m.addMenu("&View")
        self._action(v, "Zoom &in", lambda: self.view.zoom_in(), [QKeySequence.ZoomIn, "Ctrl+="])
        self._action(v, "Zoom &out", lambda: self.view.zoom_out(), QKeySequence.ZoomOut)
        self._action(v, "&Fit", lambda: self.view.fit(), "Ctrl+0")
        self._action(v, "&100 %", lambda: self.view.actual_size(), "Ctrl+1")

        g = m.addMenu("&Generate")
        self._action(g, "&Generate", self.generate, ["Ctrl+Return", "Ctrl+Enter"])
        self._action(g, "&Cancel", self.cancel_jobs, "Esc")
        self._action(g, "&Apply variation", self.jobs.apply)
        self._action(g, "&Discard variations", self.jobs.discard)

        t = m.addMenu("&Tools")
        bar = QToolBar("Tools")
        bar.setObjectName("Tools")
        self.addToolBar(Qt.LeftToolBarArea, bar)
        group = QActionGroup(self)
        self.tool_actions = {}
        for name, tool in self.tools.items():
            a = self._action(t, tool.label, lambda _=False, n=name: self.select_tool(n), tool.shortcut, checkable=True)
            group.addAction(a)
            bar.addAction(a)
            self.tool_actions[name] = a

    # --- the document ------------------------------------------------------
    def set_document(self, doc: Document, path: Path | None) -> None:
        if self.autosaver is not None:
            self.autosaver.discard()
        self.doc = doc
        self.path = Path(path) if path else None
        self._saved_revision = doc.history.revision
        self.view.set_document(doc)
        self.layers.set_document(doc)
        self.history_panel.set_document(doc)
        doc.history.listeners.append(self._update_title)
        self.jobs.discard()
        from canvas.autosave import Autosaver

        self.autosaver = Autosaver(doc, self._autosave_dir, document_path=str(self.path) if self.path else None)
        self._update_title()

    @property
    def modified(self) -> bool:
        return self.doc.history.revision != self._saved_revision

    def _update_title(self) -> None:
        name = self.path.name if self.path else "Untitled"
        self.setWindowTitle(f"{name}{' *' if self.modified else ''} — Latent Studio")
        if hasattr(self, "undo_action"):
            h = self.doc.history
            self.undo_action.setEnabled(h.can_undo)
            self.redo_action.setEnabled(h.can_redo)
            self.undo_action.setText(f"&Undo {h.undo_description or ''}".strip())
            self.redo_action.setText(f"&Redo {h.redo_description or ''}".strip())

    # --- host API used by tools and panels ----------------------------------
    def active_layer(self):
        return self.layers.active_layer()

    def brush_settings(self) -> dict:
        return self.tool_options.brush()

    def color(self):
        return self.tool_options.color()

    def set_color(self, rgb) -> None:
        self.tool_options.set_color(rgb)

    def show_message(self, message: str, details: str = "") -> None:
        self.messages.show_message(message, details)

    def select_tool(self, name: str) -> None:
        self.view.tool = self.tools[name]
        self.tool_actions[name].setChecked(True)
        self.view.update()

    # --- edit ------------------------------------------------------------------
    def undo(self) -> None:
        self.doc.undo()

    def redo(self) -> None:
        self.doc.redo()

    def select_all(self) -> None:
        from canvas.selection import Selection

        self.doc.select(Selection.rectangle(self.doc.bounds))

    def select_layer_alpha(self) -> None:
        from canvas.selection import Selection

        layer = self.active_layer()
        if layer is not None:
            self.doc.select(Selection.from_alpha(layer.pixels))

    def extend_canvas_dialog(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Extend canvas")
        form = QFormLayout(dialog)
        boxes = {}
        for side in ("left", "right", "top", "bottom"):
            box = QSpinBox()
            box.setRange(0, 16384)
            box.setSingleStep(64)
            form.addRow(side.capitalize(), box)
            boxes[side] = box
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(dialog.accept)
        buttons.rejected.connect(dialog.reject)
        form.addRow(buttons)
        if dialog.exec() == QDialog.Accepted:
            amounts = {k: b.value() for k, b in boxes.items()}
            if any(amounts.values()):
                self.doc.grow(**amounts)
                self.view.fit()

    def list_models(self) -> None:
        """Fills the model picker with what `python main.py models` lists (after the window shows)."""
        from backend.models import list_models

        try:
            self.generation.add_known_models(list_models())
        except OSError as exc:  # an unreadable model folder must not stop the app
            log.warning("listing models failed: %s", exc)

    # --- generation --------------------------------------------------------------
    def generate(self) -> None:
        self.jobs.generate()

    def cancel_jobs(self) -> None:
        self.jobs.cancel()

    def after_generation_applied(self) -> None:
        self._run_autosave(force=True)

    # --- files -------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """True when it is fine to drop the current document (saved, or the painter says so)."""
        if not self.modified:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", "The document has unsaved changes. Save them first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save,
        )
        if answer == QMessageBox.Save:
            return self.save(wait=True)
        return answer == QMessageBox.Discard

    def new_file(self) -> None:
        if not self.confirm_discard():
            return
        dialog = QDialog(self)
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
            self.set_document(new_document(w.value(), h.value()), None)

    def open_file(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open", "", OPEN_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path, after=None) -> None:
        """Loads in the background; the window stays usable."""
        from canvas.image_io import load_image

        path = Path(path)
        self.statusBar().showMessage(f"Opening {path.name}…")

        def done(doc, error):
            if error is not None:
                self.show_message(_file_error_text(error, path), _details(error))
            else:
                self.set_document(doc, path if path.suffix.lower() == ".ora" else None)
                self._add_recent(path)
                self.statusBar().showMessage(f"Opened {path.name}", 3000)
            if after is not None:
                after(error)

        self._background(lambda progress: load_image(path, progress), done)

    def save(self, wait: bool = False) -> bool:
        if self.path is None:
            return self.save_as(wait)
        return self._save_to(self.path, wait)

    def save_as(self, wait: bool = False) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save as", str(self.path or "untitled.ora"), "OpenRaster (*.ora)")
        if not path:
            return False
        if not path.lower().endswith(".ora"):
            path += ".ora"
        return self._save_to(Path(path), wait)

    def _save_to(self, path: Path, wait: bool = False, after=None) -> bool:
        """Saves a snapshot (``doc.copy()``, cheap) on a background thread, atomically."""
        from canvas.ora import save_ora

        snapshot, revision = self.doc.copy(), self.doc.history.revision
        self.statusBar().showMessage(f"Saving {path.name}…")
        outcome = {}

        def done(_result, error):
            outcome["error"] = error
            if error is not None:
                self.show_message(_file_error_text(error, path), _details(error))
            else:
                self.path = path
                self._saved_revision = revision
                if self.autosaver is not None:
                    self.autosaver.document_path = str(path)
                self._add_recent(path)
                self._update_title()
                self.statusBar().showMessage(f"Saved {path.name}", 3000)
            if after is not None:
                after(error)

        task = self._background(lambda progress: save_ora(snapshot, path, progress), done)
        if wait:
            task.thread.join()
            from PySide6.QtCore import QCoreApplication

            QCoreApplication.processEvents()
            return outcome.get("error") is None
        return True

    def export_png(self) -> None:
        from canvas.image_io import export_png

        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", "", "PNG (*.png)")
        if not path:
            return
        snapshot = self.doc.copy()
        params = self.doc.generation_parameters()
        self._background(lambda progress: export_png(snapshot, path, params, progress),
                         lambda _r, error: self.show_message(_file_error_text(error, Path(path)), _details(error))
                         if error is not None else self.statusBar().showMessage(f"Exported {Path(path).name}", 3000))

    def import_layer(self, path=None) -> None:
        from canvas.image_io import import_layer

        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Import image as layer", "", OPEN_FILTER)
        if not path:
            return
        try:
            layer = import_layer(self.doc, path)
        except DocumentError as exc:
            self.show_message(str(exc))
            return
        self.layers.set_active(layer)

    def _background(self, fn, done) -> BackgroundTask:
        def finished(result, error):
            self._tasks.discard(task)
            done(result, error)

        task = BackgroundTask(fn, finished, self)
        self._tasks.add(task)
        task.progressed.connect(self._show_file_progress)
        return task.start()

    def _show_file_progress(self, done: int, total: int, message: str) -> None:
        self.statusBar().showMessage(f"{message} ({done}/{total})" if total else message)

    def _add_recent(self, path: Path) -> None:
        recent = [str(path)] + [p for p in self.settings.recent_files if p != str(path)]
        self.settings.recent_files = recent[:10]
        self._update_recent()

    def _update_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_files:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.confirm_discard() and self.open_path(p))
        self.recent_menu.setEnabled(bool(self.settings.recent_files))

    # --- autosave and recovery --------------------------------------------------------------
    def _autosave_tick(self) -> None:
        self._run_autosave(force=False)

    def _run_autosave(self, force: bool) -> None:
        saver = self.autosaver
        if saver is None or not (saver.dirty if force else saver.due):
            return
        snapshot, revision = saver.snapshot()
        self._background(lambda progress: saver.write(snapshot, revision, progress),
                         lambda _r, error: error is not None and log.warning("autosave failed: %s", error))

    def offer_recovery(self) -> None:
        from canvas.autosave import discard_recovery, find_recoverable, recover

        for info in find_recoverable(self._autosave_dir):
            answer = QMessageBox.question(
                self, "Recover work?",
                f"Latent Studio closed unexpectedly while “{info.title}” was open. Recover the autosave?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes,
            )
            if answer == QMessageBox.Yes:
                try:
                    doc = recover(info)
                except DocumentError as exc:
                    self.show_message(str(exc))
                    continue
                self.set_document(doc, None)
                self._saved_revision = -1  # recovered work is unsaved
                self._update_title()
            discard_recovery(info)
            break

    # --- drag and drop ---------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = url.toLocalFile()
                if path.lower().endswith(".ora"):
                    if self.confirm_discard():
                        self.open_path(path)
                else:
                    self.import_layer(path)
        event.acceptProposedAction()

    # --- status ----------------------------------------------------------------------------------
    def _show_cursor(self, x: float, y: float) -> None:
        self.status_pos.setText(f"{int(x)}, {int(y)}")

    def _show_zoom(self, zoom: float) -> None:
        self.status_zoom.setText(f"{zoom * 100:.0f} %")

    @Slot()
    def _show_pending_error(self) -> None:
        pending = getattr(self, "_pending_error", None)
        if pending:
            self._pending_error = None
            self.show_message(*pending)

    # --- closing ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if not self.confirm_discard():
            event.ignore()
            return
        for task in list(self._tasks):  # let a save or autosave in progress finish: never lose work
            task.thread.join(timeout=60)
        self.generation.store(self.settings)
        self.tool_options.store(self.settings)
        try:
            settings_mod.save(self.settings)
        except OSError as exc:
            log.warning("settings not saved: %s", exc)
        self.bridge.shutdown()
        if self.autosaver is not None:
            self.autosaver.discard()
        event.accept()


def _file_error_text(error, path: Path) -> str:
    if isinstance(error, DocumentError):
        return str(error)
    if isinstance(error, OSError):
        return f"{path.name} could not be written or read ({error.strerror or error}): check the folder and disk space."
    return f"Something went wrong with {path.name} ({type(error).__name__}: {error}); your document is unchanged."


def _details(error) -> str:
    import traceback

    return "".join(traceback.format_exception(error)) if error is not None else ""
