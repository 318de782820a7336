"""Stage 1: the autoencoder (AutoencoderKL, f=8, 4 latent channels).

Loss: L1 on pixels + L1 on image gradients (keeps edges sharp, cheap stand-in for a perceptual
loss) + a tiny KL term (1e-6, as in latent diffusion's KL-regularised autoencoders).
Writes ``vae.safetensors`` (fp16) and ``vae_config.json`` (with ``scaling_factor`` = 1 / latent
std on training crops) into the work folder; resumes from ``vae_ckpt.pt`` there.

``decoder_only`` fine-tunes the decoder of the autoencoder already in the work folder (trained
here, or unpacked from a packaged model by ``--init-from``): the encoder stays frozen, so the
latent space, its scaling factor and the denoiser trained in it all stay valid.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .loop import (
    Progress, TrainConfig, TrainingError, append_log, autocast, load_checkpoint, lr_at, save_checkpoint, save_weights,
    write_json,
)


@dataclass
class VaeTrainConfig(TrainConfig):
    lr: float = 4e-4
    crop: int = 128  # training crop side (the model is fully convolutional)
    bank_size: int = 2000  # random crops generated per run (bank_crop² each)
    bank_crop: int = 256
    kl_weight: float = 1e-6
    grad_weight: float = 0.5
    decoder_only: bool = False  # fine-tune work_dir's decoder; encoder (and so the latent space) frozen


def image_gradient_l1(a, b):
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def to_unit(batch_u8, dtype=None):
    """uint8 [B,3,H,W] -> float in [-1, 1]."""
    import torch

    return batch_u8.to(dtype or torch.float32) / 127.5 - 1.0


def psnr(a, b) -> float:
    """Mean per-image PSNR (dB) of two uint8 arrays/tensors [N,...] (peak 255)."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    mse = ((a - b) ** 2).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def reconstruct(vae, crops_u8, device, batch: int = 16):
    """VAE reconstruction of uint8 NHWC crops, returned as uint8 NHWC (mean latent, fp32 math)."""
    import numpy as np
    import torch

    out = []
    vae.eval()
    with torch.no_grad():
        for i in range(0, len(crops_u8), batch):
            x = torch.as_tensor(np.ascontiguousarray(crops_u8[i : i + batch])).permute(0, 3, 1, 2).to(device)
            x = to_unit(x).to(next(vae.parameters()).dtype)
            z = vae.encode(x).latent_dist.mode()
            y = vae.decode(z).sample.float()
            out.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def latent_std(vae, bank_u8, device, n: int = 256, batch: int = 32) -> float:
    import torch

    vals = []
    with torch.no_grad():
        for i in range(0, min(n, len(bank_u8)), batch):
            x = to_unit(bank_u8[i : i + batch].to(device))
            vals.append(vae.encode(x).latent_dist.sample().float().flatten())
    return float(torch.cat(vals).std())


