"""The composite cache (dirty rects + focus-layer split) always equals a fresh composite."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from canvas.blend import BLEND_MODES
from canvas.brush import BrushSettings
from canvas.document import Document
from canvas.geometry import Rect

from canvas_helpers import assert_render_matches

ops = st.lists(st.one_of(
    st.tuples(st.just("dab"), st.integers(0, 3), st.integers(-20, 560), st.integers(-20, 300), st.booleans()),
    st.tuples(st.just("opacity"), st.integers(0, 3), st.floats(0, 1)),
    st.tuples(st.just("mode"), st.integers(0, 3), st.sampled_from(list(BLEND_MODES))),
    st.tuples(st.just("visible"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("move"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("mask"), st.integers(0, 3), st.integers(0, 540), st.integers(0, 280)),
    st.tuples(st.just("undo")), st.tuples(st.just("redo")),
), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_cached_render_matches_fresh_composite(sequence):
    rng = np.random.default_rng(0)
    doc = Document(540, 280)
    for i in range(4):
        data = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
        doc.add_image_layer(data, i * 70, i * 25, f"l{i}")
    doc.history.clear()
    view = Rect(0, 0, 540, 280)
    doc.render(view)
    for op in sequence:
        kind, args = op[0], op[1:]
        if kind == "dab":
            i, x, y, eraser = args
            s = doc.begin_stroke(BrushSettings(size=40, eraser=eraser), doc.layers[i], (250, 10, 10))
            s.stroke_to(x, y)
            s.stroke_to(x + 30, y + 5)
            s.end()
        elif kind == "opacity":
            doc.set_layer_properties(doc.layers[args[0]], opacity=args[1])
        elif kind == "mode":
            doc.set_layer_properties(doc.layers[args[0]], blend_mode=args[1])
        elif kind == "visible":
            doc.set_layer_properties(doc.layers[args[0]], visible=args[1])
        elif kind == "move":
            doc.move_layer(doc.layers[args[0]], args[1])
        elif kind == "mask":
            layer = doc.layers[args[0]]
            if layer.mask is None:
                doc.add_layer_mask(layer)
            s = doc.begin_stroke(BrushSettings(size=50, eraser=True), layer, target="mask")
            s.dab(args[1], args[2])
            s.end()
        elif kind == "undo":
            doc.undo()
        else:
            doc.redo()
        part = Rect(100, 50, 300, 200)
        assert_render_matches(doc.render(part), doc.flatten(part))
    assert_render_matches(doc.render(view), doc.flatten(view))
