"""PNG decoding in bands of rows, with the size known first; fast encoding (Pillow).

:func:`parse_header` reads the size from the first 33 bytes, so a small file
claiming a 100 000 × 100 000 image is refused before anything is decoded (see
:class:`canvas.limits.Budget`).  :class:`PngDecoder` then streams the image
data through zlib a band of rows at a time (about 16 MiB), with bounded zlib
calls, and hands each band on as 8-bit pixels (:mod:`canvas.pixels`): no
whole-image buffer exists, so a sparse 16k layer costs what it keeps.

Pillow still does the unfiltering, in C: each band is re-wrapped as a small
PNG of stored (level 0) deflate blocks whose first row is the previous band's
last row, unfiltered, and whose header declares an 8-bit format with as many
bytes per pixel as the real one, so Pillow's output *is* the raw rows.
Interlaced PNGs, 16-bit colour (6 or 8 bytes a pixel, no 8-bit twin) and, for
standalone files, PNGs with an EXIF orientation are decoded whole by Pillow;
the caller's ``transient`` check sees the memory that takes first.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from .limits import IDAT_BYTES_PER_CHUNK, MAX_PNG_CHUNKS, MAX_PNG_EXTRA, MAX_TEXT
from .pixels import from_pil, png_rows

SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = 33  # signature + IHDR chunk
BAND_BYTES = 16 << 20
TILE_ROWS = 256  # bands start on tile rows (canvas.tiles.TILE) of the target
CHUNK = 64 << 10
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_TWIN = {1: 0, 2: 4, 3: 2, 4: 6}  # bytes a pixel -> the 8-bit colour type with as many
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class PngError(ValueError):
    """A damaged PNG."""


class NotPng(PngError):
    """Not a PNG at all."""


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    depth: int
    color_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return _CHANNELS[self.color_type]

    def _row_bytes(self, w: int) -> int:
        return (w * self.channels * self.depth + 7) // 8

    @property
    def row_bytes(self) -> int:
        return self._row_bytes(self.width)

    @property
    def pixel_bytes(self) -> int:
        return max(1, self.channels * self.depth // 8)

    @property
    def raw_bytes(self) -> int:
        """Bytes of filtered rows the image data inflates to."""
        if not self.interlace:
            return self.height * (1 + self.row_bytes)
        total = 0
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = (self.width - x0 + dx - 1) // dx, (self.height - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                total += ph * (1 + self._row_bytes(pw))
        return total

    @property
    def banded(self) -> bool:
        return not self.interlace and self.pixel_bytes in _TWIN


def parse_header(data: bytes) -> PngHeader:
    """The header from a PNG's first 33 bytes; NotPng or PngError otherwise."""
    if data[:8] != SIGNATURE:
        raise NotPng("no PNG signature")
    if len(data) < HEADER_BYTES or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise PngError("no image header")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise PngError("a damaged image header")
    w, h, depth, ct, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if ct not in _DEPTHS or depth not in _DEPTHS[ct] or compression or filtering or interlace > 1:
        raise PngError("an invalid image header")
    if not (0 < w < 1 << 31 and 0 < h < 1 << 31):
        raise PngError("an invalid image size")
    return PngHeader(w, h, depth, ct, interlace)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_IEND = _chunk(b"IEND", b"")


Emit = Callable[[int, np.ndarray], None]


