"""PNG/JPEG/WebP import, PNG export with the A1111 parameters chunk, the parameters text."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from canvas.document import Document
from canvas.errors import FileFormatError
from canvas.image_io import export_png, import_layer, load_flattened, load_image
from canvas.ora import save_ora
from canvas.parameters import format_parameters, generated_layer_name, parse_parameters

A1111 = ("a cat, sitting\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
         "Size: 512x512, Model: name, Denoising strength: 0.75")


@pytest.mark.parametrize("fmt,ext,exact", [("PNG", ".png", True), ("WEBP", ".webp", True), ("JPEG", ".jpg", False)])
def test_import_formats(tmp_path, rng, fmt, ext, exact):
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = tmp_path / f"pic{ext}"
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rgb).save(path, fmt, **kwargs)
    doc = load_image(path)
    assert doc.bounds.w == 30 and doc.bounds.h == 40 and doc.layers[0].name == "pic"
    flat = doc.flatten()
    assert (flat[..., 3] == 255).all()
    if exact:
        assert np.array_equal(flat[..., :3], rgb)
    assert not doc.history.can_undo


def test_png_parameters_are_read_and_exported(tmp_path, rng):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)).save(tmp_path / "gen.png", pnginfo=info)
    doc = load_image(tmp_path / "gen.png")
    assert doc.layers[0].parameters == A1111
    export_png(doc, tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").info["parameters"] == A1111
    doc.add_generated_layer(np.zeros((2, 2, 4), np.uint8) + 255, 0, 0, "Img2img: x", "x\nSteps: 3")
    export_png(doc, tmp_path / "two.png")  # two generations: no single parameters text
    assert "parameters" not in Image.open(tmp_path / "two.png").info
    export_png(doc.flatten(), tmp_path / "explicit.png", parameters="p ünïcode\nSteps: 1")
    assert Image.open(tmp_path / "explicit.png").info["parameters"] == "p ünïcode\nSteps: 1"


def test_import_layer_is_undoable_and_ora_loads_flattened(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, (10, 10, 4), dtype=np.uint8)).save(tmp_path / "l.png")
    doc = Document(20, 20)
    layer = import_layer(doc, tmp_path / "l.png", 5, 6)
    assert layer.pixels.content_bbox().x == 5
    doc.undo()
    assert not doc.layers
    doc.redo()
    save_ora(doc, tmp_path / "d.ora")
    assert np.array_equal(load_flattened(tmp_path / "d.ora"), doc.flatten())


def test_bad_images(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(FileFormatError, match="not a PNG, JPEG, WebP"):
        load_image(tmp_path / "x.png")
    Image.new("RGB", (50, 50)).save(tmp_path / "t.png")
    (tmp_path / "t2.png").write_bytes((tmp_path / "t.png").read_bytes()[:60])
    with pytest.raises(FileFormatError, match="damaged"):
        load_image(tmp_path / "t2.png")
    with pytest.raises(FileFormatError, match="does not exist"):
        load_image(tmp_path / "none.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "g.gif", "GIF")
    with pytest.raises(FileFormatError):
        load_image(tmp_path / "g.gif")


def test_parameters_format_and_parse():
    d = parse_parameters(A1111)
    assert d["prompt"] == "a cat, sitting" and d["negative_prompt"] == "blurry"
    assert d["Steps"] == "20" and d["Sampler"] == "Euler a" and d["Denoising strength"] == "0.75"
    assert format_parameters(d) == A1111
    tricky = {"prompt": "multi\nline: prompt", "Steps": "3", "Note": 'a, b "c"'}
    assert parse_parameters(format_parameters(tricky)) == tricky
    assert parse_parameters("just a prompt") == {"prompt": "just a prompt"}
    assert generated_layer_name("inpaint", "a red fox in the snow at dawn") == "Inpaint: a red fox in the snow…"
    assert generated_layer_name("upscale", "") == "Upscale"
