"""Integer rectangles in document pixel coordinates.

A :class:`Rect` is half-open: it covers x <= px < x + w and y <= py < y + h.
Coordinates may be negative (a document grown to the left or top has a
negative origin).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

MAX_SIDE = 1 << 17  # 131072 px: a document (or image) side beyond this is refused


class Rect(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    @classmethod
    def from_edges(cls, left: int, top: int, right: int, bottom: int) -> "Rect":
        return cls(int(left), int(top), int(right - left), int(bottom - top))

    def intersect(self, other: "Rect") -> "Rect":
        left, top = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        if right <= left or bottom <= top:
            return Rect(left, top, 0, 0)
        return Rect(left, top, right - left, bottom - top)

    def union(self, other: "Rect | None") -> "Rect":
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return Rect.from_edges(min(self.x, other.x), min(self.y, other.y),
                               max(self.right, other.right), max(self.bottom, other.bottom))

    def expand(self, left: int, top: int, right: int, bottom: int) -> "Rect":
        return Rect(self.x - left, self.y - top, self.w + left + right, self.h + top + bottom)

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def contains(self, other: "Rect") -> bool:
        return (other.x >= self.x and other.y >= self.y
                and other.right <= self.right and other.bottom <= self.bottom)

    def slices(self, origin_x: int, origin_y: int) -> tuple[slice, slice]:
        """(row slice, column slice) of this rect inside an array whose [0, 0] is at origin."""
        return (slice(self.y - origin_y, self.bottom - origin_y),
                slice(self.x - origin_x, self.right - origin_x))


def tile_keys(rect: Rect, tile: int) -> Iterator[tuple[int, int]]:
    """Keys (tx, ty) of the tiles of size `tile` that overlap `rect`, row by row."""
    if rect.empty:
        return
    tx0, ty0 = rect.x // tile, rect.y // tile
    tx1, ty1 = (rect.right - 1) // tile, (rect.bottom - 1) // tile
    for ty in range(ty0, ty1 + 1):
        for tx in range(tx0, tx1 + 1):
            yield tx, ty


def tile_rect(key: tuple[int, int], tile: int) -> Rect:
    return Rect(key[0] * tile, key[1] * tile, tile, tile)


def bounding_rect(rects) -> Rect | None:
    out: Rect | None = None
    for r in rects:
        if r is None or r.empty:
            continue
        out = r if out is None else out.union(r)
    return out
