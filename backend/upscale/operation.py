"""The upscale job: resolve the upscaler, plan tiles against memory, run the stages, return one image.

Stages: (1) the base upscale — a spandrel model (the bundled Real-ESRGAN by default) tile by
tile, latent-diffusion SR tile by tile, or Lanczos; (2) optionally, the diffusion refine per
tile. Progress units (``Started.total``): one per upscaler tile, the denoising steps of every
diffusion tile, times ``count`` for the diffusion stages. Every finished tile is previewed at the
output resolution in document coordinates of the upscaled document (tiles whose output is over
``PREVIEW_MAX`` px a side are previewed downscaled by an integer factor: the preview image is then
smaller than its rect, which stays exact). The result's rect is ``request.result_rect``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..core import DiffusionSettings, effective_steps
from ..errors import BackendError
from ..events import Preview, ResultImage
from ..requests import UpscaleRequest
from . import memory
from .esrgan import UpscalerSource, check_scale, load_upscaler, resolve_upscaler
from .tiling import BandWriter, TilePlan, make_plan

PREVIEW_MAX = 1024
FEEDFORWARD_OVERLAP = 16  # input px; the ramp uses its middle half (an ESRGAN's receptive field is ~20 px)


@dataclass
class Plan:
    source: UpscalerSource
    native: int | None
    base: TilePlan | None  # in input pixels (None: Lanczos)
    base_memory: memory.MemoryPlan | None
    refine: TilePlan | None  # in output pixels
    refine_native: int = 512

    def total(self, request: UpscaleRequest) -> int:
        n = 0
        if self.base is not None:
            per_tile = request.steps if self.source.is_diffusion else 1
            n += len(self.base) * per_tile * (request.count if self.source.is_diffusion else 1)
        else:
            n += 1
        if self.refine is not None:
            n += len(self.refine) * effective_steps(request.steps, request.strength) * request.count
        return n


def _device():
    from ..devices import pick_device

    return pick_device(None)


def _refine_native_guess(ref: str) -> int:
    """The refine model's native side without loading it (512 when unknown)."""
    try:
        from ..models import resolve

        source = resolve(ref)
        if source.kind == "folder":
            info = source.path / "latent_studio.json"
            if info.is_file() and "native_resolution" in json.loads(info.read_text()):
                return int(json.loads(info.read_text())["native_resolution"])
            unet = json.loads((source.path / "unet" / "config.json").read_text())
            vae = json.loads((source.path / "vae" / "config.json").read_text())
            return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
        if source.kind == "single_file":
            from ..checkpoints import inspect_checkpoint

            return 1024 if inspect_checkpoint(source.path).family == "sdxl" else 512
    except Exception:  # only a guess: the run corrects it
        pass
    return 512


