"""A Krita document as the operation specs read a document: ``bounds``, ``selection`` (``is_empty``,
``bbox()``, ``read(rect)``) and ``flatten(rect)``, so ``spec.build`` makes the same frozen request from a
Krita document as from the studio's. Only Krita's Python API is called (on objects handed in), no Qt: the
tests drive it with a mocked ``krita`` module.
"""
from __future__ import annotations

import numpy as np

from canvas.geometry import Rect

from .pixels import bgra_to_rgba, mask_bytes

SUPPORTED = ("RGBA", "U8")


class UnsupportedDocument(Exception):
    """The document (or layer) cannot be read as 8-bit RGBA; the text says what to do."""


def colour_problem(model: str, depth: str, what: str = "The document") -> str | None:
    """One sentence when ``model``/``depth`` is not Krita's 8-bit RGBA, else None."""
    if (model, depth) == SUPPORTED:
        return None
    depth_text = {"U8": "8-bit", "U16": "16-bit", "F16": "16-bit float", "F32": "32-bit float"}.get(depth, depth)
    return (f"{what} is {model} {depth_text}, but Latent Studio paints 8-bit RGBA: convert it with Image ▸ "
            "Convert Image Color Space (RGB/Alpha, 8-bit integer/channel) first.")


class KritaSelection:
    """A Krita selection (or none) read as a mask, 0-255 a pixel."""

    def __init__(self, selection, bounds: Rect):
        self._sel = selection
        box = None
        if selection is not None and selection.width() > 0 and selection.height() > 0:
            box = Rect(selection.x(), selection.y(), selection.width(), selection.height()).intersect(bounds)
            if box.empty or not self.read(box).any():
                box = None
        self._box = box

    @property
    def is_empty(self) -> bool:
        return self._box is None

    def bbox(self) -> Rect | None:
        return self._box

    def read(self, rect: Rect) -> np.ndarray:
        if self._sel is None:
            return np.zeros((rect.h, rect.w), np.uint8)
        return mask_bytes(self._sel.pixelData(rect.x, rect.y, rect.w, rect.h), rect.w, rect.h)


class KritaDocument:
    """``doc``: a ``krita.Document``. Pixels are read when asked (on the GUI thread), as copies."""

    def __init__(self, doc, layer=None):
        self.doc = doc
        self._layer = layer  # the layer to vary, where Krita has no active one (kritarunner has no view)
        self.bounds = Rect(0, 0, doc.width(), doc.height())
        self.selection = KritaSelection(doc.selection(), self.bounds)

    def colour_problem(self) -> str | None:
        return colour_problem(self.doc.colorModel(), self.doc.colorDepth())

    def flatten(self, rect: Rect | None = None) -> np.ndarray:
        """The visible image (Krita's projection) over ``rect`` (default: the whole document)."""
        r = rect or self.bounds
        return bgra_to_rgba(self.doc.pixelData(r.x, r.y, r.w, r.h), r.w, r.h)

    def active_layer(self):
        return self._layer if self._layer is not None else self.doc.activeNode()

    def layer_pixels(self, node, rect: Rect) -> np.ndarray:
        return bgra_to_rgba(node.pixelData(rect.x, rect.y, rect.w, rect.h), rect.w, rect.h)
