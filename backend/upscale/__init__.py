"""Super-resolution machinery: pretrained upscalers (spandrel), latent-diffusion SR, diffusion refine, tiling.

    esrgan.py   finding/loading upscaler models; the bundled Real-ESRGAN x4plus (converted on first use)
    ncnn.py     the ncnn .param/.bin reader and the RRDBNet converter behind the bundled model
    tiling.py   tile plans, partition-of-unity feathering, a band writer with bounded memory, seam score
    memory.py   memory estimate → tile size, VAE tiling, device (CPU fallback)
    ldsr.py     the Stable Diffusion x4 upscaler and CompVis LDM super-resolution, per tile
    refine.py   "SD upscale": an img2img pass per tile through ``core.diffuse_region``
    colour.py   low frequencies held to the plain upscale

The upscale operation itself (plan, stages, progress, previews, result) is ``backend/ops/upscale.py``.
Importing this package does not import torch.
"""
