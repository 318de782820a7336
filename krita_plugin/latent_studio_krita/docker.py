"""The docker (Settings ▸ Dockers ▸ Latent Studio): which engine is in use, the operation and its settings
(built from the operation specs' typed settings, like the studio's panel and the CLI), Generate and Cancel,
progress, the variations of the last result (click one to preview it, Apply makes it a layer), and the
queue. Every refusal is one sentence in the docker and leaves the document as it was.

Qt through :mod:`.qt` (PyQt5 in Krita 5, PyQt6 in Krita 6); the logic is :class:`.controller.Controller`.
"""
from __future__ import annotations

import dataclasses

from krita import DockWidget, DockWidgetFactory, DockWidgetFactoryBase, Krita

from . import environment
from .qt import Poster, Qt, QtCore, QtGui, QtWidgets, enum, rgba_qimage

DOCKER_ID = "latent_studio"
SETTINGS_GROUP = "latent_studio"
THUMB = 72


class Editors:
    """Editors for a settings dataclass, made from its fields' metadata (label, range, choices)."""

    def __init__(self, cls, form: QtWidgets.QFormLayout, values=None, skip=()):
        self.cls = cls
        self.widgets = {}
        values = values or cls()
        for f in dataclasses.fields(cls):
            m = f.metadata
            if not m.get("app", True) or f.name in skip:
                continue
            value = getattr(values, f.name)
            widget = _editor(f, m, value)
            if m.get("help"):
                widget.setToolTip(m["help"])
            form.addRow(m.get("label", f.name), widget)
            self.widgets[f.name] = widget

    def values(self, base=None):
        base = base or self.cls()
        return dataclasses.replace(base, **{name: _read(w) for name, w in self.widgets.items()})

    def set(self, values) -> None:
        for name, widget in self.widgets.items():
            _write(widget, getattr(values, name))


def _editor(f, m, value):
    if isinstance(value, bool):
        widget = QtWidgets.QCheckBox()
    elif isinstance(value, int):
        widget = QtWidgets.QSpinBox()
        widget.setRange(int(m.get("minimum") if m.get("minimum") is not None else -2**31),
                        int(min(m.get("maximum") if m.get("maximum") is not None else 2**31 - 1, 2**31 - 1)))
        if m.get("special"):
            widget.setSpecialValueText(m["special"])
    elif isinstance(value, float):
        widget = QtWidgets.QDoubleSpinBox()
        widget.setDecimals(int(m.get("decimals", 2)))
        widget.setRange(float(m.get("minimum") or 0.0), float(m.get("maximum") or 1e9))
        widget.setSingleStep(float(m.get("step") or 0.1))
    elif m.get("choices"):
        widget = QtWidgets.QComboBox()
        widget.addItems([str(c) for c in m["choices"]])
    elif m.get("widget") == "multiline":
        widget = QtWidgets.QPlainTextEdit()
        widget.setFixedHeight(52)
    else:
        widget = QtWidgets.QLineEdit()
        if m.get("default_text"):
            widget.setPlaceholderText(m["default_text"])
    widget.setMinimumWidth(60)
    _write(widget, value)
    return widget


