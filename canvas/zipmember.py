"""One file inside a zip (an .ora) as a stream that stops at a byte limit while it inflates.

:mod:`zipfile` trusts the sizes a zip directory declares, and it inflates bz2 and
lzma members in one call per 4 KiB of input (a 1.4 KB bz2 member became 2 GB in
one call).  Here the directory's sizes are never trusted: the compressed bytes
are read in small chunks from where the member's local header says its data
starts, every decompressor call is bounded (``max_length``), the output is
counted as it comes and reading stops with `too_big(limit)` one byte past the
limit.  The CRC is checked when a member was read to its end.

Stored, deflate, bz2 and lzma members are read; encrypted ones and other
methods are refused (:class:`MemberError`, a ``ValueError``).
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
import zlib
from typing import Callable

CHUNK = 64 << 10
_LOCAL_HEADER = 30


class MemberError(ValueError):
    """The member is damaged or uses something we do not read."""


class _Zlib:
    def __init__(self) -> None:
        self._d = zlib.decompressobj(-15)

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._d.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._d.decompress(self._d.unconsumed_tail + data, max_length)


class MemberStream:
    """Readable: ``read(n)`` gives at most n uncompressed bytes, b"" at the end."""

    def __init__(self, fileobj, info: zipfile.ZipInfo, limit: int, file_size: int,
                 too_big: Callable[[int], Exception]) -> None:
        if info.flag_bits & 0x1:
            raise MemberError("an encrypted member")
        self._f = fileobj
        self._info = info
        self._limit = limit
        self._too_big = too_big
        fileobj.seek(info.header_offset)
        header = fileobj.read(_LOCAL_HEADER)
        if len(header) != _LOCAL_HEADER or header[:4] != b"PK\x03\x04":
            raise MemberError("a member without its local header")
        name_len, extra_len = struct.unpack("<2H", header[26:30])
        self._pos = info.header_offset + _LOCAL_HEADER + name_len + extra_len
        self._left = max(0, min(info.compress_size, file_size - self._pos))  # never past the file's end
        self._produced = 0
        self._crc = 0
        self.eof = False
        method = info.compress_type
        if method == zipfile.ZIP_STORED:
            self._dec = None
        elif method == zipfile.ZIP_DEFLATED:
            self._dec = _Zlib()
        elif method == zipfile.ZIP_BZIP2:
            self._dec = bz2.BZ2Decompressor()
        elif method == zipfile.ZIP_LZMA:
            self._dec = self._lzma()
        else:
            raise MemberError(f"compression method {method}")

    def _raw(self, n: int) -> bytes:
        n = min(n, self._left)
        if n <= 0:
            return b""
        self._f.seek(self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        self._left -= len(data)
        if len(data) < n:
            self._left = 0
        return data

    def _lzma(self):
        head = self._raw(4)
        if len(head) < 4:
            raise MemberError("a truncated lzma member")
        (psize,) = struct.unpack("<H", head[2:4])
        props = self._raw(psize)
        if len(props) < psize:
            raise MemberError("a truncated lzma member")
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[
            lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)])  # as zipfile does

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._limit + 1 - self._produced
        parts = []
        got = 0
        stalls = 0
        while got < n and not self.eof:
            piece = self._next(min(n - got, CHUNK))
            if piece:
                stalls = 0
                parts.append(piece)
                got += len(piece)
                self._produced += len(piece)
                self._crc = zlib.crc32(piece, self._crc)
                if self._produced > self._limit:
                    raise self._too_big(self._limit)
            else:
                stalls += 1
                if stalls > 1000:
                    raise MemberError("a member that makes no progress")
        if self.eof and self._crc != self._info.CRC:
            raise MemberError("a member whose checksum does not match")
        return b"".join(parts)

    def _next(self, n: int) -> bytes:
        dec = self._dec
        if dec is None:
            data = self._raw(n)
            if not data:
                self.eof = True
            return data
        if dec.eof:
            self.eof = True
            return b""
        if dec.needs_input:
            feed = self._raw(CHUNK)
            if not feed:
                raise MemberError("a truncated member")
            return dec.decompress(feed, n)
        return dec.decompress(b"", n)

    def read_all(self) -> bytes:
        """Everything (at most the limit, else `too_big`)."""
        return self.read(-1)
