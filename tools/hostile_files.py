"""Hostile files, crafted: the building blocks and the cases of issue "Hardening: hostile files".

Used by tools/fuzz_files.py and the tests.  Every case is built from a name and a
`scale` (1 for the quick runs in the test suite; larger makes the bombs as big as
the ones the tester measured), deterministically, and cheaply: streams of zeros
are deflated once per MiB and the compressed block repeated (after a full flush
deflate's output for the same input repeats byte for byte).
"""
from __future__ import annotations

import bz2
import io
import lzma
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

PNG_SIG = b"\x89PNG\r\n\x1a\n"
MIB = 1 << 20


# ============================================================================== building blocks
def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(w: int, h: int, depth: int = 8, color_type: int = 6, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace))


def deflate_zeros(n: int, wrapper: str = "zlib") -> bytes:
    """A deflate stream of n zero bytes ('zlib' for PNG IDAT, 'raw' for zip members), built fast."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * MIB) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n, MIB)
    body = block * whole + c.compress(b"\0" * rest) + c.flush()
    if wrapper == "raw":
        return body
    adler = ((n % 65521) << 16) | 1  # adler32 of n zeros: a stays 1, b counts the bytes
    return b"\x78\xda" + body + struct.pack(">I", adler)


def deflate_repeat(unit: bytes, times: int) -> bytes:
    """A zlib stream of `unit` repeated `times` times, built from one compressed block of about 1 MiB."""
    per = max(1, MIB // len(unit))
    whole, rest = divmod(times, per)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(unit * per) + c.flush(zlib.Z_FULL_FLUSH)
    body = block * whole + c.compress(unit * rest) + c.flush()
    adler, piece = 1, unit * per
    for _ in range(whole):
        adler = zlib.adler32(piece, adler)
    adler = zlib.adler32(unit * rest, adler)
    return b"\x78\xda" + body + struct.pack(">I", adler)


def png_rows(w: int, h: int, row: bytes | None = None, *, depth: int = 8, color_type: int = 6,
             interlace: int = 0, extra: bytes = b"", idat_size: int | None = None) -> bytes:
    """A PNG whose every (filtered) row is `row` (default: filter 0 and zeros)."""
    stride = 1 + (w * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type] * depth + 7) // 8
    if row is None and not interlace:
        data = deflate_zeros(h * stride)
    else:
        row = row if row is not None else b"\0" * stride
        data = deflate_repeat(row, h) if not interlace else deflate_zeros(2 * h * stride)
    if idat_size:
        idat = b"".join(chunk(b"IDAT", data[i:i + idat_size]) for i in range(0, len(data), idat_size))
    else:
        idat = chunk(b"IDAT", data)
    return PNG_SIG + ihdr(w, h, depth, color_type, interlace) + extra + idat + chunk(b"IEND", b"")


def png_of(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "PNG", **save)
    return buf.getvalue()


def ora(xml: str | bytes, files: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster", compress_type=zipfile.ZIP_STORED)
        zf.writestr("stack.xml", xml)
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def raw_zip(members: list[dict]) -> bytes:
    """A zip written by hand, so it can lie: each member has ``name``, ``data`` (already
    compressed), ``method`` (0 stored, 8 deflate, 12 bz2, 14 lzma), and optionally ``crc``,
    ``size`` (the declared uncompressed size) and ``csize`` (the declared compressed size)."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        name = m["name"].encode()
        data = m["data"]
        crc, size, csize = m.get("crc", 0), m.get("size", len(data)), m.get("csize", len(data))
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, m.get("method", 8), 0, 0x21, crc, csize, size,
                              len(name), 0))
        out.write(name + data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, m.get("method", 8), 0, 0x21,
                                  crc, csize, size, len(name), 0, 0, 0, 0, 0, offset) + name)
    cd = central.getvalue()
    n = len(members)
    return out.getvalue() + cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd), out.tell(), 0)


def raw_ora(xml: bytes, members: list[dict]) -> bytes:
    return raw_zip([{"name": "mimetype", "data": b"image/openraster", "method": 0,
                     "crc": zlib.crc32(b"image/openraster")},
                    {"name": "stack.xml", "data": xml, "method": 0, "crc": zlib.crc32(xml)}] + members)


def layers_xml(srcs, w: int, h: int, extra: str = "") -> bytes:
    layers = "".join(f'<layer name="l{i}" src="{s}"/>' for i, s in enumerate(srcs))
    return f'<image w="{w}" h="{h}"{extra}><stack>{layers}</stack></image>'.encode()


def _pieces(n: int, piece: int = 16 * MIB):
    while n > 0:
        yield min(n, piece)
        n -= piece


