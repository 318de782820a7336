"""The region-diffusion core shared by every operation.

``diffuse_region`` takes a crop of document pixels and a soft mask (0-1) for
it, scales the crop to the model's working size, runs one diffusers
pipeline, scales the result back and composites it so that every pixel
outside the mask stays bit-exact. Inpaint, img2img, outpaint and the tiles of
an upscale refine all come through here.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from . import memory_plan
from .errors import JobCancelled
from .events import Event, Preview, Progress
from .region import composite, prefill, transfer_detail, working_size
from .samplers import make_scheduler


@dataclass
class JobContext:
    """What a running job may use: its id, the event sink, the cancel flag, the models."""

    job_id: int
    emit: Callable[[Event], None]
    cancel_flag: threading.Event
    models: object  # ModelManager
    preview_interval: float = 0.1
    tiny_decoder: object = None
    total: int = 0
    steering: object = None  # backend.steering.job.Steering, set when the job's model is loaded
    step: int = 0
    memory_floor: str = "full"  # backend.memory_plan: no less thrifty than this (the engine's retry)
    memory_retry: bool = False
    memory_plan: object = None  # the last plan chosen (memory_plan.JobMemoryPlan)
    _last_preview: float = field(default=0.0, repr=False)
    _preview_cost: float = field(default=0.0, repr=False)

    def check_cancel(self) -> None:
        if self.cancel_flag.is_set():
            raise JobCancelled()

    def stage(self, text: str) -> None:
        self.emit(Progress(self.job_id, self.step, self.total, text))

    def advance(self, stage: str = "") -> None:
        self.step += 1
        self.emit(Progress(self.job_id, self.step, self.total, stage))

    def preview_due(self, final: bool) -> bool:
        """Whether to show a preview now: at least ``preview_interval`` apart, and far enough apart that
        drawing them costs at most :data:`PREVIEW_SHARE` of the job's time (a costly previewer on a slow
        device shows fewer); the last step's always. An interval of 0 asks for every step's."""
        now = time.monotonic()
        gap = max(self.preview_interval, self._preview_cost / PREVIEW_SHARE) if self.preview_interval > 0 else 0.0
        if final or now - self._last_preview >= gap:
            self._last_preview = now
            return True
        return False

    def preview_took(self, seconds: float) -> None:
        self._preview_cost = seconds if not self._preview_cost else 0.7 * self._preview_cost + 0.3 * seconds


# The share of a job's time that the throttled previews may take; the last step's preview, always
# drawn, comes on top, so all of them stay under 5 %.
PREVIEW_SHARE = 0.04


def effective_steps(steps: int, strength: float) -> int:
    """How many denoising steps diffusers runs for ``steps`` at ``strength``."""
    return max(1, min(int(steps * strength), steps))


@dataclass(frozen=True)
class DiffusionSettings:
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    strength: float
    sampler: str
    seed: int
    fill: str = "original"
    match_seam: bool = True
    # Colour guidance (models with "colour_guide_cell"): the operation turns it on when the hole's
    # prefill is made from the surroundings.
    guide_colours: bool = False
    # Detail transfer (models with "restore_detail"), for regions with surroundings.
    restore_detail: bool = True
    # Text-to-image: the region starts from noise alone (a 9-channel model inpaints it whole).
    text_only: bool = False
    # A live-painting update: one VAE encode (the mean of the start image's latents, which the pipeline
    # then noises itself), and the result pictured by the model's preview decoder (a configured tiny
    # autoencoder, else the preview head shipped with the model, else the linear map) instead of its VAE.
    live: bool = False


def diffuse_region(ctx: JobContext, model, pixels: np.ndarray, soft: np.ndarray, rect, s: DiffusionSettings,
                   *, stage: str = "", full_region: bool = False, start: np.ndarray | None = None
                   ) -> tuple[np.ndarray, dict]:
    """Diffuses one region; returns (composited RGBA crop, {"Size": the working size}).

    ``start``: the RGB the diffusion starts from, when the operation prefilled it itself (an
    exemplar fill searched over more of the image than this region); else ``pixels`` prefilled
    as ``s.fill`` asks. ``pixels`` stay the original for compositing.
    """
    import torch

    from .steering.job import NO_STEERING

    ch, cw = pixels.shape[:2]
    work_w, work_h = working_size(cw, ch, model.native_size)
    rgb = start if start is not None else prefill(pixels[..., :3], soft, s.fill, s.seed)
    init = Image.fromarray(rgb).resize((work_w, work_h), Image.LANCZOS)
    use_inpaint = not full_region or model.is_inpainting
    kind = "txt2img" if s.text_only else "inpaint" if use_inpaint else "img2img"
    text_pipe = s.text_only and not model.is_inpainting  # a plain text-to-image call: no start image
    steering = ctx.steering or NO_STEERING
    pipe = steering.pipeline(model, kind)
    pipe.scheduler = make_scheduler(s.sampler, model.scheduler_config)
    x0_holder = _capture_x0(pipe.scheduler)
    vae = pipe.vae
    plan = memory_plan.for_job(ctx, model, pipe, work_w, work_h)
    if work_w * work_h > (2 * model.native_size) ** 2 or plan.vae_tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()

    mask_image = None
    if use_inpaint:
        mask_full = soft if not full_region else np.ones_like(soft)
        mask_image = Image.fromarray((mask_full > 0.5).astype(np.uint8) * 255).resize((work_w, work_h), Image.BILINEAR)
    anchor = None
    if use_inpaint and not full_region and model.is_inpainting and model.info.get("anchor_latents"):
        guide = model.colour_guide_cell if s.guide_colours else 0
        anchor = _LatentAnchor(pipe, init, mask_image, s.seed, guide_cell=guide,
                               known=_encode_live(model, pipe, init) if s.live else None)
    previewer = model.previewer(ctx.tiny_decoder)
    alpha = torch.from_numpy((np.clip(soft, 0, 1) * 255 + 0.5).astype(np.uint8)).to(model.device)
    n_steps = effective_steps(s.steps, s.strength)
    keep = 0.0 if s.text_only else input_detail_weight(s.strength)
    # The start image's latents: what the previews are drawn relative to, and what the autoencoder's
    # loss of detail is measured on (not needed when nothing of the start is kept).
    start_latents = anchor.known if anchor is not None else _encode_live(model, pipe, init) if s.live and (
        not s.text_only) else _encode(pipe, init) if keep > 0 else None
    reference = previewer.reference(start_latents, rgb, model.device, keep)
    done = 0

    def on_step(_pipe, i, _t, tensors):
        nonlocal done
        ctx.check_cancel()
        done += 1
        ctx.advance(stage)
        latents = tensors["latents"]
        if anchor is not None:
            latents = anchor.blend(latents, done, n_steps)
        # A live update's result follows its last step at once: no preview of that step.
        if not (s.live and done >= n_steps) and ctx.preview_due(final=done >= n_steps):
            estimate = x0_holder.get("x0") if done < n_steps else None
            if estimate is None:
                estimate = latents
            elif anchor is not None:
                estimate = anchor.blend(estimate, n_steps, n_steps)  # as the last step will keep it
            started = time.perf_counter()
            image = previewer.render(estimate[:1], (cw, ch), alpha, reference=reference)
            ctx.preview_took(time.perf_counter() - started)
            ctx.emit(Preview(ctx.job_id, image, rect, ctx.step, ctx.total))
        return {"latents": latents} if anchor is not None else {}

    kwargs = dict(
        **text_kwargs(pipe, model, s.prompt, s.negative_prompt, s.guidance), height=work_h, width=work_w,
        num_inference_steps=s.steps, guidance_scale=s.guidance,
        generator=torch.Generator(device="cpu").manual_seed(s.seed), output_type="np",
        callback_on_step_end=on_step,
    )
    if not text_pipe:
        kwargs.update(image=init, strength=s.strength)
    if mask_image is not None:
        kwargs["mask_image"] = mask_image
    if s.live:
        kwargs["output_type"] = "latent"
        if not text_pipe:
            kwargs["image"] = start_latents  # the pipeline takes latents as they are: no second encode
        if mask_image is not None and model.is_inpainting:
            kwargs["masked_image_latents"] = _masked_latents(model, pipe, init, mask_image, full_region, live=True)
    # A 9-channel model runs every kind through its inpaint pipeline: the steering kwargs are that one's.
    kwargs.update(steering.region_kwargs("inpaint" if model.is_inpainting else kind, rect, (work_w, work_h),
                                         pixels, soft))
    hooks = _install_cancel_hooks(pipe.unet, ctx)
    try:
        out = pipe(**kwargs).images[0]
    finally:
        for h in hooks:
            h.remove()
    if s.live:
        out = previewer.decode(out[None], (work_w, work_h))
        if keep > 0:  # the start's detail, relative to the same decoder's picture of the start
            out = out + keep * (np.asarray(init, np.float32) / 255.0 - previewer.decode(start_latents, (work_w, work_h)))
    elif keep > 0:
        # What the autoencoder loses of the input (its fine detail), put back: at a low strength the
        # result is the input plus what the denoiser changed, not the autoencoder's blurred copy of it.
        out = out + keep * (np.asarray(init, np.float32) / 255.0 - _decode(pipe, start_latents))
    generated = (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
    if (work_w, work_h) != (cw, ch):
        generated = np.asarray(Image.fromarray(generated).resize((cw, ch), Image.LANCZOS))
    if s.restore_detail and not full_region and model.restores_detail:
        generated = transfer_detail(pixels, generated, soft, s.seed)
    result = composite(pixels, generated, soft, match_seam=s.match_seam and not full_region)
    info = {"Size": f"{work_w}x{work_h}"}
    if plan.device != "cpu" and (plan.mode != "full" or plan.vae_tiling or plan.retried):
        info["Memory"] = plan.parameter
    return result, info


TEXT_CACHE = True  # off: the pipeline encodes the prompt itself every time (the tests' reference)


def text_kwargs(pipe, model, prompt: str, negative_prompt: str, guidance: float) -> dict:
    """The pipeline call's text arguments: the prompt's embeddings, kept on the model between jobs while
    the prompt, the negative prompt, guidance on/off, the pipeline's text encoders and the steering that
    changes them (the active LoRAs and their weights, the loaded embeddings) stay the same: a live
    update of the painted pixels skips the text encoder. A pipeline without ``prompt_embeds`` gets the text."""
    import inspect

    import torch

    params = inspect.signature(pipe.__call__).parameters
    plain = dict(prompt=prompt, negative_prompt=negative_prompt or None)
    if not TEXT_CACHE or "prompt_embeds" not in params or not hasattr(pipe, "encode_prompt"):
        return plain
    unet = pipe.unet
    do_cfg = guidance > 1 and getattr(unet.config, "time_cond_proj_dim", None) is None
    lora = getattr(model, "lora_state", None)
    loaded = getattr(model, "embedding_state", None) or {}
    key = (id(getattr(pipe, "text_encoder", None)), id(getattr(pipe, "text_encoder_2", None)), prompt,
           negative_prompt, do_cfg, getattr(lora, "active", None), repr(sorted(map(repr, loaded))),
           len(pipe.tokenizer) if getattr(pipe, "tokenizer", None) is not None else 0)
    cache = model.text_cache
    if cache.get("key") != key:
        cache.clear()
        with torch.no_grad():
            out = pipe.encode_prompt(prompt=prompt, device=pipe._execution_device, num_images_per_prompt=1,
                                     do_classifier_free_guidance=do_cfg, negative_prompt=negative_prompt or None)
        names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        if len(out) == 4 and "pooled_prompt_embeds" not in params:
            return plain  # a pipeline whose text arguments we do not know
        cache.update(key=key, embeds={n: v for n, v in zip(names, out) if v is not None})
    return dict(cache["embeds"])


def input_detail_weight(strength: float) -> float:
    """How much of the input's detail the autoencoder loses is put back after a run at ``strength``:
    all of it up to ``DETAIL_FULL``, fading to none at 1 (a full repaint keeps nothing of the input)."""
    return float(np.clip((1.0 - strength) / (1.0 - DETAIL_FULL), 0.0, 1.0))


DETAIL_FULL = 0.5


def _encode(pipe, image=None, pixels=None):
    """The mean latent of a PIL image (or of ``pixels``, the image already preprocessed), scaled as the
    pipeline's latents are."""
    import torch

    vae = pipe.vae
    param = next(vae.parameters())
    if pixels is None:
        pixels = pipe.image_processor.preprocess(image)
    with torch.no_grad():
        return vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mean * vae.config.scaling_factor


