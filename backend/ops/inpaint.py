"""Inpaint: repaint where the mask is set, in the mask's surroundings, one region per variation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import InvalidRequest
from ..exemplar import NoExemplarSource, exemplar_fill
from ..region import FILL_MODES, blend_mask, grow_mask
from ..requests import GenerationRequest, _check_bool, _check_range, _check_whole, _frozen_pixels, mask_bbox, recorded
from .base import Operation, check_model, diffusion_total, load_model, run_variations

# Prefills made from the surroundings, which colour guidance follows: "original" is the hole's own
# content (repainted freely at strength 1), "noise" has no colour to follow.
GUIDED_FILLS = ("blur", "flat", "exemplar")
SHRUNK_TO_NOTHING = "`grow` shrinks the mask to nothing: use a smaller shrink or a larger mask."
EXEMPLAR_CONTEXT = 96  # px: at least this much of the image around the hole (and as much as the hole is wide)


@dataclass(frozen=True, eq=False)
class InpaintRequest(GenerationRequest):
    """Repaint where ``mask`` is set (255 = repaint, grey = partly)."""

    mask: np.ndarray = field(default=None)
    grow: int = recorded(8, "Grow")
    feather: int = recorded(8, "Feather")
    fill: str = recorded("original", "Fill")
    padding: int = recorded(48, "Padding")
    # With a model that asks for it ("restore_detail" in latent_studio.json): give the masked area the
    # surroundings' fine detail that the model's autoencoder loses.
    restore_detail: bool = recorded(True, "Detail transfer")
    # A live-painting update (core.DiffusionSettings.live): one VAE encode, the result drawn by the model's
    # preview decoder instead of its VAE; fast, a little less exact.
    live: bool = recorded(False, "Live")

    operation: ClassVar[str] = "inpaint"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask is None:
            raise InvalidRequest("`mask` is missing: paint or select the area to repaint.")
        object.__setattr__(self, "mask", _frozen_pixels(self.mask, "mask", None))
        if self.mask.shape != self.image.shape[:2]:
            mh, mw = self.mask.shape
            ih, iw = self.image.shape[:2]
            raise InvalidRequest(
                f"`mask` is {mw}×{mh} but the image is {iw}×{ih}: the mask must be the size of the image."
            )
        if not self.mask.any():
            raise InvalidRequest("`mask` is empty: paint (in white) or select the area to repaint.")
        _check_whole(self, "grow", "feather", "padding")
        _check_range("grow", self.grow, -256, 256, "grow (or, negative, shrink) the mask by up to 256 px.")
        _check_range("feather", self.feather, 0, 256, "feather the mask edge by 0 to 256 px.")
        _check_range("padding", self.padding, 0, 4096, "add 0 to 4096 px of context around the mask.")
        if self.fill not in FILL_MODES:
            raise InvalidRequest(f"`fill` {self.fill!r} is unknown: choose one of {', '.join(FILL_MODES)}.")
        _check_bool(self, "restore_detail", "live")
        if self.grow < 0 and not grow_mask(self.mask, self.grow).any():
            raise InvalidRequest(SHRUNK_TO_NOTHING)

    @classmethod
    def from_document(cls, image: np.ndarray, mask: np.ndarray, *, origin=(0, 0), **kwargs) -> "InpaintRequest":
        """Crops a large document to the part the job needs before copying it.

        ``image`` and ``mask`` may be views of the whole document; only the
        mask's bounding box plus grow, feather and padding is copied.
        """
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or not isinstance(image, np.ndarray):
            return cls(image=image, mask=mask, origin=origin, **kwargs)
        if mask.shape != image.shape[:2]:
            return cls(image=image, mask=mask, origin=origin, **kwargs)  # raises with the sizes
        box = mask_bbox(mask)
        if box is None:
            return cls(image=image[:8, :8], mask=mask[:8, :8], origin=origin, **kwargs)  # raises: empty
        x0, y0, x1, y1 = box
        margin = crop_margin(kwargs.get("grow", cls.grow), kwargs.get("feather", cls.feather),
                             kwargs.get("padding", cls.padding), kwargs.get("fill", cls.fill), (x1 - x0, y1 - y0))
        h, w = mask.shape
        x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
        x1, y1 = min(w, x1 + margin), min(h, y1 + margin)
        if x1 - x0 < 8:
            x0, x1 = (max(0, min(x0, w - 8)), max(0, min(x0, w - 8)) + 8) if w >= 8 else (x0, x1)
        if y1 - y0 < 8:
            y0, y1 = (max(0, min(y0, h - 8)), max(0, min(y0, h - 8)) + 8) if h >= 8 else (y0, y1)
        ox, oy = origin
        controls = kwargs.pop("controls", ())
        if isinstance(controls, (tuple, list)):  # control images over the document: cropped alike
            controls = tuple(c.cropped(x0, y0, x1, y1) if getattr(c, "image", None) is not None
                             and c.image.shape[:2] == mask.shape else c for c in controls)
        return cls(
            controls=controls,
            image=image[y0:y1, x0:x1], mask=mask[y0:y1, x0:x1], origin=(ox + x0, oy + y0), **kwargs
        )


def crop_margin(grow, feather, padding, fill="original", box=(0, 0)) -> int:
    """How far around the mask's box a job can reach: grown, feathered, then padded with context
    (an exemplar fill searches wider: at least the hole's own size around it)."""
    try:
        reach = max(0, int(grow)) + max(0, int(feather))
        context = max(0, int(padding))
    except (TypeError, ValueError):
        return 0  # the request itself says what is wrong with the value
    if fill == "exemplar":
        context = max(context, EXEMPLAR_CONTEXT, *box)
    return reach + context


def run(ctx, request: InpaintRequest):
    model = load_model(ctx, request)
    soft = blend_mask(request.mask, request.grow, request.feather)
    box = mask_bbox(soft > 0)
    if box is None:
        raise InvalidRequest(SHRUNK_TO_NOTHING)
    h, w = soft.shape
    pad = request.padding
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w, box[2] + pad), min(h, box[3] + pad)
    fill, start, notes = request.fill, None, ()
    if fill == "exemplar":
        # Searched over all the request holds (more of the image than the diffused region), once for
        # every variation: each seed then refines the same structure its own way.
        ctx.stage("Filling the hole from the surroundings")
        try:
            start = exemplar_fill(request.image[..., :3], soft > 0.5)[y0:y1, x0:x1]
        except NoExemplarSource as error:
            fill, notes = "blur", (str(error),)
            ctx.stage(notes[0])
    pixels = request.image[y0:y1, x0:x1]
    soft = soft[y0:y1, x0:x1]
    ox, oy = request.origin
    rect = (ox + x0, oy + y0, x1 - x0, y1 - y0)
    return run_variations(ctx, request, model, pixels, soft, rect, full_region=False, fill=fill, start=start,
                          notes=notes, guide_colours=fill in GUIDED_FILLS, restore_detail=request.restore_detail)


OPERATION = Operation(InpaintRequest, run, diffusion_total, check_model)
