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

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image

from ..core import effective_steps
from ..errors import InvalidRequest
from ..events import Preview, ResultImage
from ..requests import MAX_SIDE, GenerationRequest, _check_bool, _check_range, _check_whole, recorded, request_parameters
from ..upscale import memory
from ..upscale.esrgan import UpscalerSource, check_scale, check_upscaler_folder, load_upscaler, resolve_upscaler
from ..upscale.tiling import BandWriter, TilePlan, make_plan
from .base import Operation, check_model, diffusion_settings, load_model, native_size_guess

PREVIEW_MAX = 1024
FEEDFORWARD_OVERLAP = 16  # input px; the ramp uses its middle half (an ESRGAN's receptive field is ~20 px)


@dataclass(frozen=True, eq=False)
class UpscaleRequest(GenerationRequest):
    """Upscales ``image`` by ``scale`` with a pretrained upscaler, then optionally refines it by diffusion.

    ``upscaler``: "" for the bundled Real-ESRGAN x4plus, "lanczos", an upscaler file (ESRGAN,
    Real-ESRGAN, SwinIR, HAT… as ``.safetensors`` or ``.pth``), a diffusers folder of the Stable
    Diffusion x4 upscaler or of CompVis LDM super-resolution, or a name in the model folder.
    ``refine``: after upscaling, an img2img pass per tile at ``strength`` with ``model`` (any SD
    family model; "" = the embedded one). ``tile``: tile side in pixels of each stage's input
    (0 = chosen from the memory available). ``noise_level``: the SD x4 upscaler's noise level.

    The result is the whole upscaled image with its rect at ``origin * scale`` (the studio scales
    the document by ``scale``). An upscale that no seed changes (a feed-forward upscaler or
    Lanczos, without refine) gives one result whatever ``count`` asks.
    """

    upscaler: str = recorded("", "Hires upscaler")
    scale: int = recorded(4, "Hires upscale")
    refine: bool = False
    strength: float = recorded(0.3, "Denoising strength")
    tile: int = recorded(0, "Tile size")
    noise_level: int = recorded(20, "Noise level")

    operation: ClassVar[str] = "upscale"

    def _check_denoising(self) -> None:
        if self.refine:  # `strength` is the refine's; the upscalers themselves run all `steps`
            super()._check_denoising()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.upscaler, str):
            raise InvalidRequest(f"`upscaler` must be text, but is {self.upscaler!r}.")
        _check_bool(self, "refine")
        _check_whole(self, "scale", "tile", "noise_level")
        _check_range("scale", self.scale, 2, 8, "upscale by 2 to 8 (4 is the usual model's own factor).")
        if self.tile != 0:
            _check_range("tile", self.tile, 64, 4096, "use tiles of 64 to 4096 px, or 0 to choose from memory.")
        _check_range("noise_level", self.noise_level, 0, 350, "the x4 upscaler's noise level is 0 to 350 (20 is usual).")
        h, w = self.image.shape[:2]
        if w * self.scale > MAX_SIDE or h * self.scale > MAX_SIDE:
            raise InvalidRequest(
                f"`scale` {self.scale} would make the image {w * self.scale}×{h * self.scale} px; each side must be "
                f"at most {MAX_SIDE}: choose a smaller scale or upscale a part of the image."
            )

    @property
    def result_rect(self) -> tuple[int, int, int, int]:
        """The upscaled image in the coordinates of the document scaled by ``scale``."""
        h, w = self.image.shape[:2]
        ox, oy = self.origin
        return (ox * self.scale, oy * self.scale, w * self.scale, h * self.scale)



@dataclass
class Plan:
    source: UpscalerSource
    native: int | None
    base: TilePlan | None  # in input pixels (None: Lanczos)
    base_memory: memory.MemoryPlan | None
    refine: TilePlan | None  # in output pixels
    refine_native: int = 512

    @property
    def varies(self) -> bool:
        """Whether seeds change the result (a diffusion upscaler, or a refine)."""
        return self.source.is_diffusion or self.refine is not None

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


def _device(ctx=None):
    """The engine's device (its ``--device`` or $LATENT_STUDIO_DEVICE), as the diffusion models use."""
    from ..devices import pick_device

    return pick_device(getattr(getattr(ctx, "models", None), "device_override", None))


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
            rn = native_size_guess(request.model)
        from ..upscale.refine import plan_refine

        side = request.tile or rn
        refine = plan_refine(w * s, h * s, side, request.strength)
    return Plan(source, native, base, base_mem, refine, rn)


