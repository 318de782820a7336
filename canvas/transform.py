"""Whole-layer and whole-document transforms: moving a layer, scaling the document.

Both are single undo steps. Moving keeps references to the tiles before and
after (tiles are immutable); scaling swaps the whole content (bounds, layers,
selection) for a scaled copy, so undo puts the original back exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .commands import TileEdit
from .errors import DocumentError, LayerLockedError
from .geometry import MAX_SIDE, Rect, tile_keys
from .history import Command
from .layer import Layer
from .limits import MAX_CANVAS_PIXELS
from .parameters import format_parameters
from .tiles import TILE, TiledSurface


def translate_layer(doc, layer: Layer, dx: int, dy: int) -> None:
    """Moves a layer's pixels (and its mask) by (dx, dy), one undo step."""
    if layer.locked:
        raise LayerLockedError(f"The layer “{layer.name}” is locked; unlock it to move it.")
    dx, dy = int(dx), int(dy)
    if not (dx or dy):
        return
    edits = []
    for surface in (layer.pixels, layer.mask):
        if surface is None:
            continue
        box = surface.content_bbox()
        if box is None:
            continue
        moved = box.translate(dx, dy)
        keys = set(tile_keys(box, TILE)) | set(tile_keys(moved, TILE))
        pixels = surface.read(box)
        work = surface.copy()
        work.write(box.x, box.y, np.full_like(pixels, surface.fill))
        work.write(moved.x, moved.y, pixels)
        edits.append(TileEdit(surface, surface.snapshot(keys), work.snapshot(keys), "pixels",
                              "Move layer", rect=box.union(moved), layer=layer))
    if not edits:
        return
    from .commands import Group

    doc._do(edits[0] if len(edits) == 1 else Group(edits, "Move layer"))


@dataclass(eq=False)
class ReplaceContent(Command):
    """Swaps the document's bounds, layer list and selection state as one step."""

    old: tuple
    new: tuple
    description: str = "Scale document"

    def _apply(self, doc, state) -> None:
        bounds, layers, selection = state
        doc._bounds = bounds
        doc._layers = list(layers)
        doc.selection._set_state(selection)
        doc.cache.invalidate(None, None)
        doc._changed("bounds", None)
        doc._changed("layers", None)
        doc._changed("selection", None)

    def redo(self, doc) -> None:
        self._apply(doc, self.new)

    def undo(self, doc) -> None:
        self._apply(doc, self.old)

    @property
    def nbytes(self) -> int:
        return sum(l.pixels.nbytes for l in self.new[1])


def _scaled_surface(surface: TiledSurface, scale: int) -> TiledSurface:
    out = TiledSurface(surface.channels, surface.fill)
    box = surface.content_bbox()
    if box is None:
        return out
    pixels = surface.read(box)
    mode = "RGBA" if surface.channels == 4 else "L"
    # Pillow resamples RGBA with premultiplied alpha, so transparent edges get no dark fringe.
    image = Image.fromarray(pixels, mode).resize((box.w * scale, box.h * scale), Image.LANCZOS)
    out.write(box.x * scale, box.y * scale, np.asarray(image))
    return out


def scale_document(doc, scale: int, top: np.ndarray | None = None, top_xy=(0, 0), name: str = "Upscale",
                   parameters=None) -> Layer | None:
    """Scales every layer, mask and the selection by a whole factor, and optionally places
    ``top`` (an upscaled rendering, straight RGBA) above them as a new layer — one undo step."""
    scale = int(scale)
    if not 2 <= scale <= 16:
        raise DocumentError(f"The document can be scaled by 2 to 16, not {scale}.")
    b = doc.bounds
    new_bounds = Rect(b.x * scale, b.y * scale, b.w * scale, b.h * scale)

    if new_bounds.w > MAX_SIDE or new_bounds.h > MAX_SIDE:
        raise DocumentError(f"Scaled by {scale} the document would be {new_bounds.w}×{new_bounds.h} px, "
                            f"more than {MAX_SIDE} a side: scale a smaller part.")
    if new_bounds.w * new_bounds.h > MAX_CANVAS_PIXELS:  # what we save, we can open again
        raise DocumentError(f"Scaled by {scale} the document would be {new_bounds.w}×{new_bounds.h} px, "
                            f"more than {MAX_CANVAS_PIXELS:,} pixels (32768×32768): scale a smaller part.")
    doc.end_stroke()
    layers = []
    for layer in doc.layers:
        layers.append(Layer(
            name=layer.name, pixels=_scaled_surface(layer.pixels, scale), visible=layer.visible,
            opacity=layer.opacity, blend_mode=layer.blend_mode, locked=layer.locked,
            mask=None if layer.mask is None else _scaled_surface(layer.mask, scale),
            parameters=layer.parameters, role=layer.role, id=layer.id,
        ))
    added = None
    if top is not None:
        if isinstance(parameters, dict):
            parameters = format_parameters(parameters)
        added = Layer(name=name, parameters=parameters)
        added.pixels.write(int(top_xy[0]), int(top_xy[1]), np.asarray(top, np.uint8))
        layers.append(added)
    sel = doc.selection
    if sel.surface.fill:
        new_sel = (sel.surface.fill, {})
    else:
        new_sel = (0, dict(_scaled_surface(sel.surface, scale).tiles))
    old = (b, tuple(doc.layers), sel._state())
    doc._do(ReplaceContent(old, (new_bounds, tuple(layers), new_sel), name if top is not None else "Scale document"))
    return added
