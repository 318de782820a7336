"""The main window: the canvas view in the middle, panels around it, menus and shortcuts.

The window builds the widgets and hands each controller the collaborators it uses:

    DocumentSession     the document, its file, unsaved changes         (session.py)
    FileController      new, open, save, export, import, recent files   (files.py)
    AutosaveController  autosave and crash recovery                     (autosave.py)
    JobController       generate, previews, results, apply              (jobs.py)
    LiveController      live painting: the region regenerates per stroke (live.py)
    PanelsController    the docks, and the window's size on the screen  (layout.py)
"""
from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFormLayout, QLabel, QMainWindow, QSpinBox, QToolBar, QVBoxLayout, QWidget,
)

from . import settings as settings_mod
from .autosave import AutosaveController
from .bridge import EngineBridge
from .canvas_view import CanvasView
from .fileops import BackgroundTasks
from .files import FileController, new_document
from .jobs import JobController
from .layout import PanelsController
from .live import LiveController
from .messages import MessageBar
from .panels.generation import GenerationPanel
from .panels.history import HistoryPanel
from .panels.layers import LayersPanel
from .panels.queue import QueuePanel
from .panels.tool_options import ToolOptionsPanel
from .panels.variations import VariationsStrip
from .session import DocumentSession
from .tools import ToolHost, make_tools

log = logging.getLogger(__name__)

__all__ = ["MainWindow", "new_document"]


