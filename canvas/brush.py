"""The brush engine: round dabs painted into a layer, a layer mask or the selection.

A stroke keeps a float coverage buffer per touched tile.  Each dab raises the
coverage towards the stroke's opacity limit by ``flow`` x dab shape, so going
over the same spot inside one stroke builds up to ``opacity`` and never beyond
(Krita/MyPaint "opacity vs flow").  Pixels are recomputed from the tiles as they
were when the stroke began, which are also the undo snapshot.

Pressure (0..1) scales the dab size (``pressure_size``) and the opacity limit
(``pressure_opacity``).  When a selection exists, painting on a layer or mask
is limited to it.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .commands import TileEdit
from .errors import LayerLockedError
from .geometry import Rect, tile_keys, tile_rect
from .layer import Layer
from .tiles import TILE, TiledSurface, freeze

_gestures = itertools.count(1)


@dataclass(frozen=True)
class BrushSettings:
    size: float = 20.0           # diameter in pixels at full pressure
    hardness: float = 0.8        # 1 = hard edge, 0 = soft all the way from the centre
    opacity: float = 1.0         # most the stroke can reach
    flow: float = 1.0            # how much each dab adds
    spacing: float = 0.15        # distance between dabs, as a fraction of the diameter
    eraser: bool = False
    pressure_size: bool = True
    pressure_opacity: bool = True
    min_size: float = 0.1        # diameter fraction at zero pressure

    def __post_init__(self) -> None:
        for name in ("hardness", "opacity", "flow", "min_size"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")
        if self.size <= 0 or self.spacing <= 0:
            raise ValueError("size and spacing must be positive")


def dab_shape(cx: float, cy: float, radius: float, hardness: float) -> tuple[Rect, np.ndarray]:
    """Coverage in [0, 1] (float32) of a round dab centred at (cx, cy), and its rect."""
    radius = max(radius, 0.5)
    outer = radius + 0.5  # a one-pixel anti-aliased edge centred on the radius
    inner = min(hardness * radius, radius - 0.5)
    x0, y0 = math.floor(cx - outer), math.floor(cy - outer)
    x1, y1 = math.ceil(cx + outer), math.ceil(cy + outer)
    rect = Rect(x0, y0, x1 - x0, y1 - y0)
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) ** 2
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) ** 2
    d = np.sqrt(ys[:, None] + xs[None, :])
    shape = np.clip((outer - d) / (outer - inner), 0, 1)
    if hardness < 1:
        shape = shape * shape * (3 - 2 * shape)  # smoothstep: soft brushes have no visible ring
    return rect, shape.astype(np.float32)


class Stroke:
    """One brush stroke.  Create with ``Document.begin_stroke``; feed ``stroke_to``; call ``end``.

    target: "pixels" (paint `color` on `layer`), "mask" (paint the layer's mask:
    the eraser hides, the brush reveals) or "selection" (the brush selects,
    the eraser deselects).
    """

    def __init__(self, doc, brush: BrushSettings, target: str = "pixels",
                 layer: Layer | None = None, color=(0, 0, 0)) -> None:
        if target not in ("pixels", "mask", "selection"):
            raise ValueError("target must be 'pixels', 'mask' or 'selection'")
        if target != "selection":
            if layer is None:
                raise ValueError("painting pixels or a mask needs a layer")
            if layer.locked:
                raise LayerLockedError(f"The layer “{layer.name}” is locked; unlock it to paint on it.")
            if target == "mask" and layer.mask is None:
                raise ValueError("the layer has no mask; add one first")
        self.doc = doc
        self.brush = brush
        self.target = target
        self.layer = layer
        self.color = np.asarray(color[:3], np.float32)
        self.surface: TiledSurface = (doc.selection.surface if target == "selection"
                                      else layer.pixels if target == "pixels" else layer.mask)
        self.kind = "selection" if target == "selection" else "pixels"
        self.clip = None if target == "selection" or doc.selection.is_empty else doc.selection.copy()
        self._orig: dict = {}
        self._work: dict = {}
        self._cov: dict = {}
        self._gesture = next(_gestures)
        self._last: tuple[float, float, float] | None = None
        self._since = 0.0
        self.ended = False
        self.dirty = None  # rect painted by the last stroke_to call

    # -- input -------------------------------------------------------------------
    def stroke_to(self, x: float, y: float, pressure: float = 1.0) -> Rect | None:
        """Extend the stroke to (x, y); return the rect that changed (None if nothing)."""
        if self.ended:
            raise RuntimeError("the stroke has ended")
        pressure = min(max(float(pressure), 0.0), 1.0)
        dabs = []
        if self._last is None:
            dabs.append((x, y, pressure))
            self._since = 0.0
        else:
            lx, ly, lp = self._last
            dist = math.hypot(x - lx, y - ly)
            pos = 0.0
            while dist > 0:
                t = pos / dist
                step = max(self._diameter(lp + (pressure - lp) * t) * self.brush.spacing, 0.5)
                need = step - self._since
                if pos + need > dist:
                    self._since += dist - pos
                    break
                pos += need
                self._since = 0.0
                t = pos / dist
                dabs.append((lx + (x - lx) * t, ly + (y - ly) * t, lp + (pressure - lp) * t))
        self._last = (x, y, pressure)
        changed = None
        before = {}
        for dx, dy, p in dabs:
            r = self._dab(dx, dy, p, before)
            if r is not None:
                changed = r if changed is None else changed.union(r)
        if changed is not None:
            after = {k: self.surface.tiles.get(k) for k in self._work}
            self.doc.history.do(TileEdit(self.surface, before, after, self.kind,
                                         self._description(), self._gesture, changed,
                                         None if self.target == "selection" else self.layer))
        self.dirty = changed
        return changed

    def dab(self, x: float, y: float, pressure: float = 1.0) -> Rect | None:
        """A single dab at (x, y), independent of the previous positions."""
        self._last = None
        return self.stroke_to(x, y, pressure)

    def end(self) -> None:
        """Finish: freeze the tiles, drop tiles left empty, seal the undo step."""
        if self.ended:
            return
        self.ended = True
        top = self.doc.history._undo[-1] if self.doc.history._undo else None
        for key, t in self._work.items():
            freeze(t)
            if self.surface.is_fill(t):
                self.surface.set_tile(key, None)
                if isinstance(top, TileEdit) and top.gesture == self._gesture:
                    top.after[key] = None
        self._cov.clear()
        self.doc.history.seal()
        self.doc._active_stroke = None

    # -- painting ------------------------------------------------------------------
    def _description(self) -> str:
        verb = "Erase" if self.brush.eraser else "Paint"
        where = {"pixels": "", "mask": " mask", "selection": " selection"}[self.target]
        return verb + where

    def _diameter(self, pressure: float) -> float:
        b = self.brush
        if not b.pressure_size:
            return b.size
        return b.size * (b.min_size + (1 - b.min_size) * pressure)

    def _dab(self, cx: float, cy: float, pressure: float, before: dict) -> Rect | None:
        """Paints one dab, clipped to the document; returns what it touched (None: nothing)."""
        b = self.brush
        rect, shape = dab_shape(cx, cy, self._diameter(pressure) / 2, b.hardness)
        inside = rect.intersect(self.doc.bounds)
        if inside.empty:
            return None  # off the canvas: nothing to paint, nothing to undo
        shape = shape[inside.slices(rect.x, rect.y)]
        rect = inside
        limit = np.float32(b.opacity * (pressure if b.pressure_opacity else 1.0))
        flow = shape * np.float32(b.flow)
        if self.clip is not None:
            flow *= self.clip.read(rect).astype(np.float32) * np.float32(1 / 255)
        if not flow.any():
            return None
        for key in tile_keys(rect, TILE):
            tr = tile_rect(key, TILE)
            part = tr.intersect(rect)
            f = flow[part.slices(rect.x, rect.y)]
            if not f.any():
                continue
            if key not in self._work:
                orig = self.surface.tiles.get(key)
                self._orig[key] = orig
                before[key] = orig
                work = self.surface.tile_or_fill(key).copy()
                self._work[key] = work
                self._cov[key] = np.zeros((TILE, TILE), np.float32)
                self.surface.set_tile(key, work)
            ts = part.slices(tr.x, tr.y)
            cov = self._cov[key]
            c = cov[ts]
            c += np.maximum(limit - c, 0) * f
            orig = self._orig[key]
            base = orig[ts] if orig is not None else np.full(c.shape + self.surface.tile_shape[2:],
                                                             self.surface.fill, np.uint8)
            self._work[key][ts] = self._blend(base, c)
        return rect

    def _blend(self, base: np.ndarray, a: np.ndarray) -> np.ndarray:
        if self.surface.channels == 1:
            target = 0.0 if self.brush.eraser else 255.0
            out = base + (target - base) * a
            return np.rint(out).astype(np.uint8)
        da = base[..., 3].astype(np.float32) * np.float32(1 / 255)
        out = np.empty_like(base)
        if self.brush.eraser:
            out[..., :3] = base[..., :3]
            out[..., 3] = np.rint(da * (1 - a) * 255)
            return out
        oa = a + da * (1 - a)
        with np.errstate(divide="ignore", invalid="ignore"):
            rgb = (self.color * a[..., None] + base[..., :3] * (da * (1 - a))[..., None]) / oa[..., None]
        rgb = np.where(oa[..., None] > 0, rgb, base[..., :3])
        out[..., :3] = np.rint(np.clip(rgb, 0, 255))
        out[..., 3] = np.rint(oa * 255)
        return out
