"""The Live box of the generation panel: live painting on or off, its strength and seed, Keep.

Only widgets; :class:`studio.live.LiveController` does the work and keeps this box in step with
the document's live settings (``canvas.live``).
"""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QGridLayout, QGroupBox, QLabel, QPushButton

from canvas.live import DEFAULT_STRENGTH, MAX_SEED, STRENGTH


class LiveBox(QGroupBox):
    toggled = Signal(bool)  # the painter pressed Live
    keep_requested = Signal()
    values_changed = Signal()  # strength or seed edited

    def __init__(self, parent=None):
        super().__init__("Live painting", parent)
        self.button = QPushButton("Live  (Ctrl+L)")
        self.button.setCheckable(True)
        self.button.setToolTip("Regenerate the live region (the selection's box, or the whole canvas) "
                               "after each stroke; the result shows over the canvas until you keep it")
        self.button.clicked.connect(self.toggled)
        self.keep = QPushButton("Keep")
        self.keep.setToolTip("Copy the live result into a new layer (Ctrl+Shift+L)")
        self.keep.setEnabled(False)
        self.keep.clicked.connect(self.keep_requested)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(*STRENGTH)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setValue(DEFAULT_STRENGTH)
        self.strength.setToolTip("how much live changes the painting, 0-1: lower keeps more of your strokes")
        self.seed = QDoubleSpinBox()  # a double: seeds go to 2³²−1, past a QSpinBox's int
        self.seed.setDecimals(0)
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("the live seed: the same painting and seed give the same result")
        self.strength.valueChanged.connect(self.values_changed)
        self.seed.valueChanged.connect(self.values_changed)
        self.status = QLabel("off")
        self.status.setWordWrap(True)
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.addWidget(self.button, 0, 0, 1, 2)
        grid.addWidget(self.keep, 0, 2, 1, 2)
        grid.addWidget(QLabel("Strength"), 1, 0)
        grid.addWidget(self.strength, 1, 1)
        grid.addWidget(QLabel("Seed"), 1, 2)
        grid.addWidget(self.seed, 1, 3)
        grid.addWidget(self.status, 2, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)

    def values(self) -> tuple[float, int]:
        return float(self.strength.value()), int(self.seed.value())

    def set_values(self, strength: float, seed: int) -> None:
        for box, value in ((self.strength, strength), (self.seed, seed)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def set_on(self, on: bool) -> None:
        self.button.setChecked(on)
        self.button.setText("Live: on  (Ctrl+L)" if on else "Live  (Ctrl+L)")
        self.setTitle("Live painting — on" if on else "Live painting")

    def set_status(self, text: str, can_keep: bool) -> None:
        self.status.setText(text)
        self.keep.setEnabled(can_keep)
