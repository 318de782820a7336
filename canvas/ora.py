"""OpenRaster (.ora) reading and writing.

Written per the OpenRaster 0.0.6 spec: ``mimetype`` first and stored
uncompressed, ``stack.xml``, one PNG per layer under ``data/`` with x/y
offsets (straight alpha; a layer's PNG covers only its painted area),
``Thumbnails/thumbnail.png`` (at most 256 px a side) and ``mergedimage.png``.
Layer attributes: ``name``, ``src``, ``x``, ``y``, ``opacity``,
``visibility``, ``composite-op`` (``svg:`` names, see :mod:`canvas.blend`) and
``edit-locked``.

Our own data lives in the ``ls:`` namespace (:data:`NS`) so other apps
ignore it safely: per layer ``ls:parameters`` (generation text) and
``ls:mask``/``ls:mask-x``/``ls:mask-y`` (the layer mask PNG, greyscale);
on ``<image>`` ``ls:origin-x``/``ls:origin-y`` (a grown document's origin) and
``ls:selection``/``ls:selection-x``/``ls:selection-y``/``ls:selection-fill``.
The extra PNGs are not listed as layers, so other apps never show them.

Reading accepts what Krita, GIMP and MyPaint write: nested ``<stack>`` groups
(flattened into the layer list: a group's visibility and opacity multiply
into its layers, its blend mode is not kept), missing ``x``/``y``/``opacity``/
``composite-op`` (spec defaults) and unknown composite ops (read as normal).
Any problem raises :class:`~canvas.errors.FileFormatError`; a document is
returned only when everything was read.
"""
from __future__ import annotations

import math
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write
from .blend import BLEND_MODES, ORA_TO_MODE
from .document import MAX_SIDE, Document
from .errors import DocumentError, file_error
from .layer import Layer
from .png import ImageTooLarge, check_size, decode_png, encode_png
from .progress import Progress, step
from .selection import Selection
from .tiles import TiledSurface

NS = "https://latent-studio.org/ns/openraster/1"
ET.register_namespace("ls", NS)
MIMETYPE = b"image/openraster"
ORA_VERSION = "0.0.6"
THUMBNAIL_SIZE = 256
MAX_MEMBERS = 10_000
MAX_STACK_XML = 16 << 20
MAX_MEMBER_SIZE = 4 << 30
MAX_OFFSET = 1 << 20


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


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
           ET.ParseError, zlib.error, struct.error, SyntaxError, UnidentifiedImageError,
           Image.DecompressionBombError, NotImplementedError, RuntimeError, OSError, OverflowError,
           TypeError, LookupError)


def load_ora(path, progress: Progress | None = None) -> Document:
    """Read an OpenRaster file; raise FileFormatError (with a message for the user) if it is bad."""
    try:
        with open(path, "rb") as f:
            return read_ora(f, progress, path)
    except DocumentError:
        raise
    except FileNotFoundError as exc:
        raise file_error(path, "the file does not exist", "check the name and folder") from exc
    except PermissionError as exc:
        raise file_error(path, "you do not have permission to read it", "check the file's permissions") from exc
    except IsADirectoryError as exc:
        raise file_error(path, "it is a folder, not a file", "choose an .ora file") from exc
    except MemoryError as exc:
        raise file_error(path, "there is not enough memory to open it", "close other documents and try again") from exc


def read_ora(fileobj, progress: Progress | None = None, name="the file") -> Document:
    try:
        return _Reader(fileobj, progress, name).read()
    except DocumentError:
        raise
    except ImageTooLarge as exc:
        raise file_error(name, f"an image in it has an absurd size ({exc})",
                         "it is damaged or not meant for painting") from exc
    except _ERRORS as exc:
        raise file_error(name, f"it is damaged or not an OpenRaster file ({type(exc).__name__})") from exc


