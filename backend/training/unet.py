"""Stage 2: the inpainting denoiser (UNet2DConditionModel, 9 input channels) in the VAE's latent space.

Input = noisy latent (4) + mask (1, at latent resolution) + latent of the masked image (4), exactly
what diffusers' StableDiffusionInpaintPipeline feeds. Epsilon objective, SD's noise schedule.
Masks: brush strokes, boxes, border bands (outpainting) and sometimes the whole image (img2img).
The photos have no captions, so the cross-attention context is one learned vector (the null
embedding) for every sample; package.py wires it into the shipped folder.
Writes ``unet.safetensors`` (EMA weights, fp16), ``unet_config.json`` and
``null_embedding.safetensors`` into the work folder; resumes from ``unet_ckpt.pt`` there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from .loop import (
    Progress, TrainConfig, TrainingError, append_log, autocast, format_eta, load_checkpoint, lr_at, save_checkpoint,
    save_weights, write_json,
)

MASK_KINDS = ("stroke", "box", "border", "full")
MASK_PROBS = (0.3, 0.35, 0.2, 0.15)


def random_masks(n: int, size: int, generator, device="cpu", upscale: bool = True):
    """n masks [n,1,size,size] float {0,1} (1 = repaint), drawn at size/4 then upscaled.

    Drawn one by one on the CPU: training draws a bank once and samples from it.
    """
    import torch
    import torch.nn.functional as F

    s = max(8, size // 4)
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32),
                            indexing="ij")
    out = torch.zeros(n, 1, s, s)
    kinds = torch.multinomial(torch.tensor(MASK_PROBS), n, replacement=True, generator=generator)
    rnd = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    for i in range(n):
        kind = MASK_KINDS[int(kinds[i])]
        m = torch.zeros(s, s)
        if kind == "full":
            m[:] = 1
        elif kind == "box":
            for _ in range(1 + int(rnd(()) * 3)):
                bw, bh = (0.1 + 0.5 * rnd(2)) * s
                x0, y0 = float(rnd(())) * (s - bw), float(rnd(())) * (s - bh)
                m[(yy >= y0) & (yy < y0 + bh) & (xx >= x0) & (xx < x0 + bw)] = 1
        elif kind == "border":
            sides = rnd(4) < 0.4
            if not sides.any():
                sides[int(rnd(()) * 4)] = True
            for side, on in enumerate(sides.tolist()):
                if on:
                    band = int((0.1 + 0.4 * float(rnd(()))) * s)
                    [m[:band], m[-band:], m[:, :band], m[:, -band:]][side][...] = 1
        else:  # brush strokes: discs along a random walk
            for _ in range(1 + int(rnd(()) * 3)):
                k = 24
                r = (0.03 + 0.1 * float(rnd(()))) * s
                angle = float(rnd(())) * 2 * math.pi + torch.cumsum((rnd(k) - 0.5) * 1.2, 0)
                step = s / k * (0.5 + rnd(()))
                px = float(rnd(())) * s + torch.cumsum(torch.cos(angle) * step, 0)
                py = float(rnd(())) * s + torch.cumsum(torch.sin(angle) * step, 0)
                d2 = (yy[None] - py[:, None, None]) ** 2 + (xx[None] - px[:, None, None]) ** 2
                m[(d2 < r * r).any(0)] = 1
        out[i, 0] = m
    if not upscale:
        return out.to(device)
    return F.interpolate(out, size=(size, size), mode="nearest").to(device)


@dataclass
class UnetTrainConfig(TrainConfig):
    resolution: int = 256  # the model's native resolution (latents are resolution/8)
    bank_size: int = 1500
    ema_decay: float = 0.999
    # Masked crops encoded once and sampled from (0: encode every step). On a CPU the VAE encoder
    # costs ten times a UNet step, so a bank of (crop, mask, masked latent) triples is what makes
    # CPU training worth its time; jointly flipped, each triple serves twice.
    pair_bank: int = 0
    # Start from unet_init.safetensors + null_init.safetensors in the work folder (package.unpack_folder)
    # instead of random weights: a fine-tune, recorded apart from the first training in the stats.
    init: bool = False


def _encode_params(vae, bank_u8, batch: int, device, say=None):
    """Latent distribution (mean, std) of every bank crop, so training encodes only masked images."""
    import torch

    from .vae import to_unit

    means, stds = [], []
    eta = _Eta("encoding crops", len(bank_u8), say)
    with torch.no_grad(), autocast(device):
        for i in range(0, len(bank_u8), batch):
            d = vae.encode(to_unit(bank_u8[i : i + batch])).latent_dist
            means.append(d.mean.float())
            stds.append(d.std.float())
            eta.update(min(len(bank_u8), i + batch))
    return torch.cat(means), torch.cat(stds)


class _Eta:
    """Progress lines for the preparation (encoding the banks) at most every 10 s."""

    def __init__(self, what: str, total: int, say=None):
        self.what, self.total, self.say = what, total, say
        self.t0 = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.say is None or (now - self.last < 10 and done < self.total):
            return
        self.last = now
        left = (now - self.t0) / max(1, done) * (self.total - done)
        self.say(f"[unet] {self.what} {done}/{self.total} | ETA {format_eta(left)}")


def _masked_latents(vae, x, mask, grey, sf: float, device):
    """What the pipeline feeds as the masked-image latent: the crop with the hole zeroed (grey
    in [-1, 1]), encoded; the latent of plain grey where the whole crop is masked."""
    import torch

    full = mask.flatten(1).min(1).values > 0.5
    with torch.no_grad(), autocast(device):
        masked = vae.encode(x * (1 - mask)).latent_dist.sample().float() * sf
    return torch.where(full[:, None, None, None], grey.expand_as(masked), masked)


@dataclass
class _Pairs:
    crop: object  # [n] index into the crop bank
    mask: object  # [n] index into the mask bank
    latent: object  # [n, 4, lat, lat] masked-image latents


def _encode_pairs(vae, bank_u8, mask_bank, n: int, resolution: int, grey, generator, batch: int, device, say):
    import torch
    import torch.nn.functional as F

    from .vae import to_unit

    crop = torch.randint(0, len(bank_u8), (n,), generator=generator).to(device)
    mask = torch.randint(0, len(mask_bank), (n,), generator=generator).to(device)
    sf = vae.config.scaling_factor
    out, eta = [], _Eta("encoding masked crops", n, say)
    for i in range(0, n, batch):
        m = F.interpolate(mask_bank[mask[i : i + batch]].float(), size=(resolution, resolution), mode="nearest")
        out.append(_masked_latents(vae, to_unit(bank_u8[crop[i : i + batch]]), m, grey, sf, device))
        eta.update(min(n, i + batch))
    return _Pairs(crop, mask, torch.cat(out))


def train_unet(cfg: UnetTrainConfig, log=print, photos=None) -> dict:
    import copy

    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from . import data
    from .loop import pick_device
    from .models import SCHEDULER_CONFIG, build_unet, unet_config
    from .vae import _merge_stats, load_vae, to_unit

    began = time.time()  # --minutes covers the preparation (encoding the banks) too
    device = pick_device(cfg.device)
    work = Path(cfg.work_dir)
    logfile = work / "train_log.txt"
    say = lambda s: (log(s), append_log(logfile, s))  # noqa: E731
    vae = load_vae(work, device)
    vae.requires_grad_(False)
    sf = vae.config.scaling_factor
    if cfg.resolution % 8:
        raise TrainingError(f"--resolution must be a multiple of 8, got {cfg.resolution}")
    lat = cfg.resolution // 8

    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg.preset, sample_size=lat).to(device)
    null = torch.nn.Parameter(torch.randn(1, 1, unet.config.cross_attention_dim, device=device) * 0.1)
    params = list(unet.parameters()) + [null]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ema = copy.deepcopy(unet).requires_grad_(False)
    ema_null = null.detach().clone()
    ckpt_path = work / "unet_ckpt.pt"
    start_step, total_seconds = 0, 0.0
    finetune = cfg.init
    ck = load_checkpoint(ckpt_path) if cfg.resume else None
    if ck is None and cfg.init:
        from safetensors.torch import load_file

        try:
            init_state = load_file(str(work / "unet_init.safetensors"))
            init_null = load_file(str(work / "null_init.safetensors"))["null"]
        except OSError as exc:
            raise TrainingError(f"no starting weights in {work} ({exc}): pass --init-from MODEL") from exc
        try:
            unet.load_state_dict({k: v.float() for k, v in init_state.items()})
        except RuntimeError as exc:
            raise TrainingError(f"the starting UNet is not a {cfg.preset!r} preset UNet: choose its --preset") from exc
        ema.load_state_dict(unet.state_dict())
        with torch.no_grad():
            null.copy_(init_null.reshape(null.shape).to(device))
        ema_null = null.detach().clone()
        say(f"[unet] starting from the weights in {work / 'unet_init.safetensors'} (fine-tune)")
    if ck is not None:
        if ck.get("preset") != cfg.preset or ck.get("resolution") != cfg.resolution:
            raise TrainingError(f"{ckpt_path} holds another UNet preset/resolution; use --fresh to start over")
        unet.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        with torch.no_grad():
            null.copy_(ck["null"].to(device))
        ema_null = ck["ema_null"].to(device)
        opt.load_state_dict(ck["opt"])
        start_step, total_seconds = ck["step"], ck["seconds"]
        finetune = bool(ck.get("init", False))
        say(f"[unet] resuming at step {start_step} ({total_seconds / 60:.1f} min trained)")
    n_params = sum(p.numel() for p in unet.parameters())
    say(f"[unet] {cfg.preset}: {n_params / 1e6:.2f}M params on {device}, batch {cfg.batch} x {cfg.resolution}², "
        f"VAE scaling factor {sf:.4f}")

    if photos is None:
        photos = data.load_photos(cfg.data_dir, "train")
    bank = data.make_crop_bank(photos, cfg.bank_size, cfg.resolution, seed=cfg.seed + 7 + start_step, device=device)
    mean, std = _encode_params(vae, bank, max(cfg.batch, 16), device, say)
    with torch.no_grad(), autocast(device):
        grey = vae.encode(torch.zeros(1, 3, cfg.resolution, cfg.resolution, device=device)).latent_dist.mode()
    grey = grey.float() * sf
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + 2 + start_step)
    n_masks = max(64, min(4096, cfg.bank_size * 2))
    mask_bank = random_masks(n_masks, cfg.resolution, g, upscale=False).to(torch.uint8).to(device)
    pairs = None
    if cfg.pair_bank:
        pairs = _encode_pairs(vae, bank, mask_bank, cfg.pair_bank, cfg.resolution, grey, g, max(cfg.batch, 16),
                              device, say)
    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    alphas = sched.alphas_cumprod.to(device)

    deadline = cfg.deadline
    if cfg.minutes is not None:
        deadline = min(deadline or math.inf, began + cfg.minutes * 60)
    prog = Progress("unet", cfg.minutes, cfg.max_steps, start_step, log=say, every=cfg.log_every,
                    deadline=deadline)
    last_ckpt = prog.seconds
    unet.train()

    def checkpoint():
        save_checkpoint(ckpt_path, model=unet.state_dict(), ema=ema.state_dict(), null=null.detach().cpu(),
                        ema_null=ema_null.cpu(), opt=opt.state_dict(), step=prog.step,
                        seconds=total_seconds + prog.seconds, preset=cfg.preset, resolution=cfg.resolution,
                        init=finetune)

    while not prog.done():
        b = cfg.batch
        eps_z = torch.randn(b, 4, lat, lat, generator=g).to(device)
        if pairs is not None:
            pick = torch.randint(0, len(pairs.crop), (b,), generator=g).to(device)
            idx = pairs.crop[pick]
            latents = (mean[idx] + std[idx] * eps_z) * sf
            mask_lat = F.interpolate(mask_bank[pairs.mask[pick]].float(), size=(lat, lat))
            masked = pairs.latent[pick]
            if torch.rand((), generator=g) < 0.5:  # the three together: a mirrored scene
                latents, mask_lat, masked = latents.flip(-1), mask_lat.flip(-1), masked.flip(-1)
        else:
            idx = torch.randint(0, len(bank), (b,), generator=g).to(device)
            x = to_unit(bank[idx])
            latents = (mean[idx] + std[idx] * eps_z) * sf
            mask = mask_bank[torch.randint(0, len(mask_bank), (b,), generator=g).to(device)].float()
            if torch.rand((), generator=g) < 0.5:
                mask = mask.flip(-1)
            if torch.rand((), generator=g) < 0.5:
                mask = mask.transpose(-1, -2)
            mask = F.interpolate(mask, size=(cfg.resolution, cfg.resolution), mode="nearest")
            masked = _masked_latents(vae, x, mask, grey, sf, device)
            mask_lat = F.interpolate(mask, size=(lat, lat))
        noise = torch.randn(latents.shape, generator=g).to(device)
        t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=g).to(device)
        a = alphas[t].view(b, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        inp = torch.cat([noisy, mask_lat, masked], dim=1)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg.lr, prog.step - start_step, prog.fraction(), cfg.warmup)
        with autocast(device):
            pred = unet(inp, t, null.expand(b, -1, -1)).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if not math.isfinite(loss.item()):
            raise TrainingError("the UNet's loss became NaN/inf: lower --lr")
        ran = prog.step - start_step + 1
        decay = min(cfg.ema_decay, (1 + ran) / (10 + ran)) if start_step == 0 else cfg.ema_decay
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
            ema_null.lerp_(null.detach(), 1 - decay)
        prog.update(loss=loss.item())
        if cfg.checkpoint_minutes and prog.seconds - last_ckpt > cfg.checkpoint_minutes * 60:
            last_ckpt = prog.seconds
            checkpoint()

    if cfg.checkpoint_minutes:
        checkpoint()
    total_seconds += prog.seconds
    write_json(work / "unet_config.json", unet_config(cfg.preset, lat))
    save_weights(work / "unet.safetensors", ema.state_dict(), dtype=torch.float16)
    save_weights(work / "null_embedding.safetensors", {"null": ema_null.reshape(-1)}, dtype=torch.float32)
    stats = dict(unet_preset=cfg.preset, unet_params=n_params, unet_steps=prog.step,
                 unet_seconds=round(total_seconds), unet_batch=cfg.batch, resolution=cfg.resolution,
                 unet_device=str(device), unet_final_loss=prog.smoothed("loss"))
    if finetune:  # the first training's figures stay; this run is recorded beside them
        stats = {k.replace("unet_", "unet_finetune_", 1): v for k, v in stats.items() if k.startswith("unet_")}
        stats["unet_finetune_pairs"] = cfg.pair_bank
    _merge_stats(work, stats)
    say(f"[unet] done: {prog.step} steps, {total_seconds / 60:.1f} min")
    return stats
