"""The document's undoable commands.  Each stores only what it touched.

Pixel commands keep references to the tiles before and after the change
(tiles are immutable, see :mod:`canvas.tiles`), so undo and redo restore
pixels exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import Rect, bounding_rect, tile_rect
from .history import Command
from .layer import Layer
from .tiles import TILE, Key, TiledSurface

EMPTY = Rect(0, 0, 0, 0)


def _tiles_nbytes(snap: dict[Key, np.ndarray | None]) -> int:
    return sum(t.nbytes for t in snap.values() if t is not None)


def _keys_rect(keys) -> Rect | None:
    return bounding_rect(tile_rect(k, TILE) for k in keys)


@dataclass(eq=False)
class TileEdit(Command):
    """Pixels of one surface changed: a layer's pixels or mask, or the selection.

    `kind` is "pixels" (changes the composite) or "selection".  Edits with the
    same non-None `gesture` id merge (the segments of one brush stroke)."""

    surface: TiledSurface
    before: dict
    after: dict
    kind: str = "pixels"
    description: str = "Paint"
    gesture: object = None
    rect: Rect | None = None  # what changed, when smaller than the tiles (a brush dab)
    layer: Layer | None = None  # the layer owning the surface (None for the selection)

    def redo(self, doc) -> None:
        self.surface.restore(self.after)
        doc._changed(self.kind, self.rect or _keys_rect(self.after) or EMPTY, self.layer)

    def undo(self, doc) -> None:
        self.surface.restore(self.before)
        doc._changed(self.kind, self.rect or _keys_rect(self.before) or EMPTY, self.layer)

    def merge(self, other: Command) -> bool:
        if not (isinstance(other, TileEdit) and self.gesture is not None
                and other.gesture == self.gesture and other.surface is self.surface):
            return False
        for k, t in other.before.items():
            self.before.setdefault(k, t)
        self.after.update(other.after)
        if self.rect is not None:
            self.rect = self.rect.union(other.rect or _keys_rect(other.after))
        return True

    @property
    def nbytes(self) -> int:
        return _tiles_nbytes(self.before) + _tiles_nbytes(self.after)


@dataclass(eq=False)
class AddLayer(Command):
    layer: Layer
    index: int
    description: str = "Add layer"

    def redo(self, doc) -> None:
        doc._layers.insert(self.index, self.layer)
        doc._changed("layers", self.layer.bbox() or EMPTY)

    def undo(self, doc) -> None:
        doc._layers.remove(self.layer)
        doc._changed("layers", self.layer.bbox() or EMPTY)

    @property
    def nbytes(self) -> int:
        return self.layer.pixels.nbytes + (self.layer.mask.nbytes if self.layer.mask else 0)


@dataclass(eq=False)
class RemoveLayer(Command):
    layer: Layer
    index: int = -1
    description: str = "Delete layer"

    def redo(self, doc) -> None:
        self.index = doc._layers.index(self.layer)
        doc._layers.pop(self.index)
        doc._changed("layers", self.layer.bbox() or EMPTY)

    def undo(self, doc) -> None:
        doc._layers.insert(self.index, self.layer)
        doc._changed("layers", self.layer.bbox() or EMPTY)

    @property
    def nbytes(self) -> int:
        return self.layer.pixels.nbytes


@dataclass(eq=False)
class MoveLayer(Command):
    layer: Layer
    new_index: int
    old_index: int = -1
    description: str = "Move layer"

    def redo(self, doc) -> None:
        self.old_index = doc._layers.index(self.layer)
        doc._layers.pop(self.old_index)
        doc._layers.insert(self.new_index, self.layer)
        doc._changed("layers", self.layer.bbox() or EMPTY)

    def undo(self, doc) -> None:
        doc._layers.remove(self.layer)
        doc._layers.insert(self.old_index, self.layer)
        doc._changed("layers", self.layer.bbox() or EMPTY)


@dataclass(eq=False)
class SetLayerProperties(Command):
    """Change name/visibility/opacity/blend mode/lock; a drag of one slider merges."""

    layer: Layer
    old: dict
    new: dict
    description: str = "Layer properties"

    def redo(self, doc) -> None:
        self._apply(doc, self.new)

    def undo(self, doc) -> None:
        self._apply(doc, self.old)

    def _apply(self, doc, values: dict) -> None:
        for k, v in values.items():
            setattr(self.layer, k, v)
        doc._changed("layers", self.layer.bbox() or EMPTY, self.layer)

    def merge(self, other: Command) -> bool:
        if not (isinstance(other, SetLayerProperties) and other.layer is self.layer
                and other.new.keys() == self.new.keys()):
            return False
        self.new = dict(other.new)
        return True


@dataclass(eq=False)
class SetLayerMask(Command):
    """Add, replace or remove a layer's mask (None removes it)."""

    layer: Layer
    new_mask: TiledSurface | None
    old_mask: TiledSurface | None = None
    description: str = "Layer mask"

    def redo(self, doc) -> None:
        self.old_mask = self.layer.mask
        self.layer.mask = self.new_mask
        doc._changed("layers", self.layer.bbox() or EMPTY, self.layer)

    def undo(self, doc) -> None:
        self.layer.mask = self.old_mask
        doc._changed("layers", self.layer.bbox() or EMPTY, self.layer)

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in (self.new_mask, self.old_mask) if m is not None)


@dataclass(eq=False)
class SetBounds(Command):
    old: Rect
    new: Rect
    description: str = "Resize canvas"

    def redo(self, doc) -> None:
        doc._bounds = self.new
        doc._changed("bounds", None)

    def undo(self, doc) -> None:
        doc._bounds = self.old
        doc._changed("bounds", None)


@dataclass(eq=False)
class SetSelection(Command):
    """Replace the selection's state (fill + tiles); tiles are shared, not copied."""

    old: tuple
    new: tuple
    description: str = "Select"

    def redo(self, doc) -> None:
        doc.selection._set_state(self.new)
        doc._changed("selection", None)

    def undo(self, doc) -> None:
        doc.selection._set_state(self.old)
        doc._changed("selection", None)

    @property
    def nbytes(self) -> int:
        return _tiles_nbytes(self.old[1]) + _tiles_nbytes(self.new[1])


@dataclass(eq=False)
class Group(Command):
    """Several commands as one undo step (e.g. grow the canvas, then place a layer)."""

    commands: list = field(default_factory=list)
    description: str = "Edit"

    def redo(self, doc) -> None:
        for c in self.commands:
            c.redo(doc)

    def undo(self, doc) -> None:
        for c in reversed(self.commands):
            c.undo(doc)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.commands)
