"""Every command undoes and redoes to exactly the same pixels and attributes."""
from __future__ import annotations

import numpy as np
import pytest

from canvas.brush import BrushSettings
from canvas.document import Document, layers_equal
from canvas.geometry import Rect
from canvas.history import History
from canvas.selection import Selection

from canvas_helpers import assert_render_matches, random_rgba


def state(doc: Document):
    return ([l.copy() for l in doc.layers], doc.bounds, doc.selection.copy(), doc.flatten(doc.bounds),
            doc.render(doc.bounds))


def assert_state(doc: Document, s) -> None:
    layers, bounds, sel, flat, _ = s
    assert doc.bounds == bounds
    assert layers_equal(doc.layers, layers)
    assert [l.id for l in doc.layers] == [l.id for l in layers]
    assert doc.selection.equals(sel)
    assert np.array_equal(doc.flatten(doc.bounds), flat)
    assert_render_matches(doc.render(doc.bounds), flat)


def _stroke(doc, layer, **kw):
    s = doc.begin_stroke(BrushSettings(size=60, hardness=0.5, **kw), layer, (10, 200, 30))
    for i in range(12):
        s.stroke_to(50 + i * 40, 80 + 20 * np.sin(i), 0.3 + i / 20)
    s.end()


EDITS = {
    "add layer": lambda d: d.add_layer("new"),
    "remove layer": lambda d: d.remove_layer(d.layers[1]),
    "move layer": lambda d: d.move_layer(d.layers[0], 2),
    "opacity": lambda d: d.set_layer_properties(d.layers[1], opacity=0.25),
    "blend + visibility + name + lock": lambda d: d.set_layer_properties(
        d.layers[2], blend_mode="screen", visible=False, name="renamed", locked=True),
    "paint stroke": lambda d: _stroke(d, d.layers[1]),
    "erase stroke": lambda d: _stroke(d, d.layers[0], eraser=True),
    "generated layer": lambda d: d.add_generated_layer(
        np.full((70, 90, 4), 200, np.uint8), -30, 350, "Inpaint: a cat", "a cat\nSteps: 20",
        mask=np.tile(np.linspace(0, 255, 90).astype(np.uint8), (70, 1))),
    "grow": lambda d: d.grow(10, 300, 0, 40),
    "add mask from selection": lambda d: (d.set_selection(Selection.ellipse(Rect(0, 0, 300, 200))),
                                          d.history.seal(), d.add_layer_mask(d.layers[1], from_selection=True)),
    "remove mask": (lambda d: (d.add_layer_mask(d.layers[1]), _mask_stroke(d, d.layers[1])),
                    lambda d: d.remove_layer_mask(d.layers[1])),
    "mask stroke": lambda d: (d.add_layer_mask(d.layers[0]),
                              _mask_stroke(d, d.layers[0])),
    "select rectangle": lambda d: d.select(Selection.rectangle(Rect(5, 5, 300, 300))),
    "select add/subtract": lambda d: (d.select(Selection.rectangle(Rect(5, 5, 300, 300))),
                                      d.select(Selection.ellipse(Rect(100, 100, 300, 200)), "subtract")),
    "invert, grow, feather": lambda d: (d.select(Selection.polygon([(0, 0), (300, 40), (100, 390)])),
                                        d.set_selection(d.selection.inverted()),
                                        d.set_selection(d.selection.grow(3)),
                                        d.set_selection(d.selection.feather(4))),
    "clear selection": (lambda d: d.select(Selection.rectangle(Rect(5, 5, 30, 30))),
                        lambda d: d.clear_selection()),
    "selection brush": lambda d: _selection_stroke(d),
    "paint inside selection": lambda d: (d.select(Selection.rectangle(Rect(100, 0, 100, 400))),
                                         _stroke(d, d.layers[2])),
}


def _mask_stroke(doc, layer):
    s = doc.begin_stroke(BrushSettings(size=40, eraser=True), layer, target="mask")
    s.stroke_to(10, 10)
    s.stroke_to(400, 300)
    s.end()


def _selection_stroke(doc):
    s = doc.begin_stroke(BrushSettings(size=30), target="selection")
    s.stroke_to(0, 0)
    s.stroke_to(500, 100)
    s.end()


@pytest.mark.parametrize("name", list(EDITS))
def test_undo_redo_restores_exactly(small_doc, name):
    doc = small_doc
    setup, edit = EDITS[name] if isinstance(EDITS[name], tuple) else (None, EDITS[name])
    if setup:
        setup(doc)
        doc.history.clear()
    doc.render(doc.bounds)  # fill the cache so stale tiles would show
    before = state(doc)
    edit(doc)
    after = state(doc)
    assert not (layers_equal(doc.layers, before[0]) and doc.bounds == before[1]
                and doc.selection.equals(before[2])), "the edit changed nothing"
    steps = len(doc.history)
    for _ in range(steps):
        assert doc.undo()
    assert not doc.history.can_undo
    assert_state(doc, before)
    for _ in range(steps):
        assert doc.redo()
    assert_state(doc, after)
    doc.undo()
    doc.redo()
    assert_state(doc, after)


def test_a_stroke_and_a_slider_drag_are_one_step_each(small_doc):
    doc = small_doc
    _stroke(doc, doc.layers[1])
    assert len(doc.history) == 1
    for v in np.linspace(0.9, 0.1, 30):
        doc.set_layer_properties(doc.layers[1], opacity=float(v))
    doc.history.seal()
    doc.set_layer_properties(doc.layers[1], opacity=0.5)  # a second drag
    assert len(doc.history) == 3
    doc.undo()
    assert doc.layers[1].opacity == pytest.approx(0.1)
    doc.undo()
    assert doc.layers[1].opacity == 1.0
    doc.undo()
    assert not doc.history.can_undo


def test_generated_layer_is_one_step_named_and_clipped(small_doc):
    doc = small_doc
    rgba = np.full((100, 100, 4), 255, np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[20:40, 30:60] = 255
    layer = doc.add_generated_layer(rgba, 10, 20, "Inpaint: a red fox", {"prompt": "a red fox", "Steps": "20"},
                                    mask=mask)
    assert len(doc.history) == 1 and doc.history.undo_description == "Inpaint: a red fox"
    assert doc.layers[-1] is layer and layer.parameters == "a red fox\nSteps: 20"
    assert layer.pixels.content_bbox() == Rect(40, 40, 30, 20)


def test_history_memory_limit_drops_oldest(rng):
    doc = Document(512, 512, history_limit=3 * 512 * 512 * 4)
    for i in range(6):
        doc.add_image_layer(random_rgba(rng, 512, 512, 0.0), 0, 0, f"l{i}")
    assert doc.history.nbytes <= 3 * 512 * 512 * 4
    assert len(doc.history) == 3
    while doc.undo():
        pass
    assert [l.name for l in doc.layers] == ["l0", "l1", "l2"]


def test_undo_during_a_stroke_ends_it_first(small_doc):
    doc = small_doc
    before = state(doc)
    s = doc.begin_stroke(BrushSettings(size=30), doc.layers[0], (255, 0, 0))
    s.stroke_to(10, 10)
    s.stroke_to(200, 200)
    assert doc.undo()
    assert s.ended
    assert_state(doc, before)


def test_history_seal_and_descriptions():
    h = History(doc=None)
    assert h.undo_description is None and not h.undo() and not h.redo()