class MainWindow(QMainWindow):
    def __init__(self, settings=None, engine_factory=None, autosave_dir=None):
        super().__init__()
        self.settings = settings or settings_mod.Settings()
        self.setWindowTitle("Latent Studio")
        self.setAcceptDrops(True)
        self.session = DocumentSession(self)
        self.tasks = BackgroundTasks(self)

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
        self.layers = LayersPanel(self.show_message)
        self.generation = GenerationPanel(self.settings)
        self.variations = VariationsStrip()
        self.history_panel = HistoryPanel()
        self.queue = QueuePanel()
        self.panels = PanelsController(self, generation=self.generation, layers=self.layers,
                                       tool_options=self.tool_options, history=self.history_panel,
                                       queue=self.queue, variations=self.variations)

        self._engine_error = ""
        if engine_factory is None and self.settings.engine.kind == "server":
            from backend.errors import BackendError

            from .engine_settings import engine_factory_for

            try:
                self.bridge = EngineBridge(engine_factory_for(self.settings.engine), self)
            except BackendError as exc:  # the server is not there: this computer's engine, and say so
                self._engine_error = f"{exc} Jobs run on this computer until then (Settings ▸ Engine)."
                self.bridge = EngineBridge(None, self)
        else:
            self.bridge = EngineBridge(engine_factory, self)
        self.bridge.model_state.connect(self._on_model_state)
        self.jobs = JobController(self.session, self.bridge, self.generation, self.view, self.queue, self.variations,
                                  show_message=self.show_message, layer_applied=self._layer_applied, parent=self)
        self.live = LiveController(self.session, self.bridge, self.generation, self.view, self.generation.live,
                                   show_message=self.show_message, layer_applied=self._layer_applied, parent=self)
        self.live.state_changed.connect(self._live_changed)
        self.generation.generate_requested.connect(self.jobs.generate)
        self.generation.cancel_requested.connect(self.jobs.cancel)
        self.generation.model_changed.connect(self.bridge.preload)
        self.layers.use_settings_requested.connect(self.use_layer_settings)
        self.view.cursor_moved.connect(self._show_cursor)
        self.view.zoom_changed.connect(self._show_zoom)

        self.tools = make_tools(ToolHost(self.tool_options, self.layers, self.show_message))
        self._build_menus()
        self.files = FileController(self.session, self.tasks, self.settings, dialogs=self, show_message=self.show_message,
                                    status=self._status, recent_menu=self.recent_menu,
                                    layer_added=self.layers.set_active, parent=self)
        self.autosave = AutosaveController(self.session, self.tasks, directory=autosave_dir, dialogs=self,
                                           show_message=self.show_message, status=self._status, parent=self)
        self.status_zoom = QLabel()
        self.status_pos = QLabel()
        self.status_engine = QLabel()
        self.statusBar().addPermanentWidget(self.status_engine)
        self.statusBar().addPermanentWidget(self.status_pos)
        self.statusBar().addPermanentWidget(self.status_zoom)
        self._show_engine()
        self._engine_timer = QTimer(self)  # a server's connection: dropped, or back
        self._engine_timer.setInterval(1000)
        self._engine_timer.timeout.connect(self._show_engine)
        self._engine_timer.start()
        self.session.document_changed.connect(self._on_document)
        self.session.changed.connect(self._update_title)
        self.session.set_document(new_document(), None)
        self.select_tool("brush")
        self.panels.place(self.settings.window)
        if self._engine_error:
            self.show_message(self._engine_error)

    # --- menus -------------------------------------------------------------------
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

    def _build_menus(self) -> None:
        m = self.menuBar()
        f = m.addMenu("&File")
        self._action(f, "&New…", lambda: self.files.new_file(), QKeySequence.New)
        self._action(f, "&Open…", lambda: self.files.open_file(), QKeySequence.Open)
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "&Save", lambda: self.files.save(), QKeySequence.Save)
        self._action(f, "Save &as…", lambda: self.files.save_as(), QKeySequence.SaveAs)
        self._action(f, "&Export PNG…", lambda: self.files.export_png(), "Ctrl+E")
        self._action(f, "&Import image as layer…", lambda: self.files.import_layer(), "Ctrl+Shift+O")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.Quit)

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
        self._action(g, "&Apply variation", lambda: self.jobs.apply())
        self._action(g, "&Discard variations", lambda: self.jobs.discard())
        self._action(g, "&Use the active layer's settings", lambda: self.use_layer_settings(self.layers.active_layer()))
        g.addSeparator()
        self.live_action = self._action(g, "&Live painting", self._set_live, "Ctrl+L",
                                        checkable=True)
        self._action(g, "&Keep the live result", lambda: self.live.keep(), "Ctrl+Shift+L")

        st = m.addMenu("&Settings")
        self._action(st, "&Engine…", self.engine_dialog)

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
    @property
    def doc(self):
        return self.session.doc

    @property
    def path(self):
        return self.session.path

    @property
    def modified(self) -> bool:
        return self.session.modified

    def set_document(self, doc, path=None) -> None:
        self.session.set_document(doc, path)

    def _on_document(self, doc) -> None:
        self.view.set_document(doc)
        self.layers.set_document(doc)
        self.generation.set_document(doc)
        self.history_panel.set_document(doc)

    def _update_title(self) -> None:
        self.setWindowTitle(self.session.title)
        h = self.doc.history
        self.undo_action.setEnabled(h.can_undo)
        self.redo_action.setEnabled(h.can_redo)
        self.undo_action.setText(f"&Undo {h.undo_description or ''}".strip())
        self.redo_action.setText(f"&Redo {h.redo_description or ''}".strip())

    def active_layer(self):
        return self.layers.active_layer()

    def show_message(self, message: str, details: str = "") -> None:
        self.messages.show_message(message, details)

    def _status(self, text: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(text, timeout_ms)

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

    # --- generation --------------------------------------------------------------
    def generate(self) -> None:
        self.jobs.generate()

    def cancel_jobs(self) -> None:
        self.jobs.cancel()

    def _set_live(self, checked: bool) -> None:
        self.live.set_on(checked)
        self.live_action.setChecked(self.live.on)  # stays off when live could not start

    def _live_changed(self, on: bool) -> None:
        self.live_action.setChecked(on)

    def _layer_applied(self, layer) -> None:
        self.layers.set_active(layer)
        self.autosave.after_generation()

    def use_layer_settings(self, layer) -> None:
        """The generation panel takes the operation and settings ``layer`` was generated with, its LoRAs
        included; the controls and references it recorded go back to the control and reference layers
        of their names (one undo step), and the status bar says which were not found."""
        from operations.recipe import NoRecipe, read_recipe
        from operations.steering import recall

        if layer is None:
            return
        try:
            recipe = read_recipe(layer.parameters, source=f"The layer “{layer.name}”")
        except NoRecipe as exc:
            self.show_message(str(exc))
            return
        self.generation.use_recipe(recipe)
        recalled = recall(recipe.steering, self.doc, self.generation.app_steering())
        self.generation.set_app_steering(recalled.steering)
        if recalled.roles:
            self.doc.set_layer_roles(recalled.roles, f"Use the settings of “{layer.name}”")
        self._status(recalled.message or f"Settings of “{layer.name}” are in the generation panel",
                     12000 if recalled.message else 4000)

    # --- the engine --------------------------------------------------------------------------------
    def engine_dialog(self) -> None:
        from .engine_settings import EngineDialog

        dialog = EngineDialog(self.settings.engine, self)
        if dialog.exec() == QDialog.Accepted:
            self.use_engine(dialog.chosen())

    def use_engine(self, chosen) -> bool:
        """Later jobs run on the engine ``chosen`` (EngineSettings) describes; False, with one sentence in
        the message bar, when it cannot be used now."""
        from backend.errors import BackendError

        from .engine_settings import engine_factory_for

        current = self.settings.engine
        if chosen == current and not self._engine_error:
            return True
        if self.jobs.jobs:
            self.show_message("Jobs are running: cancel them or let them finish, then switch the engine.")
            return False
        self.live.leave()  # a live job on the old engine would never answer
        try:
            self.bridge.switch(engine_factory_for(chosen))
        except BackendError as exc:
            self.show_message(str(exc))
            return False
        self.settings.engine = chosen
        self._engine_error = ""
        self._show_engine()
        self.list_models()
        self.bridge.preload(self.generation.model_ref())
        return True

    def _show_engine(self) -> None:
        from .engine_settings import describe

        text = describe(self.settings.engine)
        if self._engine_error:
            text += " (unreachable: this computer)"
        connection = getattr(self.bridge.engine, "connection", None)  # a server's engine says how it is reached
        connected, problem = connection() if connection is not None else (True, "")
        if not connected:
            text += f" — reconnecting ({problem})" if problem else " — reconnecting"
        if text != self.status_engine.text():
            self.status_engine.setText(text)
            self.status_engine.setToolTip("" if connected else "The connection to the server dropped: the app tries "
                                          "again by itself, and jobs still open end with a sentence if the server "
                                          "lost them.")

    def _on_model_state(self, event) -> None:
        self.generation.set_model_state(event.name, event.state, event.message, event.ignores_prompt,
                                        tuple(event.recommended))

    def list_models(self) -> None:
        """Fills the model picker with the models the engine finds (after the window shows)."""
        from backend.errors import BackendError

        try:
            self.generation.add_known_models(self.bridge.list_models())
        except (OSError, BackendError) as exc:  # an unreadable model folder, or a server gone, must not stop the app
            log.warning("listing models failed: %s", exc)

    def offer_recovery(self) -> None:
        self.autosave.offer_recovery()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not getattr(self, "_arranged", False):
            self._arranged = True
            self.panels.arrange()

    # --- drag and drop ---------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        self.files.drop([url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()])
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
        if not self.files.confirm_discard():
            event.ignore()
            return
        self.tasks.wait_all()  # let a save or autosave in progress finish: never lose work
        self.generation.store(self.settings)
        self.tool_options.store(self.settings)
        self.panels.store(self.settings.window)
        try:
            settings_mod.save(self.settings)
        except OSError as exc:
            log.warning("settings not saved: %s", exc)
        self.bridge.shutdown()
        self.autosave.discard()
        event.accept()
