"""The document: bounds, a stack of layers, the selection and the undo history.

GUI-free (numpy only).  Every change goes through a command in
:mod:`canvas.commands` and :attr:`Document.history`, so everything is
undoable.  Views call :meth:`Document.render` for any rectangle (cached,
recomputing only dirty tiles) and subscribe to :attr:`Document.listeners`
to learn what changed: ``fn(kind, rect)`` with kind in
``"pixels"``, ``"layers"``, ``"selection"``, ``"bounds"`` and rect ``None``
meaning "everything".
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import commands as cmd
from .brush import BrushSettings, Stroke
from .compositor import TileCache, composite
from .geometry import MAX_SIDE, Rect
from .history import DEFAULT_LIMIT, History
from .limits import MAX_CANVAS_PIXELS
from .live import LiveSettings
from .layer import Layer, check_properties, new_mask
from .parameters import format_parameters
from .selection import Selection
from .tiles import TiledSurface



class Document:
    def __init__(self, width: int, height: int, x: int = 0, y: int = 0,
                 history_limit: int = DEFAULT_LIMIT) -> None:
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(f"document size must be 1..{MAX_SIDE} pixels a side, got {width}x{height}")
        self._bounds = Rect(int(x), int(y), int(width), int(height))
        self._layers: list[Layer] = []
        self.selection = Selection()
        self.history = History(self, history_limit)
        self.cache = TileCache()
        self.listeners: list[Callable[[str, Rect | None], None]] = []
        self.metadata: dict[str, str] = {}
        self.live: LiveSettings | None = None  # live painting's region, strength, seed (canvas.live; not undoable)
        self._active_stroke: Stroke | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def bounds(self) -> Rect:
        """(x, y, w, h); the origin can be negative after growing left or up."""
        return self._bounds

    @property
    def width(self) -> int:
        return self._bounds.w

    @property
    def height(self) -> int:
        return self._bounds.h

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, bottom first."""
        return tuple(self._layers)

    def layer_index(self, layer: Layer) -> int:
        return self._layers.index(layer)

    def _changed(self, kind: str, rect: Rect | None, layer: Layer | None = None) -> None:
        if kind in ("pixels", "layers"):
            self.cache.invalidate(rect, layer)
        for fn in list(self.listeners):
            fn(kind, rect)

    # -- rendering ---------------------------------------------------------------------
    def render(self, rect: Rect) -> np.ndarray:
        """Straight uint8 RGBA of the visible stack in `rect`, control and reference layers
        included (cached; for views)."""
        return self.cache.render(self._layers, Rect(*rect))

    def flatten(self, rect: Rect | None = None) -> np.ndarray:
        """Straight uint8 RGBA (H, W, 4) of the picture: the visible stack without the control and
        reference layers (:mod:`canvas.role`); the whole bounds by default. What the operations
        work on, what is exported and saved as the merged image."""
        return composite(self.picture_layers(), self._bounds if rect is None else Rect(*rect))

    def picture_layers(self) -> list[Layer]:
        """The layers that make the picture (bottom first): all but the control and reference layers."""
        return [layer for layer in self._layers if layer.role is None]

    def marked_layers(self) -> list[Layer]:
        """The control and reference layers, bottom first."""
        return [layer for layer in self._layers if layer.role is not None]

    # -- layers --------------------------------------------------------------------------
    def _do(self, command):
        self.end_stroke()
        self.history.seal()
        out = self.history.do(command)
        self.history.seal()
        return out

    def add_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        layer = Layer(name=name or f"Layer {len(self._layers) + 1}")
        self._do(cmd.AddLayer(layer, len(self._layers) if index is None else index))
        return layer

    def insert_layer(self, layer: Layer, index: int | None = None, description: str = "Add layer") -> Layer:
        """Insert a ready-made layer (e.g. an imported image) as one undoable step."""
        self._do(cmd.AddLayer(layer, len(self._layers) if index is None else index, description))
        return layer

    def add_image_layer(self, rgba: np.ndarray, x: int = 0, y: int = 0, name: str = "Image",
                        index: int | None = None, mask: np.ndarray | None = None,
                        parameters: dict | str | None = None, description: str = "Add image") -> Layer:
        """A new layer holding `rgba` (H, W, 4 straight uint8) at (x, y), one undoable step.

        `mask` (H, W uint8), when given, multiplies the alpha: the result is
        clipped to the region it was generated for."""
        rgba = np.asarray(rgba)
        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 4) uint8 array, got {rgba.dtype} {rgba.shape}")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != rgba.shape[:2] or mask.dtype != np.uint8:
                raise ValueError("mask must be a uint8 array of the image's height and width")
            rgba = rgba.copy()
            rgba[..., 3] = ((rgba[..., 3].astype(np.uint16) * mask + 127) // 255).astype(np.uint8)
        if isinstance(parameters, dict):
            parameters = format_parameters(parameters)
        layer = Layer(name=name, parameters=parameters)
        layer.pixels.write(int(x), int(y), rgba)
        return self.insert_layer(layer, index, description)

    def add_generated_layer(self, rgba: np.ndarray, x: int, y: int, name: str,
                            parameters: dict | str | None, mask: np.ndarray | None = None,
                            index: int | None = None) -> Layer:
        """Place a generated result as a new layer above the others, one undoable step.

        `parameters` (an A1111 text or a dict for :func:`canvas.parameters.format_parameters`)
        is kept on the layer, written to .ora files and to exported PNGs."""
        return self.add_image_layer(rgba, x, y, name, index, mask, parameters, description=name)

    def remove_layer(self, layer: Layer) -> None:
        self._do(cmd.RemoveLayer(layer))

    def move_layer(self, layer: Layer, index: int) -> None:
        if not 0 <= index < len(self._layers):
            raise IndexError("layer index out of range")
        self._do(cmd.MoveLayer(layer, index))

    def set_layer_properties(self, layer: Layer, **props) -> None:
        """Change name/visible/opacity/blend_mode/locked, one undo step.  Repeated opacity
        changes merge into one step until ``history.seal()`` (the end of a slider drag)."""
        check_properties(layer, props)
        if "opacity" in props:
            props["opacity"] = float(props["opacity"])
        old = {k: getattr(layer, k) for k in props}
        if old == props:
            return
        command = cmd.SetLayerProperties(layer, old, dict(props))
        if set(props) == {"opacity"}:  # a slider drag: merges until history.seal()
            self.end_stroke()
            self.history.do(command)
        else:
            self._do(command)

    def set_layer_role(self, layer: Layer, role, *, merge: bool = False) -> None:
        """Mark ``layer`` as a control or reference layer (a :mod:`canvas.role` value) or, with None, a
        plain one: one undo step. With ``merge``, repeated changes merge into one step until
        ``history.seal()`` (a strength edited step by step)."""
        check_properties(layer, {"role": role})
        if layer.role == role:
            return
        if role is None:
            description = "Mark as plain layer"
        elif layer.role is not None and type(layer.role) is type(role):
            description = f"{role.name.capitalize()} settings"
        else:
            description = f"Mark as {role.name} layer"
        command = cmd.SetLayerProperties(layer, {"role": layer.role}, {"role": role}, description)
        if merge:
            self.end_stroke()
            self.history.do(command)
        else:
            self._do(command)

    def set_layer_roles(self, roles: Sequence[tuple[Layer, object]], description: str = "Layer roles") -> None:
        """Set several layers' roles as one undo step (settings restored from a result)."""
        changes = [(layer, role) for layer, role in roles if layer.role != role]
        for _layer, role in changes:
            check_properties(None, {"role": role})
        if changes:
            self._do(cmd.Group([cmd.SetLayerProperties(layer, {"role": layer.role}, {"role": role}, description)
                                for layer, role in changes], description))

    def add_layer_mask(self, layer: Layer, from_selection: bool = False) -> TiledSurface:
        """Give `layer` a mask (revealing all, or a copy of the selection) as one step."""
        if from_selection:
            mask = self.selection.surface.copy()
        else:
            mask = new_mask()
        self._do(cmd.SetLayerMask(layer, mask, description="Add layer mask"))
        return mask

    def remove_layer_mask(self, layer: Layer) -> None:
        self._do(cmd.SetLayerMask(layer, None, description="Delete layer mask"))

    # -- bounds -----------------------------------------------------------------------------
    def grow(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> Rect:
        """Enlarge the canvas by the given margins (outpainting), one undoable step."""
        if min(left, top, right, bottom) < 0:
            raise ValueError("grow takes non-negative margins")
        new = self._bounds.expand(int(left), int(top), int(right), int(bottom))
        if new.w > MAX_SIDE or new.h > MAX_SIDE:
            raise ValueError(f"a document side cannot exceed {MAX_SIDE} pixels")
        if new.w * new.h > MAX_CANVAS_PIXELS:  # what we save, we can open again (canvas.limits)
            raise ValueError(f"a document cannot exceed {MAX_CANVAS_PIXELS:,} pixels (32768×32768)")
        if new != self._bounds:
            self._do(cmd.SetBounds(self._bounds, new))
        return new

    def grow_to_include(self, rect: Rect) -> Rect:
        """Grow just enough for `rect` to lie inside the canvas."""
        b = self._bounds
        return self.grow(max(0, b.x - rect.x), max(0, b.y - rect.y),
                         max(0, rect.right - b.right), max(0, rect.bottom - b.bottom))

    def translate_layer(self, layer: Layer, dx: int, dy: int) -> None:
        """Move a layer's pixels and mask by (dx, dy), one undoable step."""
        from .transform import translate_layer

        translate_layer(self, layer, dx, dy)

    def scale(self, factor: int, top: np.ndarray | None = None, top_xy=(0, 0), name: str = "Upscale",
              parameters=None) -> Layer | None:
        """Scale everything by a whole factor, optionally adding an upscaled rendering on top (one step)."""
        from .transform import scale_document

        return scale_document(self, factor, top, top_xy, name, parameters)

    # -- selection -----------------------------------------------------------------------------
    def set_selection(self, selection: Selection, description: str = "Select") -> None:
        """Make `selection` the document's selection (one undoable step)."""
        self._do(cmd.SetSelection(self.selection._state(), selection._state(), description))

    def select(self, shape: Selection, mode: str = "replace") -> None:
        """Combine a new shape with the selection: replace, add, subtract or intersect."""
        self.set_selection(self.selection.combine(shape, mode))

    def clear_selection(self) -> None:
        if not self.selection.is_empty:
            self.set_selection(Selection(), "Deselect")

    # -- painting ------------------------------------------------------------------------------
    def begin_stroke(self, brush: BrushSettings, layer: Layer | None = None,
                     color=(0, 0, 0), target: str = "pixels") -> Stroke:
        """Start a brush stroke; feed it with ``stroke.stroke_to(x, y, pressure)``, then ``end()``."""
        self.end_stroke()
        self.history.seal()
        self._active_stroke = Stroke(self, brush, target, layer, color)
        return self._active_stroke

    def end_stroke(self) -> None:
        if self._active_stroke is not None:
            self._active_stroke.end()

    @property
    def stroking(self) -> bool:
        """Whether a brush stroke is under way (begun and not ended)."""
        return self._active_stroke is not None

    # -- undo --------------------------------------------------------------------------------------
    def undo(self) -> bool:
        self.end_stroke()
        return self.history.undo()

    def redo(self) -> bool:
        self.end_stroke()
        return self.history.redo()

    # -- copies ------------------------------------------------------------------------------------
    def copy(self) -> "Document":
        """A snapshot without history, sharing the immutable tiles (cheap).

        Background saves work on such a copy, never on the live document."""
        out = Document(self.width, self.height, self._bounds.x, self._bounds.y)
        out._layers = [layer.copy() for layer in self._layers]
        out.selection = self.selection.copy()
        out.metadata = dict(self.metadata)
        out.live = self.live
        return out

    def generation_parameters(self) -> str | None:
        """The parameters text when the visible image came from exactly one generation."""
        texts = [l.parameters for l in self.picture_layers() if l.visible and l.parameters]
        return texts[0] if len(texts) == 1 else None

    @property
    def nbytes(self) -> int:
        """Pixel memory held by layers, masks, selection and the view cache (not history)."""
        total = sum(l.pixels.nbytes + (l.mask.nbytes if l.mask else 0) for l in self._layers)
        return total + self.selection.surface.nbytes + self.cache.nbytes


def layers_equal(a: Sequence[Layer], b: Sequence[Layer]) -> bool:
    """Same properties and same pixels, layer by layer (for tests and round trips)."""
    if len(a) != len(b):
        return False
    for la, lb in zip(a, b):
        if la.properties() != lb.properties() or la.parameters != lb.parameters:  # the role included
            return False
        if not la.pixels.equals(lb.pixels):
            return False
        if (la.mask is None) != (lb.mask is None):
            return False
        if la.mask is not None and not la.mask.equals(lb.mask):
            return False
    return True
