"""Fuzz the OpenRaster reader: mutated files must load or raise FileFormatError, nothing else.

    .venv/bin/python tools/fuzz_ora.py [COUNT] [SEED]

The test suite runs a few thousand cases (tests/canvas/test_canvas_ora_fuzz.py);
this script runs as many as you like and saves any crashing file to
/tmp/ora-fuzz-crash-*.ora.
"""
from __future__ import annotations

import io
import os
import random
import sys
import time
import traceback
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from canvas.document import Document  # noqa: E402
from canvas.errors import FileFormatError  # noqa: E402
from canvas.ora import read_ora, write_ora  # noqa: E402
from canvas.selection import Selection  # noqa: E402
from canvas.geometry import Rect  # noqa: E402


def seed_files() -> list[bytes]:
    """A few small valid files: ours (masks, selection, parameters) and foreign-style ones."""
    rng = np.random.default_rng(7)
    out = []
    for n in (1, 3):
        doc = Document(40, 30, -5, 3)
        for i in range(n):
            layer = doc.add_image_layer(rng.integers(0, 256, (12, 17, 4), dtype=np.uint8), i * 3, i * 2,
                                        f"l{i}", parameters="p\nSteps: 2")
            if i == 1:
                doc.add_layer_mask(layer)
        doc.set_selection(Selection.ellipse(Rect(0, 5, 20, 10)))
        buf = io.BytesIO()
        write_ora(doc, buf)
        out.append(buf.getvalue())
    png = io.BytesIO()
    from PIL import Image
    Image.fromarray(rng.integers(0, 256, (5, 6, 4), dtype=np.uint8), "RGBA").save(png, "PNG")
    xml = (b'<image w="8" h="8"><stack><stack opacity="0.5"><layer src="data/a.png" x="1"/></stack>'
           b'<layer src="data/a.png" composite-op="svg:multiply" visibility="hidden"/></stack></image>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), b"image/openraster")
        zf.writestr("stack.xml", xml)
        zf.writestr("data/a.png", png.getvalue())
    out.append(buf.getvalue())
    return out


XML_TOKENS = [b'w="0"', b'h="-1"', b'x="nan"', b'y="1e400"', b'opacity="inf"', b"<stack>", b"</stack>",
              b"<layer/>", b'src=""', b'src="../x.png"', b'src="/abs.png"', b'src="data/missing.png"',
              b"&amp;", b"\x00", b"<!DOCTYPE x>", b'composite-op="svg:bogus"', b'w="99999999"',
              b"\xff\xfe", b'ls:mask="data/layer000.png"', b'ls:selection-x="q"']


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    kind = rnd.randrange(5)
    if kind == 0 and b:  # flip a few bits
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
    elif kind == 1:  # truncate
        b = b[: rnd.randrange(len(b) + 1)]
    elif kind == 2 and b:  # overwrite a run with random bytes
        i = rnd.randrange(len(b))
        for j in range(i, min(len(b), i + rnd.randint(1, 32))):
            b[j] = rnd.randrange(256)
    elif kind == 3 and b:  # duplicate or delete a slice
        i, j = sorted((rnd.randrange(len(b)), rnd.randrange(len(b))))
        b = b[:i] + b[i:j] * rnd.randint(0, 3) + b[j:]
    else:  # set bytes to interesting values
        for _ in range(rnd.randint(1, 4)):
            if b:
                b[rnd.randrange(len(b))] = rnd.choice([0, 0xFF, 0x7F, 0x80])
    return bytes(b)


def mutate_members(data: bytes, rnd: random.Random) -> bytes:
    """Re-zip with one member mutated (so the damage gets past zip CRC checks)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    idx = rnd.randrange(len(members))
    name, content = members[idx]
    if name == "stack.xml" and rnd.random() < 0.6:
        pos = rnd.randrange(len(content) + 1)
        content = content[:pos] + rnd.choice(XML_TOKENS) + content[pos:]
    elif rnd.random() < 0.15:
        members.pop(idx)
        content = None
    else:
        content = mutate_bytes(content, rnd)
    if content is not None:
        members[idx] = (name, content)
    if rnd.random() < 0.1:
        members.append((rnd.choice(["../evil", "C:/x", "data\\y.png", "data/x.png"]), b"x"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for n, c in members:
            out.writestr(n, c)
    return buf.getvalue()


def mutants(count: int, seed: int):
    rnd = random.Random(seed)
    seeds = seed_files()
    for _ in range(count):
        base = rnd.choice(seeds)
        yield mutate_members(base, rnd) if rnd.random() < 0.6 else mutate_bytes(base, rnd)


def check(data: bytes) -> BaseException | None:
    """None if the reader behaved (loaded, or raised FileFormatError); else the exception."""
    try:
        read_ora(io.BytesIO(data), name="fuzz.ora")
    except FileFormatError:
        return None
    except Exception as exc:  # noqa: BLE001 - this is what we hunt
        return exc
    return None


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    bad = 0
    t = time.perf_counter()
    for i, data in enumerate(mutants(count, seed)):
        exc = check(data)
        if exc is not None:
            bad += 1
            path = f"/tmp/ora-fuzz-crash-{seed}-{i}.ora"
            with open(path, "wb") as f:
                f.write(data)
            print(f"case {i}: {type(exc).__name__}: {exc} -> {path}")
            traceback.print_exception(exc, limit=3)
    print(f"{count} mutated files, seed {seed}, {bad} unexpected exceptions, {time.perf_counter() - t:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
