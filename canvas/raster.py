"""Decoded pixels into sparse surfaces under a :class:`~canvas.limits.Budget`; single-image files.

A :class:`SurfaceSink` receives bands of rows and keeps them as tiles: tiles
that hold only the fill (transparent) are dropped, tiles of one flat colour are
shared between all surfaces of a file (a white 16k background costs one tile),
and every other tile kept is counted against the budget before the next band
is decoded.

:func:`decode_image` reads a PNG, JPEG or WebP file that way: the size from
the header first, then the pixels (PNG in bands; JPEG and WebP whole, by
Pillow, after the budget allowed the buffer).  Errors are ``ValueError``/
``OSError`` and friends for damaged files, :class:`NotAnImage` for other kinds,
and :class:`~canvas.errors.FileFormatError` from the budget.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, WebPImagePlugin

from .limits import Budget
from .png import HEADER_BYTES, PngDecoder, emit_bands, parse_header
from .tiles import TiledSurface


class NotAnImage(ValueError):
    """Not a PNG, JPEG or WebP file."""


class SurfaceSink:
    """``sink(w, h)`` → ``emit(row, pixels)`` writing into a new surface with (0, 0) at (x, y)."""

    def __init__(self, x: int, y: int, channels: int, fill: int, budget: Budget, shared: dict) -> None:
        self.surface = TiledSurface(channels, fill)
        self.x, self.y = x, y
        self.budget = budget
        self.shared = shared
        self.size = (0, 0)

    def __call__(self, w: int, h: int):
        self.size = (w, h)
        return self.emit

    def emit(self, row: int, pixels: np.ndarray) -> None:
        surface = self.surface
        blank = not pixels[..., 3].any() if pixels.ndim == 3 and surface.fill == 0 else (pixels == surface.fill).all()
        if blank:
            return  # the surface starts empty and each pixel comes once: a band of fill changes nothing
        for key in surface.write(self.x, self.y + row, pixels):
            tile = surface.tiles.get(key)
            if tile is None:
                continue
            first = tile.reshape(-1, surface.channels)[0]
            if (tile == first).all():  # one flat colour: one shared array for the whole file
                surface.tiles[key] = self.shared.setdefault((surface.channels, first.tobytes()), tile)
            else:
                self.budget.keep(tile.nbytes)


def file_size(f) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        pos = f.tell()
        end = f.seek(0, 2)
        f.seek(pos)
        return end


def kind_of(head: bytes) -> str | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def webp_size(head: bytes) -> tuple[int, int]:
    """The canvas size in a WebP file's first 30 bytes (extended, lossy or lossless)."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise ValueError("an unknown WebP header")


def _pillow(f, kind: str) -> Image.Image:
    f.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # our own size checks replace Pillow's bomb warning
        return (JpegImagePlugin.JpegImageFile if kind == "JPEG" else WebPImagePlugin.WebPImageFile)(f)


def _turned(size: tuple[int, int], exif: Image.Exif) -> tuple[int, int]:
    """The size once an EXIF orientation is applied."""
    return size[::-1] if exif.get(0x0112, 1) in (5, 6, 7, 8) else size


def image_size(f, name) -> tuple[int, int]:
    """The size a PNG/JPEG/WebP file declares (after its EXIF orientation), without decoding it."""
    head = f.read(HEADER_BYTES)
    kind = kind_of(head)
    if kind is None:
        raise NotAnImage("not a PNG, JPEG or WebP file")
    if kind == "PNG":
        header = parse_header(head)
        size = header.width, header.height
        try:
            turned = PngDecoder(f.read, header).orientation in (5, 6, 7, 8)
        except ValueError:  # damage after the header shows when the image is read
            turned = False
        return size[::-1] if turned else size
    if kind == "WEBP":
        size = webp_size(head + f.read(32))
        if size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
            return size  # Pillow refuses to open big WebPs (even for their size); ours is enough
    with _pillow(f, kind) as im:
        return _turned(im.size, im.getexif())


def image_parameters(f, name) -> str | None:
    """The ``parameters`` text of a PNG/JPEG/WebP file, without decoding the pixels."""
    head = f.read(HEADER_BYTES)
    kind = kind_of(head)
    if kind is None:
        raise NotAnImage("not a PNG, JPEG or WebP file")
    if kind == "PNG":
        return PngDecoder(f.read, parse_header(head), text=True).parameters
    if kind == "WEBP":
        w, h = webp_size(head + f.read(32))
        Budget(name, 0).image(w, h, "it")
    with _pillow(f, kind) as im:
        text = im.info.get("parameters")
        return text if isinstance(text, str) else None


def decode_image(f, name, channels: int = 4, at: tuple[int, int] = (0, 0), cancelled=None
                 ) -> tuple[TiledSurface, tuple[int, int], str | None]:
    """A PNG/JPEG/WebP file object as (surface with the image's top left at `at`, (w, h), its
    ``parameters`` text)."""
    budget = Budget(name, file_size(f))
    head = f.read(HEADER_BYTES)
    kind = kind_of(head)
    if kind is None:
        raise NotAnImage("not a PNG, JPEG or WebP file")
    sink = SurfaceSink(at[0], at[1], channels, 0, budget, {})
    if kind == "PNG":
        header = parse_header(head)
        budget.image(header.width, header.height, "it")
        decoder = PngDecoder(f.read, header, text=True)
        decoder.decode(sink, channels, align=at[1], orient=True, transient=budget.transient, cancelled=cancelled)
        return sink.surface, sink.size, decoder.parameters
    if kind == "WEBP":  # Pillow refuses big WebPs while opening them: check our limits first
        f.seek(0)
        w, h = webp_size(f.read(64))
        budget.image(w, h, "it")
        budget.transient(w * h * 8)
    with _pillow(f, kind) as im:
        w, h = im.size
        budget.image(w, h, "it")
        budget.transient(w * h * 4 * (2 if kind == "WEBP" else 1))  # Pillow's image (and WebP's own buffer)
        im.load()
        params = im.info.get("parameters") if isinstance(im.info.get("parameters"), str) else None
        if im.getexif().get(0x0112, 1) != 1:
            budget.transient(w * h * 8)
            im = ImageOps.exif_transpose(im)
        emit_bands(im, sink, channels, cancelled, at[1])
    return sink.surface, sink.size, params
