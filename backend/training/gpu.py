"""One-shot GPU training run (launched by tools/gpu_train.sh on a machine without network).

Needs only torch, numpy, pillow, safetensors and diffusers (no transformers, platformdirs,
scikit-image or OpenCV). Trains the autoencoder for --vae-minutes, then the denoiser for
--unet-minutes, never past --deadline (absolute epoch seconds), and writes into --out:

    vae.safetensors  vae_config.json  unet.safetensors  unet_config.json
    null_embedding.safetensors  train_stats.json  train_log.txt

(7 files, each well under 16 MB). `tools/package_gpu_result.py OUT` makes the model folder.

    python3 -m backend.training.gpu --data .carry/data --out $OUT --vae-minutes 3 --unet-minutes 4

With ``--init-from MODEL`` it fine-tunes a packaged model instead of training from scratch:
stage 1 fine-tunes the decoder alone (encoder frozen, so the latent space and the denoiser stay
valid) and keeps it only if the held-out PSNR rose; stage 2 fine-tunes the UNet from the
model's weights. The work happens in a scratch folder (the unpacked fp32 weights are larger
than what may come back); the same 7 files are exported to --out.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="backend.training.gpu")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--vae-minutes", type=float, default=3.0)
    ap.add_argument("--unet-minutes", type=float, default=4.0)
    ap.add_argument("--deadline", type=float, default=None, help="absolute time.time() by which to have written all")
    ap.add_argument("--vae-batch", type=int, default=64)
    ap.add_argument("--vae-crop", type=int, default=128)
    ap.add_argument("--unet-batch", type=int, default=128)
    ap.add_argument("--bank", type=int, default=8000, help="random crops per stage")
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--device", default=None)
    ap.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                    help="fine-tune this packaged model (decoder, then UNet) instead of training from scratch")
    ap.add_argument("--vae-lr", type=float, default=None, help="default 4e-4; 1e-4 for a decoder fine-tune")
    ap.add_argument("--unet-lr", type=float, default=None, help="default 2e-4")
    args = ap.parse_args(argv)
    if args.init_from is not None:
        return finetune(args)

    from . import data
    from .unet import train_unet
    from .vae import _merge_stats, train_vae

    out: Path = args.out
    log, device, deadline, t_start = _start(args, "training from scratch")
    photos = data.load_photos(args.data, "train")
    log(f"{len(photos)} training photos loaded from {args.data}; deadline in {(deadline - t_start) / 60:.1f} min")

    # Stage 1. Its deadline keeps the UNet's share whatever the start-up took.
    vcfg = _vae_config(args, out, device, deadline, warmup=300)
    try:
        train_vae(vcfg, log=log, photos=photos)
    except Exception:
        log("VAE stage failed:\n" + traceback.format_exc())
        return 1
    (out / "vae_ckpt.pt").unlink(missing_ok=True)
    try:  # held-out PSNR right away (cheap), so the log shows it even if the next stage fails
        crops = data.heldout_crops(args.data, size=args.resolution)
        value = _heldout_psnr(out, crops, device)
        _merge_stats(out, {"metrics": {"vae_psnr": value}})
        log(f"VAE PSNR on {len(crops)} held-out crops: {value:.2f} dB")
    except Exception:
        log("held-out PSNR failed (training goes on):\n" + traceback.format_exc())

    # Stage 2, until the overall deadline less a margin for writing.
    try:
        train_unet(_unet_config(args, out, device, deadline, warmup=300), log=log, photos=photos)
    except Exception:
        log("UNet stage failed:\n" + traceback.format_exc())
        return 1
    (out / "unet_ckpt.pt").unlink(missing_ok=True)
    files = sorted(p.name for p in out.iterdir())
    log(f"done in {(time.time() - t_start) / 60:.1f} min; wrote {files}")
    return 0


def _start(args, what: str):
    """The run's log (stdout and --out/train_log.txt), device (tf32 on CUDA), deadline and start time."""
    import torch

    from .loop import pick_device

    args.out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {line}"
        print(line, flush=True)
        with open(args.out / "train_log.txt", "a") as f:
            f.write(line + "\n")

    device = pick_device(args.device)
    log(f"torch {torch.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else " (NO CUDA: a CPU fallback run)")
        + f"; {what}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    deadline = args.deadline or (time.time() + (args.vae_minutes + args.unet_minutes) * 60 + 120)
    return log, device, deadline, time.time()


def _vae_config(args, work: Path, device, deadline: float, **kw):
    """Stage 1's settings; it stops in time to leave the UNet its minutes whatever the start-up took."""
    from .vae import VaeTrainConfig

    vae_deadline = min(deadline - args.unet_minutes * 60 - 45, time.time() + args.vae_minutes * 60)
    cfg = VaeTrainConfig(
        data_dir=args.data, work_dir=work, preset=args.preset, minutes=args.vae_minutes, batch=args.vae_batch,
        crop=args.vae_crop, bank_size=args.bank, bank_crop=args.resolution, device=str(device), resume=False,
        checkpoint_minutes=0, deadline=vae_deadline, log_every=15, **kw)
    if args.vae_lr:
        cfg.lr = args.vae_lr
    return cfg


def _unet_config(args, work: Path, device, deadline: float, **kw):
    """Stage 2's settings; it runs until the overall deadline less a margin for writing."""
    from .unet import UnetTrainConfig

    cfg = UnetTrainConfig(
        data_dir=args.data, work_dir=work, preset=args.preset, minutes=args.unet_minutes, batch=args.unet_batch,
        resolution=args.resolution, bank_size=args.bank, device=str(device), resume=False, checkpoint_minutes=0,
        deadline=deadline - 30, log_every=15, **kw)
    if args.unet_lr:
        cfg.lr = args.unet_lr
    return cfg


def _heldout_psnr(work: Path, crops, device) -> float:
    from .vae import load_vae, psnr, reconstruct

    return psnr(crops, reconstruct(load_vae(work, device), crops, device, batch=32))


def _export(work: Path, out: Path) -> list[str]:
    """The stage outputs as the 7 files a GPU run returns (weights in fp16, each < 16 MB)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from .loop import save_weights

    for name in ("vae.safetensors", "unet.safetensors"):
        save_weights(out / name, load_file(str(work / name)), dtype=torch.float16)
    for name in ("vae_config.json", "unet_config.json", "null_embedding.safetensors", "train_stats.json"):
        shutil.copy2(work / name, out / name)
    return sorted(p.name for p in out.iterdir())


def finetune(args) -> int:
    import json
    import shutil
    import tempfile

    from . import data
    from .package import unpack_folder
    from .unet import train_unet
    from .vae import train_vae

    out: Path = args.out
    log, device, deadline, t_start = _start(args, f"fine-tuning {args.init_from}")
    work = Path(tempfile.mkdtemp(prefix="latent-studio-finetune-"))
    try:
        unpack_folder(args.init_from, work)
        photos = data.load_photos(args.data, "train")
        crops = data.heldout_crops(args.data, size=args.resolution)
        log(f"{len(photos)} training photos, {len(crops)} held-out crops; "
            f"deadline in {(deadline - t_start) / 60:.1f} min")
        stats_path = work / "train_stats.json"
        if args.vae_minutes > 0:
            before = _heldout_psnr(work, crops, device)
            log(f"VAE PSNR before: {before:.2f} dB")
            shutil.copy2(work / "vae.safetensors", work / "vae_start.safetensors")
            record_before = stats_path.read_text()
            vcfg = _vae_config(args, work, device, deadline, warmup=100, lr=1e-4, decoder_only=True)
            train_vae(vcfg, log=log, photos=photos)
            after = _heldout_psnr(work, crops, device)
            keep = after > before + 0.02
            log(f"VAE PSNR after the decoder fine-tune: {after:.2f} dB (before {before:.2f}): "
                + ("kept" if keep else "NOT kept, the model's decoder stays"))
            if keep:
                rec = json.loads(stats_path.read_text())
                rec.setdefault("metrics", {})["vae_psnr"] = after
                rec["vae_finetune_psnr_before"] = before
                stats_path.write_text(json.dumps(rec, indent=1))
            else:
                shutil.copy2(work / "vae_start.safetensors", work / "vae.safetensors")
                rec = json.loads(record_before)
                rec["vae_decoder_finetune_rejected"] = dict(psnr_before=before, psnr_after=after)
                stats_path.write_text(json.dumps(rec, indent=1))
            (work / "vae_start.safetensors").unlink()
        log(f"exported after stage 1: {_export(work, out)}")
        train_unet(_unet_config(args, work, device, deadline, warmup=200, init=True), log=log, photos=photos)
        files = _export(work, out)
    except Exception:
        log("fine-tune failed:\n" + traceback.format_exc())
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"done in {(time.time() - t_start) / 60:.1f} min; wrote {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
