"""Sparse tiled storage: memory grows with painted area, not canvas size."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from canvas.brush import BrushSettings
from canvas.document import Document
from canvas.geometry import Rect
from canvas.tiles import TILE, TiledSurface


def test_write_read_round_trip_across_tiles_and_negative_coordinates(rng):
    s = TiledSurface(4)
    data = rng.integers(1, 256, (300, 700, 4), dtype=np.uint8)
    s.write(-260, -10, data)
    assert np.array_equal(s.read(Rect(-260, -10, 700, 300)), data)
    assert s.read(Rect(-1000, -1000, 5, 5)).sum() == 0
    assert set(s.keys()) == {(tx, ty) for tx in range(-2, 2) for ty in range(-1, 2)}


def test_tiles_are_immutable_and_writing_transparency_frees_them(rng):
    s = TiledSurface(4)
    s.write(0, 0, rng.integers(1, 256, (10, 10, 4), dtype=np.uint8))
    tile = s.get_tile((0, 0))
    with pytest.raises(ValueError):
        tile[0, 0, 0] = 1
    s.write(0, 0, np.zeros((10, 10, 4), np.uint8))
    assert not s.tiles and s.nbytes == 0


def test_mask_fill_and_content_bbox():
    m = TiledSurface(1, 255)
    assert m.content_bbox() is None
    assert m.read(Rect(5, 5, 3, 3)).min() == 255
    m.write(300, 40, np.zeros((2, 3), np.uint8))
    assert m.content_bbox() == Rect(300, 40, 3, 2)


def test_empty_16k_document_is_tiny():
    tracemalloc.start()
    doc = Document(16384, 16384)
    for i in range(10):
        doc.add_layer(f"layer {i}")
    doc.render(Rect(0, 0, 16, 16))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(not l.pixels.tiles for l in doc.layers)
    assert current < 1 << 20, current


def test_memory_grows_with_painted_area_not_canvas_size():
    doc = Document(16384, 16384)
    layer = doc.add_layer()
    doc.add_image_layer(np.full((1024, 1024, 4), 255, np.uint8), 5000, 7000)
    s = doc.begin_stroke(BrushSettings(size=100), layer, (0, 0, 0))
    s.stroke_to(100, 100)
    s.stroke_to(400, 100)
    s.end()
    assert doc.nbytes <= 30 * TILE * TILE * 4
    assert doc.history.nbytes <= 30 * TILE * TILE * 4


def test_grow_in_every_direction_keeps_pixels(rng):
    doc = Document(100, 100)
    data = rng.integers(1, 256, (100, 100, 4), dtype=np.uint8)
    doc.add_image_layer(data, 0, 0)
    doc.grow(left=300, top=50, right=10, bottom=0)
    assert doc.bounds == Rect(-300, -50, 410, 150)
    flat = doc.flatten()
    assert np.array_equal(flat[50:, 300:400], data)
    assert flat[:50].sum() == 0 and flat[:, :300].sum() == 0
    r = doc.grow_to_include(Rect(-400, 0, 10, 10))
    assert r.x == -400
    with pytest.raises(ValueError):
        doc.grow(-1)
