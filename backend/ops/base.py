"""What every operation shares: its registry entry, model loading, diffusion settings, variations.

Every operation module (``backend/ops/<name>.py``) defines its request dataclass, a
``run(ctx, request)`` built on :func:`backend.core.diffuse_region`, a ``total(request)`` that
counts its progress units, and ``OPERATION = Operation(RequestClass, run, total[, check])``.
The modules import from here, never from each other.
"""
from __future__ import annotations

import json
from typing import Callable, NamedTuple

import numpy as np

from ..core import DiffusionSettings, JobContext, diffuse_region, effective_steps
from ..events import ResultImage
from ..requests import GenerationRequest, request_parameters

GOLDEN = 0x9E3779B1  # spreads derived seeds far apart (Knuth's multiplicative hash)


class Operation(NamedTuple):
    request: type  # the request dataclass this operation runs
    run: Callable  # (ctx, request) -> tuple[ResultImage, ...]
    total: Callable  # (request) -> int, cheap and never raising: Started.total
    check: Callable | None = None  # (request) -> None: the checks that need no torch; raises BackendError


def check_model(request: GenerationRequest) -> None:
    """The model exists, is allowed and loadable offline; the request's LoRAs, embeddings, ControlNets and
    IP-Adapter exist, are allowed and fit it (no torch, no weights read)."""
    from ..models import preflight
    from ..steering import control, embeddings, lora, reference

    source = preflight(request.model, allow_pickle=request.allow_pickle)
    lora.check(request, source)
    embeddings.check(request, source)
    control.check(request)
    if request.references:
        checked = reference.check_files(request)
        shape = lora.source_shape(source)
        if shape is not None and shape.cross_width:
            reference.check_family(checked, source.name, shape.cross_width, shape.family)


def diffusion_total(request: GenerationRequest) -> int:
    return effective_steps(request.steps, request.strength) * request.count


def load_model(ctx: JobContext, request: GenerationRequest):
    """The request's model, loaded (or kept) and set up for its steering (LoRAs, embeddings,
    ControlNets, IP-Adapter: ``ctx.steering``, which every region of the job uses)."""
    from ..steering.job import prepare

    model = ctx.models.get(request.model, allow_pickle=request.allow_pickle, progress=ctx.stage)
    ctx.check_cancel()
    ctx.steering = prepare(ctx, model, request)
    return model


def diffusion_settings(request: GenerationRequest, seed: int, model, **extra) -> DiffusionSettings:
    return DiffusionSettings(
        prompt=request.prompt, negative_prompt=request.negative_prompt, steps=request.steps,
        guidance=request.guidance if not model.ignores_prompt else 1.0, strength=request.strength,
        sampler=request.sampler, seed=seed, live=getattr(request, "live", False), **extra,
    )


def region_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th region of one variation (outpaint passes, refine tiles): the
    variation's own seed for the first, far-apart derived seeds for the rest, so that the seeds of
    variation ``seed`` never repeat those of variation ``seed + 1``."""
    return (seed + index * GOLDEN) & 0xFFFFFFFF


def run_variations(ctx, request, model, pixels, soft, rect, *, full_region, start=None, notes=(),
                   **extra) -> tuple[ResultImage, ...]:
    """One ``diffuse_region`` per seed of the request; each result records its own seed."""
    results = []
    for k, seed in enumerate(request.seeds):
        stage = f"Image {k + 1} of {request.count}" if request.count > 1 else ""
        image, info = diffuse_region(
            ctx, model, pixels, soft, rect, diffusion_settings(request, seed, model, **extra),
            stage=stage, full_region=full_region, start=start,
        )
        mask = (np.clip(soft, 0, 1) * 255 + 0.5).astype(np.uint8)
        params = request_parameters(request, seed=seed, model=model, **info)
        results.append(ResultImage(image=image, rect=rect, mask=mask, seed=seed, parameters=params, notes=notes))
    return tuple(results)


def native_size_guess(ref: str) -> int:
    """A model's native side without loading it (512 when unknown): for progress totals and plans."""
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