def total(request: UpscaleRequest) -> int:
    try:
        return make_plan_for(request).total(request)
    except Exception:  # the run reports the problem; the total is only a progress bar
        return 1


def check(request: UpscaleRequest) -> None:
    """Upscaler found and of the right kind, scale it can make, output that fits in memory; the
    refine model, when refining."""
    h, w = request.image.shape[:2]
    source = resolve_upscaler(request.upscaler)
    if source.kind == "file":
        load_upscaler(source)  # reads the file: refuses pickles with code and files of another kind
    elif source.is_diffusion:
        check_upscaler_folder(source, allow_pickle=request.allow_pickle)
    check_scale(source, request.scale)
    memory.check_output_fits(w, h, request.scale)
    from ..steering.control import check_upscale

    check_upscale(request)  # tile controls only, on the refine pass (whose model check checks their files)
    if request.refine:
        check_model(request)


def run(ctx, request: UpscaleRequest) -> tuple[ResultImage, ...]:
    device, dtype = _device(ctx)
    plan = make_plan_for(request, device=device, dtype=dtype)
    h, w = request.image.shape[:2]
    s = request.scale
    ox, oy = request.origin
    origin = (ox * s, oy * s)
    if plan.base_memory is not None:
        ctx.stage(plan.base_memory.describe("Tiles"))

    refine_model = None
    if plan.refine is not None:
        refine_model = load_model(ctx, request)
        if refine_model.native_size != plan.refine_native and not request.tile:
            from ..upscale.refine import plan_refine

            plan.refine = plan_refine(w * s, h * s, refine_model.native_size, request.strength)
            plan.refine_native = refine_model.native_size
        total = plan.total(request)
        if total != ctx.total:
            ctx.total = total
            ctx.stage(f"{total} steps in all")

    alpha = _upscale_alpha(request.image[..., 3], s)
    # A feed-forward upscaler (or Lanczos) without refine gives the same image for every seed: one result.
    seeds = request.seeds if plan.varies else [request.seed]
    results = []
    base = None
    for k, seed in enumerate(seeds):
        if base is None or plan.source.is_diffusion:
            base = np.empty((h * s, w * s, 4), np.uint8)
            base[..., 3] = alpha
            prefix = f"Image {k + 1} of {request.count}, " if request.count > 1 and plan.source.is_diffusion else ""
            _base_upscale(ctx, request, plan, base, seed, origin, device, dtype, prefix)
        image = base
        if plan.refine is not None:
            from ..upscale.refine import refine

            settings = diffusion_settings(request, seed, refine_model)
            prefix = f"Image {k + 1} of {request.count}, refine " if request.count > 1 else "Refine "
            ctx.stage(f"Refining in {len(plan.refine)} tiles of {plan.refine.xs[0][1] - plan.refine.xs[0][0]} px")
            image, _info = refine(ctx, refine_model, base, plan.refine, settings, origin, stage_prefix=prefix)
        mask = np.full((h * s, w * s), 255, np.uint8)
        results.append(ResultImage(image=image, rect=request.result_rect, mask=mask, seed=seed,
                                   parameters=_parameters(request, plan, seed, refine_model)))
    return tuple(results)


def _parameters(request: UpscaleRequest, plan: Plan, seed: int, refine_model) -> dict:
    """What made this upscale: the upscaler and scale always; the diffusion settings only where a
    diffusion stage ran (the SD x4 upscaler's prompt and noise level, the refine's model and strength)."""
    skip = {"noise_level"} if plan.source.kind != "sd_x4" else set()
    if plan.refine is None:
        skip |= {"model", "strength", "sampler"}
        if plan.source.kind != "sd_x4":
            skip |= {"prompt", "negative_prompt", "guidance"}
        if not plan.source.is_diffusion:
            skip |= {"seed", "steps"}
    h, w = request.image.shape[:2]
    params = request_parameters(request, seed=seed, model=refine_model,
                                skip=tuple(skip), Size=f"{w * request.scale}x{h * request.scale}")
    params["Hires upscaler"] = plan.source.name
    if plan.base is not None and plan.base.tiled:
        params["Tile"] = f"{plan.base.xs[0][1] - plan.base.xs[0][0]}"
    return params


OPERATION = Operation(UpscaleRequest, run, total, check)


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
        from ..upscale.ldsr import load_pipeline, upscale_tiles

        mem = plan.base_memory
        run_device = device if mem.device != "cpu" else _cpu()
        pipe = load_pipeline(plan.source, run_device, dtype if mem.device != "cpu" else _float32(),
                             allow_pickle=request.allow_pickle)
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


