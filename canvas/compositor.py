"""Compositing the visible layer stack, with a cache of composited tiles.

:func:`composite` renders any rectangle from a list of layers (no cache): it
is the reference path used by ``Document.flatten`` and by saving.
:class:`TileCache` keeps composited 256² tiles for the view and recomputes only
the dirty part of a tile after an edit, so a brush dab costs the dab's area
times the number of layers, not the canvas size.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from .blend import composite_layer, to_straight_u8
from .geometry import Rect, tile_keys, tile_rect
from .layer import Layer
from .tiles import TILE, Key


def composite_premul(layers: Sequence[Layer], rect: Rect, out: np.ndarray | None = None) -> np.ndarray:
    """Premultiplied float32 composite of the visible `layers` (bottom first) over transparency."""
    if out is None:
        out = np.zeros((rect.h, rect.w, 4), np.float32)
    visible = [l for l in layers if l.visible and l.opacity > 0]
    for key in tile_keys(rect, TILE):
        tr = tile_rect(key, TILE)
        part = tr.intersect(rect)
        dst = out[part.slices(rect.x, rect.y)]
        ts = part.slices(tr.x, tr.y)
        for layer in visible:
            t = layer.pixels.tiles.get(key)
            if t is None:
                continue  # a transparent source leaves the backdrop as is in every mode
            mask = None
            if layer.mask is not None:
                m = layer.mask.tiles.get(key)
                if m is not None:
                    mask = m[ts]
                elif layer.mask.fill == 0:
                    continue
                elif layer.mask.fill != 255:
                    mask = np.full(dst.shape[:2], layer.mask.fill, np.uint8)
            composite_layer(dst, t[ts], layer.opacity, layer.blend_mode, mask)
    return out


def composite(layers: Sequence[Layer], rect: Rect) -> np.ndarray:
    """Straight-alpha uint8 RGBA composite of the visible `layers` inside `rect`."""
    return to_straight_u8(composite_premul(layers, rect))


class TileCache:
    """Composited tiles of a document, invalidated by edits (LRU, `max_tiles` kept)."""

    def __init__(self, max_tiles: int = 1024) -> None:
        self.max_tiles = max_tiles
        self._tiles: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._dirty: dict[Key, Rect] = {}
        self.recomputed_pixels = 0  # for tests and benchmarks

    def invalidate(self, rect: Rect | None) -> None:
        if rect is None:
            self._tiles.clear()
            self._dirty.clear()
            return
        if len(self._tiles) < 64:
            keys = [k for k in self._tiles if not tile_rect(k, TILE).intersect(rect).empty]
        else:
            keys = [k for k in tile_keys(rect, TILE) if k in self._tiles]
        for key in keys:
            part = tile_rect(key, TILE).intersect(rect)
            old = self._dirty.get(key)
            self._dirty[key] = part if old is None else old.union(part)

    def render(self, layers: Sequence[Layer], rect: Rect) -> np.ndarray:
        """Straight uint8 RGBA of `rect`, recomputing only what is missing or dirty."""
        out = np.empty((rect.h, rect.w, 4), np.uint8)
        for key in tile_keys(rect, TILE):
            tile = self._tile(layers, key)
            tr = tile_rect(key, TILE)
            part = tr.intersect(rect)
            out[part.slices(rect.x, rect.y)] = tile[part.slices(tr.x, tr.y)]
        return out

    def _tile(self, layers: Sequence[Layer], key: Key) -> np.ndarray:
        tile = self._tiles.get(key)
        tr = tile_rect(key, TILE)
        if tile is None:
            tile = composite(layers, tr)
            self.recomputed_pixels += TILE * TILE
            self._tiles[key] = tile
            self._dirty.pop(key, None)
            while len(self._tiles) > self.max_tiles:
                old, _ = self._tiles.popitem(last=False)
                self._dirty.pop(old, None)
        else:
            self._tiles.move_to_end(key)
            dirty = self._dirty.pop(key, None)
            if dirty is not None:
                tile[dirty.slices(tr.x, tr.y)] = composite(layers, dirty)
                self.recomputed_pixels += dirty.w * dirty.h
        return tile

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._tiles.values())
