"""Hostile files (issue "Hardening: hostile files"): every limit is checked before memory is spent,
and each refusal is one sentence naming the number and the limit."""
from __future__ import annotations

import io
import os
import sys
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from canvas import limits
from canvas.errors import FileFormatError
from canvas.geometry import Rect
from canvas.image_io import image_size, load_image, read_rgba
from canvas.ora import declared_size, load_ora

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import hostile_files as hf  # noqa: E402

MIB = 1 << 20


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path, *words, loader=load_image) -> str:
    with pytest.raises(FileFormatError) as info:
        loader(path)
    msg = str(info.value)
    assert msg.startswith("Cannot open “") and msg.endswith(".") and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def peak_mib(fn) -> float:
    """Peak of what Python and numpy allocated while fn ran (tracemalloc), in MiB."""
    tracemalloc.start()
    try:
        fn()
    except FileFormatError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / MIB


# ------------------------------------------------------------------ zip members: inflated under a budget
@pytest.mark.parametrize("method", [8, 12, 14], ids=["deflate", "bz2", "lzma"])
def test_a_bomb_layer_is_not_inflated_past_what_its_image_can_need(tmp_path, method):
    """The reader used to accept a 4 GB member and read(limit + 1) inflated the whole of it
    (zipfile inflates bz2/lzma in unbounded calls: 1.4 KB of bz2 became 2.1 GB)."""
    member = hf.bomb_member("data/a.png", 128 * MIB, method)  # a PNG header, then zeros
    path = write(tmp_path, "bomb.ora", hf.raw_ora(hf.layers_xml(["data/a.png"], 256, 256), [member]))
    t = time.perf_counter()
    assert peak_mib(lambda: load_image(path)) < 48  # was the whole member
    assert time.perf_counter() - t < 5
    refused(path)


def test_a_zip_directory_that_lies_about_sizes_is_not_believed(tmp_path):
    """A layer list declared 100 bytes long that inflates to 64 MiB stops at 16 MiB."""
    zeros = {"name": "stack.xml", "data": hf.deflate_zeros(64 * MIB, "raw"), "method": 8, "size": 100}
    mimetype = {"name": "mimetype", "data": b"image/openraster", "method": 0, "crc": zlib.crc32(b"image/openraster")}
    path = write(tmp_path, "liar.ora", hf.raw_zip([mimetype, zeros]))
    refused(path, "“stack.xml” unpacks to more than 16,777,216 bytes")


