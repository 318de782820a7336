"""Every pixel format comes in as straight 8-bit RGBA: deeper samples scaled, never clipped.

A 16-bit ramp used to come in 99 % white (Pillow's convert("RGBA") clips I;16 at 255).  Each mode is
read from a file through both decoders (PNG rows in bands; Pillow for interlaced PNGs, JPEG, WebP)
or, for modes no supported format stores, converted directly."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from canvas.geometry import Rect
from canvas.image_io import load_image, read_rgba
from canvas.pixels import from_pil

RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)
OPAQUE = np.full((16, 16), 255, np.uint8)


def grey(values, alpha=OPAQUE):
    return np.dstack([values, values, values, alpha])


def ramp16(order="<u2"):
    v = np.linspace(0, 65535, 256).round().astype(np.uint32).reshape(16, 16)
    v[0, 1] = 32768  # 50 % grey: 128, not 255
    return v.astype(order), ((v * 255 + 32767) // 65535).astype(np.uint8)


def _png_cases():
    v16, e16 = ramp16()
    b16, _ = ramp16(">u2")
    palette = Image.fromarray(RAMP, "L").convert("P")
    alpha_table = bytes(range(255, -1, -1))  # index i has alpha 255 - i
    bits = (RAMP % 3 == 0)
    return {
        "L": (Image.fromarray(RAMP, "L"), {}, grey(RAMP)),
        "I;16": (Image.fromarray(v16), {}, grey(e16)),
        "I;16B": (Image.frombuffer("I;16B", (16, 16), b16.tobytes(), "raw", "I;16B", 0, 1), {}, grey(e16)),
        "LA": (Image.merge("LA", [Image.fromarray(RAMP), Image.fromarray(255 - RAMP)]), {}, grey(RAMP, 255 - RAMP)),
        "P+tRNS": (palette, {"transparency": alpha_table}, grey(RAMP, 255 - RAMP)),
        "RGBA": (Image.fromarray(np.dstack([RAMP, 255 - RAMP, RAMP // 2, RAMP]), "RGBA"), {},
                 np.dstack([RAMP, 255 - RAMP, RAMP // 2, RAMP])),
        "1": (Image.fromarray(bits).convert("1"), {}, grey(np.where(bits, 255, 0).astype(np.uint8))),
    }


@pytest.mark.parametrize("interlace", [0, 1], ids=["rows", "interlaced"])
@pytest.mark.parametrize("mode", list(_png_cases()))
def test_png_modes_come_in_as_8_bit_rgba(tmp_path, mode, interlace):
    im, save, expected = _png_cases()[mode]
    path = tmp_path / "ramp.png"
    im.save(path, interlace=interlace, **save)
    rgba, _ = read_rgba(path)
    assert rgba.dtype == np.uint8 and rgba.shape == (16, 16, 4)
    assert np.array_equal(rgba, expected), (rgba[..., 0], rgba[..., 3])
    layer = load_image(path).layers[0]  # the document path: the same pixels, as tiles
    assert np.array_equal(layer.pixels.read(Rect(0, 0, 16, 16)), expected)


def test_16_bit_layers_in_an_ora_are_scaled(tmp_path):
    from ora_samples import make_ora

    v16, e16 = ramp16()
    buf = io.BytesIO()
    Image.fromarray(v16).save(buf, "PNG")
    (tmp_path / "d.ora").write_bytes(make_ora('<image w="16" h="16"><stack><layer src="data/a.png"/></stack></image>',
                                              {"data/a.png": buf.getvalue()}))
    assert np.array_equal(load_image(tmp_path / "d.ora").flatten(), grey(e16))


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.merge("CMYK", [Image.fromarray(RAMP), *(Image.fromarray(np.zeros((16, 16), np.uint8)),) * 3])
    cmyk.save(tmp_path / "c.jpg", "JPEG", quality=100)
    rgba, _ = read_rgba(tmp_path / "c.jpg")
    assert np.abs(rgba[..., 0].astype(int) - (255 - RAMP)).max() <= 8  # cyan ink takes red away
    assert (rgba[..., 1:3] >= 245).all() and (rgba[..., 3] == 255).all()


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "I wide", "F", "LA", "L", "P+tRNS", "RGBA", "CMYK", "1"])
def test_pillow_modes_convert_scaled(mode):
    """The converter behind JPEG, WebP and whole-decoded PNGs, for every mode Pillow can hand it."""
    v16, e16 = ramp16()
    if mode in ("I;16", "I;16B"):
        order = "<u2" if mode == "I;16" else ">u2"
        im = Image.frombuffer(mode, (16, 16), v16.astype(order).tobytes(), "raw", mode, 0, 1)
        expected = grey(e16)
    elif mode == "I":  # 16-bit values in a 32-bit image (old Pillow's 16-bit PNGs)
        im = Image.fromarray(v16.astype(np.int32), "I")
        expected = grey(e16)
    elif mode == "I wide":  # the full 31-bit range
        im = Image.fromarray((RAMP.astype(np.int64) << 23).astype(np.int32), "I")
        expected = grey(RAMP)
    elif mode == "F":  # taken as 0..1, outside clipped
        f = RAMP.astype(np.float32) / 255
        f[0, 0], f[0, 1] = -3.0, 7.0
        e = RAMP.copy()
        e[0, 0], e[0, 1] = 0, 255
        im, expected = Image.fromarray(f, "F"), grey(e)
    elif mode == "CMYK":
        zero = Image.fromarray(np.zeros((16, 16), np.uint8))
        im, expected = Image.merge("CMYK", [zero, zero, zero, Image.fromarray(RAMP)]), grey(255 - RAMP)
    else:
        case = _png_cases()[mode]
        im, expected = case[0], case[2]
        if mode == "P+tRNS":
            im = im.copy()
            im.info["transparency"] = case[1]["transparency"]
    assert np.array_equal(from_pil(im), expected)
    if mode not in ("RGBA", "CMYK"):  # greys: the mask channel is the grey itself
        assert np.array_equal(from_pil(im, channels=1), expected[..., 0])
