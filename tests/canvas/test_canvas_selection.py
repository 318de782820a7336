"""Selection shapes and operations; the brush paints into the selection and masks."""
from __future__ import annotations

import numpy as np
import pytest

from canvas.brush import BrushSettings
from canvas.document import Document
from canvas.geometry import Rect
from canvas.selection import Selection

R = Rect(0, 0, 400, 300)


def test_rectangle_ellipse_polygon():
    r = Selection.rectangle(Rect(10, 20, 30, 40)).read(R)
    assert r[20:60, 10:40].min() == 255 and r.sum() == 255 * 30 * 40
    e = Selection.ellipse(Rect(100, 100, 200, 100)).read(R)
    assert e[150, 200] == 255 and e[100, 100] == 0 and 0 < e[150, 100] < 255
    area = e.sum() / 255
    assert area == pytest.approx(np.pi * 100 * 50, rel=0.01)
    p = Selection.polygon([(0, 0), (200, 0), (0, 200)]).read(R)
    assert p[10, 10] == 255 and p[150, 150] == 0
    assert p.sum() / 255 == pytest.approx(200 * 200 / 2, rel=0.02)
    assert 0 < p[100, 99] < 255 or 0 < p[100, 100] < 255  # anti-aliased edge


def test_combine_modes():
    a = Selection.rectangle(Rect(0, 0, 100, 100))
    b = Selection.rectangle(Rect(50, 0, 100, 100))
    assert a.combine(b, "add").read(R).sum() == 255 * 150 * 100
    assert a.combine(b, "subtract").read(R).sum() == 255 * 50 * 100
    assert a.combine(b, "intersect").read(R).sum() == 255 * 50 * 100
    assert a.combine(b, "replace").equals(b)
    with pytest.raises(ValueError):
        a.combine(b, "xor")


def test_grow_shrink_feather_invert():
    s = Selection.rectangle(Rect(100, 100, 50, 50))
    g = s.grow(5).read(R)
    assert g[95, 125] == 255 and g[94, 125] == 0 and g[125, 155 - 1] == 255
    sh = s.shrink(5).read(R)
    assert sh[105, 125] == 255 and sh[104, 125] == 0
    assert np.array_equal(s.grow(5).shrink(5).read(R), s.read(R))
    f = s.feather(4).read(R)
    assert 0 < f[100, 125] < 255 and f[125, 125] == 255 and f[80, 125] == 0
    inv = s.inverted()
    assert inv.surface.fill == 255 and inv.read(R)[0, 0] == 255 and inv.read(R)[120, 120] == 0
    assert inv.inverted().equals(s)
    # operations on an inverted selection stay sparse and correct far away
    ig = inv.grow(5)
    assert ig.read(Rect(-5000, -5000, 1, 1))[0, 0] == 255 and ig.read(R)[120, 120] == 0
    assert len(ig.surface.tiles) <= 4
    assert Selection().is_empty and not inv.is_empty and Selection().grow(3).is_empty


def test_from_layer_alpha(rng):
    doc = Document(300, 300)
    rgba = np.zeros((300, 300, 4), np.uint8)
    rgba[50:80, 60:90] = 255
    layer = doc.add_image_layer(rgba, 0, 0)
    sel = Selection.from_alpha(layer.pixels)
    assert np.array_equal(sel.read(Rect(0, 0, 300, 300)), rgba[..., 3])


def test_brush_paints_selection_and_eraser_deselects():
    doc = Document(400, 300)
    s = doc.begin_stroke(BrushSettings(size=40, hardness=1.0), target="selection")
    s.stroke_to(50, 150)
    s.stroke_to(350, 150)
    s.end()
    m = doc.selection.read(R)
    assert m[150, 200] == 255 and m[100, 200] == 0
    e = doc.begin_stroke(BrushSettings(size=40, hardness=1.0, eraser=True), target="selection")
    e.dab(200, 150)
    e.end()
    assert doc.selection.read(R)[150, 200] == 0 and doc.selection.read(R)[150, 100] == 255


def test_painting_is_limited_to_the_selection():
    doc = Document(400, 300)
    layer = doc.add_layer()
    doc.select(Selection.rectangle(Rect(0, 0, 200, 300)))
    s = doc.begin_stroke(BrushSettings(size=50, hardness=1.0), layer, (255, 0, 0))
    s.stroke_to(100, 150)
    s.stroke_to(300, 150)
    s.end()
    a = doc.flatten()[..., 3]
    assert a[150, 150] == 255 and a[150, 250] == 0 and a[150, 199] == 255 and a[150, 200] == 0


def test_mask_brush_hides_and_reveals(rng):
    doc = Document(300, 300)
    layer = doc.add_image_layer(np.full((300, 300, 4), 255, np.uint8), 0, 0)
    doc.add_layer_mask(layer)
    hide = doc.begin_stroke(BrushSettings(size=60, hardness=1.0, eraser=True), layer, target="mask")
    hide.dab(150, 150)
    hide.end()
    assert doc.flatten()[150, 150, 3] == 0 and doc.flatten()[10, 10, 3] == 255
    reveal = doc.begin_stroke(BrushSettings(size=20, hardness=1.0), layer, target="mask")
    reveal.dab(150, 150)
    reveal.end()
    assert doc.flatten()[150, 150, 3] == 255 and doc.flatten()[150, 125, 3] == 0
    assert layer.pixels.read(Rect(150, 150, 1, 1))[0, 0, 3] == 255  # the mask never touches pixels
