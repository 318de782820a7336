"""Helpers shared by the canvas tests (imported by name; conftest.py holds only fixtures)."""
from __future__ import annotations

import numpy as np

def random_rgba(rng: np.random.Generator, h: int, w: int, transparent_share: float = 0.2) -> np.ndarray:
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[..., 3][rng.random((h, w)) < transparent_share] = 0
    return a


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
