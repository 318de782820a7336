"""img2img: variations of a whole layer or region, re-imagined at ``strength``, at its own resolution.

An image larger than the model's native size is not scaled down: it is done in overlapping tiles of
the native size (the upscale refine's machinery), each tile's low frequencies held to the input's so
no seam shows, blended with weights that sum to one. At a low strength the region core also puts
back the fine detail the autoencoder loses, so a variation keeps the layer's detail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..requests import GenerationRequest, _check_bool, recorded, request_parameters
from ..core import effective_steps
from ..events import ResultImage
from ..upscale.refine import plan_refine, refine
from .base import Operation, check_model, diffusion_settings, load_model, native_size_guess


@dataclass(frozen=True, eq=False)
class Img2ImgRequest(GenerationRequest):
    """Variations of a whole layer or region: ``image`` is re-imagined at ``strength``."""

    strength: float = recorded(0.6, "Denoising strength")
    # A live-painting update (core.DiffusionSettings.live): one VAE encode, the result drawn by the model's
    # preview decoder instead of its VAE; fast, a little less exact.
    live: bool = recorded(False, "Live")

    operation: ClassVar[str] = "img2img"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool(self, "live")


def plan(request: Img2ImgRequest, native: int):
    h, w = request.image.shape[:2]
    return plan_refine(w, h, native, request.strength)


def hold_radius(plan, strength: float) -> int:
    """Tiles hold the input's low frequencies (no seams between tiles that vary differently); the
    stronger the variation the coarser what is held. One tile alone holds nothing."""
    if len(plan.tiles) == 1:
        return 0
    side = min(plan.xs[0][1] - plan.xs[0][0], plan.ys[0][1] - plan.ys[0][0])
    return max(2, round(side / 32 * (1 + 3 * strength)))


def total(request: Img2ImgRequest) -> int:
    tiles = len(plan(request, native_size_guess(request.model)).tiles)
    return tiles * effective_steps(request.steps, request.strength) * request.count


def run(ctx, request: Img2ImgRequest):
    model = load_model(ctx, request)
    tiles = plan(request, model.native_size)
    steps = len(tiles.tiles) * effective_steps(request.steps, request.strength) * request.count
    if steps != ctx.total:
        ctx.total = steps
        ctx.stage(f"{len(tiles.tiles)} tiles of the model's native size")
    h, w = request.image.shape[:2]
    rect = (*request.origin, w, h)
    results = []
    for k, seed in enumerate(request.seeds):
        prefix = f"Image {k + 1} of {request.count}, " if request.count > 1 else ""
        image, info = refine(ctx, model, request.image, tiles, diffusion_settings(request, seed, model), request.origin,
                             stage_prefix=prefix, hold_radius=hold_radius(tiles, request.strength))
        image[..., 3] = request.image[..., 3]  # a variation keeps the layer's shape: its alpha is the source's
        params = request_parameters(request, seed=seed, model=model, Size=f"{w}x{h}",
                                    **({"Tiles": len(tiles.tiles)} if len(tiles.tiles) > 1 else {}))
        results.append(ResultImage(image=image, rect=rect, mask=np.full((h, w), 255, np.uint8), seed=seed,
                                   parameters=params))
    return tuple(results)


OPERATION = Operation(Img2ImgRequest, run, total, check_model)
