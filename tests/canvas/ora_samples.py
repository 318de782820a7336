"""Helpers building .ora files by hand, the way other applications write them."""
from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG")
    return buf.getvalue()


def make_ora(stack_xml: str | bytes, files: dict[str, bytes], mimetype: bytes | None = b"image/openraster") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if mimetype is not None:
            zf.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        if stack_xml is not None:
            zf.writestr("stack.xml", stack_xml)
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def solid(h: int, w: int, rgba) -> np.ndarray:
    return np.tile(np.array(rgba, np.uint8), (h, w, 1))
