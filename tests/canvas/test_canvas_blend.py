"""Compositing against a plain per-pixel reference implementation, for every blend mode."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from canvas.blend import BLEND_MODES, composite_layer, to_premul_f32, to_straight_u8
from canvas.compositor import composite
from canvas.document import Document
from canvas.geometry import Rect


def _b(mode: str, cb: float, cs: float) -> float:
    """W3C Compositing and Blending Level 1, written out per channel."""
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode in ("overlay", "hard-light"):
        base, top = (cs, cb) if mode == "overlay" else (cb, cs)  # overlay = hard-light with roles swapped
        return base * 2 * top if top <= 0.5 else base + (2 * top - 1) - base * (2 * top - 1)
    if mode == "darken":
        return min(cb, cs)
    if mode == "lighten":
        return max(cb, cs)
    if mode == "difference":
        return abs(cb - cs)
    if mode == "soft-light":
        if cs <= 0.5:
            return cb - (1 - 2 * cs) * cb * (1 - cb)
        d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else math.sqrt(cb)
        return cb + (2 * cs - 1) * (d - cb)
    if mode == "color-dodge":
        if cb == 0:
            return 0.0
        return 1.0 if cs >= 1 else min(1.0, cb / (1 - cs))
    if mode == "color-burn":
        if cb >= 1:
            return 1.0
        return 0.0 if cs <= 0 else 1 - min(1.0, (1 - cb) / cs)
    raise AssertionError(mode)


def reference_pixel(stack, px):
    """stack: [(rgba uint8 array, opacity, mode, mask or None)], bottom first -> straight float RGBA."""
    co = [0.0, 0.0, 0.0]
    ab = 0.0
    for rgba, opacity, mode, mask in stack:
        r, g, b, a = (float(v) / 255 for v in rgba[px])
        as_ = a * opacity * (1.0 if mask is None else float(mask[px]) / 255)
        cs = (r, g, b)
        cb = [c / ab if ab > 0 else 0.0 for c in co]
        if mode == "normal":
            co = [as_ * s + (1 - as_) * d for s, d in zip(cs, co)]
            ab = as_ + ab * (1 - as_)
        elif mode == "add":
            co = [min(1.0, as_ * s + d) for s, d in zip(cs, co)]
            ab = min(1.0, as_ + ab)
        else:
            co = [as_ * (1 - ab) * s + as_ * ab * _b(mode, cbi, s) + (1 - as_) * d
                  for s, cbi, d in zip(cs, cb, co)]
            ab = as_ + ab * (1 - as_)
    return co, ab


def assert_close_to_reference(out: np.ndarray, stack) -> None:
    h, w = out.shape[:2]
    for y in range(h):
        for x in range(w):
            co, ab = reference_pixel(stack, (y, x))
            got = out[y, x].astype(float)
            assert abs(got[3] - ab * 255) <= 1.01, (y, x, got, ab)
            # colour compared premultiplied: straight colour of a nearly transparent pixel is ill-defined
            for c in range(3):
                assert abs(got[c] * got[3] / 255 - co[c] * 255) <= 1.6, (y, x, c, got, co, ab)


@pytest.mark.parametrize("mode", list(BLEND_MODES))
def test_every_mode_matches_reference(mode, rng):
    h, w = 9, 11
    bottom = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    top = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    bottom[0, :, 3] = 0  # a transparent backdrop row
    bottom[1, :, 3] = 255
    top[2, :, 3] = 255
    top[3, :, :3] = [0, 128, 255]  # edge values for the piecewise modes
    mask = rng.integers(0, 256, (h, w), dtype=np.uint8)
    stack = [(bottom, 1.0, "normal", None), (top, 0.7, mode, mask)]
    dst = np.zeros((4, h, w), np.float32)
    for rgba, op, m, mk in stack:
        composite_layer(dst, rgba, op, m, mk)
    assert_close_to_reference(to_straight_u8(dst), stack)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(arrays(np.uint8, (4, 5, 4)), st.floats(0, 1), st.sampled_from(list(BLEND_MODES))),
                min_size=1, max_size=4))
def test_random_stacks_through_the_document_match_reference(layers):
    doc = Document(5, 4)
    stack = []
    for rgba, opacity, mode in layers:
        layer = doc.add_image_layer(rgba, 0, 0)
        doc.set_layer_properties(layer, opacity=opacity, blend_mode=mode)
        stack.append((rgba, opacity, mode, None))
    assert_close_to_reference(doc.flatten(), stack)


def test_hidden_layers_masks_and_mask_fill(rng):
    doc = Document(300, 300)
    a = doc.add_image_layer(rng.integers(0, 256, (300, 300, 4), dtype=np.uint8), 0, 0)
    b = doc.add_image_layer(rng.integers(0, 256, (300, 300, 4), dtype=np.uint8), 0, 0)
    before = doc.flatten()
    doc.set_layer_properties(b, visible=False)
    only_a = composite([a], Rect(0, 0, 300, 300))
    assert np.array_equal(doc.flatten(), only_a)
    doc.set_layer_properties(b, visible=True)
    mask = doc.add_layer_mask(b)
    assert np.array_equal(doc.flatten(), before)  # an empty mask reveals everything
    mask.fill = 0  # a mask hiding everything
    doc.cache.invalidate(None)
    assert np.array_equal(doc.flatten(), only_a)


def test_premul_conversions_round_trip(rng):
    rgba = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert np.array_equal(to_straight_u8(to_premul_f32(rgba)), rgba)