def bomb_member(name: str, unpacked: int, method: int = 8, declared: int | None = None) -> dict:
    """A member starting with a small PNG's header and an IDAT chunk, then `unpacked` zero bytes."""
    prefix = PNG_SIG + ihdr(256, 256) + struct.pack(">I", 0x7FFFFFFF) + b"IDAT"
    if method == 8:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH) + deflate_zeros(unpacked, "raw")
    elif method == 12:
        c = bz2.BZ2Compressor(9)
        data = c.compress(prefix) + b"".join(c.compress(b"\0" * n) for n in _pieces(unpacked)) + c.flush()
    else:
        props = lzma._encode_filter_properties({"id": lzma.FILTER_LZMA1, "preset": 1})
        c = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1, "preset": 1}])
        body = c.compress(prefix) + b"".join(c.compress(b"\0" * n) for n in _pieces(unpacked)) + c.flush()
        data = struct.pack("<BBH", 9, 4, len(props)) + props + body
    return {"name": name, "data": data, "method": method, "size": declared if declared is not None
            else min(unpacked + len(prefix), 0xFFFFFFFF)}


def jpeg_with_size(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def webp_with_size(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (16, 16), (10, 200, 10, 128)).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x10, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + \
        (h - 1).to_bytes(3, "little")
    body = vp8x + data[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# ============================================================================== the cases
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a0 "ha">'
          + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
          + ']><image w="4" h="4"><stack><layer name="&a9;" src="data/a.png"/></stack></image>')


def _gradient_row(w: int) -> bytes:
    return b"\x01" + b"\x01" * (4 * w)  # Sub filter, +1 a byte: a ramp in every channel, every tile differs


def crafted(scale: int = 1) -> dict[str, tuple[str, callable]]:
    """name -> (extension, builder) of the crafted hostile files; `scale` sizes the bombs
    (1: 64 MiB each, the test suite; 48: 3 GiB, what the tester measured)."""
    bomb = 64 * MIB * scale
    big = 16384
    cases = {
        # 1. small files that exhaust memory
        "zip bomb layer (deflate)": (".ora", lambda: raw_ora(layers_xml(["data/a.png"], 256, 256),
                                                             [bomb_member("data/a.png", bomb)])),
        "zip directory lies about the size": (".ora", lambda: raw_ora(
            layers_xml(["data/a.png"], 256, 256), [bomb_member("data/a.png", bomb, declared=1000)])),
        "bz2 bomb layer": (".ora", lambda: raw_ora(layers_xml(["data/a.png"], 256, 256),
                                                   [bomb_member("data/a.png", min(bomb, 2048 * MIB), 12)])),
        "lzma bomb layer": (".ora", lambda: raw_ora(layers_xml(["data/a.png"], 256, 256),
                                                    [bomb_member("data/a.png", min(bomb, 1024 * MIB), 14)])),
        "bomb as stack.xml": (".ora", lambda: raw_zip([
            {"name": "mimetype", "data": b"image/openraster", "method": 0, "crc": zlib.crc32(b"image/openraster")},
            {"name": "stack.xml", "data": deflate_zeros(bomb, "raw"), "method": 8, "size": 100}])),
        "32768² layer": (".ora", lambda: ora(layers_xml(["data/a.png"], 32768, 32768),
                                             {"data/a.png": png_rows(32768, 32768)}, zipfile.ZIP_STORED)),
        "16384² transparent layer": (".ora", lambda: ora(layers_xml(["data/a.png"], big, big),
                                                         {"data/a.png": png_rows(big, big)}, zipfile.ZIP_STORED)),
        "16384² gradient layer": (".ora", lambda: ora(layers_xml(["data/a.png"], big, big),
                                                      {"data/a.png": png_rows(big, big, _gradient_row(big))})),
        "8192² PNG referenced by 40 layers": (".ora", lambda: ora(
            layers_xml(["data/a.png"] * 40, 8192, 8192), {"data/a.png": png_rows(8192, 8192, _gradient_row(8192))})),
        "16384² PNG referenced by 80 layers": (".ora", lambda: ora(
            layers_xml(["data/a.png"] * 80, big, big), {"data/a.png": png_rows(big, big)})),
        "10,000 layers referencing one PNG": (".ora", lambda: ora(
            layers_xml(["data/a.png"] * 10_000, 512, 512), {"data/a.png": png_rows(512, 512, _gradient_row(512))})),
        "16-bit RGBA 16384² layer (decoded whole)": (".ora", lambda: ora(
            layers_xml(["data/a.png"], big, big), {"data/a.png": png_rows(big, big, depth=16)})),
        "interlaced 16384² layer (decoded whole)": (".ora", lambda: ora(
            layers_xml(["data/a.png"], big, big), {"data/a.png": png_rows(big, big, interlace=1)})),
        "interlaced 2048² layer (decoded whole)": (".ora", lambda: ora(
            layers_xml(["data/a.png"], 2048, 2048), {"data/a.png": png_rows(2048, 2048, interlace=1)})),
        "16384² mask and selection": (".ora", lambda: ora(
            f'<image w="{big}" h="{big}" xmlns:ls="https://latent-studio.org/ns/openraster/1" '
            f'ls:selection="data/m.png"><stack><layer src="data/a.png" ls:mask="data/m.png"/></stack></image>',
            {"data/a.png": png_rows(4, 4), "data/m.png": png_rows(big, big, color_type=0)})),
        "zero-length chunks flood": (".png", lambda: PNG_SIG + ihdr(16, 16) + chunk(b"zzZz", b"") * 400_000
                                     + chunk(b"IDAT", zlib.compress(b"\0" * 16 * 65)) + chunk(b"IEND", b"")),
        "one-byte IDAT chunks": (".png", lambda: png_rows(1024, 1024, idat_size=1)),
        "zTXt bomb in parameters": (".png", lambda: png_rows(
            16, 16, extra=chunk(b"zTXt", b"parameters\0\0" + deflate_zeros(bomb)))),
        "16384² transparent PNG": (".png", lambda: png_rows(big, big)),
        "16384² gradient PNG": (".png", lambda: png_rows(big, big, _gradient_row(big))),
        "many zip members": (".ora", lambda: ora(layers_xml([], 8, 8), {f"x/{i}": b"" for i in range(20_000)})),
        # 2. declared sizes
        "canvas 131072²": (".ora", lambda: ora(layers_xml([], 131072, 131072), {})),
        "canvas 20000²": (".ora", lambda: ora(layers_xml([], 20000, 20000), {})),
        "canvas 16384²": (".ora", lambda: ora(layers_xml([], big, big), {})),
        "PNG header says 100000²": (".png", lambda: PNG_SIG + ihdr(100_000, 100_000) + chunk(b"IEND", b"")),
        "PNG header says 16384², data missing": (".png", lambda: PNG_SIG + ihdr(big, big) + chunk(b"IEND", b"")),
        "JPEG header says 65500²": (".jpg", lambda: jpeg_with_size(65500, 65500)),
        "JPEG header says 16000²": (".jpg", lambda: jpeg_with_size(16000, 16000)),
        "WebP header says 16383²": (".webp", lambda: webp_with_size(16383, 16383)),
        # XML and names
        "billion laughs": (".ora", lambda: ora(LAUGHS.encode(), {})),
        "billion laughs in UTF-16": (".ora", lambda: ora(LAUGHS.replace("?>", ' encoding="UTF-16"?>', 1)
                                                         .encode("utf-16"), {})),
        "billion laughs in an ASCII-hiding encoding": (".ora", lambda: ora(
            b'<?xml version="1.0" encoding="cp500"?>' + LAUGHS.split("?>", 1)[1].encode("cp500"), {})),
        "external entity": (".ora", lambda: ora('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                                                '"file:///etc/passwd">]><image w="4" h="4" name="&e;"/>', {})),
        "a million elements": (".ora", lambda: ora("<image w='4' h='4'><stack>" + "<a/>" * 1_000_000
                                                   + "</stack></image>", {})),
        "deep nesting": (".ora", lambda: ora("<image w='4' h='4'>" + "<stack>" * 100_000 + "</stack>" * 100_000
                                             + "</image>", {})),
        "path traversal in src": (".ora", lambda: ora(layers_xml(["../../etc/passwd.png"], 4, 4),
                                                      {"data/a.png": png_rows(4, 4)})),
        "path traversal member": (".ora", lambda: ora(layers_xml(["data/a.png"], 4, 4),
                                                      {"data/a.png": png_rows(4, 4), "../../evil.png": b"x"})),
        "absolute member": (".ora", lambda: ora(layers_xml(["/etc/a.png"], 4, 4), {"/etc/a.png": png_rows(4, 4)})),
        "encrypted member": (".ora", lambda: _flag_encrypted(ora(layers_xml(["data/a.png"], 4, 4),
                                                                 {"data/a.png": png_rows(4, 4)}))),
        "deflate64 member": (".ora", lambda: raw_ora(layers_xml(["data/a.png"], 4, 4),
                                                     [{"name": "data/a.png", "data": b"\0" * 64, "method": 9}])),
    }
    return cases


# Cases that decode (or flatten, in the CLI) up to 16384² pixels: seconds each on two cores.
HEAVY = {"16384² transparent layer", "16384² gradient layer", "8192² PNG referenced by 40 layers",
         "16384² mask and selection", "16384² transparent PNG", "16384² gradient PNG", "canvas 16384²"}


def _flag_encrypted(data: bytes) -> bytes:
    b = bytearray(data)
    i = b.rindex(b"PK\x01\x02")  # the last member's directory entry
    b[i + 8] |= 1
    return bytes(b)