class _Reader:
    def __init__(self, fileobj, progress, name) -> None:
        self.fileobj = fileobj
        self.progress = progress
        self.name = name

    def fail(self, problem: str, advice: str = "the file may be damaged; try another copy or an autosave"):
        return file_error(self.name, problem, advice)

    def read(self) -> Document:
        with zipfile.ZipFile(self.fileobj) as zf:
            self.zf = zf
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise self.fail(f"it holds too many files ({len(infos)})")
            self.members = {}
            for info in infos:
                if not _safe_name(info.filename):
                    raise self.fail(f"it contains an unsafe file name ({info.filename!r})",
                                    "it may be malicious; do not use it")
                self.members[info.filename] = info
            if "mimetype" in self.members:
                if self._member("mimetype", 1024).strip() != MIMETYPE:
                    raise self.fail("it is not an OpenRaster image", "open it with the application that made it")
            if "stack.xml" not in self.members:
                raise self.fail("it has no layer list (stack.xml)")
            xml = self._member("stack.xml", MAX_STACK_XML)
            if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
                raise self.fail("its layer list uses XML entities, which are not allowed",
                                "it may be malicious; do not use it")
            root = ET.fromstring(xml)
            return self._document(root)

    def _member(self, name: str, limit: int) -> bytes:
        info = self.members.get(name)
        if info is None:
            raise self.fail(f"the image “{name}” it refers to is missing")
        if info.file_size > limit:
            raise self.fail(f"“{name}” is unreasonably large")
        with self.zf.open(info) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise self.fail(f"“{name}” is unreasonably large")
        return data

    def _document(self, root: ET.Element) -> Document:
        if root.tag != "image":
            raise self.fail("its layer list does not describe an image")
        w, h = _int(root.get("w")), _int(root.get("h"))
        if w is None or h is None:
            raise self.fail("its image size is missing or not a number")
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            raise self.fail(f"its image size {w}x{h} is absurd", "it is damaged or not meant for painting")
        ox, oy = _int(root.get(_q("origin-x"), "0")), _int(root.get(_q("origin-y"), "0"))
        if ox is None or oy is None or abs(ox) > MAX_OFFSET or abs(oy) > MAX_OFFSET:
            raise self.fail("its canvas origin is not valid")
        doc = Document(w, h, ox, oy)
        stack = root.find("stack")
        entries: list[tuple[ET.Element, bool, float]] = []
        if stack is not None:
            self._collect(stack, True, 1.0, entries, 0)
        layers = []
        n = len(entries)
        for i, (el, visible, opacity) in enumerate(entries):
            step(self.progress, i, n + 1, f"Reading layer {i + 1} of {n}", "Opening")
            layers.append(self._layer(el, visible, opacity, ox, oy))
        layers.reverse()  # the file lists the top layer first; we keep the bottom first
        doc._layers = layers
        sel_src = root.get(_q("selection"))
        if sel_src:
            fill = _int(root.get(_q("selection-fill"), "0"))
            surf = self._surface(sel_src, root.get(_q("selection-x")), root.get(_q("selection-y")),
                                 ox, oy, 1, 255 if fill else 0)
            doc.selection = Selection(surf)
        step(self.progress, n + 1, n + 1, "Opened", "Opening")
        return doc

    def _collect(self, stack: ET.Element, visible: bool, opacity: float, out: list, depth: int) -> None:
        if depth > 64:
            raise self.fail("its layer groups are nested too deeply")
        for el in stack:
            if el.tag not in ("layer", "stack"):
                continue  # text, filter and future elements: not rendered by baseline readers
            vis = visible and el.get("visibility", "visible") != "hidden"
            op = opacity * _opacity(el.get("opacity"))
            if el.tag == "stack":
                self._collect(el, vis, op, out, depth + 1)
            else:
                out.append((el, vis, op))

    def _layer(self, el: ET.Element, visible: bool, opacity: float, ox: int, oy: int) -> Layer:
        src = el.get("src")
        if not src:
            raise self.fail("a layer has no image")
        pixels = self._surface(src, el.get("x"), el.get("y"), ox, oy, 4, 0)
        layer = Layer(name=el.get("name", "Layer"), pixels=pixels, visible=visible,
                      opacity=opacity, blend_mode=ORA_TO_MODE.get(el.get("composite-op", ""), "normal"),
                      locked=el.get("edit-locked", "false").strip().lower() in ("true", "1"),
                      parameters=el.get(_q("parameters")))
        mask_src = el.get(_q("mask"))
        if mask_src:
            fill = _int(el.get(_q("mask-fill"), "255"))
            layer.mask = self._surface(mask_src, el.get(_q("mask-x")), el.get(_q("mask-y")), ox, oy, 1,
                                       0 if fill == 0 else 255)
        return layer

    def _surface(self, src: str, x, y, ox: int, oy: int, channels: int, fill: int) -> TiledSurface:
        src = src.strip()
        if not _safe_name(src):
            raise self.fail(f"a layer refers to an unsafe file name ({src!r})", "it may be malicious; do not use it")
        if src not in self.members:
            raise self.fail(f"the layer image “{src}” is missing")
        if not src.lower().endswith(".png"):
            raise self.fail(f"the layer image “{src}” is not a PNG, which this program cannot read",
                            "save it from the other application with plain raster layers")
        xi, yi = _int(x or "0"), _int(y or "0")
        if xi is None or yi is None or abs(xi) > MAX_OFFSET or abs(yi) > MAX_OFFSET:
            raise self.fail(f"the position of “{src}” is not valid")
        data = self._member(src, MAX_MEMBER_SIZE)
        if data[:8] != b"\x89PNG\r\n\x1a\n":
            raise self.fail(f"the layer image “{src}” is not a PNG file")
        if len(data) >= 24:
            check_size(*struct.unpack(">II", data[16:24]))  # before any decoding
        arr = decode_png(data, channels)
        surf = TiledSurface(channels, fill)
        surf.write(ox + xi, oy + yi, arr)
        return surf


def _safe_name(name: str) -> bool:
    """No absolute paths, drive letters, backslashes, NULs or '..' components."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    if re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in name.split("/")


def _int(value) -> int | None:
    if value is None:
        return None
    try:
        f = float(value.strip())
    except (ValueError, AttributeError):
        return None
    if not math.isfinite(f) or abs(f) > 1 << 40:
        return None
    return int(round(f))


def _opacity(value) -> float:
    if value is None:
        return 1.0
    try:
        f = float(value)
    except ValueError:
        return 1.0
    if not math.isfinite(f):
        return 1.0
    return min(max(f, 0.0), 1.0)
