"""Request pixels: private, read-only, validated copies (used by every request and steering value)."""
from __future__ import annotations

import numpy as np

from .errors import InvalidRequest

MAX_SIDE = 65536


def _frozen_pixels(array, name: str, channels: int | None) -> np.ndarray:
    """A private, read-only uint8 copy; RGB images get an opaque alpha channel."""
    if not isinstance(array, np.ndarray):
        raise InvalidRequest(f"`{name}` must be a numpy array of pixels, but is {type(array).__name__}.")
    if array.dtype != np.uint8:
        raise InvalidRequest(f"`{name}` must hold uint8 pixels (0-255), but holds {array.dtype}.")
    if channels == 4 and array.ndim == 3 and array.shape[2] == 3:
        alpha = np.full(array.shape[:2] + (1,), 255, np.uint8)
        array = np.concatenate([array, alpha], axis=2)
    expected = (2,) if channels is None else (3,)
    if array.ndim not in expected or (channels and array.shape[2] != channels):
        shape = "(height, width)" if channels is None else f"(height, width, {channels})"
        raise InvalidRequest(f"`{name}` must have the shape {shape}, but has {array.shape}.")
    h, w = array.shape[:2]
    if h < 8 or w < 8:
        raise InvalidRequest(f"`{name}` is {w}×{h} pixels; it must be at least 8×8.")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise InvalidRequest(f"`{name}` is {w}×{h} pixels; each side must be at most {MAX_SIDE}.")
    copy = np.array(array, dtype=np.uint8, copy=True, order="C")
    copy.flags.writeable = False
    return copy
