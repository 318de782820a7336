"""OpenRaster (.ora) reading and writing.

Written per the OpenRaster 0.0.6 spec: ``mimetype`` first and stored
uncompressed, ``stack.xml``, one PNG per layer under ``data/`` with x/y
offsets (straight alpha; a layer's PNG covers only its painted area),
``Thumbnails/thumbnail.png`` (at most 256 px a side) and ``mergedimage.png``.
Layer attributes: ``name``, ``src``, ``x``, ``y``, ``opacity``,
``visibility``, ``composite-op`` (``svg:`` names, see :mod:`canvas.blend`) and
``edit-locked``.

Our own data lives in the ``ls:`` namespace (:data:`NS`) so other apps
ignore it safely: per layer ``ls:parameters`` (generation text),
``ls:mask``/``ls:mask-x``/``ls:mask-y`` (the layer mask PNG, greyscale) and
``ls:role`` (``control`` or ``reference``) with its values: ``ls:control-kind``,
``ls:control-model``, ``ls:control-strength``, ``ls:control-start``, ``ls:control-end``
or ``ls:reference-weight``, ``ls:reference-mode`` (:mod:`canvas.role`; a role whose
values do not read is dropped, the layer kept as a plain layer);
on ``<image>`` ``ls:origin-x``/``ls:origin-y`` (a grown document's origin) and
``ls:selection``/``ls:selection-x``/``ls:selection-y``/``ls:selection-fill``, and live painting's
``ls:live-x``/``-y``/``-w``/``-h``/``-strength``/``-seed``/``-on`` (:mod:`canvas.live`; a bad value is dropped).
The extra PNGs are not listed as layers, so other apps never show them.

Reading accepts what Krita, GIMP and MyPaint write: nested ``<stack>`` groups
(flattened into the layer list: a group's visibility and opacity multiply
into its layers, its blend mode is not kept), missing ``x``/``y``/``opacity``/
``composite-op`` (spec defaults) and unknown composite ops (read as normal).
Any problem raises :class:`~canvas.errors.FileFormatError`; a document is
returned only when everything was read.  How reading stays safe with hostile
files (limits checked before anything is allocated) is in :mod:`canvas.ora_read`.
"""
from __future__ import annotations

import lzma
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write
from .blend import BLEND_MODES
from .document import Document
from .errors import DocumentError, file_error
from .ora_read import MIMETYPE, NS, OraReader, q as _q
from .png import encode_png
from .progress import Progress, step
from .live import live_attributes
from .role import role_attributes
from .tiles import TiledSurface

ORA_VERSION = "0.0.6"
THUMBNAIL_SIZE = 256


_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(s: str) -> str:
    """Drop characters XML 1.0 cannot hold (control characters, lone surrogates)."""
    return _XML_INVALID.sub("", s)


# ============================================================================== writing
def save_ora(doc: Document, path, progress: Progress | None = None, compress_level: int = 1) -> None:
    """Save `doc` atomically to `path`.  Slow for big documents: call it from a worker
    with a ``doc.copy()`` (see :mod:`canvas.background`)."""
    with atomic_write(path) as f:
        write_ora(doc, f, progress, compress_level)