def _read(widget):
    if isinstance(widget, QtWidgets.QCheckBox):
        return widget.isChecked()
    if isinstance(widget, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
        return widget.value()
    if isinstance(widget, QtWidgets.QComboBox):
        return widget.currentText()
    if isinstance(widget, QtWidgets.QPlainTextEdit):
        return widget.toPlainText()
    return widget.text()


def _write(widget, value) -> None:
    if isinstance(widget, QtWidgets.QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
        widget.setValue(value)
    elif isinstance(widget, QtWidgets.QComboBox):
        widget.setCurrentIndex(max(0, widget.findText(str(value))))
    elif isinstance(widget, QtWidgets.QPlainTextEdit):
        widget.setPlainText(str(value))
    else:
        widget.setText(str(value))


class LatentStudioDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Latent Studio")
        self.controller = None
        self._stop_engine = lambda: None
        self._poster = Poster(self)
        self._record = None
        self._placement = None
        self._specs = {}
        root = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(root)
        outer.setContentsMargins(4, 4, 4, 4)
        self.engine_label = QtWidgets.QLabel()
        self.engine_label.setWordWrap(True)
        outer.addWidget(self.engine_label)
        self.server = QtWidgets.QLineEdit(Krita.instance().readSetting(SETTINGS_GROUP, "server_url", ""))
        self.server.setPlaceholderText("server URL (empty: this computer)")
        self.server.setToolTip("A Latent Studio server (main.py serve), like http://gpu-box:7860; empty: the engine "
                               "runs on this computer. The token comes from $LATENT_STUDIO_TOKEN.")
        self.server.editingFinished.connect(self._server_changed)
        outer.addWidget(self.server)

        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        self.panel = QtWidgets.QWidget()
        self.panel_layout = QtWidgets.QVBoxLayout(self.panel)
        self.panel_layout.setContentsMargins(0, 0, 0, 0)
        scroll.setWidget(self.panel)
        scroll.setMinimumHeight(240)  # the settings stay usable when the docker shares its column
        scroll.setHorizontalScrollBarPolicy(enum(Qt, "ScrollBarPolicy.ScrollBarAlwaysOff"))  # fields narrow instead
        outer.addWidget(scroll, 1)

        buttons = QtWidgets.QHBoxLayout()
        self.generate_button = QtWidgets.QPushButton("Generate")
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        outer.addLayout(buttons)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        outer.addWidget(self.progress)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        outer.addWidget(QtWidgets.QLabel("Variations (click to preview):"))
        self.strip = QtWidgets.QListWidget()
        self.strip.setViewMode(enum(QtWidgets.QListView, "ViewMode.IconMode"))
        self.strip.setFlow(enum(QtWidgets.QListView, "Flow.LeftToRight"))
        self.strip.setWrapping(False)
        self.strip.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.strip.setFixedHeight(THUMB + 30)
        self.strip.currentRowChanged.connect(self._variation_chosen)
        outer.addWidget(self.strip)
        results = QtWidgets.QHBoxLayout()
        self.apply_button = QtWidgets.QPushButton("Apply")
        self.apply_button.setToolTip("The chosen variation becomes a new layer (one undo step)")
        self.apply_button.clicked.connect(self.apply)
        self.discard_button = QtWidgets.QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        results.addWidget(self.apply_button, 1)
        results.addWidget(self.discard_button)
        outer.addLayout(results)
        self.queue_label = QtWidgets.QLabel("Queue:")
        outer.addWidget(self.queue_label)
        self.queue = QtWidgets.QListWidget()
        self.queue.setFixedHeight(48)
        outer.addWidget(self.queue)
        self.setWidget(root)
        self._prepare()
        self._refresh()

    # --- set-up ------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Finds the environment and builds the settings from the specs; a problem is one sentence."""
        try:
            self._record = environment.read_record()
            self._placement = environment.choose(self._record, server_url=self.server.text())
            environment.activate(self._record or {"root": ""}, self._placement)
            from operations import SPECS, CommonSettings
        except (environment.EnvironmentProblem, ImportError) as exc:
            self.engine_label.setText(str(exc) if isinstance(exc, environment.EnvironmentProblem) else
                                      f"Latent Studio's packages cannot be imported ({exc}): run install-krita-plugin "
                                      "again.")
            self.generate_button.setEnabled(False)
            return
        self.engine_label.setText(self._placement.label)
        self._specs = SPECS
        box = QtWidgets.QFormLayout()
        self.operation = QtWidgets.QComboBox()
        for spec in SPECS.values():
            self.operation.addItem(_KRITA_LABELS.get(spec.name, spec.label), spec.name)
        self.operation.currentIndexChanged.connect(self._operation_changed)
        box.addRow("Operation", self.operation)
        self.panel_layout.addLayout(box)
        common_form = QtWidgets.QFormLayout()
        defaults = CommonSettings(**{f.name: f.metadata["app_default"] for f in dataclasses.fields(CommonSettings)
                                     if "app_default" in f.metadata})
        self.common = Editors(CommonSettings, common_form, defaults)
        self.panel_layout.addLayout(common_form)
        self.own_box = QtWidgets.QGroupBox()
        self.panel_layout.addWidget(self.own_box)
        self.panel_layout.addStretch(1)
        self.own = None
        if self._placement.kind == environment.IN_PROCESS:
            self._engine()  # cheap: torch loads on the first job; the model's recommendations are read now
        self._operation_changed()

    def _operation_changed(self, *_):
        spec = self._specs[self.operation.currentData()]
        old = self.own_box.layout()
        if old is not None:
            QtWidgets.QWidget().setLayout(old)  # hands the old layout and its editors to a throwaway widget
        form = QtWidgets.QFormLayout(self.own_box)
        self.own_box.setTitle(spec.label)
        values = spec.default_settings()
        if self.controller is not None:
            values = self.controller.recommended(spec.name, self.common.values().model, values)
        self.own = Editors(spec.settings, form, values)

    def _server_changed(self) -> None:
        Krita.instance().writeSetting(SETTINGS_GROUP, "server_url", self.server.text().strip())
        if self.controller is not None and not self.controller.busy:
            self._close_engine()
        try:
            self._placement = environment.choose(self._record, server_url=self.server.text())
            self.engine_label.setText(self._placement.label)
        except environment.EnvironmentProblem as exc:
            self.engine_label.setText(str(exc))

    def _engine(self):
        if self.controller is None:
            import os

            from .controller import Controller
            from .engines import engine_for

            factory, self._stop_engine = engine_for(self._placement, self._record,
                                                    token=os.environ.get("LATENT_STUDIO_TOKEN", ""))
            self.controller = Controller(factory, self._poster.post, self._placement.label)
            self.controller.listeners.append(self._job_changed)
        return self.controller

    def _close_engine(self) -> None:
        if self.controller is not None:
            self.controller.shutdown()
            self.controller = None
        self._stop_engine()
        self._stop_engine = lambda: None

    # --- actions -----------------------------------------------------------------------------------
    def generate(self) -> None:
        from backend.errors import BackendError
        from operations import NothingToDo

        name = self.operation.currentData()
        try:
            controller = self._engine()
            common = self.common.values()
            own = self.own.values()
            job = controller.generate(Krita.instance().activeDocument(), name, common, own)
        except (NothingToDo, BackendError, environment.EnvironmentProblem) as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"Queued {self._specs[name].label} (job {job}).")
        self._refresh()

    def cancel(self) -> None:
        if self.controller is not None:
            self.controller.cancel()

    def apply(self) -> None:
        if self.controller is not None and self.controller.apply() is not None:
            self.status.setText("Applied: a new layer (Edit ▸ Undo removes it).")
            self._refresh()

    def discard(self) -> None:
        if self.controller is not None:
            self.controller.discard()
            self._refresh()

    def _variation_chosen(self, row: int) -> None:
        if self.controller is not None and row >= 0:
            self.controller.select(row)

    # --- updates (GUI thread) ----------------------------------------------------------------------
    def _job_changed(self, job) -> None:
        if job.state == "running":
            self.progress.setRange(0, max(job.total, 1))
            self.progress.setValue(job.step)
            self.progress.setFormat(f"{job.stage or job.label} · step %v/%m")
        elif job.state == "done":
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat("Done")
            self.status.setText(job.message or f"{job.label}: {len(job.results)} variation(s); choose one and Apply.")
        elif job.state in ("failed", "cancelled"):
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.status.setText(job.message)
        self._refresh()

    def _refresh(self) -> None:
        c = self.controller
        busy = c is not None and c.busy
        self.cancel_button.setEnabled(busy)
        has_results = c is not None and c.variations is not None and bool(c.variations.results)
        self.apply_button.setEnabled(has_results)
        self.discard_button.setEnabled(has_results)
        shown = getattr(self, "_strip_job", None)
        current = c.variations if c is not None else None
        if current is not shown:
            self._strip_job = current
            self.strip.blockSignals(True)
            self.strip.clear()
            for image in (current.results if current is not None else ()):
                icon = QtGui.QIcon(QtGui.QPixmap.fromImage(rgba_qimage(image.image).scaled(
                    THUMB, THUMB, enum(Qt, "AspectRatioMode.KeepAspectRatio"),
                    enum(Qt, "TransformationMode.SmoothTransformation"))))
                self.strip.addItem(QtWidgets.QListWidgetItem(icon, f"seed {image.seed}"))
            if current is not None and current.results:
                self.strip.setCurrentRow(c.selected)
            self.strip.blockSignals(False)
        self.queue.clear()
        for job in (c.jobs.values() if c is not None else ()):
            if job.state in ("queued", "running"):
                self.queue.addItem(f"{job.label}: {job.state}" + (f" {job.step}/{job.total}" if job.total else ""))
        self.queue.setVisible(self.queue.count() > 0)
        self.queue_label.setText("Queue:" if self.queue.count() else "Queue: empty")

    def canvasChanged(self, canvas) -> None:
        pass

    def closeEvent(self, event) -> None:
        self._close_engine()
        super().closeEvent(event)


_KRITA_LABELS = {"outpaint": "Outpaint (canvas extended by Resize Canvas)", "img2img": "Variations (active layer)"}


def register() -> None:
    Krita.instance().addDockWidgetFactory(
        DockWidgetFactory(DOCKER_ID, enum(DockWidgetFactoryBase, "DockPosition.DockRight"), LatentStudioDocker))
