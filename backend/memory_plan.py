"""Per-job memory plan for diffusion on a GPU: full, model offload, sequential offload, VAE tiling.

Each diffusion job measures the memory free on its device (``memory.available_bytes``, as the upscaler's tile plan:
``torch.cuda.mem_get_info`` on CUDA) and picks the least thrifty plan that fits:

* ``full``: every weight on the GPU (fastest);
* ``model offload``: diffusers' ``enable_model_cpu_offload`` — one component (text encoders, UNet,
  VAE) on the GPU at a time, the others in host memory;
* ``sequential offload``: diffusers' ``enable_sequential_cpu_offload`` — one layer at a time (slow,
  but runs on about 1 GB);
* plus ``VAE tiling`` (``vae.enable_tiling``, tiles of 512 px) when the VAE's decode of the whole
  image would not fit, or when the plan offloads and the image is larger than one tile.

The estimate is the weights (bytes of each component, measured on the loaded pipeline) and the
activations of the job's working size (the usual figures for SD at fp16: a UNet call with
classifier-free guidance ≈ 0.6 GB at 512² for SD, 1.5 GB at 1024² for SDXL, a VAE decode ≈ 1.2 GB at 512², both growing with the
pixel count), against :data:`GPU_SHARE` of the memory free less :data:`GPU_RESERVE`. On the CPU
the plan is always ``full``: offloading to the memory it already uses would gain nothing.

When a job still runs out of memory the engine reruns it once with the next thriftier plan
(:func:`thriftier`); the plan chosen is said as a stage message and recorded as ``Memory`` in the
result's parameters when it is not ``full``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import InvalidRequest
from .memory import GB, available_bytes

MODES = ("full", "model offload", "sequential offload")
GPU_SHARE = 0.85  # of the memory free: the allocator's fragmentation and cuDNN workspaces need the rest
GPU_RESERVE = int(0.3 * GB)
UNET_ACT_512 = 0.6 * GB  # a UNet call (batch 2: classifier-free guidance) at 512², fp16, SDPA
VAE_ACT_512 = 1.2 * GB  # a VAE decode at 512², fp16 (its last up-block at full resolution)
VAE_TILE = 512  # px: the tile side VAE tiling uses here
SEQUENTIAL_LAYER = int(0.1 * GB)  # the weights sequential offload holds at once (one layer, and their copies)


@dataclass(frozen=True)
class JobMemoryPlan:
    mode: str  # one of MODES
    vae_tiling: bool
    estimate: int  # bytes the plan needs at its peak
    available: int  # bytes free when it was chosen
    device: str = "cuda"
    retried: bool = False

    def describe(self) -> str:
        text = self.mode + (" + VAE tiling" if self.vae_tiling else "")
        if self.device == "cpu":
            return f"{text} on cpu"
        return f"{text} (est. {self.estimate / GB:.1f} of {self.available / GB:.1f} GB free)"

    @property
    def parameter(self) -> str:
        """What the result's parameters record (``Memory``)."""
        text = self.mode + (" + VAE tiling" if self.vae_tiling else "")
        return text + (" (retried after running out of memory)" if self.retried else "")


def component_bytes(pipe) -> dict[str, int]:
    """Bytes of the weights of each torch component of ``pipe`` (unet, vae, text encoders, controlnet …)."""
    import torch

    out = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            out[name] = sum(p.numel() * p.element_size() for p in module.parameters())
    return out


def activation_bytes(width: int, height: int, element: int, *, family: str = "sd15") -> tuple[int, int]:
    """(UNet call, VAE decode) activations at ``width``×``height`` pixels, for ``element`` bytes a value.
    SDXL's VAE runs in fp32 (its config forces the upcast): twice the decode."""
    area = width * height / 512**2
    # SDXL has no attention at its highest resolution: ≈ 1.5 GB at 1024², not four times SD's 512² figure
    unet = UNET_ACT_512 * (0.625 if family == "sdxl" else 1.0) * area * element / 2
    vae = VAE_ACT_512 * area * element / 2 * (2 if family == "sdxl" else 1)
    return int(unet), int(vae)