def write_ora(doc: Document, fileobj, progress: Progress | None = None, compress_level: int = 1) -> None:
    layers = doc.layers
    total = len(layers) + 2
    b = doc.bounds
    what = "Saving"
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        info = zipfile.ZipInfo("mimetype", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, MIMETYPE)

        image = ET.Element("image", {"version": ORA_VERSION, "w": str(b.w), "h": str(b.h),
                                     "xres": "72", "yres": "72"})
        if b.x or b.y:
            image.set(_q("origin-x"), str(b.x))
            image.set(_q("origin-y"), str(b.y))
        stack = ET.SubElement(image, "stack")
        elements = []
        for i, layer in enumerate(layers):
            step(progress, i, total, f"Saving layer {i + 1} of {len(layers)}", what)
            el = ET.Element("layer")
            src = f"data/layer{i:03d}.png"
            x, y = _write_surface(zf, src, layer.pixels, b, compress_level)
            el.attrib.update({
                "name": xml_text(layer.name), "src": src, "x": str(x), "y": str(y),
                "opacity": repr(float(layer.opacity)),
                "visibility": "visible" if layer.visible else "hidden",
                "composite-op": BLEND_MODES[layer.blend_mode],
                "edit-locked": "true" if layer.locked else "false",
            })
            if layer.parameters:
                el.set(_q("parameters"), xml_text(layer.parameters))
            for key, value in role_attributes(layer.role).items():
                el.set(_q(key), xml_text(value))
            if layer.mask is not None:
                msrc = f"data/layer{i:03d}-mask.png"
                mx, my = _write_surface(zf, msrc, layer.mask, b, compress_level)
                el.set(_q("mask"), msrc)
                el.set(_q("mask-x"), str(mx))
                el.set(_q("mask-y"), str(my))
                if layer.mask.fill != 255:
                    el.set(_q("mask-fill"), str(layer.mask.fill))
            elements.append(el)
        stack.extend(reversed(elements))  # OpenRaster lists the top layer first
        sel = doc.selection
        if not sel.is_empty:
            sx, sy = _write_surface(zf, "data/selection.png", sel.surface, b, compress_level)
            image.set(_q("selection"), "data/selection.png")
            image.set(_q("selection-x"), str(sx))
            image.set(_q("selection-y"), str(sy))
            image.set(_q("selection-fill"), str(sel.surface.fill))
        for key, value in live_attributes(doc.live).items():
            image.set(_q(key), value)
        xml = ET.tostring(image, encoding="UTF-8", xml_declaration=True)
        zf.writestr("stack.xml", xml)

        step(progress, len(layers), total, "Saving the merged image", what)
        merged = doc.flatten()
        zf.writestr(_stored("mergedimage.png"), encode_png(merged, compress_level))
        step(progress, len(layers) + 1, total, "Saving the thumbnail", what)
        thumb = Image.fromarray(merged, "RGBA")
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
        zf.writestr(_stored("Thumbnails/thumbnail.png"), encode_png(np.asarray(thumb), 6))
    step(progress, total, total, "Saved", what)


def _stored(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED  # PNG is compressed already
    return info


def _write_surface(zf: zipfile.ZipFile, name: str, surface: TiledSurface, bounds, level: int) -> tuple[int, int]:
    """Write the painted part of `surface` as a PNG; return its offset in file coordinates."""
    box = surface.content_bbox()
    if box is None:  # nothing painted: a 1x1 pixel of the fill value
        arr = np.full((1, 1) if surface.channels == 1 else (1, 1, 4), surface.fill, np.uint8)
        x, y = 0, 0
    else:
        arr = surface.read(box)
        x, y = box.x - bounds.x, box.y - bounds.y
    zf.writestr(_stored(name), encode_png(arr, level))
    return x, y


# ============================================================================== reading
_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, KeyError, IndexError,
           ET.ParseError, zlib.error, lzma.LZMAError, struct.error, SyntaxError, UnidentifiedImageError,
           Image.DecompressionBombError, NotImplementedError, RuntimeError, OSError, OverflowError,
           TypeError, LookupError)


def load_ora(path, progress: Progress | None = None) -> Document:
    """Read an OpenRaster file; raise FileFormatError (with a message for the user) if it is bad."""
    with _opening(path) as f:
        return read_ora(f, progress, path)


def declared_size(path) -> tuple[int, int]:
    """(width, height) of the canvas an .ora file declares, reading only its layer list (cheap:
    for the CLI to check sizes before anything is decoded).  Raises FileFormatError."""
    return _layer_list(path, lambda reader: reader.declared_size())


def layer_parameters(path) -> str | None:
    """The generation parameters of the topmost layer that has some, from the layer list only."""
    return _layer_list(path, lambda reader: reader.parameters())


def _layer_list(path, read):
    with _opening(path) as f:
        try:
            return read(OraReader(f, None, path))
        except DocumentError:
            raise
        except _ERRORS as exc:
            raise file_error(path, f"it is damaged or not an OpenRaster file ({type(exc).__name__})") from exc


@contextmanager
def _opening(path):
    """``with _opening(path) as f``: the open file, or one FileFormatError sentence."""
    try:
        f = open(path, "rb")
    except FileNotFoundError as exc:
        raise file_error(path, "the file does not exist", "check the name and folder") from exc
    except PermissionError as exc:
        raise file_error(path, "you do not have permission to read it", "check the file's permissions") from exc
    except IsADirectoryError as exc:
        raise file_error(path, "it is a folder, not a file", "choose an .ora file") from exc
    except OSError as exc:
        raise file_error(path, f"it could not be read ({exc.strerror or type(exc).__name__})",
                         "check the disk and try again") from exc
    with f:
        yield f


def read_ora(fileobj, progress: Progress | None = None, name="the file") -> Document:
    try:
        return OraReader(fileobj, progress, name).read()
    except DocumentError:
        raise
    except MemoryError as exc:
        raise file_error(name, "there is not enough memory to open it", "close other documents and try again") from exc
    except _ERRORS as exc:
        raise file_error(name, f"it is damaged or not an OpenRaster file ({type(exc).__name__})") from exc