def load_vae(work_dir: Path, device="cpu"):
    """The stage-1 result from a work folder (fp32, with its scaling factor)."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    work_dir = Path(work_dir)
    cfg_path, weights = work_dir / "vae_config.json", work_dir / "vae.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise TrainingError(f"no trained autoencoder in {work_dir}: run `python main.py train-vae` first")
    vae = AutoencoderKL(**json.loads(cfg_path.read_text()))
    vae.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return vae.to(device).eval()  # built in fp32; .to(dtype=) would make diffusers warn


def train_vae(cfg: VaeTrainConfig, log=print, photos=None) -> dict:
    import torch

    from . import data
    from .loop import pick_device
    from .models import build_vae, vae_config

    device = pick_device(cfg.device)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    logfile = work / "train_log.txt"
    say = lambda s: (log(s), append_log(logfile, s))  # noqa: E731
    torch.manual_seed(cfg.seed)
    if cfg.decoder_only:
        vae = load_vae(work, device)  # the autoencoder to fine-tune; its config (scaling factor) is kept
        kept_config = json.loads((work / "vae_config.json").read_text())
        vae.encoder.requires_grad_(False)
        if vae.quant_conv is not None:
            vae.quant_conv.requires_grad_(False)
        trained = [p for p in vae.parameters() if p.requires_grad]
        say(f"[vae] fine-tuning the decoder of {work / 'vae.safetensors'} (encoder frozen)")
    else:
        vae = build_vae(cfg.preset, sample_size=cfg.bank_crop).to(device)
        trained = list(vae.parameters())
    opt = torch.optim.AdamW(trained, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.01)
    ckpt_path = work / "vae_ckpt.pt"
    start_step, total_seconds = 0, 0.0
    ck = load_checkpoint(ckpt_path) if cfg.resume else None
    if ck is not None:
        if ck.get("preset") != cfg.preset or bool(ck.get("decoder_only")) != cfg.decoder_only:
            raise TrainingError(f"{ckpt_path} holds another kind of autoencoder run; use --fresh to start over")
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_step, total_seconds = ck["step"], ck["seconds"]
        say(f"[vae] resuming at step {start_step} ({total_seconds / 60:.1f} min trained)")
    n_params = sum(p.numel() for p in vae.parameters())
    say(f"[vae] {cfg.preset}: {n_params / 1e6:.2f}M params ({sum(p.numel() for p in trained) / 1e6:.2f}M trained) "
        f"on {device}, batch {cfg.batch} x {cfg.crop}²")

    if photos is None:
        photos = data.load_photos(cfg.data_dir, "train")
    bank = data.make_crop_bank(photos, cfg.bank_size, cfg.bank_crop, seed=cfg.seed + start_step, device=device)
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + 1 + start_step)

    prog = Progress("vae", cfg.minutes, cfg.max_steps, start_step, log=say, every=cfg.log_every,
                    deadline=cfg.deadline)
    last_ckpt = prog.seconds
    vae.train()
    while not prog.done():
        idx = torch.randint(0, len(bank), (cfg.batch,), generator=g)
        x = bank[idx.to(device)]
        if cfg.crop < cfg.bank_crop:
            oy, ox = torch.randint(0, cfg.bank_crop - cfg.crop + 1, (2,), generator=g).tolist()
            x = x[:, :, oy : oy + cfg.crop, ox : ox + cfg.crop]
        x = to_unit(x)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg.lr, prog.step - start_step, prog.fraction(), cfg.warmup)
        with autocast(device):
            with torch.set_grad_enabled(not cfg.decoder_only):
                post = vae.encode(x).latent_dist
                z = post.sample()  # a sample, as the denoiser's latents are: the decoder learns their spread
            y = vae.decode(z).sample
        y = y.float()
        rec = (y - x).abs().mean()
        grad = image_gradient_l1(y, x)
        loss = rec + cfg.grad_weight * grad
        if not cfg.decoder_only:
            # LDM weights the summed KL against the summed per-pixel loss; ours are means, so divide.
            loss = loss + cfg.kl_weight * post.kl().float().mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        if not math.isfinite(loss.item()):
            raise TrainingError("the autoencoder's loss became NaN/inf: lower --lr")
        mse = ((y.detach().clamp(-1, 1) - x) ** 2).mean().item()
        prog.update(l1=rec.item(), grad=grad.item(), psnr=10 * math.log10(4.0 / max(mse, 1e-10)))
        if cfg.checkpoint_minutes and prog.seconds - last_ckpt > cfg.checkpoint_minutes * 60:
            last_ckpt = prog.seconds
            save_checkpoint(ckpt_path, model=vae.state_dict(), opt=opt.state_dict(), step=prog.step,
                            seconds=total_seconds + prog.seconds, preset=cfg.preset, decoder_only=cfg.decoder_only)

    vae.eval()
    total_seconds += prog.seconds
    if cfg.checkpoint_minutes:
        save_checkpoint(ckpt_path, model=vae.state_dict(), opt=opt.state_dict(), step=prog.step,
                        seconds=total_seconds, preset=cfg.preset, decoder_only=cfg.decoder_only)
    if cfg.decoder_only:  # same encoder, same latent space: the config and its scaling factor stay
        write_json(work / "vae_config.json", kept_config)
        save_weights(work / "vae.safetensors", vae.state_dict(), dtype=torch.float16)
        stats = dict(vae_finetune_steps=prog.step, vae_finetune_seconds=round(total_seconds),
                     vae_finetune_batch=cfg.batch, vae_finetune_crop=cfg.crop, vae_finetune_device=str(device))
        _merge_stats(work, stats)
        say(f"[vae] decoder fine-tune done: {prog.step} steps, {total_seconds / 60:.1f} min")
        return stats
    std = latent_std(vae, bank, device, n=256 if device.type == "cuda" else 48)
    config = vae_config(cfg.preset, cfg.bank_crop)
    config["scaling_factor"] = round(1.0 / max(std, 1e-6), 5)
    config["force_upcast"] = True
    write_json(work / "vae_config.json", config)
    save_weights(work / "vae.safetensors", vae.state_dict(), dtype=torch.float16)
    stats = dict(vae_preset=cfg.preset, vae_params=n_params, vae_steps=prog.step, vae_seconds=round(total_seconds),
                 vae_batch=cfg.batch, vae_crop=cfg.crop, vae_device=str(device), latent_std=std)
    _merge_stats(work, stats)
    say(f"[vae] done: {prog.step} steps, {total_seconds / 60:.1f} min, latent std {std:.3f}")
    return stats


def _merge_stats(work: Path, stats: dict) -> None:
    path = Path(work) / "train_stats.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(stats)
    write_json(path, old)