def choose(components: dict[str, int], width: int, height: int, *, device: str, free: int | None = None,
           element: int = 2, family: str = "sd15", floor: str = "full") -> JobMemoryPlan:
    """The least thrifty plan that fits ``free`` bytes (measured on ``device`` when None), no less
    thrifty than ``floor``. Raises InvalidRequest (one sentence) when not even sequential offload fits."""
    kind = str(device).split(":")[0]
    if kind != "cuda":
        return JobMemoryPlan("full", False, sum(components.values()), free or 0, device="cpu" if kind == "cpu" else kind)
    if free is None:
        free = available_bytes(device)
    budget = GPU_SHARE * free - GPU_RESERVE
    unet_act, vae_act = activation_bytes(width, height, element, family=family)
    tiled_vae_act = activation_bytes(min(width, VAE_TILE), min(height, VAE_TILE), element, family=family)[1]
    weights = sum(components.values())
    unet_w = components.get("unet", 0) + components.get("controlnet", 0)
    vae_w = components.get("vae", 0)
    text_w = max([b for n, b in components.items() if n.startswith("text_encoder")] or [0])
    bigger_than_tile = max(width, height) > VAE_TILE
    start = MODES.index(floor)
    for mode in MODES[start:]:
        for tiling in (False, True):
            if tiling and not bigger_than_tile:
                continue
            if mode != "full" and bigger_than_tile and not tiling:
                continue  # offloading means memory is short: tile the VAE as well, it costs little
            v_act = tiled_vae_act if tiling else vae_act
            if mode == "full":
                need = weights + max(unet_act, v_act)
            elif mode == "model offload":
                need = max(unet_w + unet_act, vae_w + v_act, text_w + int(0.1 * GB))
            else:
                need = SEQUENTIAL_LAYER + max(unet_act, v_act)
            if need <= budget:
                return JobMemoryPlan(mode, tiling, int(need), int(free))
    least = (SEQUENTIAL_LAYER + max(unet_act, tiled_vae_act if bigger_than_tile else vae_act) + GPU_RESERVE) / GPU_SHARE
    raise InvalidRequest(
        f"A {width}×{height} region needs about {least / GB:.1f} GB free on the GPU even one layer at a time "
        f"but only {free / GB:.1f} GB is free: use a smaller region, close other programs, or choose the CPU."
    )


def thriftier(plan: JobMemoryPlan) -> str | None:
    """The mode to retry with after ``plan`` ran out of memory, or None when none is left."""
    if plan.device != "cuda":
        return None
    index = MODES.index(plan.mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def plan_for(model, pipe, width: int, height: int, floor: str = "full", free: int | None = None) -> JobMemoryPlan:
    """The plan for one job of ``model`` through ``pipe`` at the working size."""
    import torch

    if getattr(model.device, "type", str(model.device)) != "cuda":  # nothing to weigh: always full (live jobs: free)
        return choose({}, width, height, device=str(model.device))
    element = torch.finfo(model.dtype).bits // 8 if model.dtype.is_floating_point else 4
    return choose(component_bytes(pipe), width, height, device=str(model.device), free=free,
                  element=element, family=model.family, floor=floor)


def apply(model, pipe, plan: JobMemoryPlan) -> None:
    """Puts ``pipe`` (and the pipelines sharing its weights) in ``plan``'s mode: hooks installed for an
    offload, removed (every weight back on the device) for ``full``. Does nothing on the CPU."""
    if plan.device != "cuda":
        return
    current = getattr(model, "memory_mode", "full")
    if current != plan.mode:
        if current != "full":
            pipe.remove_all_hooks()  # accelerate's hooks give back the weights sequential offload had moved off
        gpu = model.device.index or 0
        if plan.mode == "full":
            pipe.to(model.device)
        elif plan.mode == "model offload":
            pipe.enable_model_cpu_offload(gpu_id=gpu)
        else:
            pipe.enable_sequential_cpu_offload(gpu_id=gpu)
        model.memory_mode = plan.mode
    vae = pipe.vae
    if not hasattr(vae, "_latent_studio_tiles"):
        vae._latent_studio_tiles = (vae.tile_sample_min_size, vae.tile_latent_min_size)
    if plan.vae_tiling:
        vae.tile_sample_min_size = VAE_TILE
        vae.tile_latent_min_size = VAE_TILE // model.inpaint.vae_scale_factor
    else:
        vae.tile_sample_min_size, vae.tile_latent_min_size = vae._latent_studio_tiles


def for_job(ctx, model, pipe, width: int, height: int) -> JobMemoryPlan:
    """Chooses and applies the job's plan (no thriftier than the engine's retry asks: ``ctx.memory_floor``),
    says it as a stage message on a GPU, and keeps it on ``ctx`` for the engine's retry."""
    plan = choose_for(model, pipe, width, height, floor=getattr(ctx, "memory_floor", "full"))
    if getattr(ctx, "memory_retry", False):
        plan = dataclasses.replace(plan, retried=True)
    apply(model, pipe, plan)
    ctx.memory_plan = plan
    if plan.device == "cuda":
        ctx.stage(f"Memory: {plan.describe()}")
    return plan


def choose_for(model, pipe, width: int, height: int, floor: str = "full") -> JobMemoryPlan:
    return plan_for(model, pipe, width, height, floor=floor)
