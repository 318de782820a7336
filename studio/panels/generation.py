"""Generation panel: operation, model, prompt, settings; Generate / Cancel; progress."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
    QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from backend.requests import FILL_MODES, OUTPAINT_FILLS
from backend.samplers import SAMPLERS

OPERATIONS = (("inpaint", "Inpaint (selection)"), ("outpaint", "Outpaint (new canvas area)"),
              ("img2img", "Variations (img2img)"), ("upscale", "Upscale"))
DEFAULT_MODEL_LABEL = "Embedded default model"
BUNDLED_UPSCALER_LABEL = "Real-ESRGAN x4plus (bundled)"


class GenerationPanel(QWidget):
    generate_requested = Signal()
    cancel_requested = Signal()
    model_changed = Signal(str)

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        g = settings.generation
        self.operation = QComboBox()
        for key, label in OPERATIONS:
            self.operation.addItem(label, key)
        self.operation.setCurrentIndex([k for k, _ in OPERATIONS].index(g.operation) if g.operation in dict(OPERATIONS) else 0)
        self.operation.currentIndexChanged.connect(self._update_visibility)

        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setToolTip("A diffusers folder, a .safetensors file, a hub id (owner/name) or a listed name")
        self.model.addItem(DEFAULT_MODEL_LABEL, "")
        for path in settings.models:
            self.model.addItem(path, path)
        if g.model:
            self.model.setCurrentText(g.model)
        self.model.currentTextChanged.connect(lambda _t: self.model_changed.emit(self.model_ref()))
        add_model = QPushButton("Add…")
        add_model.clicked.connect(self.add_model_file)
        self.model_state = QLabel("Model: not loaded yet")
        self.model_state.setWordWrap(True)

        self.prompt = QPlainTextEdit(g.prompt)
        self.prompt.setPlaceholderText("Prompt")
        self.prompt.setMaximumHeight(70)
        self.negative = QPlainTextEdit(g.negative_prompt)
        self.negative.setPlaceholderText("Negative prompt")
        self.negative.setMaximumHeight(50)

        # Each operation keeps its own strength (inpaint 1 repaints, an img2img variation wants less).
        self._strength_for = {"inpaint": g.strength, "outpaint": g.outpaint_strength, "img2img": g.img2img_strength}
        self._strength_op = g.operation if g.operation in self._strength_for else "inpaint"
        self.strength = self._double(0.01, 1.0, self._strength_for[self._strength_op], 0.05)
        self.strength.setToolTip("How much to change: 1 repaints freely, lower keeps more of what is there. "
                                 "Inpaint, outpaint and img2img each remember their own.")
        self.steps = self._int(1, 500, g.steps)
        self.guidance = self._double(0.0, 50.0, g.guidance, 0.5)
        self.seed = self._int(0, 2**31 - 1, g.seed)
        self.random_seed = QCheckBox("Random")
        self.random_seed.setChecked(g.random_seed)
        self.count = self._int(1, 64, g.count)
        self.sampler = QComboBox()
        for name, (label, _, _) in SAMPLERS.items():
            self.sampler.addItem(label, name)
        self.sampler.setCurrentIndex(list(SAMPLERS).index(g.sampler) if g.sampler in SAMPLERS else 0)

        self.grow = self._int(-256, 256, g.grow)
        self.feather = self._int(0, 256, g.feather)
        self.padding = self._int(0, 4096, g.padding)
        self.fill = QComboBox()
        self._fill_choice = {"inpaint": g.fill if g.fill in FILL_MODES else "original",
                             "outpaint": g.fill if g.fill in OUTPAINT_FILLS else "blur"}
        self.overlap = self._int(0, 512, g.overlap)
        self.restore_detail = QCheckBox("Detail from the surroundings")
        self.restore_detail.setChecked(bool(g.restore_detail))
        self.restore_detail.setToolTip(
            "For models that ask for it (the embedded one): give the repainted area the fine grain of "
            "similar-coloured surroundings, which the model's small autoencoder cannot draw. Other models ignore it.")
        self.upscaler = QComboBox()
        self.upscaler.setEditable(True)
        self.upscaler.setToolTip("The bundled Real-ESRGAN, lanczos, or an upscaler file (.safetensors/.pth)")
        self.upscaler.addItems([BUNDLED_UPSCALER_LABEL, "lanczos"])
        if g.upscaler:
            self.upscaler.setCurrentText(g.upscaler)
        self.upscale_scale = QComboBox()
        self.upscale_scale.addItems(["2", "4"])
        self.upscale_scale.setCurrentText(str(g.upscale_scale))
        self.upscale_tile = self._int(64, 4096, g.upscale_tile)
        self.refine_strength = self._double(0.0, 1.0, g.refine_strength, 0.05)

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
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)

        form = self._form = QFormLayout()
        form.addRow("Operation", self.operation)
        form.addRow("Model", model_row)
        form.addRow(self.model_state)
        form.addRow(self.prompt)
        form.addRow(self.negative)
        form.addRow("Strength", self.strength)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Seed", seed_row)
        form.addRow("Variations", self.count)
        form.addRow("Sampler", self.sampler)
        self.mask_box = QGroupBox("Mask")
        mask_form = QFormLayout(self.mask_box)
        mask_form.addRow("Grow", self.grow)
        mask_form.addRow("Feather", self.feather)
        mask_form.addRow("Padding", self.padding)
        mask_form.addRow("Overlap", self.overlap)
        mask_form.addRow("Fill", self.fill)
        mask_form.addRow(self.restore_detail)
        self._mask_form = mask_form
        self.upscale_box = QGroupBox("Upscale")
        up_form = QFormLayout(self.upscale_box)
        up_form.addRow("Upscaler", self.upscaler)
        up_form.addRow("Scale", self.upscale_scale)
        up_form.addRow("Tile size", self.upscale_tile)
        up_form.addRow("Refine strength", self.refine_strength)

        buttons = QHBoxLayout()
        buttons.addWidget(self.generate, 1)
        buttons.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.mask_box)
        layout.addWidget(self.upscale_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addStretch(1)
        self._fill_op = "inpaint"
        self._defaults_applied_for = g.defaults_applied_for
        self._update_visibility()

    def _int(self, lo, hi, value) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(int(value))
        return s

    def _double(self, lo, hi, value, step) -> QDoubleSpinBox:
        s = QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(2)
        s.setValue(float(value))
        return s

    def _update_visibility(self) -> None:
        op = self.operation_key()
        if op in self._strength_for and op != self._strength_op:
            self._strength_for[self._strength_op] = self.strength.value()
            self.strength.setValue(self._strength_for[op])
            self._strength_op = op
        self._form.setRowVisible(self.strength, op in self._strength_for)  # upscale has its refine strength
        self.mask_box.setVisible(op in ("inpaint", "outpaint"))
        self.upscale_box.setVisible(op == "upscale")
        for widget in (self.grow, self.padding):
            self._mask_form.setRowVisible(widget, op == "inpaint")
        self._mask_form.setRowVisible(self.overlap, op == "outpaint")
        if op in ("inpaint", "outpaint"):
            modes = FILL_MODES if op == "inpaint" else OUTPAINT_FILLS
            current = self.fill.currentText()
            if current:
                self._fill_choice[self._fill_op] = current
            self.fill.blockSignals(True)
            self.fill.clear()
            self.fill.addItems(list(modes))
            self.fill.setCurrentText(self._fill_choice[op])
            self.fill.blockSignals(False)
            self._fill_op = op

    def operation_key(self) -> str:
        return self.operation.currentData()

    def model_ref(self) -> str:
        text = self.model.currentText().strip()
        return "" if text in ("", DEFAULT_MODEL_LABEL) else text

    def add_known_models(self, found) -> None:
        """Adds the models `backend.models.list_models()` found (the embedded one is the default entry)."""
        present = {self.model.itemText(i) for i in range(self.model.count())}
        current = self.model.currentText()
        for name, kind, where in found:
            if kind == "embedded":
                continue
            ref = name if kind == "hub cache" else where
            if ref not in present:
                self.model.addItem(ref, ref)
                present.add(ref)
        self.model.setCurrentText(current)

    def upscaler_ref(self) -> str:
        text = self.upscaler.currentText().strip()
        return "" if text in ("", BUNDLED_UPSCALER_LABEL) else text

    def add_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a model", "", "Models (*.safetensors);;All files (*)")
        if path:
            self.model.addItem(path, path)
            self.model.setCurrentText(path)

    def set_model_state(self, name: str, state: str, message: str, ignores_prompt: bool,
                        inpaint_defaults: tuple = ()) -> None:
        ignored = state == "ready" and ignores_prompt
        for widget in (self.prompt, self.negative, self.guidance):
            widget.setEnabled(not ignored)
            widget.setToolTip("This model was trained without captions: it ignores prompts and guidance."
                              if ignored else "")
        if state == "loading":
            text = f"Model: loading {name}…"
        elif state == "ready":
            text = f"Model: {name} ready" + (" — it ignores prompts (trained without captions)" if ignores_prompt else "")
            applied = self.apply_inpaint_defaults(name, dict(inpaint_defaults))
            if applied:
                text += f". Its recommended inpaint settings were applied: {applied}."
        else:
            text = f"Model: {message}"
        self.model_state.setText(text)

    def apply_inpaint_defaults(self, name: str, defaults: dict) -> str:
        """When a different model than last time becomes ready, takes its recommended inpaint
        fill and strength (the generic ones for models without a recommendation); returns what
        changed, in words, or "". The user's own changes stand until the model changes."""
        if not defaults or name == self._defaults_applied_for:
            return ""
        self._defaults_applied_for = name
        changed = []
        fill, strength = defaults.get("fill"), defaults.get("strength")
        if fill in FILL_MODES and self._fill_choice["inpaint"] != fill:
            self._fill_choice["inpaint"] = fill
            if self._fill_op == "inpaint":  # the combo holds the inpaint fills now
                self.fill.setCurrentText(fill)
            changed.append(f"fill {fill}")
        if isinstance(strength, (int, float)) and abs(self._strengths()["inpaint"] - strength) > 1e-9:
            self._strength_for["inpaint"] = float(strength)
            if self._strength_op == "inpaint":  # the spin box shows inpaint's strength now
                self.strength.setValue(float(strength))
            changed.append(f"strength {strength:g}")
        return ", ".join(changed)

    def set_progress(self, step: int, total: int, stage: str = "") -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(step)
        self.progress.setFormat(f"{stage + ' — ' if stage else ''}%v / %m")

    def set_idle(self, text: str = "idle") -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(text)

    def values(self) -> dict:
        return dict(
            operation=self.operation_key(), model=self.model_ref(), prompt=self.prompt.toPlainText(),
            negative_prompt=self.negative.toPlainText(), strength=self.strength.value(), steps=self.steps.value(),
            guidance=self.guidance.value(), seed=self.seed.value(), random_seed=self.random_seed.isChecked(),
            count=self.count.value(), sampler=self.sampler.currentData(), grow=self.grow.value(),
            feather=self.feather.value(), padding=self.padding.value(), fill=self.fill.currentText(),
            overlap=self.overlap.value(), upscaler=self.upscaler_ref(),
            upscale_scale=int(self.upscale_scale.currentText()), upscale_tile=self.upscale_tile.value(),
            refine_strength=self.refine_strength.value(), defaults_applied_for=self._defaults_applied_for,
            restore_detail=self.restore_detail.isChecked(),
        )

    def _strengths(self) -> dict:
        """Each operation's strength, the one on show included."""
        return dict(self._strength_for, **{self._strength_op: self.strength.value()})

    def store(self, settings) -> None:
        for key, value in self.values().items():
            setattr(settings.generation, key, value)
        per_op = self._strengths()
        g = settings.generation
        g.strength, g.outpaint_strength, g.img2img_strength = per_op["inpaint"], per_op["outpaint"], per_op["img2img"]
        models = [self.model.itemData(i) for i in range(self.model.count()) if self.model.itemData(i)]
        settings.models = models
