"""Sparse tiled surfaces: the pixel storage of layers, layer masks and the selection.

Storage choice
--------------
* Tiles are ``TILE`` x ``TILE`` (256 x 256) numpy arrays of ``uint8``.  Colour
  surfaces hold **straight (non-premultiplied) RGBA**, shape ``(256, 256, 4)``;
  masks and the selection hold one coverage channel, shape ``(256, 256)``.
  Straight alpha is what PNG and OpenRaster store, so files round-trip bit for
  bit; compositing converts to premultiplied float32 per tile on the fly
  (see :mod:`canvas.blend`).
* A tile that is absent reads as the surface's ``fill`` value (transparent for
  layers, 255 = "reveal everything" for layer masks, 0 or 255 for the
  selection).  An empty 16k x 16k document therefore allocates no tiles.
  Tiles are keyed by ``(tx, ty)`` = (x // 256, y // 256) in document
  coordinates, so a surface grows in any direction, negative included.
* **Tiles are immutable once stored** (their numpy ``writeable`` flag is off).
  Edits replace tiles with new arrays (copy on write).  Undo snapshots and the
  document copies used by background saves therefore share tiles instead of
  copying them.  The brush engine is the one exception: during a stroke it owns
  private writable copies and freezes them when the stroke ends.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .geometry import Rect, tile_keys, tile_rect

TILE = 256
Key = tuple[int, int]


def freeze(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


class TiledSurface:
    """A sparse, unbounded uint8 raster of 1 (coverage) or 4 (RGBA) channels."""

    __slots__ = ("channels", "fill", "tiles")

    def __init__(self, channels: int = 4, fill: int = 0) -> None:
        if channels not in (1, 4):
            raise ValueError("channels must be 1 or 4")
        self.channels = channels
        self.fill = int(fill)
        self.tiles: dict[Key, np.ndarray] = {}

    # -- tiles ---------------------------------------------------------------
    @property
    def tile_shape(self) -> tuple[int, ...]:
        return (TILE, TILE) if self.channels == 1 else (TILE, TILE, 4)

    def get_tile(self, key: Key) -> np.ndarray | None:
        return self.tiles.get(key)

    def set_tile(self, key: Key, arr: np.ndarray | None) -> None:
        """Store a tile (or remove it with None).  The array becomes read-only unless
        it is a brush stroke's working tile (kept writable by the stroke)."""
        if arr is None:
            self.tiles.pop(key, None)
        else:
            if arr.shape != self.tile_shape or arr.dtype != np.uint8:
                raise ValueError(f"tile must be uint8 {self.tile_shape}, got {arr.dtype} {arr.shape}")
            self.tiles[key] = arr

    def tile_or_fill(self, key: Key) -> np.ndarray:
        t = self.tiles.get(key)
        if t is None:
            t = np.full(self.tile_shape, self.fill, np.uint8)
        return t

    def is_fill(self, arr: np.ndarray) -> bool:
        """True when a tile holds nothing but the fill value (it can be dropped).

        For colour surfaces with fill 0 a tile whose alpha is all zero counts as
        empty whatever its colour channels hold."""
        if self.channels == 4 and self.fill == 0:
            return not arr[..., 3].any()
        return bool((arr == self.fill).all())

    def keys(self) -> Iterable[Key]:
        return self.tiles.keys()

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tiles.values())

    def copy(self) -> "TiledSurface":
        """A copy sharing the immutable tiles (writable stroke tiles are copied)."""
        out = TiledSurface(self.channels, self.fill)
        out.tiles = {k: (freeze(t.copy()) if t.flags.writeable else t) for k, t in self.tiles.items()}
        return out

    # -- regions -------------------------------------------------------------
    def tile_bbox(self) -> Rect | None:
        if not self.tiles:
            return None
        xs = [k[0] for k in self.tiles]
        ys = [k[1] for k in self.tiles]
        return Rect.from_edges(min(xs) * TILE, min(ys) * TILE, (max(xs) + 1) * TILE, (max(ys) + 1) * TILE)

    def content_bbox(self) -> Rect | None:
        """Tight bounding box of the pixels that differ from the fill (alpha > 0 for layers)."""
        out: Rect | None = None
        for key, t in self.tiles.items():
            m = t[..., 3] != 0 if (self.channels == 4 and self.fill == 0) else (
                (t != self.fill).any(axis=2) if self.channels == 4 else t != self.fill)
            rows = np.flatnonzero(m.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(m.any(axis=0))
            r = Rect.from_edges(key[0] * TILE + cols[0], key[1] * TILE + rows[0],
                                key[0] * TILE + cols[-1] + 1, key[1] * TILE + rows[-1] + 1)
            out = r if out is None else out.union(r)
        return out

    def read(self, rect: Rect) -> np.ndarray:
        """A dense copy of `rect` (absent tiles read as the fill value)."""
        shape = (rect.h, rect.w) if self.channels == 1 else (rect.h, rect.w, 4)
        out = np.full(shape, self.fill, np.uint8)
        for key in tile_keys(rect, TILE):
            t = self.tiles.get(key)
            if t is None:
                continue
            tr = tile_rect(key, TILE)
            part = tr.intersect(rect)
            out[part.slices(rect.x, rect.y)] = t[part.slices(tr.x, tr.y)]
        return out

    def write(self, x: int, y: int, arr: np.ndarray) -> list[Key]:
        """Copy `arr` into the surface with its [0, 0] at (x, y); return the touched keys.

        Touched tiles are replaced by new read-only arrays; tiles that end up
        holding only the fill value are removed."""
        arr = np.asarray(arr, np.uint8)
        h, w = arr.shape[:2]
        rect = Rect(int(x), int(y), w, h)
        touched = []
        for key in tile_keys(rect, TILE):
            tr = tile_rect(key, TILE)
            part = tr.intersect(rect)
            src = arr[part.slices(rect.x, rect.y)]
            old = self.tiles.get(key)
            if old is None and part == tr:
                new = src.copy()
            else:
                new = self.tile_or_fill(key).copy()
                new[part.slices(tr.x, tr.y)] = src
            if self.is_fill(new):
                if old is None:
                    continue
                self.tiles.pop(key)
            else:
                self.tiles[key] = freeze(new)
            touched.append(key)
        return touched

    def iter_tiles(self, rect: Rect | None = None) -> Iterator[tuple[Key, np.ndarray]]:
        if rect is None:
            yield from list(self.tiles.items())
            return
        for key in tile_keys(rect, TILE):
            t = self.tiles.get(key)
            if t is not None:
                yield key, t

    def snapshot(self, keys: Iterable[Key]) -> dict[Key, np.ndarray | None]:
        """References to the current tiles at `keys` (None where absent) for undo."""
        return {k: self.tiles.get(k) for k in keys}

    def restore(self, snap: dict[Key, np.ndarray | None]) -> None:
        for k, t in snap.items():
            if t is None:
                self.tiles.pop(k, None)
            else:
                self.tiles[k] = t

    def equals(self, other: "TiledSurface") -> bool:
        """Pixel equality (colour of fully transparent pixels ignored for layers)."""
        if self.channels != other.channels:
            return False
        keys = set(self.tiles) | set(other.tiles)
        if self.fill != other.fill:
            return False
        for k in keys:
            a, b = self.tile_or_fill(k), other.tile_or_fill(k)
            if self.channels == 4 and self.fill == 0:
                if not np.array_equal(a[..., 3], b[..., 3]):
                    return False
                vis = a[..., 3] != 0
                if not np.array_equal(a[vis], b[vis]):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True


def from_array(arr: np.ndarray, x: int = 0, y: int = 0, fill: int = 0) -> TiledSurface:
    arr = np.asarray(arr)
    surf = TiledSurface(1 if arr.ndim == 2 else 4, fill)
    surf.write(x, y, arr)
    return surf
