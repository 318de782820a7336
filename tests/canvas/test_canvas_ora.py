"""OpenRaster: round trips, files other applications write, bad files, atomic saves."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from canvas.blend import BLEND_MODES
from canvas.document import Document, layers_equal
from canvas.errors import DocumentError, FileFormatError, OperationCancelled
from canvas.geometry import Rect
from canvas.layer import Layer
from canvas.ora import load_ora, read_ora, save_ora
from canvas.progress import RecordingProgress
from canvas.role import ControlRole, ReferenceRole
from canvas.selection import Selection
from canvas.tiles import TiledSurface

from ora_samples import make_ora, png_bytes, solid

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
unit = st.floats(0, 1, allow_nan=False)
roles = st.none() | st.builds(
    lambda kind, model, strength, a, b: ControlRole(kind, model, strength, min(a, b), max(a, b) if a != b else 1.0)
    if min(a, b) < 1.0 else ControlRole(kind, model, strength),
    st.from_regex(r"[a-z][a-z0-9_\-]{0,12}", fullmatch=True), names, st.floats(0, 2), unit, unit,
) | st.builds(ReferenceRole, st.floats(0, 2), st.sampled_from(["full", "style", "composition"]))


@st.composite
def layer_stacks(draw):
    doc = Document(draw(st.integers(1, 300)), draw(st.integers(1, 300)),
                   draw(st.integers(-600, 600)), draw(st.integers(-600, 600)))
    b = doc.bounds
    for _ in range(draw(st.integers(0, 4))):
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        layer = Layer(
            name=draw(names), visible=draw(st.booleans()),
            opacity=draw(st.floats(0, 1)), blend_mode=draw(st.sampled_from(list(BLEND_MODES))),
            locked=draw(st.booleans()), role=draw(roles),
            parameters=draw(st.none() | st.text(st.characters(blacklist_categories=("Cs", "Cc")),
                                                  min_size=1, max_size=60)))
        layer.pixels.write(draw(st.integers(b.x - 300, b.right + 300)), draw(st.integers(b.y - 300, b.bottom + 300)),
                           draw(arrays(np.uint8, (h, w, 4))))
        if draw(st.booleans()):
            layer.mask = TiledSurface(1, 255)
            layer.mask.write(b.x + draw(st.integers(-50, 300)), b.y + draw(st.integers(-50, 300)),
                             draw(arrays(np.uint8, (draw(st.integers(1, 30)), draw(st.integers(1, 30))))))
        doc._layers.append(layer)
    sel = draw(st.sampled_from(["none", "rect", "ellipse", "inverted"]))
    if sel != "none":
        shape = Rect(b.x + 3, b.y + 5, 40, 30)
        s = Selection.rectangle(shape) if sel == "rect" else Selection.ellipse(shape)
        doc.selection = s.inverted() if sel == "inverted" else s
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layer_stacks())
def test_round_trip_keeps_pixels_and_attributes(doc):
    buf = io.BytesIO()
    from canvas.ora import write_ora
    write_ora(doc, buf)
    back = read_ora(io.BytesIO(buf.getvalue()))
    assert back.bounds == doc.bounds
    assert layers_equal(back.layers, doc.layers)
    assert back.selection.equals(doc.selection)
    assert np.array_equal(back.flatten(), doc.flatten())


def test_file_layout_follows_the_spec(small_doc, tmp_path):
    path = tmp_path / "a.ora"
    save_ora(small_doc, path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert infos[0].filename == "mimetype" and infos[0].compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == b"image/openraster"
        assert not infos[0].extra
        names = zf.namelist()
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(names)
        from PIL import Image
        thumb = Image.open(io.BytesIO(zf.read("Thumbnails/thumbnail.png")))
        assert max(thumb.size) <= 256
        merged = np.asarray(Image.open(io.BytesIO(zf.read("mergedimage.png"))))
        assert np.array_equal(merged, small_doc.flatten())
        xml = zf.read("stack.xml").decode()
        assert 'composite-op="svg:multiply"' in xml and 'version="0.0.6"' in xml
    with open(path, "rb") as f:
        assert f.read(38)[30:38] == b"mimetype"  # the first local header names it: magic-number sniffing


def test_generated_layer_parameters_survive(tmp_path):
    doc = Document(64, 64)
    doc.add_generated_layer(np.full((8, 8, 4), 9, np.uint8), 1, 2, "Inpaint: a fox",
                            "a fox\nNegative prompt: blur\nSteps: 20, Seed: 1")
    save_ora(doc, tmp_path / "g.ora")
    back = load_ora(tmp_path / "g.ora")
    assert back.layers[0].parameters == "a fox\nNegative prompt: blur\nSteps: 20, Seed: 1"
    assert back.layers[0].name == "Inpaint: a fox"
    assert not back.history.can_undo


def test_control_characters_in_names_are_dropped(tmp_path):
    doc = Document(8, 8)
    doc.add_layer("bad\x00na\x1bme")
    save_ora(doc, tmp_path / "c.ora")
    assert load_ora(tmp_path / "c.ora").layers[0].name == "badname"


# ------------------------------------------------------------------ files other apps write
def test_gimp_mypaint_style_nested_stacks_and_defaults(tmp_path):
    red, blue = solid(4, 4, (255, 0, 0, 255)), solid(2, 2, (0, 0, 255, 128))
    xml = """<?xml version='1.0' encoding='UTF-8'?>
