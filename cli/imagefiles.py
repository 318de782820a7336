"""Input images and masks for the headless commands, read through the canvas package.

The canvas package does the file work (formats, size checks, atomic PNG
writes with the A1111 ``parameters`` chunk); this module only adapts its
errors to the backend's and reads masks.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.errors import BackendError


class ImageFileError(BackendError):
    """An input image could not be used."""


def read_document(path: str | os.PathLike):
    """The file as a canvas Document (.ora keeps its layers; PNG/JPEG/WebP become one)."""
    from canvas.errors import DocumentError
    from canvas.image_io import load_image

    try:
        return load_image(Path(path))
    except DocumentError as exc:
        raise ImageFileError(str(exc)) from exc


def read_parameters(path: str | os.PathLike) -> str | None:
    """The generation parameters of an image Latent Studio wrote: a PNG's ``parameters`` text, or
    the topmost generated layer's in an .ora; None when there are none."""
    doc = read_document(path)
    for layer in reversed(doc.layers):
        if layer.parameters:
            return layer.parameters
    return None


def read_rgba(path: str | os.PathLike) -> np.ndarray:
    """(h, w, 4) uint8: the visible image of a PNG, JPEG, WebP or .ora file."""
    return read_document(path).flatten()


def read_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 coverage: white (or, for a one-colour image, its alpha) marks what to repaint."""
    rgba = read_rgba(path)
    h, w = rgba.shape[:2]
    if (w, h) != size:
        raise ImageFileError(
            f"The mask is {w}×{h} but the image is {size[0]}×{size[1]}: the mask must be the size of the image."
        )
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    if (alpha < 1).any() and (rgba[..., :3] == rgba[0, 0, :3]).all():
        coverage = alpha * 255.0  # a one-colour stroke layer: its alpha is the mask
    else:
        luma = rgba[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        coverage = luma * alpha
    return np.clip(coverage + 0.5, 0, 255).astype(np.uint8)


def write_png(rgba: np.ndarray, path: str | os.PathLike, parameters: str | None = None) -> None:
    """Atomically, with the A1111 ``parameters`` chunk."""
    from canvas.image_io import export_png

    export_png(rgba, Path(path), parameters)


def numbered(path: Path, index: int, count: int) -> Path:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png``, … for several."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")