def _encode_live(model, pipe, image=None, pixels=None):
    """A live update's start latents: by the model's encode head when it ships one (about 7 ms at 256²
    on a CPU against the VAE's 300), else as :func:`_encode`."""
    import torch

    head = model.encode_head()
    if head is None:
        return _encode(pipe, image, pixels)
    if pixels is None:
        pixels = pipe.image_processor.preprocess(image)
    param = next(head.parameters())
    with torch.no_grad():
        z = head(pixels.to(param.device, param.dtype).contiguous(memory_format=torch.channels_last))
    return z.to(next(pipe.vae.parameters()).dtype).contiguous()


def _masked_latents(model, pipe, init, mask_image, full_region: bool, live: bool = False):
    """A 9-channel model's masked-image latents, encoded as their mean (by the encode head when ``live``):
    for a full mask (img2img) the masked image is the same grey whatever was painted, so it is encoded
    once per working size and kept."""
    param = next(pipe.vae.parameters())
    key = (id(pipe.vae), init.size, id(model.encode_head()) if live else None)
    kept = model.latent_cache.get("grey")
    if full_region and kept is not None and kept[0] == key:
        return kept[1]
    pixels = pipe.image_processor.preprocess(init).to(param.device, param.dtype)
    mask = pipe.mask_processor.preprocess(mask_image).to(param.device, param.dtype)
    masked = pixels * (mask < 0.5)
    latents = _encode_live(model, pipe, pixels=masked) if live else _encode(pipe, pixels=masked)
    if full_region:
        model.latent_cache["grey"] = (key, latents)
    return latents


