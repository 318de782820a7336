"""Shared helpers for the canvas tests (no Qt, no torch)."""
from __future__ import annotations

import numpy as np
import pytest

from canvas.document import Document


def random_rgba(rng: np.random.Generator, h: int, w: int, transparent_share: float = 0.2) -> np.ndarray:
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[..., 3][rng.random((h, w)) < transparent_share] = 0
    return a


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


def assert_render_matches(rendered: np.ndarray, fresh: np.ndarray) -> None:
    """The cached view may differ from a fresh composite by float rounding only.

    The focus-layer cache composites normal layers above the painted one as a
    group (associative in exact arithmetic, not bit-for-bit in float32), so
    allow 1 level of alpha and ~1.5 levels of premultiplied colour; a stale
    tile differs by far more."""
    r, f = rendered.astype(np.float32), fresh.astype(np.float32)
    assert np.abs(r[..., 3] - f[..., 3]).max(initial=0) <= 1
    pr, pf = r[..., :3] * r[..., 3:] / 255, f[..., :3] * f[..., 3:] / 255
    assert np.abs(pr - pf).max(initial=0) <= 1.5
