"""Generation panel: operation, model, prompt, the common settings and the operation's own; the
steering (LoRAs, IP-Adapter, the document's control and reference layers); Generate, Cancel and
progress.

Everything but the model line is made from the operation specs (``operations.SPECS``): the common
settings once, and one page of editors per operation, so each operation keeps its own strength,
fill and the rest. The settings sit in a scroll area and Generate / Cancel / progress stay below
it, so the panel fits any window height.
"""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QProgressBar,
    QPushButton, QScrollArea, QSizePolicy, QStackedWidget, QVBoxLayout, QWidget,
)

from operations import SPECS
from operations.spec import CommonSettings

from ..settings import SteeringSettings
from .fields import Editor, PathEditor, compact, make_editor
from .live import LiveBox
from .steering import SteeringBox

DEFAULT_MODEL_LABEL = "Embedded default model"


class GenerationPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    model_changed = Signal(str)

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        g = settings.generation
        self._defaults_applied_for = g.defaults_applied_for
        self._hidden: dict = {}  # each operation's settings as last set, for the ones the panel does not show

        self.operation = compact(QComboBox())
        for name, spec in SPECS.items():
            self.operation.addItem(spec.label, name)

        self.common_editors: dict[str, Editor] = {}
        for f in dataclasses.fields(CommonSettings):
            if f.metadata.get("widget") == "model":
                editor = PathEditor(f, {DEFAULT_MODEL_LABEL: ""})
                editor.widget.setToolTip("A diffusers folder, a .safetensors file, a hub id (owner/name) or a listed name")
            else:
                editor = make_editor(f)
            self.common_editors[f.name] = editor
        self.model = self.common_editors["model"].widget
        for path in settings.models:
            self.model.addItem(path)
        add_model = QPushButton("Add…")
        add_model.clicked.connect(self.add_model_file)
        self.model_state = QLabel("Model: not loaded yet")
        self.model_state.setWordWrap(True)
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(g.random_seed)

        # One page of the operation's own settings per operation.
        self.pages = QStackedWidget()
        self.editors: dict[str, dict[str, Editor]] = {}
        self._forms: dict[str, QFormLayout] = {}
        for name, spec in SPECS.items():
            page, editors = self._page(spec)
            self.pages.addWidget(page)
            self.editors[name] = editors
            for editor in editors.values():
                editor.changed.connect(self._update_state)
        self.pages.currentChanged.connect(self._fit_page)
        self.steering = SteeringBox(settings.steering.value())

        self.generate = QPushButton("Generate  (Ctrl+Enter)")
        self.generate.clicked.connect(self.generate_requested)
        self.cancel = QPushButton("Cancel  (Esc)")
        self.cancel.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")

        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(add_model)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.common_editors["seed"].widget, 1)
        seed_row.addWidget(self.random_seed)

        form = self._form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Operation", self.operation)
        form.addRow("Model", model_row)
        form.addRow(self.model_state)
        for name, editor in self.common_editors.items():
            if name == "model":
                continue
            if name == "seed":
                form.addRow(editor.label, seed_row)
            elif editor.field.metadata.get("widget") == "multiline":
                form.addRow(editor.widget)
            else:
                form.addRow(editor.label, editor.widget)

        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        inner_layout.setContentsMargins(0, 0, 4, 0)
        inner_layout.addLayout(form)
        inner_layout.addWidget(self.pages)
        inner_layout.addWidget(self.steering)
        inner_layout.addStretch(1)
        scroll = self.scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumHeight(120)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate, 1)
        buttons.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(scroll, 1)
        self.live = LiveBox()
        layout.addWidget(self.live)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Ignored)

        self.set_common(g.common)
        for name in SPECS:
            self.set_settings(name, g.of(name))
        self.operation.currentIndexChanged.connect(self._on_operation)
        self.set_operation(g.operation)
        self.common_editors["model"].changed.connect(lambda: self.model_changed.emit(self.model_ref()))
        self._on_operation()

    def _page(self, spec) -> tuple[QWidget, dict[str, Editor]]:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        main = QFormLayout()
        main.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        layout.addLayout(main)
        groups: dict[str, QFormLayout] = {}
        editors: dict[str, Editor] = {}
        for f in spec.app_settings():
            editor = make_editor(f)
            editors[f.name] = editor
            group = f.metadata.get("group", "")
            if group and group not in groups:
                box = QGroupBox(group)
                groups[group] = QFormLayout(box)
                groups[group].setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
                layout.addWidget(box)
            target = groups[group] if group else main
            if isinstance(editor.widget, QCheckBox):
                target.addRow(editor.widget)
            else:
                target.addRow(editor.label, editor.widget)
        return page, editors

    def _fit_page(self, index: int) -> None:
        """The stack takes the height of the page on show, not of the tallest page."""
        for i in range(self.pages.count()):
            policy = QSizePolicy.Preferred if i == index else QSizePolicy.Ignored
            self.pages.widget(i).setSizePolicy(QSizePolicy.Preferred, policy)
        self.pages.adjustSize()

    # --- the operation on show ------------------------------------------------------------------
    def operation_key(self) -> str:
        return self.operation.currentData()

    def spec(self):
        return SPECS[self.operation_key()]

    def set_operation(self, name: str) -> None:
        index = self.operation.findData(name)
        if index >= 0:
            self.operation.setCurrentIndex(index)

    def _on_operation(self, *_args) -> None:
        self.pages.setCurrentIndex(list(SPECS).index(self.operation_key()))
        self._fit_page(self.pages.currentIndex())
        self._update_state()

    def _update_state(self) -> None:
        """The Variations field shows only where seeds change the result; the prompt greys out where
        no model takes part (an upscale without refine) or the model ignores it."""
        spec = self.spec()
        settings = self.settings()
        varies = spec.varies(settings)
        self._form.setRowVisible(self.common_editors["count"].widget, varies)
        for name in ("seed", "steps", "sampler"):  # no seed changes the result: nothing is sampled
            self.common_editors[name].widget.setEnabled(varies)
        self.random_seed.setEnabled(varies)
        uses_prompt = spec.uses_model(settings) and not self._ignores_prompt
        for name in ("prompt", "negative_prompt", "guidance"):
            self.common_editors[name].widget.setEnabled(uses_prompt)

    # --- typed values ------------------------------------------------------------------------------
    def common(self) -> CommonSettings:
        return CommonSettings(**{name: e.value() for name, e in self.common_editors.items()})

    def settings(self, name: str | None = None):
        name = name or self.operation_key()
        spec = SPECS[name]
        values = {n: e.value() for n, e in self.editors[name].items()}
        return dataclasses.replace(self._hidden.get(name) or spec.settings(), **values)

    def editor(self, name: str, operation: str | None = None) -> Editor:
        """The editor of a setting: a common one, or the operation's own (the one on show by default)."""
        if name in self.common_editors:
            return self.common_editors[name]
        return self.editors[operation or self.operation_key()][name]

    def set_common(self, common: CommonSettings) -> None:
        for name, editor in self.common_editors.items():
            editor.set_value(getattr(common, name))

    def set_settings(self, name: str, settings) -> None:
        # Settings the app does not show (outpaint's sides) are kept as they are.
        self._hidden[name] = settings
        for field_name, editor in self.editors[name].items():
            editor.set_value(getattr(settings, field_name))
        self._update_state()

    def use_recipe(self, recipe) -> None:
        """Takes the operation and settings a result was made with ("Use these settings")."""
        self.set_operation(recipe.spec.name)
        common, own = recipe.apply(self.common(), self.settings(recipe.spec.name))
        self.set_common(common)
        self.set_settings(recipe.spec.name, own)
        self.random_seed.setChecked(False)

    # --- steering -------------------------------------------------------------------------------------
    def app_steering(self):
        """The LoRAs and IP-Adapter model every job gets (``operations.steering.AppSteering``)."""
        return self.steering.value()

    def set_app_steering(self, steering) -> None:
        self.steering.set_value(steering)

    def set_document(self, doc) -> None:
        """The Control section lists this document's control and reference layers."""
        self.steering.controls.set_document(doc)

    def model_ref(self) -> str:
        return self.common_editors["model"].value()

    def add_known_models(self, found) -> None:
        """Adds the models the engine lists (the embedded one is the default entry)."""
        present = {self.model.itemText(i) for i in range(self.model.count())}
        current = self.model.currentText()
        for name, kind, where in found:
            if kind == "embedded":
                continue
            ref = name if kind == "hub cache" else where
            if ref not in present:
                self.model.addItem(ref)
                present.add(ref)
        self.model.setCurrentText(current)

    def added_models(self) -> list[str]:
        return [self.model.itemText(i) for i in range(self.model.count()) if self.model.itemText(i) != DEFAULT_MODEL_LABEL]

    def add_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model", "", "Models (*.safetensors);;All files (*)")
        if path:
            self.model.addItem(path)
            self.model.setCurrentText(path)

    # --- the model's state ------------------------------------------------------------------------
    _ignores_prompt = False

    def set_model_state(self, name: str, state: str, message: str = "", ignores_prompt: bool = False,
                        recommended: tuple = ()) -> None:
        self._ignores_prompt = state == "ready" and ignores_prompt
        for editor in (self.common_editors[n] for n in ("prompt", "negative_prompt", "guidance")):
            editor.widget.setToolTip("This model was trained without captions: it ignores prompts and guidance."
                                     if self._ignores_prompt else "")
        self._update_state()
        self.model_state.setToolTip(message if state == "ready" else "")  # what the fast path did
        if state == "loading":
            text = f"Model: {message}" if message.startswith("Compiling") else f"Model: loading {name}…"
        elif state == "ready":
            text = f"Model: {name} ready" + (" — it ignores prompts (trained without captions)" if ignores_prompt else "")
            applied = self.apply_recommended(name, recommended)
            if applied:
                text += f". Its recommended settings were applied: {applied}."
        else:
            text = f"Model: {message}"
        self.model_state.setText(text)

    def apply_recommended(self, name: str, recommended: tuple) -> str:
        """When a different model than last time becomes ready, takes the settings it recommends
        ((operation, setting, value), ...) and the specs' defaults for the recommendable settings it
        does not; returns what changed, in words, or "". The user's own changes stand until the
        model changes."""
        if name == self._defaults_applied_for:
            return ""
        self._defaults_applied_for = name
        given = {(op, key): value for op, key, value in recommended}
        changed = []
        for op, editors in self.editors.items():
            for key, editor in editors.items():
                if not editor.field.metadata.get("recommended"):
                    continue
                value = given.get((op, key), editor.field.default)
                if editor.value() != value:
                    editor.set_value(value)
                    said = f"{value:g}" if isinstance(value, float) else f"{value}"
                    changed.append(f"{op} {key} {said}" if len(self.editors) > 1 else f"{key} {said}")
        return ", ".join(changed)

    # --- progress -----------------------------------------------------------------------------------
    def set_progress(self, step: int, total: int, stage: str = "") -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
        self.progress.setFormat(f"{stage + ' — ' if stage else ''}%v / %m")

    def set_idle(self, text: str = "idle") -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(text)

    # --- settings -------------------------------------------------------------------------------------
    def store(self, settings) -> None:
        g = settings.generation
        g.operation = self.operation_key()
        g.common = self.common()
        g.operations = {name: self.settings(name) for name in SPECS}
        g.random_seed = self.random_seed.isChecked()
        g.defaults_applied_for = self._defaults_applied_for
        settings.models = self.added_models()
        settings.steering = SteeringSettings.of(self.app_steering())
