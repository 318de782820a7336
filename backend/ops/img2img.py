"""img2img: variations of a whole layer or region, re-imagined at ``strength``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..requests import GenerationRequest, recorded
from .base import Operation, check_model, diffusion_total, load_model, run_variations


@dataclass(frozen=True, eq=False)
class Img2ImgRequest(GenerationRequest):
    """Variations of a whole layer or region: ``image`` is re-imagined at ``strength``."""

    strength: float = recorded(0.6, "Denoising strength")

    operation: ClassVar[str] = "img2img"


def run(ctx, request: Img2ImgRequest):
    model = load_model(ctx, request)
    h, w = request.image.shape[:2]
    soft = np.ones((h, w), np.float32)
    rect = (*request.origin, w, h)
    results = run_variations(ctx, request, model, request.image, soft, rect, full_region=True)
    # A variation keeps the layer's shape: its alpha is the source's.
    for r in results:
        r.image[..., 3] = request.image[..., 3]
    return results


OPERATION = Operation(Img2ImgRequest, run, diffusion_total, check_model)
