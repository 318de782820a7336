"""The brush engine: dab shape, spacing, opacity/flow, pressure, eraser, locks."""
from __future__ import annotations

import numpy as np
import pytest

from canvas.brush import BrushSettings, dab_shape
from canvas.document import Document
from canvas.errors import DocumentError, LayerLockedError
from canvas.geometry import Rect

from canvas_helpers import assert_render_matches


def _paint(doc, layer, points, **kw):
    s = doc.begin_stroke(BrushSettings(**kw), layer, (200, 40, 10))
    for p in points:
        s.stroke_to(*p)
    s.end()
    return s


def test_dab_shape_hardness():
    _, hard = dab_shape(50, 50, 20, 1.0)
    _, soft = dab_shape(50, 50, 20, 0.0)
    assert hard[20, 20] == pytest.approx(1) and soft[20, 20] > 0.95
    assert hard[20, 35] == pytest.approx(1) and 0 < soft[20, 35] < 0.3
    assert hard.sum() == pytest.approx(np.pi * 400, rel=0.02)
    assert soft.sum() < hard.sum() / 2


def test_opacity_caps_a_stroke_and_flow_builds_up():
    doc = Document(200, 200)
    layer = doc.add_layer()
    s = doc.begin_stroke(BrushSettings(size=30, hardness=1.0, opacity=0.5, flow=0.2), layer, (0, 0, 0))
    for _ in range(60):
        s.dab(100, 100)
    s.end()
    assert len(doc.history) == 2  # the layer, then the stroke as one step
    assert doc.flatten()[100, 100, 3] == pytest.approx(127, abs=2)  # never beyond opacity
    doc2 = Document(200, 200)
    l2 = doc2.add_layer()
    _paint(doc2, l2, [(100, 100)], size=30, hardness=1.0, opacity=1.0, flow=0.2)
    assert doc2.flatten()[100, 100, 3] == pytest.approx(51, abs=1)  # one dab adds flow


def test_spacing_gives_a_continuous_line_and_pressure_scales_size():
    doc = Document(400, 200)
    layer = doc.add_layer()
    _paint(doc, layer, [(20, 50, 1.0), (380, 50, 1.0)], size=20, hardness=1.0)
    a = doc.flatten()[..., 3]
    assert a[50, 20:380].min() == 255
    _paint(doc, layer, [(20, 150, 1.0), (380, 150, 0.0)], size=40, hardness=1.0, pressure_opacity=False)
    a = doc.flatten()[..., 3]
    thick = (a[:, 30] > 128).sum() - (a[:100, 30] > 128).sum()
    thin = (a[:, 360] > 128).sum() - (a[:100, 360] > 128).sum()
    assert thick > 30 and thin < 12


def test_pressure_scales_opacity():
    doc = Document(200, 200)
    layer = doc.add_layer()
    _paint(doc, layer, [(100, 100, 0.5)], size=30, hardness=1.0, pressure_size=False)
    assert doc.flatten()[100, 100, 3] == pytest.approx(128, abs=2)


def test_color_and_eraser():
    doc = Document(200, 200)
    layer = doc.add_image_layer(np.full((200, 200, 4), 255, np.uint8), 0, 0)
    _paint(doc, layer, [(100, 100)], size=30, hardness=1.0)
    assert tuple(doc.flatten()[100, 100]) == (200, 40, 10, 255)
    _paint(doc, layer, [(100, 100)], size=10, hardness=1.0, eraser=True)
    assert doc.flatten()[100, 100, 3] == 0 and doc.flatten()[100, 112, 3] == 255


def test_erasing_everything_frees_the_tiles():
    doc = Document(300, 300)
    layer = doc.add_layer()
    _paint(doc, layer, [(50, 50), (60, 60)], size=20)
    assert layer.pixels.tiles
    _paint(doc, layer, [(50, 50), (60, 60)], size=60, eraser=True, hardness=1.0)
    assert not layer.pixels.tiles


def test_locked_layer_refuses_paint_with_a_user_message():
    doc = Document(100, 100)
    layer = doc.add_layer("Sketch")
    doc.set_layer_properties(layer, locked=True)
    with pytest.raises(LayerLockedError) as info:
        doc.begin_stroke(BrushSettings(), layer)
    assert isinstance(info.value, DocumentError) and "Sketch" in str(info.value)


def test_only_dirty_pixels_are_recomposited():
    doc = Document(2048, 2048)
    for i in range(4):
        doc.add_image_layer(np.full((2048, 2048, 4), 60 * i + 10, np.uint8), 0, 0)
    view = Rect(0, 0, 2048, 2048)
    doc.render(view)
    doc.cache.recomputed_pixels = 0
    s = doc.begin_stroke(BrushSettings(size=64), doc.layers[2], (255, 0, 0))
    s.dab(1000, 1000)
    s.end()
    out = doc.render(view)
    assert doc.cache.recomputed_pixels <= 66 * 66
    assert_render_matches(out, doc.flatten())


def test_settings_are_validated():
    with pytest.raises(ValueError):
        BrushSettings(opacity=2)
    with pytest.raises(ValueError):
        BrushSettings(size=0)
