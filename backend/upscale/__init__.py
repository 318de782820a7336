"""Super-resolution: pretrained upscalers (spandrel), latent-diffusion SR, and diffusion refine, all tiled.

    esrgan.py   finding/loading upscaler models; the bundled Real-ESRGAN x4plus (converted on first use)
    ncnn.py     the ncnn .param/.bin reader and the RRDBNet converter behind the bundled model
    tiling.py   tile plans, partition-of-unity feathering, a band writer with bounded memory, seam score
    memory.py   memory estimate → tile size, VAE tiling, device (CPU fallback)
    ldsr.py     the Stable Diffusion x4 upscaler and CompVis LDM super-resolution, per tile
    refine.py   "SD upscale": an img2img pass per tile through ``core.diffuse_region``
    operation.py  the upscale job: plan, stages, progress, previews, result

Importing this package does not import torch.
"""
from __future__ import annotations


def run_upscale(ctx, request):
    from .operation import run_upscale as run

    return run(ctx, request)


def total_upscale(request) -> int:
    from .operation import total_upscale as total

    return total(request)