def _decode(pipe, latents) -> np.ndarray:
    """(h, w, 3) float RGB in 0-1 of latents, decoded as the pipeline decodes its result."""
    import torch

    vae = pipe.vae
    with torch.no_grad():
        image = vae.decode(latents.to(next(vae.parameters()).dtype) / vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(image.float(), output_type="np")[0]


class _LatentAnchor:
    """Keeps the unmasked latents on the known image's noisy trajectory after every step.

    diffusers does this ("latent blending") only for 4-channel UNets; a 9-channel model that
    drifts in colour over a sampling run (a small, briefly trained one, like the embedded model)
    stays true to its surroundings with it. Enabled per model by ``"anchor_latents": true`` in
    ``latent_studio.json``.

    With ``guide_cell`` (``"colour_guide_cell"``, used with the ``blur`` and ``flat`` fills), the
    masked latents' coarse part (means over guide_cell² latent cells) is also replaced by the
    prefilled image's, noised to the same step, after every step (after the last, by the clean
    prefill's: a final step free to drift put back a tenth of the colour error) — low-pass guidance
    in the manner of ILVR (Choi et al., 2021). The hole's coarse colours then continue the
    surroundings and the model paints the detail, whose strength (RMS per latent channel) is
    kept no greater than the surroundings' at the same step: a model too briefly trained to pick
    colours from context fills holes without colour blotches, large or small.
    """

    def __init__(self, pipe, init_image, mask_image, seed: int, guide_cell: int = 0, known=None):
        import torch
        import torch.nn.functional as F

        vae = pipe.vae
        param = next(vae.parameters())
        self.known = known if known is not None else _encode(pipe, init_image)
        mask = pipe.mask_processor.preprocess(mask_image).to(param.device, param.dtype)
        self.mask = F.interpolate(mask, size=self.known.shape[-2:])
        generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        self.noise = torch.randn(self.known.shape, generator=generator).to(param.device, param.dtype)
        self.scheduler = pipe.scheduler
        self.guide_cell = int(guide_cell)

    def blend(self, latents, done: int, total: int):
        import torch

        timesteps = self.scheduler.timesteps[len(self.scheduler.timesteps) - total:]
        if done < total:
            known = self.scheduler.add_noise(self.known, self.noise, torch.as_tensor([timesteps[done]]))
        else:
            known = self.known
        known = known.to(latents.dtype)
        if self.guide_cell:
            latents = self._low(known) + self._damped(latents - self._low(latents), known - self._low(known))
        return (1 - self.mask) * known + self.mask * latents

    def _damped(self, detail, known_detail):
        """The hole's fine part, per channel no stronger (RMS) than the surroundings' at this step:
        a weak model's foreign-coloured blotches fade, and detail as strong as its context stays."""
        inside, outside = self.mask, 1 - self.mask
        if float(outside.sum()) < 1:  # nothing known to measure against
            return detail
        dims = (2, 3)
        rms_in = ((detail**2 * inside).sum(dims, keepdim=True) / inside.sum(dims, keepdim=True).clamp(min=1)).sqrt()
        rms_out = ((known_detail**2 * outside).sum(dims, keepdim=True)
                   / outside.sum(dims, keepdim=True).clamp(min=1)).sqrt()
        return detail * (rms_out / rms_in.clamp(min=1e-6)).clamp(max=1)

    def _low(self, x):
        """The coarse part of latents: means over guide_cell² cells, smoothly upsampled."""
        import torch.nn.functional as F

        cell = self.guide_cell
        return F.interpolate(F.avg_pool2d(x, cell, ceil_mode=True), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


def _capture_x0(scheduler) -> dict:
    """Wraps ``scheduler.step`` to keep the latest denoised estimate (x0) for previews."""
    from .samplers import NO_X0

    holder: dict = {}
    original = scheduler.step
    gives_x0 = type(scheduler).__name__ not in NO_X0

    # wraps: the pipeline reads step's signature to decide whether to pass it the generator, and an
    # ancestral sampler (euler_a) not given the seeded generator draws from torch's global one.
    @functools.wraps(original)
    def step(model_output, timestep, sample, *args, **kwargs):
        out = original(model_output, timestep, sample, *args, **kwargs)
        x0 = None
        if not gives_x0:
            pass
        elif isinstance(out, tuple):
            x0 = out[1] if len(out) > 1 else None
        else:
            x0 = getattr(out, "pred_original_sample", None)
        if x0 is None and getattr(scheduler, "model_outputs", None):
            # DPM-Solver++ and UniPC keep their x0 prediction as the last model output.
            last = scheduler.model_outputs[-1]
            config = scheduler.config
            if last is not None and (
                str(config.get("algorithm_type", "")).endswith("++") or config.get("predict_x0", False)
            ):
                x0 = last
        holder["x0"] = x0
        return out

    scheduler.step = step
    return holder


def _install_cancel_hooks(unet, ctx: JobContext) -> list:
    """Forward pre-hooks on the UNet's blocks: a cancel stops within a fraction of a step."""

    def hook(_module, _inputs):
        ctx.check_cancel()

    blocks = list(unet.down_blocks) + [unet.mid_block] + list(unet.up_blocks)
    return [b.register_forward_pre_hook(hook) for b in blocks if b is not None]
