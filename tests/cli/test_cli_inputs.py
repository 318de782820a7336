"""The CLI's inputs: sizes are read from the headers before anything is decoded or flattened,
and masks in every pixel format mean what they show (no models: fast)."""
from __future__ import annotations

import os
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

import cli.imagefiles as imagefiles
from cli.imagefiles import ImageFileError, check_sizes, read_mask, read_parameters, read_rgba

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import hostile_files as hf  # noqa: E402


def one_sentence(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


def test_an_absurd_canvas_is_refused_from_its_layer_list(tmp_path):
    """A 547-byte .ora declaring 131072² ended in numpy's ArrayMemoryError and a 20-line traceback."""
    path = tmp_path / "huge.ora"
    path.write_bytes(hf.ora(hf.layers_xml([], 131072, 131072), {}))
    with pytest.raises(ImageFileError) as info:
        check_sizes(path)
    assert "17,179,869,184" in one_sentence(info)
    big = tmp_path / "big.ora"  # within what a document may be, beyond what the CLI holds as one image
    big.write_bytes(hf.ora(hf.layers_xml([], 20000, 20000), {}))
    with pytest.raises(ImageFileError) as info:
        check_sizes(big)
    msg = one_sentence(info)
    assert "20000×20000 = 400,000,000 pixels" in msg and "268,435,456 (16384×16384)" in msg


def test_the_mask_size_is_checked_before_anything_is_decoded(tmp_path, monkeypatch):
    """A 474-byte 20000² .ora took 1.55 GB before saying "mask size differs"."""
    image = tmp_path / "image.ora"
    image.write_bytes(hf.ora(hf.layers_xml([], 16000, 12000), {}))
    Image.new("L", (10, 10)).save(tmp_path / "mask.png")
    monkeypatch.setattr(imagefiles, "read_document", lambda path: pytest.fail("decoded before the sizes were checked"))
    tracemalloc.start()
    with pytest.raises(ImageFileError) as info:
        check_sizes(image, tmp_path / "mask.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "The mask is 10×10 but the image is 16000×12000" in one_sentence(info)
    assert peak < 8 << 20
    with pytest.raises(ImageFileError, match="must be the size of the image"):
        read_mask(tmp_path / "mask.png", (16000, 12000))


def test_sizes_are_read_from_png_jpeg_and_webp_headers(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    Image.new("RGB", (31, 21)).save(tmp_path / "a.jpg")
    Image.new("RGB", (32, 22)).save(tmp_path / "a.webp")
    assert [check_sizes(tmp_path / n) for n in ("a.png", "a.jpg", "a.webp")] == [(30, 20), (31, 21), (32, 22)]
    (tmp_path / "lie.png").write_bytes(hf.PNG_SIG + hf.ihdr(200_000, 100) + hf.chunk(b"IEND", b""))
    with pytest.raises(ImageFileError) as info:
        check_sizes(tmp_path / "lie.png")
    assert "200000×100" in one_sentence(info)


def test_a_16_bit_mask_means_what_it_shows(tmp_path):
    """As a mask, 16-bit 50 % grey became a full repaint (clipped to 255)."""
    grey = np.full((8, 8), 32768, np.uint16)
    grey[:, :4] = 0
    Image.fromarray(grey).save(tmp_path / "mask16.png")
    mask = read_mask(tmp_path / "mask16.png", (8, 8))
    assert (mask[:, 4:] == 128).all() and (mask[:, :4] == 0).all()
    ramp = (np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    rgba = read_rgba(tmp_path / "ramp16.png")
    assert np.array_equal(rgba[..., 0], ((ramp.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))


def test_read_parameters_reads_no_pixels(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 3")
    data = hf.png_rows(16384, 16384)  # decoding this would take seconds
    head, tail = data[:33], data[33:]
    text = hf.chunk(b"tEXt", b"parameters\0a cat\nSteps: 3")
    (tmp_path / "p.png").write_bytes(head + text + tail)
    t = time.perf_counter()
    assert read_parameters(tmp_path / "p.png") == "a cat\nSteps: 3"
    assert time.perf_counter() - t < 0.5


def test_a_webp_header_lie_is_refused_by_the_memory_budget_not_by_pillow(tmp_path):
    """Pillow refuses WebPs over 179 M pixels while opening them; ours are read first."""
    (tmp_path / "lie.webp").write_bytes(hf.webp_with_size(16383, 16383))
    assert check_sizes(tmp_path / "lie.webp") == (16383, 16383)
    with pytest.raises(ImageFileError) as info:
        read_rgba(tmp_path / "lie.webp")
    assert "unpack to more than 536,870,912 bytes" in one_sentence(info)
