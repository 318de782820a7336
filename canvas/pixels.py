"""Pixel formats in, straight 8-bit RGBA (or 8-bit grey for masks) out.

Two sources: the raw rows of a PNG (:func:`png_rows`, used by the banded PNG
decoder in :mod:`canvas.png`) and Pillow images (:func:`from_pil`, for JPEG,
WebP and the PNGs decoded whole).  Deeper samples are *scaled* to 8 bits, never
clipped: 16-bit values v become round(v × 255 / 65535), 1/2/4-bit greys are
stretched to 0..255, float images (Pillow mode ``F``) are taken as 0..1.
Pillow mode ``I`` (32-bit integers) is scaled from 0..65535 when every value lies
there (a 16-bit greyscale image in that mode), else from 0..2³¹−1 (negatives are 0).
Grey for masks is Pillow's ``L``: ITU-R 601 luma of the colour, alpha ignored.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def scale16(v: np.ndarray) -> np.ndarray:
    """uint16 (any byte order) -> uint8, rounded."""
    return ((v.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint8 as Pillow's convert("L")."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _samples(raw: np.ndarray, width: int, channels: int, depth: int) -> np.ndarray:
    """Raw rows (n, row_bytes) -> samples (n, width, channels) in their own depth."""
    n = raw.shape[0]
    if depth == 16:
        return raw[:, : width * channels * 2].copy().view(">u2").reshape(n, width, channels)
    if depth == 8:
        return raw[:, : width * channels].reshape(n, width, channels)
    per_byte = 8 // depth
    bits = np.unpackbits(raw, axis=1).reshape(n, raw.shape[1] * per_byte, depth)
    weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint8)
    values = (bits * weights).sum(axis=2, dtype=np.uint8)
    return values[:, :width].reshape(n, width, 1)


def png_rows(raw: np.ndarray, width: int, depth: int, color_type: int, palette: bytes | None,
             trns: bytes | None, channels: int = 4) -> np.ndarray:
    """Unfiltered PNG rows -> (n, width, 4) straight RGBA, or (n, width) grey when channels == 1."""
    s = _samples(raw, width, _CHANNELS[color_type], depth)
    n = raw.shape[0]
    if color_type == 6 and depth == 8 and channels == 4:
        return s  # already straight RGBA: a view of the rows
    if color_type == 3:
        lut = np.zeros((256, 4), np.uint8)
        lut[:, 3] = 255
        if palette:
            entries = np.frombuffer(palette[: len(palette) // 3 * 3], np.uint8).reshape(-1, 3)[:256]
            lut[: len(entries), :3] = entries
        if trns:
            alpha = np.frombuffer(trns[:256], np.uint8)
            lut[: len(alpha), 3] = alpha
        idx = s[..., 0]
        return luma(lut[idx, :3]) if channels == 1 else lut[idx]
    if depth == 16:
        eight = scale16(s)
    elif depth == 8:
        eight = s
    else:
        eight = (s * (255 // ((1 << depth) - 1))).astype(np.uint8)
    colour = color_type in (2, 6)
    if channels == 1:
        return luma(eight[..., :3]) if colour else eight[..., 0].copy()
    out = np.empty((n, width, 4), np.uint8)
    if colour:
        out[..., :3] = eight[..., :3]
    else:
        out[..., :3] = eight[..., :1]
    if color_type in (4, 6):
        out[..., 3] = eight[..., -1]
    else:
        out[..., 3] = 255
        if trns:  # one colour (in the image's own depth) is transparent
            key = np.frombuffer(trns[: 2 * _CHANNELS[color_type]], ">u2")
            if len(key) == _CHANNELS[color_type]:
                out[(s == key).all(axis=2), 3] = 0
    return out


def from_pil(im: Image.Image, channels: int = 4, wide_range: bool | None = None) -> np.ndarray:
    """A Pillow image of any mode -> (h, w, 4) straight uint8 RGBA, or (h, w) grey when channels == 1.

    `wide_range` (mode ``I`` only): whether values span 32 bits (None: decide from this image)."""
    mode = im.mode
    if mode.startswith("I;16"):
        grey = scale16(np.asarray(im))
    elif mode == "I":
        a = np.asarray(im)
        if wide_range is None:
            lo, hi = im.getextrema()
            wide_range = lo < 0 or hi > 65535
        if wide_range:
            grey = (np.clip(a, 0, None) >> 23).astype(np.uint8)
        else:
            grey = scale16(np.clip(a, 0, 65535))
    elif mode == "F":
        grey = (np.clip(np.nan_to_num(np.asarray(im, np.float32)), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    else:
        grey = None
    if grey is not None:
        if channels == 1:
            return grey
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if channels == 1:
        if mode in ("P", "PA"):
            im = im.convert("RGBA")
        return np.asarray(im.convert("L"), np.uint8).copy()
    if mode not in ("RGBA", "RGB", "L", "LA", "P", "PA", "1", "RGBa", "La", "CMYK"):
        im = im.convert("RGB")  # YCbCr, LAB, HSV
    return np.asarray(im.convert("RGBA"), np.uint8).copy()
