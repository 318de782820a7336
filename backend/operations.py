"""The operations: each turns one request into result images via the shared core.

To add an operation: define its request dataclass in ``requests.py``, write a
``run_<name>(ctx, request) -> tuple[ResultImage, ...]`` on top of
``core.diffuse_region`` (here, or in a module of its own for a larger one) and
register it in ``OPERATIONS`` with the function that counts its progress units
(``Started.total``: denoising steps over variations, tiles and passes).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .core import DiffusionSettings, JobContext, diffuse_region, effective_steps
from .events import ResultImage
from .requests import GenerationRequest, Img2ImgRequest, InpaintRequest, mask_bbox
from .region import blend_mask


class Operation(NamedTuple):
    run: Callable  # (ctx, request) -> tuple[ResultImage, ...]
    total: Callable  # (request) -> int, cheap and never raising: Started.total


# Inpaint prefills made from the surroundings, which colour guidance follows: "original" is the
# hole's own content (repainted freely at strength 1), "noise" has no colour to follow.
GUIDED_FILLS = ("blur", "flat")


def diffusion_total(request: GenerationRequest) -> int:
    return effective_steps(request.steps, request.strength) * request.count


def total_steps(request: GenerationRequest) -> int:
    return OPERATIONS[type(request)].total(request)


def _settings(request: GenerationRequest, seed: int, model, **extra) -> DiffusionSettings:
    return DiffusionSettings(
        prompt=request.prompt, negative_prompt=request.negative_prompt, steps=request.steps,
        guidance=request.guidance if not model.ignores_prompt else 1.0, strength=request.strength,
        sampler=request.sampler, seed=seed, restore_detail=request.restore_detail, **extra,
    )


def _load(ctx: JobContext, request: GenerationRequest):
    model = ctx.models.get(request.model, allow_pickle=request.allow_pickle, progress=ctx.stage)
    ctx.check_cancel()
    return model


def _variations(ctx, request, model, pixels, soft, rect, *, full_region, **extra) -> tuple[ResultImage, ...]:
    results = []
    for k, seed in enumerate(request.seeds):
        stage = f"Image {k + 1} of {request.count}" if request.count > 1 else ""
        image, params = diffuse_region(
            ctx, model, pixels, soft, rect, _settings(request, seed, model, **extra),
            stage=stage, full_region=full_region,
        )
        mask = (np.clip(soft, 0, 1) * 255 + 0.5).astype(np.uint8)
        results.append(ResultImage(image=image, rect=rect, mask=mask, seed=seed, parameters=params))
    return tuple(results)


def run_inpaint(ctx: JobContext, request: InpaintRequest) -> tuple[ResultImage, ...]:
    model = _load(ctx, request)
    soft = blend_mask(request.mask, request.grow, request.feather)
    box = mask_bbox(soft > 0)
    if box is None:
        from .errors import InvalidRequest

        raise InvalidRequest("`grow` shrinks the mask to nothing: use a smaller shrink or a larger mask.")
    h, w = soft.shape
    pad = request.padding
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w, box[2] + pad), min(h, box[3] + pad)
    pixels = request.image[y0:y1, x0:x1]
    soft = soft[y0:y1, x0:x1]
    ox, oy = request.origin
    rect = (ox + x0, oy + y0, x1 - x0, y1 - y0)
    return _variations(ctx, request, model, pixels, soft, rect, full_region=False, fill=request.fill,
                       guide_colours=request.fill in GUIDED_FILLS)


def run_img2img(ctx: JobContext, request: Img2ImgRequest) -> tuple[ResultImage, ...]:
    model = _load(ctx, request)
    h, w = request.image.shape[:2]
    soft = np.ones((h, w), np.float32)
    rect = (*request.origin, w, h)
    results = _variations(ctx, request, model, request.image, soft, rect, full_region=True)
    # A variation keeps the layer's shape: its alpha is the source's.
    for r in results:
        r.image[..., 3] = request.image[..., 3]
    return results


def _register() -> dict:
    from .outpaint import run_outpaint, total_outpaint
    from .requests import OutpaintRequest, UpscaleRequest
    from .upscale import run_upscale, total_upscale

    return {
        InpaintRequest: Operation(run_inpaint, diffusion_total),
        Img2ImgRequest: Operation(run_img2img, diffusion_total),
        OutpaintRequest: Operation(run_outpaint, total_outpaint),
        UpscaleRequest: Operation(run_upscale, total_upscale),
    }


OPERATIONS: dict[type, Operation] = _register()
