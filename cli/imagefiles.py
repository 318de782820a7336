"""Input images and masks for the headless commands, read through the canvas package.

The canvas package does the file work (formats, size checks, atomic PNG
writes with the A1111 ``parameters`` chunk); this module only adapts its
errors to the backend's and reads masks.

Sizes are checked before anything is decoded: :func:`check_sizes` reads what the
image and the mask declare (a PNG's header, an .ora's layer list, a JPEG's
frame header), refuses canvases the command line cannot hold as one image
(more than 16384×16384 pixels) and a mask of another size; only then are the
files read and flattened.
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


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) the file declares, read cheaply (nothing is decoded); refuses a canvas
    larger than the command line works on."""
    from canvas.errors import DocumentError
    from canvas.image_io import image_size as declared_size
    from canvas.limits import MAX_IMAGE_PIXELS, MAX_SIDE, side_text

    try:
        w, h = declared_size(Path(path))
    except DocumentError as exc:
        raise ImageFileError(str(exc)) from exc
    if w * h > MAX_IMAGE_PIXELS or w > MAX_SIDE or h > MAX_SIDE:
        raise ImageFileError(
            f"{Path(path).name} is {w}×{h} = {w * h:,} pixels; the command line works on images of at most "
            f"{side_text(MAX_IMAGE_PIXELS)} pixels and {MAX_SIDE:,} a side: crop or scale it down first.")
    return w, h


def check_sizes(image: str | os.PathLike, mask: str | os.PathLike | None = None) -> tuple[int, int]:
    """The image's (width, height), after checking it and the mask's size from their headers:
    call it before :func:`read_document` so nothing big is decoded for inputs that cannot work."""
    size = image_size(image)
    if mask is not None:
        _same_size(image_size(mask), size)
    return size


def _same_size(mask: tuple[int, int], image: tuple[int, int]) -> None:
    if mask != image:
        raise ImageFileError(
            f"The mask is {mask[0]}×{mask[1]} but the image is {image[0]}×{image[1]}: "
            "the mask must be the size of the image.")


def read_parameters(path: str | os.PathLike) -> str | None:
    """The generation parameters of an image Latent Studio wrote: a PNG's ``parameters`` text, or
    the topmost generated layer's in an .ora; None when there are none.  Reads no pixels."""
    from canvas.errors import DocumentError
    from canvas.image_io import read_parameters as parameters

    try:
        return parameters(Path(path))
    except DocumentError as exc:
        raise ImageFileError(str(exc)) from exc


def flatten(doc, path: str | os.PathLike) -> np.ndarray:
    """(h, w, 4) uint8: the document's visible image (one sentence if memory runs out)."""
    try:
        return doc.flatten()
    except MemoryError as exc:
        raise ImageFileError(
            f"There is not enough memory to flatten {Path(path).name} ({doc.width}×{doc.height}) into one "
            "image: close other programs, or crop or scale it down first.") from exc


def read_rgba(path: str | os.PathLike) -> np.ndarray:
    """(h, w, 4) uint8: the visible image of a PNG, JPEG, WebP or .ora file."""
    return flatten(read_document(path), path)


def read_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 coverage: white (or, for a one-colour image, its alpha) marks what to repaint.

    The mask's declared size is checked against `size` before it is decoded; it is then
    flattened a band of rows at a time (no full-size RGBA copy of the mask)."""
    from canvas.geometry import Rect

    _same_size(image_size(path), tuple(size))
    doc = read_document(path)
    b = doc.bounds
    _same_size((b.w, b.h), tuple(size))
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    first = luma_first = None
    one_colour, translucent = True, False  # a one-colour stroke layer: its alpha is the mask

    def alpha_to_luma(rows: slice) -> None:  # bands read while the mask looked one-colour
        for y in range(rows.start, rows.stop, 256):
            band = cov[y:min(rows.stop, y + 256)]
            band[...] = np.clip(luma_first * (band.astype(np.float32) / 255.0) + 0.5, 0, 255).astype(np.uint8)

    try:
        cov = np.empty((b.h, b.w), np.uint8)
        for y in range(0, b.h, 256):
            rgba = doc.flatten(Rect(b.x, b.y + y, b.w, min(256, b.h - y)))
            rows = slice(y, y + rgba.shape[0])
            if first is None:
                first = rgba[0, 0, :3].copy()
                luma_first = rgba[:1, :1, :3].astype(np.float32) @ weights
            if one_colour and not (rgba[..., :3] == first).all():
                alpha_to_luma(slice(0, y))
                one_colour = False
            translucent = translucent or bool((rgba[..., 3] < 255).any())
            alpha = rgba[..., 3].astype(np.float32)
            coverage = alpha if one_colour else (rgba[..., :3].astype(np.float32) @ weights) * (alpha / 255.0)
            cov[rows] = np.clip(coverage + 0.5, 0, 255).astype(np.uint8)
        if one_colour and not translucent:  # one opaque colour: its brightness is the mask
            alpha_to_luma(slice(0, b.h))
    except MemoryError as exc:
        raise ImageFileError(f"There is not enough memory to read the mask {Path(path).name}: "
                             "close other programs, or crop or scale it down first.") from exc
    return cov


def write_png(rgba: np.ndarray, path: str | os.PathLike, parameters: str | None = None) -> None:
    """Atomically, with the A1111 ``parameters`` chunk."""
    from canvas.image_io import export_png

    export_png(rgba, Path(path), parameters)


def numbered(path: Path, index: int, count: int) -> Path:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png``, … for several."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")
