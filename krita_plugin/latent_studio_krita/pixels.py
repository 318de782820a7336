"""Krita's pixel bytes and ours: an 8-bit RGBA Krita layer hands out BGRA, the engine takes RGBA (numpy)."""
from __future__ import annotations

import numpy as np


def bgra_to_rgba(data, w: int, h: int) -> np.ndarray:
    """(h, w, 4) uint8 RGBA from Krita's BGRA bytes (a QByteArray or bytes) of a w×h area."""
    raw = np.frombuffer(bytes(data), np.uint8)
    if raw.size != w * h * 4:
        raise ValueError(f"expected {w * h * 4} bytes of 8-bit BGRA for {w}x{h}, got {raw.size}")
    return raw.reshape(h, w, 4)[..., [2, 1, 0, 3]].copy()


def rgba_to_bgra(rgba: np.ndarray) -> bytes:
    """Krita's BGRA bytes for an (h, w, 4) uint8 RGBA array."""
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]], np.uint8).tobytes()


def mask_bytes(data, w: int, h: int) -> np.ndarray:
    """(h, w) uint8 from a Krita selection's one byte a pixel."""
    raw = np.frombuffer(bytes(data), np.uint8)
    if raw.size != w * h:
        raise ValueError(f"expected {w * h} bytes of selection for {w}x{h}, got {raw.size}")
    return raw.reshape(h, w).copy()


def fit(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    """``rgba`` scaled to w×h (a preview is smaller than its rectangle); as is when it already fits."""
    if rgba.shape[:2] == (h, w):
        return rgba
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgba), "RGBA").resize((w, h), Image.BILINEAR))


def layer_pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """A result's layer: its image where the job changed pixels, transparent elsewhere (the engine's image
    is already composited, so the layer over the document gives exactly the engine's image)."""
    out = np.array(image, np.uint8, copy=True)
    if mask is not None:
        out[..., 3] = np.where(mask > 0, out[..., 3], 0)
        out[mask == 0, :3] = 0
    return out
