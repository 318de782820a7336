"""Safe PNG decoding and fast encoding for layer data (Pillow).

Decoding checks the image size before any pixel is decoded, so a small file
claiming a 100 000 x 100 000 image is refused cheaply, and it bypasses
Pillow's global decompression-bomb limit in favour of our own (a legitimate
16k x 16k layer is larger than Pillow's default limit).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, PngImagePlugin

from .geometry import MAX_SIDE

MAX_PIXELS = 1 << 30


class ImageTooLarge(ValueError):
    pass


def check_size(w: int, h: int) -> None:
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE and w * h <= MAX_PIXELS):
        raise ImageTooLarge(f"{w}x{h}")


def decode_png(data: bytes, channels: int = 4) -> np.ndarray:
    """PNG bytes -> uint8 array (H, W, 4) straight RGBA, or (H, W) grey when channels == 1.

    Raises OSError/ValueError/SyntaxError on bad data, ImageTooLarge on absurd sizes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im = PngImagePlugin.PngImageFile(io.BytesIO(data))
    with im:
        check_size(*im.size)
        im.load()
        return _to_array(im, channels)


def _to_array(im: Image.Image, channels: int) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        a = np.asarray(im, np.uint32) >> 8
        grey = a.astype(np.uint8)
        if channels == 1:
            return grey
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if channels == 1:
        return np.asarray(im.convert("L"), np.uint8).copy()
    return np.asarray(im.convert("RGBA"), np.uint8).copy()


def encode_png(arr: np.ndarray, compress_level: int = 1, pnginfo=None) -> bytes:
    mode = "L" if arr.ndim == 2 else "RGBA"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode).save(buf, "PNG", compress_level=compress_level,
                                                          pnginfo=pnginfo)
    return buf.getvalue()
