"""Image files in and out: PNG/JPEG/WebP/ORA import, PNG export with A1111 parameters.

* :func:`load_image` opens any supported file as a :class:`Document`
  (ORA keeps its layers; other formats become one layer).  A PNG's A1111
  ``parameters`` text is kept on its layer.
* :func:`import_layer` adds a file as a new layer of an open document (undoable).
* :func:`export_png` writes a flattened image, with the ``parameters`` tEXt chunk
  when the image came from one generation.
* :func:`load_flattened` is what the CLI's ``--image`` uses: the visible stack
  of any supported file as straight RGBA.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .atomic import atomic_write
from .document import Document
from .errors import DocumentError, file_error
from .layer import Layer
from .ora import load_ora
from .png import ImageTooLarge, check_size, encode_png
from .progress import Progress, step

RASTER_FORMATS = ("PNG", "JPEG", "WEBP")
EXTENSIONS = (".ora", ".png", ".jpg", ".jpeg", ".webp")


def read_rgba(path) -> tuple[np.ndarray, str | None]:
    """A PNG/JPEG/WebP file as (H, W, 4) straight uint8 RGBA and its A1111 parameters text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # our own size check replaces Pillow's bomb warning
            im = Image.open(path, formats=RASTER_FORMATS)
        with im:
            check_size(*im.size)
            im.load()
            params = im.info.get("parameters") if isinstance(im.info.get("parameters"), str) else None
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGBA"), np.uint8).copy(), params
    except FileNotFoundError as exc:
        raise file_error(path, "the file does not exist", "check the name and folder") from exc
    except PermissionError as exc:
        raise file_error(path, "you do not have permission to read it", "check the file's permissions") from exc
    except ImageTooLarge as exc:
        raise file_error(path, f"the image size {exc} is absurd", "it is damaged or not meant for painting") from exc
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise file_error(path, "it is not a PNG, JPEG, WebP or OpenRaster image",
                         "convert it to one of those formats") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise file_error(path, f"it is damaged ({type(exc).__name__})") from exc


def load_image(path, progress: Progress | None = None) -> Document:
    """Open a .ora/.png/.jpg/.webp file as a new document (nothing to undo)."""
    if os.fspath(path).lower().endswith(".ora"):
        return load_ora(path, progress)
    step(progress, 0, 1, "Reading the image", "Opening")
    rgba, params = read_rgba(path)
    doc = Document(rgba.shape[1], rgba.shape[0])
    layer = Layer(name=_stem(path), parameters=params)
    layer.pixels.write(0, 0, rgba)
    doc._layers.append(layer)
    step(progress, 1, 1, "Opened", "Opening")
    return doc


def load_flattened(path) -> np.ndarray:
    """The visible image of any supported file as (H, W, 4) straight uint8 RGBA (CLI --image)."""
    return load_image(path).flatten()


def import_layer(doc: Document, path, x: int | None = None, y: int | None = None) -> Layer:
    """Add an image file as a new top layer (one undoable step), at the canvas origin by default."""
    rgba, params = read_rgba(path)
    b = doc.bounds
    return doc.add_image_layer(rgba, b.x if x is None else x, b.y if y is None else y,
                               name=_stem(path), parameters=params, description="Import image")


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


__all__ = ["load_image", "load_flattened", "import_layer", "export_png", "read_rgba", "DocumentError"]