def test_zip_member_stream_checks_the_crc_and_stops_at_its_limit():
    from canvas.zipmember import MemberError, MemberStream

    good = hf.png_rows(8, 8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a", good)
        zf.writestr("b", b"x" * 1000)
    data = bytearray(buf.getvalue())
    f = io.BytesIO(bytes(data))
    info = zipfile.ZipFile(f).getinfo("a")
    assert MemberStream(f, info, len(good), len(data), ValueError).read_all() == good
    with pytest.raises(OverflowError):
        MemberStream(f, info, len(good) - 1, len(data), lambda limit: OverflowError(limit)).read_all()
    info.CRC ^= 1
    with pytest.raises(MemberError, match="checksum"):
        MemberStream(f, info, 1 << 20, len(data), ValueError).read_all()


# ------------------------------------------------------------------ sizes, counted before decoding
def test_an_image_over_the_size_limit_is_refused_from_its_header(tmp_path):
    """A 4 MB .ora with a 32768² layer used to pass (2^30 pixels, 4 GB of RGBA)."""
    path = write(tmp_path, "huge.ora", hf.ora(hf.layers_xml(["data/a.png"], 32768, 32768),
                                              {"data/a.png": hf.png_rows(32768, 32768)}, zipfile.ZIP_STORED))
    t = time.perf_counter()
    refused(path, "declares 32768×32768 = 1,073,741,824 pixels", "at most 268,435,456 (16384×16384) per image")
    assert time.perf_counter() - t < 2


def test_a_png_over_the_size_limit_gets_the_size_sentence_not_not_a_png(tmp_path):
    path = write(tmp_path, "big.png", hf.PNG_SIG + hf.ihdr(20000, 20000) + hf.chunk(b"IEND", b""))
    refused(path, "it declares 20000×20000 = 400,000,000 pixels", "268,435,456 (16384×16384) per image")
    refused(path, "400,000,000", loader=lambda p: read_rgba(p))
    assert image_size(path) == (20000, 20000)


def test_the_document_pixel_budget_counts_every_reference(tmp_path):
    """An image referenced by 80 layers counts 80 times, checked before anything is decoded."""
    path = write(tmp_path, "refs.ora", hf.ora(hf.layers_xml(["data/a.png"] * 80, 16384, 16384),
                                              {"data/a.png": hf.png_rows(16384, 16384)}, zipfile.ZIP_STORED))
    t = time.perf_counter()
    refused(path, "declare 21,474,836,480 pixels in all", "at most 17,179,869,184")
    assert time.perf_counter() - t < 2


def test_masks_and_the_selection_count_too(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_DOCUMENT_PIXELS", 3 * 64 * 64 - 1)
    xml = ('<image w="64" h="64" xmlns:ls="https://latent-studio.org/ns/openraster/1" ls:selection="data/m.png">'
           '<stack><layer src="data/a.png" ls:mask="data/m.png"/></stack></image>')
    files = {"data/a.png": hf.png_rows(64, 64), "data/m.png": hf.png_rows(64, 64, color_type=0)}
    refused(write(tmp_path, "m.ora", hf.ora(xml, files)), "declare 12,288 pixels in all")


def test_the_layer_count_is_capped(tmp_path):
    path = write(tmp_path, "many.ora", hf.ora(hf.layers_xml(["data/a.png"] * 1001, 4, 4),
                                              {"data/a.png": hf.png_rows(4, 4)}))
    refused(path, "it has 1,001 layers; Latent Studio opens at most 1,000")


def test_canvas_sizes_are_capped_and_read_cheaply(tmp_path):
    path = write(tmp_path, "c.ora", hf.ora(hf.layers_xml([], 131072, 131072), {}))
    refused(path, "131072×131072 declares 17,179,869,184 pixels", "1,073,741,824 (32768×32768) per canvas")
    with pytest.raises(FileFormatError, match="17,179,869,184"):
        declared_size(path)
    ok = write(tmp_path, "ok.ora", hf.ora(hf.layers_xml(["data/a.png"], 300, 200), {"data/a.png": b"not a png"}))
    assert declared_size(ok) == (300, 200) == image_size(ok)  # the layer list only: the damage is not read


def test_the_app_makes_no_canvas_it_could_not_open_again():
    from canvas.document import Document
    from canvas.errors import DocumentError

    doc = Document(32768, 16384)
    doc.grow(bottom=16384)  # 32768² is the largest canvas
    with pytest.raises(ValueError, match="1,073,741,824"):
        doc.grow(right=8)
    with pytest.raises(DocumentError, match="1,073,741,824"):
        Document(20000, 20000).scale(2)


# ------------------------------------------------------------------ memory: what is kept is budgeted
def test_kept_pixels_are_budgeted_against_the_file_size(tmp_path, monkeypatch):
    """A tiny file whose every tile differs (a synthetic gradient) unpacks without bound."""
    path = write(tmp_path, "g.ora", hf.ora(hf.layers_xml(["data/a.png"], 2048, 2048),
                                           {"data/a.png": hf.png_rows(2048, 2048, b"\x01" * (1 + 4 * 2048))}))
    assert load_ora(path).layers[0].pixels.nbytes == 16 * MIB
    monkeypatch.setattr(limits, "MEMORY_FLOOR", 8 * MIB)
    msg = refused(path, "unpack to more than 8,388,608 bytes", f"for a file of {path.stat().st_size:,} bytes",
                  "64 times its size")
    assert "save it again with less compression" in msg


@pytest.mark.slow  # several seconds: `make test` runs it, `make test-fast` does not
def test_flat_tiles_are_shared_and_transparent_ones_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MEMORY_FLOOR", 112 * MIB)  # 128 MiB of white tiles, shared: one tile
    white = np.full((8192, 8192, 4), 255, np.uint8)
    white[:, 4096:] = 0
    path = write(tmp_path, "w.png", hf.png_of(white))
    del white
    tiles = load_image(path).layers[0].pixels.tiles
    assert len(tiles) == 32 * 16 and len({id(t) for t in tiles.values()}) == 1


def test_a_png_referenced_by_many_layers_is_decoded_once(tmp_path, monkeypatch):
    """One 8k PNG referenced by 40 layers took over 6 GB."""
    from canvas import png

    calls = []
    real = png.PngDecoder.decode
    monkeypatch.setattr(png.PngDecoder, "decode", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    gradient = hf.png_rows(512, 512, b"\x01" * (1 + 4 * 512))
    doc = load_ora(write(tmp_path, "r.ora", hf.ora(hf.layers_xml(["data/a.png"] * 40, 512, 512),
                                                   {"data/a.png": gradient})))
    assert len(calls) == 1 and len(doc.layers) == 40
    first = doc.layers[0].pixels.tiles
    assert all(layer.pixels.tiles[k] is t for layer in doc.layers for k, t in first.items())


@pytest.mark.slow  # several seconds: `make test` runs it, `make test-fast` does not
def test_png_layers_are_decoded_in_bands_not_whole(tmp_path):
    """A mostly transparent 8192² layer never needs a whole-image buffer (256 MiB)."""
    arr = np.zeros((8192, 8192, 4), np.uint8)
    arr[4000:4100, 4000:4100] = (200, 30, 40, 255)
    path = write(tmp_path, "sparse.ora", hf.ora(hf.layers_xml(["data/a.png"], 8192, 8192),
                                                {"data/a.png": hf.png_of(arr)}, zipfile.ZIP_STORED))
    del arr
    peak = peak_mib(lambda: load_image(path))
    assert peak < 96, peak
    layer = load_image(path).layers[0]
    assert layer.pixels.content_bbox() == Rect(4000, 4000, 100, 100)


def test_16_bit_colour_and_interlaced_pngs_decoded_whole_are_budgeted(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MEMORY_FLOOR", 4 * MIB)
    for name, png in (("deep", hf.png_rows(2048, 2048, depth=16)), ("interlaced", hf.png_rows(2048, 2048, interlace=1))):
        refused(write(tmp_path, f"{name}.ora", hf.ora(hf.layers_xml(["data/a.png"], 2048, 2048), {"data/a.png": png})),
                "unpack to more than 4,194,304 bytes")


def test_jpeg_and_webp_decoders_are_budgeted_before_they_run(tmp_path):
    refused(write(tmp_path, "big.jpg", hf.jpeg_with_size(65500, 65500)), "4,290,250,000 pixels")
    refused(write(tmp_path, "lie.jpg", hf.jpeg_with_size(16000, 16000)), "unpack to more than 536,870,912 bytes")
    refused(write(tmp_path, "lie.webp", hf.webp_with_size(16383, 16383)), "unpack to more than 536,870,912 bytes")


# ------------------------------------------------------------------ XML and PNG structure
@pytest.mark.parametrize("name", ["a million elements", "deep nesting"])
def test_xml_element_floods_are_refused_cheaply(tmp_path, name):
    """(Entity tricks, in any encoding, are covered by tools/fuzz_files.py's crafted cases.)"""
    ext, build = hf.crafted()[name]
    path = write(tmp_path, "x" + ext, build())
    assert peak_mib(lambda: refused(path)) < 40


def test_png_chunk_floods_are_refused(tmp_path):
    ext, build = hf.crafted()["zero-length chunks flood"]
    t = time.perf_counter()
    refused(write(tmp_path, "flood.png", build()), "damaged")
    assert time.perf_counter() - t < 2
    data = hf.png_rows(16, 16, extra=hf.chunk(b"zTXt", b"parameters\0\0" + hf.deflate_zeros(64 * MIB)))
    assert peak_mib(lambda: load_image(write(tmp_path, "ztxt.png", data))) < 16
