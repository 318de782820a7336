"""Tile plans and seam-free blending (numpy only).

A plan splits each axis into ``n`` equal tiles that overlap by at least ``overlap`` pixels,
spread evenly (so a 384 px side with 256 px tiles becomes two tiles of 200 px, not a 256 and a
mostly wasted one). Tiles are blended with weights that form a partition of unity: inside an
overlap of width ``o`` the left tile's weight falls from 1 to 0 over the middle half of the
overlap (its outer quarter, where the model saw the least context, gets weight 0) and the right
tile's weight is one minus that. Every pixel's weights sum to exactly 1, so a flat or
gradient image whose tiles agree comes out unchanged, and nothing needs normalising.

:class:`BandWriter` accumulates tiles row of tiles by row of tiles into a float buffer just one
tile row high and flushes finished rows into the uint8 output, so the memory of blending stays
bounded by the output's width, not its area.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def plan_axis(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of each tile along one axis; one tile when ``tile >= length``."""
    if tile >= length:
        return [(0, length)]
    overlap = min(overlap, tile // 2)
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    return [(s, s + size) for s in starts]


@dataclass(frozen=True)
class Tile:
    index: int
    row: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class TilePlan:
    width: int
    height: int
    xs: tuple[tuple[int, int], ...]
    ys: tuple[tuple[int, int], ...]

    @property
    def tiles(self) -> list[Tile]:
        out = []
        for r, (y0, y1) in enumerate(self.ys):
            for x0, x1 in self.xs:
                out.append(Tile(len(out), r, x0, y0, x1, y1))
        return out

    def __len__(self) -> int:
        return len(self.xs) * len(self.ys)

    @property
    def tiled(self) -> bool:
        return len(self) > 1


def make_plan(width: int, height: int, tile: int, overlap: int) -> TilePlan:
    return TilePlan(width, height, tuple(plan_axis(width, tile, overlap)), tuple(plan_axis(height, tile, overlap)))


def axis_weights(spans, i: int, scale: int = 1) -> np.ndarray:
    """The blending weights of tile ``i`` along one axis, in output pixels (``scale`` × the plan)."""
    start, end = spans[i]
    w = np.ones((end - start) * scale, np.float32)
    if i > 0:
        w[: (spans[i - 1][1] - start) * scale] = _ramp((spans[i - 1][1] - start) * scale)
    if i < len(spans) - 1:
        o = (end - spans[i + 1][0]) * scale
        w[len(w) - o:] = 1.0 - _ramp(o)
    return w


def _ramp(o: int) -> np.ndarray:
    """Rises from 0 to 1 across an overlap of ``o`` pixels, flat 0 in its first and 1 in its last quarter."""
    m = o // 4
    p = np.arange(o, dtype=np.float32) + 0.5
    return np.clip((p - m) / max(o - 2 * m, 1), 0.0, 1.0)


def tile_weights(plan: TilePlan, tile: Tile, scale: int = 1) -> np.ndarray:
    col = plan.xs.index((tile.x0, tile.x1))
    return axis_weights(plan.ys, tile.row, scale)[:, None] * axis_weights(plan.xs, col, scale)[None, :]


class BandWriter:
    """Blends tiles (row by row of the plan) into ``out`` (uint8, H×W×C at ``scale``) with bounded memory."""

    def __init__(self, plan: TilePlan, out: np.ndarray, scale: int = 1):
        self.plan, self.out, self.scale = plan, out, scale
        self.top = 0  # first output row not yet written
        self.acc = np.zeros((0, out.shape[1], out.shape[2]), np.float32)

    def add(self, tile: Tile, pixels: np.ndarray) -> None:
        """``pixels``: float (0-255) or uint8, (tile.height·scale, tile.width·scale, C)."""
        s = self.scale
        y0, y1, x0 = tile.y0 * s, tile.y1 * s, tile.x0 * s
        if y1 - self.top > self.acc.shape[0]:
            grow = np.zeros((y1 - self.top - self.acc.shape[0],) + self.acc.shape[1:], np.float32)
            self.acc = np.concatenate([self.acc, grow])
        w = tile_weights(self.plan, tile, s)[..., None]
        self.acc[y0 - self.top: y1 - self.top, x0: x0 + pixels.shape[1]] += pixels.astype(np.float32) * w

    def finish_row(self, row: int) -> None:
        """Rows above the next tile row are final: write them out and drop them from the buffer."""
        ys = self.plan.ys
        upto = (ys[row + 1][0] if row + 1 < len(ys) else ys[-1][1]) * self.scale
        n = upto - self.top
        self.out[self.top: upto] = np.clip(self.acc[:n] + 0.5, 0, 255).astype(np.uint8)
        self.acc = self.acc[n:].copy()
        self.top = upto


def seam_score(image: np.ndarray, borders_x, borders_y) -> float:
    """Max step across the given tile borders / median step inside tiles (1 = no seam), on a gradient.

    ``borders_*`` are the output coordinates where one tile's weight takes over from another's
    (the middle of each overlap). Steps are mean absolute differences between adjacent columns
    (or rows), averaged over the other axis.
    """
    a = image[..., :3].astype(np.float32)
    col = np.abs(np.diff(a, axis=1)).mean(axis=(0, 2))  # step between column j and j+1
    row = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2))
    near = np.zeros(col.shape, bool)
    steps = []
    for b in borders_x:
        lo, hi = max(0, b - 16), min(len(col), b + 16)
        steps.append(col[lo:hi].max())
        near[lo:hi] = True
    inside = [np.median(col[~near])] if (~near).any() else [np.median(col)]
    near_r = np.zeros(row.shape, bool)
    for b in borders_y:
        lo, hi = max(0, b - 16), min(len(row), b + 16)
        steps.append(row[lo:hi].max())
        near_r[lo:hi] = True
    inside.append(np.median(row[~near_r]) if (~near_r).any() else np.median(row))
    if not steps:
        return 1.0
    return float(max(steps) / max(np.mean(inside), 1e-6))


def overlap_centres(spans, scale: int = 1) -> list[int]:
    return [((spans[i][1] + spans[i + 1][0]) // 2) * scale for i in range(len(spans) - 1)]
