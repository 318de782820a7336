"""Compositing the visible layer stack, with a cache of composited tiles.

:func:`composite` renders any rectangle from a list of layers (no cache): the
reference path used by ``Document.flatten`` and by saving.

:class:`TileCache` keeps composited 256² tiles for the view.  An edit marks
only the rectangle it touched as dirty, and only that part is recomputed.
While the painter works on one layer (the *focus* layer, the one edited
last), the cache also keeps, per tile, the composite of the layers below it
and — when those are all normal-mode — of the layers above it (premultiplied
planes; normal "over" is associative).  A brush dab then costs two
compositing steps over the dab's area, whatever the number of layers.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from .blend import composite_layer, over, to_straight_u8
from .geometry import Rect, tile_keys, tile_rect
from .layer import Layer
from .tiles import TILE, Key


def _layer_tile_args(layer: Layer, key: Key, ts, shape):
    """(source pixels, mask) of `layer` at tile `key` sliced by `ts`, or None if it adds nothing."""
    t = layer.pixels.tiles.get(key)
    if t is None:
        return None  # a transparent source leaves the backdrop as is in every mode
    mask = None
    if layer.mask is not None:
        m = layer.mask.tiles.get(key)
        if m is not None:
            mask = m[ts]
        elif layer.mask.fill == 0:
            return None
        elif layer.mask.fill != 255:
            mask = np.full(shape, layer.mask.fill, np.uint8)
    return t[ts], mask


def _visible(layers: Sequence[Layer]) -> list[Layer]:
    return [l for l in layers if l.visible and l.opacity > 0]


def composite_premul(layers: Sequence[Layer], rect: Rect, out: np.ndarray | None = None) -> np.ndarray:
    """Planar premultiplied float32 (4, H, W) composite of the visible `layers` (bottom first)."""
    if out is None:
        out = np.zeros((4, rect.h, rect.w), np.float32)
    visible = _visible(layers)
    for key in tile_keys(rect, TILE):
        tr = tile_rect(key, TILE)
        part = tr.intersect(rect)
        rs, cs = part.slices(rect.x, rect.y)
        dst = out[:, rs, cs]
        ts = part.slices(tr.x, tr.y)
        for layer in visible:
            args = _layer_tile_args(layer, key, ts, dst.shape[1:])
            if args is not None:
                composite_layer(dst, args[0], layer.opacity, layer.blend_mode, args[1])
    return out


def composite(layers: Sequence[Layer], rect: Rect) -> np.ndarray:
    """Straight-alpha uint8 RGBA (H, W, 4) composite of the visible `layers` inside `rect`.

    Works tile by tile, so flattening a 16k² document needs the 1 GB result
    and one tile of float scratch, not 4 GB of float planes."""
    out = np.empty((rect.h, rect.w, 4), np.uint8)
    visible = _visible(layers)
    for key in tile_keys(rect, TILE):
        part = tile_rect(key, TILE).intersect(rect)
        if not any(key in layer.pixels.tiles for layer in visible):
            out[part.slices(rect.x, rect.y)] = 0  # no layer paints here: transparent (sparse files flatten fast)
            continue
        to_straight_u8(composite_premul(visible, part), out[part.slices(rect.x, rect.y)])
    return out


class TileCache:
    """Composited tiles of a document, invalidated by edits (LRU, `max_tiles` kept)."""

    def __init__(self, max_tiles: int = 1024, max_focus_tiles: int = 64) -> None:
        self.max_tiles = max_tiles
        self.max_focus_tiles = max_focus_tiles
        self._tiles: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._dirty: dict[Key, Rect] = {}
        self._focus: Layer | None = None
        # per tile: (below planes or None, above planes or None, above-is-complete flag)
        self._split: OrderedDict[Key, tuple] = OrderedDict()
        self.recomputed_pixels = 0  # for tests and benchmarks

    # -- invalidation ------------------------------------------------------------------
    def invalidate(self, rect: Rect | None, layer: Layer | None = None) -> None:
        """Mark `rect` dirty (None: everything).  `layer`: the only layer whose pixels or
        properties changed there; None when the stack itself changed."""
        if layer is None or layer is not self._focus:
            self._split.clear()
            self._focus = layer
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

    # -- rendering ---------------------------------------------------------------------
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
            return tile
        self._tiles.move_to_end(key)
        dirty = self._dirty.pop(key, None)
        if dirty is not None:
            focus = self._focus
            if focus is not None and focus in layers:
                self._recompute_focused(layers, focus, key, tile, dirty)
            else:
                tile[dirty.slices(tr.x, tr.y)] = composite(layers, dirty)
            self.recomputed_pixels += dirty.w * dirty.h
        return tile

    def _recompute_focused(self, layers, focus: Layer, key: Key, tile: np.ndarray, dirty: Rect) -> None:
        tr = tile_rect(key, TILE)
        split = self._split.get(key)
        if split is None:
            split = self._build_split(layers, focus, key)
        else:
            self._split.move_to_end(key)
        below, above = split
        rs, cs = dirty.slices(tr.x, tr.y)
        h, w = dirty.h, dirty.w
        dst = below[:, rs, cs].copy() if below is not None else np.zeros((4, h, w), np.float32)
        if focus.visible and focus.opacity > 0:
            args = _layer_tile_args(focus, key, (rs, cs), (h, w))
            if args is not None:
                composite_layer(dst, args[0], focus.opacity, focus.blend_mode, args[1])
        for item in above:
            if isinstance(item, Layer):  # a layer that is not normal-mode, composited as itself
                args = _layer_tile_args(item, key, (rs, cs), (h, w))
                if args is not None:
                    composite_layer(dst, args[0], item.opacity, item.blend_mode, args[1])
            else:  # a run of normal layers, collapsed into one premultiplied plane set
                over(dst, item[:, rs, cs])
        to_straight_u8(dst, tile[rs, cs])

    def _build_split(self, layers, focus: Layer, key: Key) -> tuple:
        tr = tile_rect(key, TILE)
        i = list(layers).index(focus)
        below_layers = [l for l in _visible(layers[:i]) if key in l.pixels.tiles]
        above_all = [l for l in _visible(layers[i + 1:]) if key in l.pixels.tiles]
        below = composite_premul(below_layers, tr) if below_layers else None
        # Runs of normal layers above the focus collapse into one premultiplied plane set
        # each ("over" is associative); other modes stay layers, composited one by one.
        above: list = []
        run: list[Layer] = []
        for layer in above_all + [None]:
            if layer is not None and layer.blend_mode == "normal":
                run.append(layer)
                continue
            if run:
                above.append(composite_premul(run, tr))
                run = []
            if layer is not None:
                above.append(layer)
        split = (below, above)
        self._split[key] = split
        while len(self._split) > self.max_focus_tiles:
            self._split.popitem(last=False)
        return split

    @property
    def nbytes(self) -> int:
        total = sum(t.nbytes for t in self._tiles.values())
        for below, above in self._split.values():
            total += below.nbytes if below is not None else 0
            total += sum(a.nbytes for a in above if isinstance(a, np.ndarray))
        return total
