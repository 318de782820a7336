"""Latent Studio's canvas: the GUI-free painting document (numpy + Pillow only).

Modules, by what they do:

* :mod:`canvas.document` — :class:`Document`: bounds, layers, selection, undo, rendering.
* :mod:`canvas.layer`, :mod:`canvas.tiles` — layers and their sparse 256² tiles (straight RGBA).
* :mod:`canvas.blend`, :mod:`canvas.compositor` — blend modes, compositing, the view cache.
* :mod:`canvas.role` — control and reference layers (kept out of the picture ``flatten`` gives).
* :mod:`canvas.selection` — the selection mask and its shape builders and operations.
* :mod:`canvas.brush` — the brush engine (pixels, layer masks, selection).
* :mod:`canvas.history`, :mod:`canvas.commands` — undo/redo with merging and a memory limit.
* :mod:`canvas.ora`, :mod:`canvas.image_io`, :mod:`canvas.png` — OpenRaster, PNG/JPEG/WebP.
* :mod:`canvas.limits` — every limit on what reading a file may allocate, and why; the readers
  behind it: :mod:`canvas.ora_read`, :mod:`canvas.zipmember` (zip members inflated under a budget),
  :mod:`canvas.raster` (pixels into sparse tiles), :mod:`canvas.pixels` (every mode to 8-bit RGBA).
* :mod:`canvas.autosave`, :mod:`canvas.background`, :mod:`canvas.atomic` — never losing work
  (atomic saves, recovery that keeps the autosave until a newer one exists, stray ``.part`` cleanup).
* :mod:`canvas.parameters` — the A1111 "parameters" text.
* :mod:`canvas.progress`, :mod:`canvas.errors` — progress reporting and user-readable errors.
"""
from .document import Document
from .errors import DocumentError, FileFormatError, LayerLockedError, OperationCancelled
from .geometry import Rect
from .layer import Layer

__all__ = ["Document", "DocumentError", "FileFormatError", "LayerLockedError", "Layer",
           "OperationCancelled", "Rect"]