def make_plan_for(request: UpscaleRequest, *, device=None, dtype=None, refine_native: int | None = None) -> Plan:
    h, w = request.image.shape[:2]
    s = request.scale
    source = resolve_upscaler(request.upscaler)
    native = check_scale(source, s)
    memory.check_output_fits(w, h, s)
    if device is None:
        device, dtype = _device()
    element = 2 if getattr(dtype, "itemsize", 4) == 2 else 4
    base = base_mem = None
    if source.kind in ("bundled", "file"):
        descriptor = load_upscaler(source)
        weights = sum(p.numel() * p.element_size() for p in descriptor.model.parameters())
        filters = 64
        first = next(iter(descriptor.model.parameters()), None)
        if first is not None and first.ndim == 4:
            filters = int(first.shape[0])
        transformer = descriptor.architecture.id not in ("ESRGAN", "RealCUGAN", "Compact", "SPAN", "OmniSR")
        base_mem = memory.plan_feedforward(w, h, native, device=device, weights=weights, filters=filters,
                                           element=element, transformer=transformer, tile=request.tile,
                                           overlap=FEEDFORWARD_OVERLAP)
        base = make_plan(w, h, base_mem.tile, FEEDFORWARD_OVERLAP)
    elif source.is_diffusion:
        weights = 2 * 1024**3 if source.kind == "sd_x4" else 700 * 1024**2
        tile = request.tile or 128
        base_mem = memory.plan_diffusion(w, h, s, device=device, weights=weights, native=tile * 4,
                                         element=element, tile=tile * 4)
        base_mem = memory.MemoryPlan(base_mem.device, tile, base_mem.vae_tiling, base_mem.estimate, base_mem.available)
        overlap = max(64, tile * 4 // 8) // 4  # ≥ 64 output px
        base = make_plan(w, h, tile, overlap)
    refine = None
    rn = refine_native or 512
    if request.refine:
        if refine_native is None:
            rn = _refine_native_guess(request.model)
        from .refine import plan_refine

        side = request.tile or rn
        refine = plan_refine(w * s, h * s, side, request.strength)
    return Plan(source, native, base, base_mem, refine, rn)


def total_upscale(request: UpscaleRequest) -> int:
    try:
        return make_plan_for(request).total(request)
    except Exception:  # the run reports the problem; the total is only a progress bar
        return 1


def run_upscale(ctx, request: UpscaleRequest) -> tuple[ResultImage, ...]:
    device, dtype = _device()
    plan = make_plan_for(request, device=device, dtype=dtype)
    h, w = request.image.shape[:2]
    s = request.scale
    ox, oy = request.origin
    origin = (ox * s, oy * s)
    if plan.base_memory is not None:
        ctx.stage(plan.base_memory.describe("Tiles"))
    params: dict = {"Operation": "Upscale", "Hires upscale": s, "Hires upscaler": plan.source.name,
                    "Size": f"{w * s}x{h * s}"}
    if plan.base is not None and plan.base.tiled:
        params["Tile"] = f"{plan.base.xs[0][1] - plan.base.xs[0][0]}"

    refine_model = None
    if plan.refine is not None:
        from ..operations import _load

        refine_model = _load(ctx, request)
        if refine_model.native_size != plan.refine_native and not request.tile:
            from .refine import plan_refine

            plan.refine = plan_refine(w * s, h * s, refine_model.native_size, request.strength)
            plan.refine_native = refine_model.native_size
        total = plan.total(request)
        if total != ctx.total:
            ctx.total = total
            ctx.stage(f"{total} steps in all")

    alpha = _upscale_alpha(request.image[..., 3], s)
    results = []
    base = None
    for k, seed in enumerate(request.seeds):
        if base is None or plan.source.is_diffusion:
            base = np.empty((h * s, w * s, 4), np.uint8)
            base[..., 3] = alpha
            prefix = f"Image {k + 1} of {request.count}, " if request.count > 1 and plan.source.is_diffusion else ""
            _base_upscale(ctx, request, plan, base, seed, origin, device, dtype, prefix)
        image = base
        item_params = dict(params)
        if plan.refine is not None:
            from .refine import refine

            settings = DiffusionSettings(
                prompt=request.prompt, negative_prompt=request.negative_prompt, steps=request.steps,
                guidance=request.guidance if not refine_model.ignores_prompt else 1.0, strength=request.strength,
                sampler=request.sampler, seed=seed,
            )
            prefix = f"Image {k + 1} of {request.count}, refine " if request.count > 1 else "Refine "
            ctx.stage(f"Refining in {len(plan.refine)} tiles of {plan.refine.xs[0][1] - plan.refine.xs[0][0]} px")
            image, refine_params = refine(ctx, refine_model, base, plan.refine, settings, origin, stage_prefix=prefix)
            item_params = {**refine_params, **params, "Denoising strength": f"{request.strength:g}"}
        elif plan.source.is_diffusion:
            item_params.update({"Steps": request.steps, "Seed": seed})
            if plan.source.kind == "sd_x4":
                item_params.update({"prompt": request.prompt, "negative_prompt": request.negative_prompt,
                                    "CFG scale": f"{request.guidance:g}", "Noise level": request.noise_level})
        mask = np.full((h * s, w * s), 255, np.uint8)
        results.append(ResultImage(image=image, rect=request.result_rect, mask=mask, seed=seed,
                                   parameters=item_params))
    return tuple(results)


def _upscale_alpha(alpha: np.ndarray, s: int) -> np.ndarray:
    h, w = alpha.shape
    if (alpha == 255).all():
        return np.full((h * s, w * s), 255, np.uint8)
    return np.asarray(Image.fromarray(alpha).resize((w * s, h * s), Image.LANCZOS))


def _base_upscale(ctx, request, plan: Plan, out: np.ndarray, seed: int, origin, device, dtype, prefix: str) -> None:
    h, w = request.image.shape[:2]
    s = request.scale
    if plan.source.kind == "lanczos":
        rgb = Image.fromarray(np.ascontiguousarray(request.image[..., :3])).resize((w * s, h * s), Image.LANCZOS)
        out[..., :3] = np.asarray(rgb)
        ctx.advance("Lanczos")
        _preview(ctx, out, (origin[0], origin[1], w * s, h * s))
        return
    if plan.source.is_diffusion:
        from .ldsr import load_pipeline, upscale_tiles

        mem = plan.base_memory
        run_device = device if mem.device != "cpu" else _cpu()
        pipe = load_pipeline(plan.source, run_device, dtype if mem.device != "cpu" else _float32())
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling() if mem.vae_tiling else vae.disable_tiling()
        upscale_tiles(ctx, plan.source, pipe, request.image, plan.base, out[..., :3], scale=s, seed=seed,
                      steps=request.steps, prompt=request.prompt, negative=request.negative_prompt,
                      guidance=request.guidance, noise_level=request.noise_level, origin=origin,
                      stage_prefix=prefix)
        return
    _feedforward(ctx, request, plan, out, origin, device)


def _cpu():
    import torch

    return torch.device("cpu")


def _float32():
    import torch

    return torch.float32


def _feedforward(ctx, request, plan: Plan, out: np.ndarray, origin, device) -> None:
    import torch
    import torch.nn.functional as F

    descriptor = load_upscaler(plan.source)
    run_on = torch.device(plan.base_memory.device) if plan.base_memory.device != device.type else device
    half = run_on.type == "cuda" and descriptor.supports_half
    model = descriptor.model.to(run_on, dtype=torch.float16 if half else torch.float32)
    req = descriptor.size_requirements
    s, native = request.scale, plan.native
    writer = BandWriter(plan.base, out[..., :3], s)
    tiles = plan.base.tiles
    flush = run_on.type == "cpu"
    if flush:
        torch.set_flush_denormal(True)  # ~6× faster on CPUs: ESRGAN's activations are full of denormals
    try:
        for tile in tiles:
            ctx.check_cancel()
            rgb = request.image[tile.y0: tile.y1, tile.x0: tile.x1, :3]
            th, tw = rgb.shape[:2]
            x = torch.from_numpy(np.ascontiguousarray(rgb)).to(run_on).permute(2, 0, 1)[None]
            x = x.to(torch.float16 if half else torch.float32) / 255.0
            ph = max(req.minimum - th, 0) + (-max(th, req.minimum) % req.multiple_of)
            pw = max(req.minimum - tw, 0) + (-max(tw, req.minimum) % req.multiple_of)
            if req.square and th + ph != tw + pw:
                side = max(th + ph, tw + pw)
                ph, pw = side - th, side - tw
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            with torch.inference_mode():
                y = model(x)[..., : th * native, : tw * native]
                if s != native:
                    y = F.interpolate(y.float(), size=(th * s, tw * s), mode="bicubic", antialias=True)
                y = (y[0].float().clamp(0, 1) * 255.0).permute(1, 2, 0).cpu().numpy()
            writer.add(tile, y)
            if tile.x1 == plan.base.width:
                writer.finish_row(tile.row)
            ctx.advance(f"Tile {tile.index + 1} of {len(tiles)}")
            _preview(ctx, y, (origin[0] + tile.x0 * s, origin[1] + tile.y0 * s, tw * s, th * s))
    finally:
        if flush:
            torch.set_flush_denormal(False)


def _preview(ctx, rgb: np.ndarray, rect) -> None:
    h, w = rgb.shape[:2]
    k = max(1, math.ceil(max(h, w) / PREVIEW_MAX))
    small = rgb[::k, ::k, :3]
    image = np.empty(small.shape[:2] + (4,), np.uint8)
    image[..., :3] = np.clip(small + 0.5, 0, 255) if small.dtype != np.uint8 else small
    image[..., 3] = 255
    ctx.emit(Preview(ctx.job_id, image, tuple(int(v) for v in rect), ctx.step, ctx.total))


__all__ = ["run_upscale", "total_upscale", "make_plan_for", "BackendError"]
