"""Layers: a sparse RGBA pixel surface plus the properties OpenRaster stores."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .blend import BLEND_MODES
from .geometry import Rect
from .role import check_role
from .tiles import TiledSurface

_ids = itertools.count(1)

# Properties settable with Document.set_layer_properties (undoable, merged on drags).
LAYER_PROPERTIES = ("name", "visible", "opacity", "blend_mode", "locked", "role")


@dataclass(eq=False)
class Layer:
    """One raster layer.

    ``pixels`` is straight-alpha RGBA (see :mod:`canvas.tiles`).  ``mask`` is an
    optional one-channel layer mask (255 reveals, 0 hides; absent tiles reveal).
    ``parameters`` holds the A1111-style generation text of a generated layer.
    ``role`` marks a control or reference layer (:mod:`canvas.role`); None is a plain
    layer, part of the picture.
    Change layers through :class:`~canvas.document.Document` methods so the
    change is undoable and the composite cache stays right.
    """

    name: str = "Layer"
    pixels: TiledSurface = field(default_factory=lambda: TiledSurface(4, 0))
    visible: bool = True
    opacity: float = 1.0
    blend_mode: str = "normal"
    locked: bool = False
    mask: TiledSurface | None = None
    parameters: str | None = None
    role: object = None  # canvas.role.ControlRole | ReferenceRole | None
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self) -> None:
        check_properties(self, {"opacity": self.opacity, "blend_mode": self.blend_mode, "role": self.role})

    def properties(self) -> dict:
        return {k: getattr(self, k) for k in LAYER_PROPERTIES}

    def bbox(self) -> Rect | None:
        """Tile-level bounding box of the layer's pixels (None when empty)."""
        return self.pixels.tile_bbox()

    def copy(self) -> "Layer":
        """An independent copy sharing the immutable tiles (cheap)."""
        return Layer(name=self.name, pixels=self.pixels.copy(), visible=self.visible,
                     opacity=self.opacity, blend_mode=self.blend_mode, locked=self.locked,
                     mask=None if self.mask is None else self.mask.copy(),
                     parameters=self.parameters, role=self.role, id=self.id)

    @property
    def marked(self) -> bool:
        """A control or reference layer: not part of the picture the operations work on."""
        return self.role is not None


def new_mask() -> TiledSurface:
    """An empty layer mask: reveals everything."""
    return TiledSurface(1, 255)


def check_properties(layer_or_none, props: dict) -> None:
    for key, value in props.items():
        if key not in LAYER_PROPERTIES:
            raise ValueError(f"unknown layer property {key!r}")
        if key == "opacity" and not (0.0 <= float(value) <= 1.0):
            raise ValueError(f"opacity must lie in [0, 1], got {value}")
        if key == "blend_mode" and value not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {value!r}; choose one of {', '.join(BLEND_MODES)}")
        if key == "role":
            check_role(value)
