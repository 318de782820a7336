"""Image files in and out: PNG/JPEG/WebP/ORA import, PNG export with A1111 parameters.

* :func:`load_image` opens any supported file as a :class:`Document`
  (ORA keeps its layers; other formats become one layer).  A PNG's A1111
  ``parameters`` text is kept on its layer.
* :func:`import_layer` adds a file as a new layer of an open document (undoable).
* :func:`export_png` writes a flattened image, with the ``parameters`` tEXt chunk
  when the image came from one generation.
* :func:`load_flattened` is what the CLI's ``--image`` uses: the visible stack
  of any supported file as straight RGBA.
* :func:`image_size` and :func:`read_parameters` read a file's declared size and its
  ``parameters`` text cheaply (headers, the .ora layer list): no pixel is decoded.

Every reader checks what a file declares against :mod:`canvas.limits` before it
allocates, decodes PNGs in bands into sparse tiles and brings every pixel format
to 8-bit straight RGBA (:mod:`canvas.pixels`); any problem is one
:class:`~canvas.errors.FileFormatError` sentence and nothing half-loaded is returned.
"""
from __future__ import annotations

import lzma
import os
import zlib
from contextlib import contextmanager

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .atomic import atomic_write
from .document import Document
from .errors import DocumentError, file_error
from .geometry import Rect
from .layer import Layer
from .ora import declared_size, layer_parameters, load_ora
from .png import NotPng, encode_png
from .progress import Progress, step
from .raster import NotAnImage, decode_image, image_parameters, image_size as _raster_size

RASTER_FORMATS = ("PNG", "JPEG", "WEBP")
EXTENSIONS = (".ora", ".png", ".jpg", ".jpeg", ".webp")
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, zlib.error,
            lzma.LZMAError, UnidentifiedImageError, OverflowError, RuntimeError, NotImplementedError)


@contextmanager
def _reading(path):
    """Turn whatever reading `path` raises into one FileFormatError sentence."""
    try:
        yield
    except DocumentError:
        raise
    except FileNotFoundError as exc:
        raise file_error(path, "the file does not exist", "check the name and folder") from exc
    except PermissionError as exc:
        raise file_error(path, "you do not have permission to read it", "check the file's permissions") from exc
    except IsADirectoryError as exc:
        raise file_error(path, "it is a folder, not a file", "choose an image file") from exc
    except (NotAnImage, NotPng, UnidentifiedImageError) as exc:
        raise file_error(path, "it is not a PNG, JPEG, WebP or OpenRaster image",
                         "convert it to one of those formats") from exc
    except MemoryError as exc:
        raise file_error(path, "there is not enough memory to open it", "close other documents and try again") from exc
    except Image.DecompressionBombError as exc:
        raise file_error(path, f"its image has more pixels than the decoder for its format accepts "
                               f"({2 * Image.MAX_IMAGE_PIXELS:,})", "convert it to PNG") from exc
    except _DAMAGED as exc:
        raise file_error(path, f"it is damaged ({type(exc).__name__})") from exc


def image_size(path) -> tuple[int, int]:
    """(width, height) a .ora/.png/.jpg/.webp file declares, read cheaply (the PNG header, the
    .ora layer list): nothing is decoded.  Raises FileFormatError."""
    if os.fspath(path).lower().endswith(".ora"):
        return declared_size(path)
    with _reading(path), open(path, "rb") as f:
        return _raster_size(f, path)


def read_parameters(path) -> str | None:
    """The A1111 ``parameters`` text of a file, read cheaply: a PNG's text chunk (before the
    image data), or the topmost layer's that has one in an .ora; None when there is none."""
    if os.fspath(path).lower().endswith(".ora"):
        return layer_parameters(path)
    with _reading(path), open(path, "rb") as f:
        return image_parameters(f, path)


def _decode(path, at=(0, 0), progress: Progress | None = None):
    def cancelled():
        step(progress, 0, 1, "Reading the image", "Opening")

    with _reading(path), open(path, "rb") as f:
        return decode_image(f, path, 4, at, cancelled)


def read_rgba(path) -> tuple[np.ndarray, str | None]:
    """A PNG/JPEG/WebP file as (H, W, 4) straight uint8 RGBA and its A1111 parameters text.

    Every pixel format is brought to 8 bits (see :mod:`canvas.pixels`); sizes and memory are
    checked before decoding (see :mod:`canvas.limits`)."""
    surface, (w, h), params = _decode(path)
    return surface.read(Rect(0, 0, w, h)), params


def load_image(path, progress: Progress | None = None) -> Document:
    """Open a .ora/.png/.jpg/.webp file as a new document (nothing to undo)."""
    if os.fspath(path).lower().endswith(".ora"):
        return load_ora(path, progress)
    step(progress, 0, 1, "Reading the image", "Opening")
    surface, (w, h), params = _decode(path, progress=progress)
    doc = Document(w, h)
    doc._layers.append(Layer(name=_stem(path), pixels=surface, parameters=params))
    step(progress, 1, 1, "Opened", "Opening")
    return doc


def load_flattened(path) -> np.ndarray:
    """The visible image of any supported file as (H, W, 4) straight uint8 RGBA (CLI --image)."""
    return load_image(path).flatten()


def import_layer(doc: Document, path, x: int | None = None, y: int | None = None) -> Layer:
    """Add an image file as a new top layer (one undoable step), at the canvas origin by default."""
    b = doc.bounds
    surface, _size, params = _decode(path, (b.x if x is None else x, b.y if y is None else y))
    layer = Layer(name=_stem(path), pixels=surface, parameters=params)
    return doc.insert_layer(layer, description="Import image")


def export_png(doc_or_rgba, path, parameters: str | None = None, progress: Progress | None = None) -> None:
    """Write the flattened image as PNG atomically, with an A1111 ``parameters`` chunk.

    When `parameters` is None and a Document is given, its parameters are used
    if the visible image came from exactly one generation."""
    if isinstance(doc_or_rgba, Document):
        if parameters is None:
            parameters = doc_or_rgba.generation_parameters()
        step(progress, 0, 2, "Flattening", "Exporting")
        rgba = doc_or_rgba.flatten()
    else:
        rgba = np.asarray(doc_or_rgba)
        if rgba.ndim != 3 or rgba.shape[2] not in (3, 4) or rgba.dtype != np.uint8:
            raise ValueError("expected an (H, W, 3 or 4) uint8 array")
        if rgba.shape[2] == 3:
            rgba = np.dstack([rgba, np.full(rgba.shape[:2], 255, np.uint8)])
    info = None
    if parameters:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
    step(progress, 1, 2, "Encoding PNG", "Exporting")
    data = encode_png(rgba, 6, info)
    with atomic_write(path) as f:
        f.write(data)
    step(progress, 2, 2, "Exported", "Exporting")


def _stem(path) -> str:
    return os.path.splitext(os.path.basename(os.fspath(path)))[0] or "Image"


__all__ = ["load_image", "load_flattened", "import_layer", "export_png", "read_rgba", "image_size", "read_parameters",
           "DocumentError"]
