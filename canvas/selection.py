"""The selection: a document-wide uint8 coverage mask stored as sparse tiles.

255 = fully selected, 0 = not selected; values between are partial (feathered,
anti-aliased).  Absent tiles read as the selection's ``fill`` (0, or 255 after
an inversion), so even an inverted selection of a 16k² document stays sparse.

The shape builders (``rectangle``, ``ellipse``, ``polygon``, ``from_alpha``)
and the operations (``combine``, ``grow``, ``shrink``, ``feather``,
``inverted``) are pure: they return a new :class:`Selection`.  Apply one to the
document with ``doc.set_selection(sel)`` (one undoable step); the brush paints
into ``doc.selection`` directly (see :mod:`canvas.brush`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .geometry import Rect
from .tiles import TiledSurface

COMBINE_MODES = ("replace", "add", "subtract", "intersect")


class Selection:
    def __init__(self, surface: TiledSurface | None = None) -> None:
        self.surface = surface if surface is not None else TiledSurface(1, 0)
        if self.surface.channels != 1:
            raise ValueError("a selection is a one-channel surface")

    # -- state -------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        s = self.surface
        return s.fill == 0 and not any(t.any() for t in s.tiles.values())

    def read(self, rect: Rect) -> np.ndarray:
        return self.surface.read(rect)

    def bbox(self) -> Rect | None:
        """Bounding box of the selected pixels, None when nothing is selected.

        An inverted selection extends without limit; intersect with the
        document bounds before use."""
        if self.surface.fill:
            return Rect(-(1 << 40), -(1 << 40), 1 << 41, 1 << 41)
        return self.surface.content_bbox()

    def copy(self) -> "Selection":
        return Selection(self.surface.copy())

    def _state(self) -> tuple:
        return (self.surface.fill, dict(self.surface.copy().tiles))

    def _set_state(self, state: tuple) -> None:
        self.surface.fill = state[0]
        self.surface.tiles = dict(state[1])

    def equals(self, other: "Selection") -> bool:
        return self.surface.equals(other.surface)

    # -- builders ------------------------------------------------------------------
    @classmethod
    def from_array(cls, mask: np.ndarray, x: int = 0, y: int = 0) -> "Selection":
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError("a selection mask is a 2-D uint8 array")
        surf = TiledSurface(1, 0)
        surf.write(x, y, mask)
        return cls(surf)

    @classmethod
    def rectangle(cls, rect: Rect) -> "Selection":
        rect = Rect(*map(int, rect))
        if rect.empty:
            return cls()
        return cls.from_array(np.full((rect.h, rect.w), 255, np.uint8), rect.x, rect.y)

    @classmethod
    def ellipse(cls, rect: Rect) -> "Selection":
        """An anti-aliased ellipse inscribed in `rect`."""
        rect = Rect(*map(int, rect))
        if rect.empty:
            return cls()
        rx, ry = rect.w / 2, rect.h / 2
        yy = (np.arange(rect.h, dtype=np.float32) + 0.5 - ry) / ry
        xx = (np.arange(rect.w, dtype=np.float32) + 0.5 - rx) / rx
        d = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
        cov = np.clip((1 - d) * min(rx, ry) + 0.5, 0, 1)
        return cls.from_array(np.rint(cov * 255).astype(np.uint8), rect.x, rect.y)

    @classmethod
    def polygon(cls, points: Sequence[tuple[float, float]]) -> "Selection":
        """A lasso: an anti-aliased polygon through `points` (document coordinates)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if len(pts) < 3:
            return cls()
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        w, h = max(1, x1 - x0), max(1, y1 - y0)
        s = 4 if w * h <= 4_000_000 else 1  # supersampling for anti-aliasing
        img = Image.new("L", (w * s, h * s), 0)
        ImageDraw.Draw(img).polygon([((px - x0) * s, (py - y0) * s) for px, py in pts], fill=255)
        if s > 1:
            img = img.reduce(s)
        return cls.from_array(np.asarray(img, np.uint8).copy(), int(x0), int(y0))

    @classmethod
    def from_alpha(cls, pixels: TiledSurface) -> "Selection":
        """Select a layer's opaque pixels (its alpha channel as coverage)."""
        surf = TiledSurface(1, 0)
        for key, t in pixels.tiles.items():
            a = t[..., 3]
            if a.any():
                c = a.copy()
                c.flags.writeable = False
                surf.tiles[key] = c
        return cls(surf)

    # -- operations ------------------------------------------------------------------
    def combine(self, other: "Selection", mode: str = "replace") -> "Selection":
        """self (existing) combined with `other` (new shape): replace/add/subtract/intersect."""
        if mode not in COMBINE_MODES:
            raise ValueError(f"mode must be one of {COMBINE_MODES}")
        if mode == "replace":
            return other.copy()
        a, b = self.surface, other.surface
        ops = {
            "add": lambda p, q: np.maximum(p, q),
            "intersect": lambda p, q: np.minimum(p, q),
            "subtract": lambda p, q: ((p.astype(np.uint16) * (255 - q) + 127) // 255).astype(np.uint8),
        }
        op = ops[mode]
        fill = int(op(np.uint8(a.fill), np.uint8(b.fill)))
        out = TiledSurface(1, fill)
        for key in set(a.tiles) | set(b.tiles):
            t = op(a.tile_or_fill(key), b.tile_or_fill(key))
            if not out.is_fill(t):
                t.flags.writeable = False
                out.tiles[key] = t
        return Selection(out)

    def inverted(self) -> "Selection":
        out = TiledSurface(1, 255 - self.surface.fill)
        for key, t in self.surface.tiles.items():
            n = 255 - t
            if not out.is_fill(n):
                n.flags.writeable = False
                out.tiles[key] = n
        return Selection(out)

    def _dense_op(self, pad: int, fn) -> "Selection":
        s = self.surface
        box = s.content_bbox()
        if box is None:
            return self.copy()
        region = box.expand(pad, pad, pad, pad)
        data = fn(s.read(region))
        out = TiledSurface(1, s.fill)
        out.write(region.x, region.y, data)
        return Selection(out)

    def grow(self, radius: int) -> "Selection":
        """Expand the selection by `radius` pixels (an octagonal dilation)."""
        radius = int(radius)
        if radius < 0:
            return self.shrink(-radius)
        return self._dense_op(radius + 1, lambda a: _morph(a, radius, np.maximum))

    def shrink(self, radius: int) -> "Selection":
        radius = int(radius)
        if radius < 0:
            return self.grow(-radius)
        return self._dense_op(radius + 1, lambda a: _morph(a, radius, np.minimum))

    def feather(self, radius: float) -> "Selection":
        """Soften the edge with a Gaussian blur of `radius` pixels."""
        if radius <= 0:
            return self.copy()
        pad = int(np.ceil(radius * 3)) + 1

        def blur(a: np.ndarray) -> np.ndarray:
            img = Image.fromarray(a, "L").filter(ImageFilter.GaussianBlur(radius))
            return np.asarray(img, np.uint8)

        return self._dense_op(pad, blur)


def _morph(a: np.ndarray, radius: int, op) -> np.ndarray:
    """`radius` passes of a 3x3 max/min, alternating square and cross (an octagon).

    The input is padded by at least radius+1 pixels of the fill value, so
    edges replicate correctly."""
    a = a.copy()
    for i in range(radius):
        p = np.pad(a, 1, mode="edge")
        out = op(p[1:-1, 1:-1], p[:-2, 1:-1])
        out = op(out, p[2:, 1:-1])
        out = op(out, p[1:-1, :-2])
        out = op(out, p[1:-1, 2:])
        if i % 2 == 0:
            for dy, dx in ((0, 0), (0, 2), (2, 0), (2, 2)):
                out = op(out, p[dy:dy + a.shape[0], dx:dx + a.shape[1]])
        a = out
    return a


def combine_all(selections: Iterable[Selection], mode: str = "add") -> Selection:
    out = Selection()
    for s in selections:
        out = out.combine(s, mode)
    return out
