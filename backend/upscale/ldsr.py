"""Latent-diffusion super-resolution per tile: the Stable Diffusion x4 upscaler
(``StableDiffusionUpscalePipeline``, with its noise level) and CompVis LDM super-resolution
(``LDMSuperResolutionPipeline``), both 4×, run by diffusers on tiles of the low-resolution image.

Progress counts scheduler steps (the scheduler's ``step`` is wrapped), cancel is checked at
every step and in forward pre-hooks on the UNet's blocks, and each tile's colour is fixed
against a Lanczos upscale of the same tile before the feathered blend (:mod:`.colour`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..core import _install_cancel_hooks
from ..errors import ModelError, out_of_memory
from ..events import Preview
from .colour import colour_fix
from .esrgan import check_upscaler_folder
from .tiling import BandWriter, TilePlan

_cache: dict = {}


def load_pipeline(source, device, dtype, *, allow_pickle: bool = False):
    key = (source.location, str(device), str(dtype))
    if _cache.get("key") != key:
        _cache.clear()
        check_upscaler_folder(source, allow_pickle=allow_pickle)
        import diffusers

        cls = diffusers.StableDiffusionUpscalePipeline if source.kind == "sd_x4" else diffusers.LDMSuperResolutionPipeline
        try:
            pipe = cls.from_pretrained(source.location, dtype=dtype, local_files_only=True,
                                       use_safetensors=None if allow_pickle else True)
        except Exception as exc:  # diffusers raises many types for a folder it cannot use
            if out_of_memory(exc):
                raise
            raise ModelError(f"The upscaler folder {source.name} could not be loaded "
                             f"({' '.join(str(exc).split())[:120]}): it may be incomplete; download it again.") from exc
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        _cache.update(key=key, pipe=pipe)
    return _cache["pipe"]


def weights_bytes(pipe) -> int:
    total = 0
    for name in ("unet", "vae", "vqvae", "text_encoder"):
        module = getattr(pipe, name, None)
        if module is not None:
            total += sum(p.numel() * p.element_size() for p in module.parameters())
    return total


def multiple(kind: str) -> int:
    return 32 if kind == "ldm_sr" else 8


def _count_steps(scheduler, on_step):
    original = scheduler.step

    def step(*args, **kwargs):
        out = original(*args, **kwargs)
        on_step()
        return out

    scheduler.step = step
    return original


def upscale_tiles(ctx, source, pipe, image: np.ndarray, plan: TilePlan, out: np.ndarray, *, scale: int,
                  seed: int, steps: int, prompt: str, negative: str, guidance: float, noise_level: int,
                  origin, stage_prefix: str = "") -> None:
    """Fills ``out`` (uint8 RGB at ``scale`` × ``image``) tile by tile; the model itself is 4×."""
    import torch

    writer = BandWriter(plan, out, scale)
    tiles = plan.tiles
    m = multiple(source.kind)
    stage = ""

    def on_step():
        ctx.check_cancel()
        ctx.advance(stage)

    original = _count_steps(pipe.scheduler, on_step)
    hooks = _install_cancel_hooks(pipe.unet, ctx)
    try:
        for tile in tiles:
            ctx.check_cancel()
            stage = f"{stage_prefix}Tile {tile.index + 1} of {len(tiles)}"
            rgb = image[tile.y0: tile.y1, tile.x0: tile.x1, :3]
            h, w = rgb.shape[:2]
            ph, pw = -h % m, -w % m
            padded = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else rgb
            generator = torch.Generator(device="cpu").manual_seed(seed + tile.index)
            if source.kind == "sd_x4":
                result = pipe(prompt=prompt, negative_prompt=negative or None, image=Image.fromarray(padded),
                              num_inference_steps=steps, guidance_scale=guidance, noise_level=noise_level,
                              generator=generator, output_type="np").images[0]
            else:
                result = pipe(image=Image.fromarray(padded), num_inference_steps=steps, generator=generator,
                              output_type="np").images[0]
            result = np.clip(result, 0, 1)[: h * 4, : w * 4] * 255.0
            if scale != 4:
                result = np.asarray(Image.fromarray((result + 0.5).astype(np.uint8)).resize(
                    (w * scale, h * scale), Image.LANCZOS)).astype(np.float32)
            reference = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w * scale, h * scale), Image.LANCZOS))
            fixed = colour_fix(result, reference)
            writer.add(tile, fixed)
            if tile.x1 == plan.width:
                writer.finish_row(tile.row)
            preview = np.empty((h * scale, w * scale, 4), np.uint8)
            preview[..., :3] = np.clip(fixed + 0.5, 0, 255).astype(np.uint8)
            preview[..., 3] = 255
            rect = (origin[0] + tile.x0 * scale, origin[1] + tile.y0 * scale, w * scale, h * scale)
            ctx.emit(Preview(ctx.job_id, preview, rect, ctx.step, ctx.total))
    finally:
        pipe.scheduler.step = original
        for hook in hooks:
            hook.remove()