<image w="10" h="8">
  <stack>
    <stack name="group" opacity="0.5" visibility="visible">
      <layer name="blue" src="data/blue.png" composite-op="svg:screen"/>
      <stack name="hidden group" visibility="hidden"><layer src="data/red.png" name="inner" x="1"/></stack>
    </stack>
    <text>ignored</text>
    <layer name="bg" src="data/red.png" x="2" y="3" opacity="1.0" composite-op="krita:burn"/>
  </stack>
</image>"""
    p = tmp_path / "gimp.ora"
    p.write_bytes(make_ora(xml, {"data/red.png": png_bytes(red), "data/blue.png": png_bytes(blue)}))
    doc = load_ora(p)
    assert [l.name for l in doc.layers] == ["bg", "inner", "blue"]
    bg, inner, blue = doc.layers
    assert bg.blend_mode == "normal" and bg.pixels.content_bbox() == Rect(2, 3, 4, 4)
    assert not inner.visible and inner.pixels.content_bbox() == Rect(1, 0, 4, 4)
    assert blue.opacity == 0.5 and blue.blend_mode == "screen" and blue.pixels.content_bbox() == Rect(0, 0, 2, 2)


def test_mimetype_may_be_missing_but_not_wrong(tmp_path):
    xml = '<image w="2" h="2"><stack><layer src="data/a.png"/></stack></image>'
    files = {"data/a.png": png_bytes(solid(2, 2, (1, 2, 3, 4)))}
    (tmp_path / "ok.ora").write_bytes(make_ora(xml, files, mimetype=None))
    assert len(load_ora(tmp_path / "ok.ora").layers) == 1
    (tmp_path / "bad.ora").write_bytes(make_ora(xml, files, mimetype=b"application/zip"))
    with pytest.raises(FileFormatError, match="not an OpenRaster"):
        load_ora(tmp_path / "bad.ora")


def test_greyscale_palette_and_16_bit_layer_pngs(tmp_path):
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    pal = solid(3, 3, (10, 20, 30, 255))
    from PIL import Image
    b16 = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(b16, "PNG")
    pbuf = io.BytesIO()
    Image.fromarray(pal[..., :3].copy(), "RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(pbuf, "PNG")
    xml = ('<image w="4" h="4"><stack><layer src="data/g.png"/><layer src="data/p.png"/>'
           '<layer src="data/16.png"/></stack></image>')
    (tmp_path / "m.ora").write_bytes(make_ora(xml, {"data/g.png": png_bytes(grey, "L"), "data/p.png": pbuf.getvalue(),
                                                    "data/16.png": b16.getvalue()}))
    doc = load_ora(tmp_path / "m.ora")
    assert np.array_equal(doc.layers[2].pixels.read(Rect(0, 0, 4, 4))[..., 0], grey)
    assert np.array_equal(doc.layers[0].pixels.read(Rect(0, 0, 4, 4))[..., 0], grey)
    assert tuple(doc.layers[1].pixels.read(Rect(0, 0, 1, 1))[0, 0]) == (10, 20, 30, 255)


# ------------------------------------------------------------------ bad files
GOOD_XML = '<image w="4" h="4"><stack><layer name="a" src="data/a.png"/></stack></image>'
GOOD_PNG = png_bytes(solid(4, 4, (1, 2, 3, 255)))


def _bad_cases():
    good = make_ora(GOOD_XML, {"data/a.png": GOOD_PNG})
    huge = png_bytes(solid(1, 1, (0, 0, 0, 0)))
    huge = huge[:16] + (200000).to_bytes(4, "big") + (200000).to_bytes(4, "big") + huge[24:]
    return {
        "empty file": b"",
        "not a zip": b"hello world" * 10,
        "truncated zip": good[: len(good) // 2],
        "missing stack.xml": make_ora(None, {"data/a.png": GOOD_PNG}),
        "stack.xml not XML": make_ora("<image w=", {"data/a.png": GOOD_PNG}),
        "root is not image": make_ora("<svg/>", {}),
        "missing size": make_ora('<image><stack/></image>', {}),
        "absurd size": make_ora('<image w="10000000" h="5"><stack/></image>', {}),
        "negative size": make_ora('<image w="-5" h="5"><stack/></image>', {}),
        "layer png missing": make_ora(GOOD_XML, {}),
        "layer png corrupt": make_ora(GOOD_XML, {"data/a.png": GOOD_PNG[:40]}),
        "layer not png": make_ora(GOOD_XML, {"data/a.png": b"GIF89a" + b"\0" * 40}),
        "layer absurd size": make_ora(GOOD_XML, {"data/a.png": huge}),
        "layer without src": make_ora('<image w="4" h="4"><stack><layer/></stack></image>', {}),
        "path traversal in zip": make_ora(GOOD_XML, {"data/a.png": GOOD_PNG, "../../evil.png": GOOD_PNG}),
        "absolute path in zip": make_ora(GOOD_XML, {"data/a.png": GOOD_PNG, "/etc/evil": b"x"}),
        "path traversal in src": make_ora(GOOD_XML.replace("data/a.png", "data/../../a.png"),
                                          {"data/a.png": GOOD_PNG}),
        "bad offset": make_ora(GOOD_XML.replace('src=', 'x="1e300" src='), {"data/a.png": GOOD_PNG}),
        "xml entities": make_ora('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]>'
                                 '<image w="4" h="4"><stack/></image>', {}),
        "unknown xml encoding (found by fuzzing)": make_ora('<?xml version="1.0" encoding="UTF-0"?><image w="1" h="1"/>', {}),
        "layer jpeg src": make_ora(GOOD_XML.replace("a.png", "a.jpg"), {"data/a.jpg": b"\xff\xd8"}),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_files_raise_one_clear_error(case, tmp_path):
    path = tmp_path / "bad.ora"
    path.write_bytes(_bad_cases()[case])
    with pytest.raises(FileFormatError) as info:
        load_ora(path)
    msg = str(info.value)
    assert msg.startswith("Cannot open “bad.ora”: ") and msg.endswith(".") and "\n" not in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DocumentError, match="does not exist"):
        load_ora(tmp_path / "nope.ora")
    with pytest.raises(DocumentError, match="folder"):
        load_ora(tmp_path)


# ------------------------------------------------------------------ saving
def test_interrupted_save_leaves_the_previous_file(small_doc, tmp_path):
    path = tmp_path / "doc.ora"
    save_ora(small_doc, path)
    before = path.read_bytes()
    progress = RecordingProgress()
    real_update = progress.update

    def cancel_midway(done, total, message):
        real_update(done, total, message)
        if done == 2:
            progress.cancel()

    progress.update = cancel_midway
    small_doc.add_layer("another")
    with pytest.raises(OperationCancelled):
        save_ora(small_doc, path, progress)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["doc.ora"]  # no temporary file left behind
    assert [u[0] for u in progress.updates] == [0, 1, 2]


def test_save_into_missing_folder_is_a_document_error(small_doc, tmp_path):
    with pytest.raises(DocumentError, match="Cannot save"):
        save_ora(small_doc, tmp_path / "no" / "such" / "dir.ora")


def test_progress_reports_every_layer(small_doc, tmp_path):
    progress = RecordingProgress()
    save_ora(small_doc, tmp_path / "p.ora", progress)
    assert progress.updates[-1][0] == progress.updates[-1][1]
    assert len(progress.updates) == len(small_doc.layers) + 3
    loading = RecordingProgress()
    load_ora(tmp_path / "p.ora", loading)
    assert loading.updates[-1][:2] == (4, 4)


def test_background_save_works_on_a_snapshot(small_doc, tmp_path):
    from canvas.background import BackgroundSaver
    saver = BackgroundSaver()
    expected = small_doc.flatten()
    future = saver.save_ora(small_doc, tmp_path / "bg.ora")
    small_doc.remove_layer(small_doc.layers[0])  # the painter goes on working
    future.result(timeout=60)
    saver.shutdown()
    assert np.array_equal(load_ora(tmp_path / "bg.ora").flatten(), expected)
