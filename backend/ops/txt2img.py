"""Text to image: a new image from the prompt alone, the size of the canvas or of the selection.

The request's ``image`` gives the size and the place (its pixels are not used: the result is a new
layer, not a change to what is there). ``mask`` (the selection), when given, becomes the new
layer's alpha, soft edges kept, and the region generated is its bounding box. Each variation is one
``diffuse_region`` over the region with ``text_only``: a regular model runs its text-to-image
pipeline, a 9-channel inpainting model inpaints the region whole. The region is generated at the
model's native area and scaled back, as inpaint's is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..core import diffuse_region
from ..errors import InvalidRequest
from ..events import ResultImage
from ..region import working_size
from ..requests import GenerationRequest, _frozen_pixels, mask_bbox, request_parameters
from .base import Operation, check_model, diffusion_settings, diffusion_total, load_model

# The size of a new image when nothing else gives one (the command line without --image), and the
# range the command line takes: A1111's default, the same whatever the model (each is generated at
# its model's native area and scaled to the size asked for).
DEFAULT_SIZE = 512
MIN_SIZE, MAX_SIZE = 64, 8192
# Scaled up more than this (in area) from the model's native area, a result says so.
UPSCALE_NOTE = 2.0

CAPTIONLESS = ("{name} was trained without captions and ignores the prompt, so it cannot make an image from "
               "text: choose a Stable Diffusion 1.x, 2.x or SDXL checkpoint or folder as the model.")


@dataclass(frozen=True, eq=False)
class Txt2ImgRequest(GenerationRequest):
    """A new image from the prompt: the size of ``image`` (whose pixels are not used), or of the box of
    ``mask`` (255 = inside, grey = partly), which becomes its alpha."""

    mask: np.ndarray | None = field(default=None)

    operation: ClassVar[str] = "txt2img"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strength != 1.0:
            raise InvalidRequest(f"`strength` must be 1 for text to image, but is {self.strength:g}: it starts from "
                                 "noise alone (to vary an image, use img2img).")
        if self.mask is None:
            return
        object.__setattr__(self, "mask", _frozen_pixels(self.mask, "mask", None))
        if self.mask.shape != self.image.shape[:2]:
            (mh, mw), (ih, iw) = self.mask.shape, self.image.shape[:2]
            raise InvalidRequest(f"`mask` is {mw}×{mh} but the image is {iw}×{ih}: the mask must be the size of "
                                 "the image.")
        if not self.mask.any():
            raise InvalidRequest("`mask` is empty: select the area to fill, or leave the mask out to fill the "
                                 "whole image.")

    @classmethod
    def covering(cls, width: int, height: int, mask: np.ndarray | None = None, *, origin=(0, 0),
                 **kwargs) -> "Txt2ImgRequest":
        """The request for a ``width``×``height`` area at ``origin``, or for the box of ``mask``'s
        selected pixels in it (the mask cropped alike): a transparent canvas of that size, since only
        the size is used."""
        ox, oy = (int(v) for v in origin)
        x0, y0, x1, y1 = 0, 0, width, height
        if isinstance(mask, np.ndarray) and mask.shape == (height, width) and mask.any():
            x0, y0, x1, y1 = mask_bbox(mask)
            mask = mask[y0:y1, x0:x1]
            controls = kwargs.get("controls", ())
            if isinstance(controls, (tuple, list)):  # control images over the whole area: cropped alike
                kwargs["controls"] = tuple(
                    c.cropped(x0, y0, x1, y1) if getattr(c, "image", None) is not None
                    and c.image.shape[:2] == (height, width) else c for c in controls)
        canvas = np.zeros((max(0, y1 - y0), max(0, x1 - x0), 4), np.uint8)
        return cls(image=canvas, mask=mask, origin=(ox + x0, oy + y0), **kwargs)

    def region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of what is generated, in the request's pixels: the mask's box, or all of it."""
        if self.mask is not None:
            return mask_bbox(self.mask)
        h, w = self.image.shape[:2]
        return 0, 0, w, h

    def extra_parameters(self) -> dict:
        x0, y0, x1, y1 = self.region()
        return {"Size": f"{x1 - x0}x{y1 - y0}"}  # as A1111 records txt2img's: the image's own size


def refuse_captionless(ref: str) -> None:
    """Raises InvalidRequest when the model ignores prompts (read from its folder, no weights)."""
    from ..models import model_info

    info = model_info(ref)
    if info.ignores_prompt:
        raise InvalidRequest(CAPTIONLESS.format(name=info.name))


def check(request: Txt2ImgRequest) -> None:
    check_model(request)
    refuse_captionless(request.model)


def run(ctx, request: Txt2ImgRequest):
    refuse_captionless(request.model)  # the app submits without checking first: not a model loaded for nothing
    model = load_model(ctx, request)
    x0, y0, x1, y1 = request.region()
    w, h = x1 - x0, y1 - y0
    # A transparent canvas under the new pixels: composited over it, the result is the generated image
    # with the mask as its alpha (soft edges kept), whatever was there.
    canvas = np.zeros((h, w, 4), np.uint8)
    if request.mask is None:
        soft = np.ones((h, w), np.float32)
    else:
        soft = request.mask[y0:y1, x0:x1].astype(np.float32) / 255.0
    alpha = (np.clip(soft, 0, 1) * 255 + 0.5).astype(np.uint8)
    ox, oy = request.origin
    rect = (ox + x0, oy + y0, w, h)
    work_w, work_h = working_size(w, h, model.native_size)
    notes = ()
    if w * h > UPSCALE_NOTE * work_w * work_h:
        notes = (f"Made at {work_w}×{work_h} (the model's native area) and scaled up to {w}×{h}: upscale a "
                 "smaller image for more detail.",)
    results = []
    for k, seed in enumerate(request.seeds):
        stage = f"Image {k + 1} of {request.count}" if request.count > 1 else ""
        settings = diffusion_settings(request, seed, model, text_only=True, match_seam=False)
        image, _ = diffuse_region(ctx, model, canvas, soft, rect, settings, stage=stage, full_region=True)
        params = request_parameters(request, seed=seed, model=model)
        results.append(ResultImage(image=image, rect=rect, mask=alpha, seed=seed, parameters=params, notes=notes))
    return tuple(results)


OPERATION = Operation(Txt2ImgRequest, run, diffusion_total, check)
