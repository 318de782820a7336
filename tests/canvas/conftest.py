"""Fixtures for the canvas tests (no Qt, no torch); helpers live in canvas_helpers.py."""
from __future__ import annotations

import numpy as np
import pytest

from canvas.document import Document

from canvas_helpers import random_rgba


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_doc(rng) -> Document:
    """A 600x400 document with three varied layers spanning several tiles."""
    doc = Document(600, 400)
    doc.add_image_layer(random_rgba(rng, 400, 600, 0.0), 0, 0, "background")
    doc.add_image_layer(random_rgba(rng, 150, 300), 100, 200, "middle")
    top = doc.add_image_layer(random_rgba(rng, 300, 200), 350, -20, "top")
    doc.set_layer_properties(top, blend_mode="multiply", opacity=0.6)
    doc.history.clear()
    return doc