class PngDecoder:
    """Decodes one PNG from `read(n)` (exact reads; the 33 header bytes already consumed).

    The constructor reads the chunks before the image data (palette,
    transparency, the ``parameters`` text when `text`, EXIF)."""

    def __init__(self, read: Callable[[int], bytes], header: PngHeader, *, text: bool = False) -> None:
        self._read = read
        self.header = header
        self.palette: bytes | None = None
        self.trns: bytes | None = None
        self.parameters: str | None = None
        self.exif: bytes | None = None
        self.orientation = 1  # EXIF orientation (1: as stored)
        self._text = text
        self._idat_left = 0
        self._idat_done = False
        self._idat_chunks = 1
        self._max_idat_chunks = max(MAX_PNG_CHUNKS, header.raw_bytes // IDAT_BYTES_PER_CHUNK)
        self._crc = 0
        self._z = zlib.decompressobj()
        self._before_image_data()

    # -- chunks ------------------------------------------------------------------------------
    def _exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise PngError("the file ends early")
        return data

    def _chunk_head(self) -> tuple[int, bytes]:
        length, kind = struct.unpack(">I4s", self._exact(8))
        if length >= 1 << 31:
            raise PngError("an invalid chunk length")
        return length, kind

    def _skip(self, n: int) -> None:
        while n > 0:
            n -= len(self._exact(min(n, CHUNK)))

    def _before_image_data(self) -> None:
        extra = chunks = 0
        while True:
            length, kind = self._chunk_head()
            if kind == b"IDAT":
                self._idat_left = length
                self._crc = zlib.crc32(kind)
                return
            if kind == b"IEND":
                raise PngError("no image data")
            extra += length + 12
            chunks += 1
            if extra > MAX_PNG_EXTRA or chunks > MAX_PNG_CHUNKS:
                raise PngError("too much data besides the image")
            wanted = kind in (b"PLTE", b"tRNS", b"eXIf") or (self._text and kind in (b"tEXt", b"zTXt", b"iTXt"))
            if not wanted or length > MAX_TEXT:
                self._skip(length + 4)
                continue
            data = self._exact(length)
            if zlib.crc32(kind + data) != struct.unpack(">I", self._exact(4))[0]:
                raise PngError(f"a damaged {kind.decode('latin-1')} chunk")
            if kind == b"PLTE":
                self.palette = data
            elif kind == b"tRNS":
                self.trns = data
            elif kind == b"eXIf":
                self.exif = data
                self.orientation = _orientation(data)
            else:
                self._read_text(kind, data)

    def _read_text(self, kind: bytes, data: bytes) -> None:
        key, _, rest = data.partition(b"\x00")
        if key != b"parameters":
            return
        try:
            if kind == b"tEXt":
                self.parameters = rest.decode("latin-1")
            elif kind == b"zTXt":
                self.parameters = _inflate_text(rest[1:]).decode("latin-1")
            else:  # iTXt: flag, method, language\0, translated keyword\0, text
                flag, rest = rest[:1], rest[2:]
                rest = rest.split(b"\x00", 2)[-1]
                self.parameters = (_inflate_text(rest) if flag == b"\x01" else rest).decode("utf-8")
        except (UnicodeDecodeError, zlib.error, ValueError):
            self.parameters = None  # an unreadable text is no reason to refuse the image

    def _idat(self, n: int) -> bytes:
        """Up to n bytes of compressed image data; b"" after the last IDAT chunk."""
        while self._idat_left == 0:
            if self._idat_done:
                return b""
            if struct.unpack(">I", self._exact(4))[0] != self._crc:
                raise PngError("damaged image data (checksum)")
            length, kind = self._chunk_head()
            if kind != b"IDAT":
                self._idat_done = True
                return b""
            self._idat_chunks += 1
            if self._idat_chunks > self._max_idat_chunks:
                raise PngError("the image data is cut in too many chunks")
            self._idat_left = length
            self._crc = zlib.crc32(kind)
        data = self._exact(min(n, self._idat_left))
        self._idat_left -= len(data)
        self._crc = zlib.crc32(data, self._crc)
        return data

    def _inflate(self, need: int) -> bytes:
        """Exactly `need` bytes of filtered rows (zlib never asked for more)."""
        z = self._z
        parts, got = [], 0
        while got < need:
            if z.unconsumed_tail:
                piece = z.decompress(z.unconsumed_tail, need - got)
            else:
                feed = b"" if z.eof else self._idat(CHUNK)
                if not feed:
                    raise PngError("the image data ends early")
                piece = z.decompress(feed, need - got)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    # -- pixels ------------------------------------------------------------------------------
    def decode(self, sink: Callable[[int, int], Emit], channels: int = 4, *, align: int = 0, orient: bool = False,
               transient: Callable[[int], None] | None = None, cancelled: Callable[[], None] | None = None
               ) -> tuple[int, int]:
        """Decode the image: ``emit = sink(width, height)``, then ``emit(row, pixels)`` for each band
        ((n, w, 4) straight RGBA, or (n, w) grey when `channels` is 1).  Bands after the first
        start where ``align + row`` is a multiple of 256.  `orient` applies an EXIF orientation
        (standalone files).  `transient(nbytes)` is asked before a whole-image buffer is made;
        `cancelled()` is called after each band (it raises to stop).  Returns (width, height)."""
        h = self.header
        if not h.banded or (orient and self.orientation != 1):
            return self._whole(sink, channels, orient, transient, cancelled, align)
        emit = sink(h.width, h.height)
        stride = 1 + h.row_bytes
        band = max(TILE_ROWS, BAND_BYTES // stride // TILE_ROWS * TILE_ROWS)
        first = (-align) % TILE_ROWS or band
        y, prev = 0, None
        while y < h.height:
            n = min(first if y == 0 else band, h.height - y)
            if transient is not None:  # the rows, their re-wrapped copies, Pillow's image, the pixels
                transient(5 * n * stride + 4 * n * h.width)
            raw = self._unfilter(self._inflate(n * stride), n, prev)
            prev = raw[-1]
            emit(y, png_rows(raw, h.width, h.depth, h.color_type, self.palette, self.trns, channels))
            y += n
            if cancelled is not None:
                cancelled()
        return h.width, h.height

    def _unfilter(self, data: bytes, n: int, prev: np.ndarray | None) -> np.ndarray:
        h = self.header
        rb = h.row_bytes
        rows = np.frombuffer(data, np.uint8).reshape(n, 1 + rb)
        if rows[:, 0].max() > 4:
            raise PngError("an unknown row filter")
        if (prev is None or not prev.any()) and not rows[:, 1:].any():
            return np.zeros((n, rb), np.uint8)  # zero bytes after a zero row decode to zeros, whatever the filter
        count = n + (prev is not None)
        twin = _chunk(b"IHDR", struct.pack(">IIBBBBB", rb // h.pixel_bytes, count, 8, _TWIN[h.pixel_bytes], 0, 0, 0))
        z = zlib.compressobj(0)  # stored blocks: a copy and a checksum, no compression
        stored = ([z.compress(b"\x00" + prev.tobytes())] if prev is not None else []) + [z.compress(data), z.flush()]
        size = sum(len(part) for part in stored)
        # Pillow does not check the image data's CRC: four zero bytes spare hashing 16 MiB
        png = b"".join([SIGNATURE, twin, struct.pack(">I", size), b"IDAT", *stored, b"\0\0\0\0", _IEND])
        del stored
        with PngImagePlugin.PngImageFile(io.BytesIO(png)) as im:
            im.load()
            out = np.frombuffer(im.tobytes(), np.uint8).reshape(count, rb)
        return out[1:] if prev is not None else out

    def _whole(self, sink, channels, orient, transient, cancelled, align) -> tuple[int, int]:
        h = self.header
        need = h.width * h.height * 4
        if transient is not None:
            transient(need)
        parts, total = [], 0
        while True:
            piece = self._idat(1 << 20)
            if not piece:
                break
            parts.append(piece)
            total += len(piece)
            if transient is not None and total % (64 << 20) < len(piece):
                transient(need + total)
        if transient is not None:
            transient(need + total)
        header = _chunk(b"IHDR", struct.pack(">IIBBBBB", h.width, h.height, h.depth, h.color_type, 0, 0, h.interlace))
        extra = b"".join(_chunk(k, v) for k, v in ((b"PLTE", self.palette), (b"tRNS", self.trns),
                                                   (b"eXIf", self.exif if orient else None)) if v is not None)
        png = SIGNATURE + header + extra + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
        del parts
        with PngImagePlugin.PngImageFile(io.BytesIO(png)) as im:
            im.load()
            if orient and self.orientation != 1:
                if transient is not None:
                    transient(2 * need)  # the turned copy
                im = ImageOps.exif_transpose(im)
            return emit_bands(im, sink, channels, cancelled, align)


def emit_bands(im: Image.Image, sink, channels: int, cancelled=None, align: int = 0) -> tuple[int, int]:
    """Hand a decoded Pillow image to ``sink(w, h)`` in bands of rows (after the first, starting
    where ``align + row`` is a multiple of 256)."""
    w, h = im.size
    emit = sink(w, h)
    wide = None
    if im.mode == "I":
        lo, hi = im.getextrema()
        wide = lo < 0 or hi > 65535
    y = 0
    while y < h:
        end = min(h, y + ((-(align + y)) % TILE_ROWS or TILE_ROWS))
        with im.crop((0, y, w, end)) as band:
            emit(y, from_pil(band, channels, wide))
        y = end
        if cancelled is not None:
            cancelled()
    return w, h


def _orientation(exif: bytes) -> int:
    try:
        e = Image.Exif()
        e.load(exif)
        value = e.get(0x0112, 1)
        return value if value in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - a damaged EXIF block is ignored, as by most viewers
        return 1


def _inflate_text(data: bytes) -> bytes:
    z = zlib.decompressobj()
    out = z.decompress(data, MAX_TEXT)
    if z.unconsumed_tail:
        raise ValueError("text too long")
    return out


def encode_png(arr: np.ndarray, compress_level: int = 1, pnginfo=None) -> bytes:
    mode = "L" if arr.ndim == 2 else "RGBA"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), mode).save(buf, "PNG", compress_level=compress_level,
                                                          pnginfo=pnginfo)
    return buf.getvalue()
