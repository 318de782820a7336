"""Subcommands: prepare-data, train-vae, train-unet, evaluate (registered by main.py).

    python main.py prepare-data                 # fetch the photos (apt-get download) and prepare them
    python main.py train-vae --minutes 60       # stage 1, resumes from its checkpoint
    python main.py train-unet --minutes 60      # stage 2, resumes; then writes resources/models/latent-studio-mini
    python main.py train-unet --package-from DIR  # package a GPU run's files instead of training
    python main.py evaluate                     # held-out metrics of the default model + contact sheet
"""
from __future__ import annotations

from pathlib import Path

from .contract import fail as _fail


def _default_work_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("latent-studio")) / "training"


def _common(p, data=True, work=True, device=True):
    if data:
        p.add_argument("--data-dir", type=Path, default=None,
                       help="prepared photos (default: the user cache, fetched and prepared when missing)")
    if work:
        p.add_argument("--work-dir", type=Path, default=None,
                       help="checkpoints and stage outputs (default: <user cache>/latent-studio/training)")
    if device:
        p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _budget(p, batch: int):
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument("--steps", type=int, default=None, help="step budget of this run")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--preset", default="mini", choices=("mini", "tiny"))
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--fresh", action="store_true", help="ignore the checkpoint and start over")


def register(subparsers) -> None:
    p = subparsers.add_parser("prepare-data", help="fetch and prepare the embedded model's training photos")
    _common(p, work=False, device=False)
    p.add_argument("--carry", type=Path, default=None, help="also copy the prepared photos into CARRY/data (GPU run)")
    p.set_defaults(func=cmd_prepare)

    p = subparsers.add_parser("train-vae", help="train the embedded model's autoencoder (stage 1)")
    _common(p)
    _budget(p, batch=8)
    p.add_argument("--crop", type=int, default=128, help="training crop side in pixels")
    p.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                   help="first unpack a packaged model folder (its VAE, UNet and training record) into the work "
                        "folder, e.g. the embedded one; use with --decoder-only")
    p.add_argument("--decoder-only", action="store_true",
                   help="fine-tune the decoder of the work folder's autoencoder, encoder frozen: the latent space "
                        "stays, so the denoiser trained in it still fits")
    p.set_defaults(func=cmd_train_vae)

    p = subparsers.add_parser("train-unet", help="train the embedded model's inpainting UNet (stage 2) and package it")
    _common(p)
    _budget(p, batch=4)
    p.add_argument("--resolution", type=int, default=256, help="native resolution (multiple of 8)")
    p.add_argument("--bank", type=int, default=None,
                   help="random crops encoded per run (default 192 on CPU, 4000 on CUDA)")
    p.add_argument("--pair-bank", type=int, default=None,
                   help="masked crops encoded once and reused (default 4 x --bank on CPU, where encoding every "
                        "step would dominate; 0 = encode every step, the CUDA default)")
    p.add_argument("--init-from", type=Path, default=None, metavar="MODEL",
                   help="start from a packaged model folder's UNet and VAE (fine-tune it), e.g. the embedded one")
    p.add_argument("--out", type=Path, default=None, help="model folder to write (default: resources/models/latent-studio-mini)")
    p.add_argument("--no-package", action="store_true", help="train only, do not write the model folder")
    p.add_argument("--package-from", type=Path, default=None, metavar="DIR",
                   help="skip training: package the files of a GPU run (tools/gpu_train.sh) from DIR")
    p.set_defaults(func=cmd_train_unet)

    p = subparsers.add_parser("train-preview", help="fit a model's preview head (a tiny decoder for live previews)")
    _common(p, work=False)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded latent-studio-mini)")
    p.add_argument("--steps", type=int, default=6000, help="training steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (stops early)")
    p.add_argument("--crops", type=int, default=256, help="training photo crops (each encoded and decoded twice)")
    p.set_defaults(func=cmd_train_preview)

    p = subparsers.add_parser("train-encode-head",
                              help="fit a model's encode head (a tiny encoder for live updates)")
    _common(p, work=False)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded latent-studio-mini)")
    p.add_argument("--steps", type=int, default=4000, help="training steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (stops early)")
    p.add_argument("--crops", type=int, default=512,
                   help="training photo crops (each encoded as it is and painted over)")
    p.set_defaults(func=cmd_train_encode_head)

    p = subparsers.add_parser("evaluate", help="held-out metrics of the embedded model and a contact sheet")
    _common(p, work=False)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded latent-studio-mini)")
    p.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG (default: <cache>/evaluation/contact_sheet.png)")
    p.add_argument("--crops", type=int, default=None,
                   help="held-out crops to inpaint (default: all of them, 40; fewer is quicker)")
    p.add_argument("--steps", type=int, default=25, help="denoising steps per inpainting")
    p.add_argument("--write-card", action="store_true", help="record the metrics in the model card")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write every figure to FILE as one flat JSON object")
    p.add_argument("--no-img2img", action="store_true", help="leave out the (slower) full-resolution img2img figures")
    p.set_defaults(func=cmd_evaluate)


def _run(fn) -> int:
    from backend.training.data import DataError
    from backend.training.loop import TrainingError

    try:
        return fn() or 0
    except (DataError, TrainingError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted (the last checkpoint is kept; run again to resume)")


def _positive(args, *names) -> str | None:
    for n in names:
        v = getattr(args, n, None)
        if v is not None and v <= 0:
            return f"--{n.replace('_', '-')} must be positive, got {v}"
    return None


def cmd_prepare(args) -> int:
    def go():
        import shutil

        from backend.training import data

        d = args.data_dir or data.default_data_dir()
        data.prepare(d)
        if args.carry:
            dest = Path(args.carry) / "data"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            shutil.copytree(Path(d) / "photos", dest / "photos")
            shutil.copy2(Path(d) / data.MANIFEST, dest / data.MANIFEST)
            data.heldout_crops(dest)
            print(f"copied to {dest}")
    return _run(go)


def cmd_train_vae(args) -> int:
    bad = _positive(args, "minutes", "steps", "batch", "crop", "lr")
    if bad:
        return _fail(bad)
    if args.minutes is None and args.steps is None:
        return _fail("give a budget: --minutes N and/or --steps N")

    init_from = getattr(args, "init_from", None)
    decoder_only = getattr(args, "decoder_only", False)
    if init_from is not None and not decoder_only:
        return _fail("--init-from trains on from a model's autoencoder only with --decoder-only (a new encoder "
                     "would change the latent space its denoiser was trained in)")
    if init_from is not None and not (Path(init_from) / "model_index.json").is_file():
        return _fail(f"--init-from {init_from} is not a model folder (it has no model_index.json)")

    def go():
        from backend.training import data
        from backend.training.vae import VaeTrainConfig, train_vae

        d = data.ensure_prepared(args.data_dir)
        work = Path(args.work_dir or _default_work_dir())
        if init_from is not None:
            from backend.training.package import unpack_folder

            if (work / "vae_ckpt.pt").is_file() and not args.fresh:
                return _fail(f"{work} holds an autoencoder checkpoint to resume: add --fresh to start from "
                             f"{init_from} instead, or choose another --work-dir")
            unpack_folder(Path(init_from), work)
        cfg = VaeTrainConfig(data_dir=d, work_dir=work, preset=args.preset,
                             minutes=args.minutes, max_steps=args.steps, batch=args.batch, crop=args.crop,
                             device=args.device, resume=not args.fresh, decoder_only=decoder_only)
        if args.lr:
            cfg.lr = args.lr
        train_vae(cfg)
    return _run(go)


def cmd_train_unet(args) -> int:
    bad = _positive(args, "minutes", "steps", "batch", "resolution", "lr")
    if bad:
        return _fail(bad)
    if args.pair_bank is not None and args.pair_bank < 0:
        return _fail(f"--pair-bank must be 0 or more, got {args.pair_bank}")

    def go():
        from backend.training.package import DEFAULT_MODEL_DIR, build_folder, unpack_folder

        out = args.out or DEFAULT_MODEL_DIR
        if args.package_from:
            if not Path(args.package_from).is_dir():
                return _fail(f"no such folder: {args.package_from}")
            build_folder(args.package_from, out)
            print("now run: python main.py evaluate --write-card")
            return 0
        if args.minutes is None and args.steps is None:
            return _fail("give a budget: --minutes N and/or --steps N (or --package-from DIR)")
        from backend.training import data
        from backend.training.unet import UnetTrainConfig, train_unet

        d = data.ensure_prepared(args.data_dir)
        work = args.work_dir or _default_work_dir()
        if args.init_from is not None:
            if not (Path(args.init_from) / "model_index.json").is_file():
                return _fail(f"--init-from {args.init_from} is not a model folder (it has no model_index.json)")
            if (Path(work) / "unet_ckpt.pt").is_file() and not args.fresh:
                return _fail(f"{work} holds a UNet checkpoint to resume: add --fresh to start from "
                             f"{args.init_from} instead, or choose another --work-dir")
            unpack_folder(Path(args.init_from), Path(work))
        cfg = UnetTrainConfig(data_dir=d, work_dir=work, preset=args.preset, minutes=args.minutes,
                              max_steps=args.steps, batch=args.batch, resolution=args.resolution,
                              device=args.device, resume=not args.fresh)
        from backend.training.loop import pick_device

        on_cuda = pick_device(args.device).type == "cuda"
        cfg.bank_size = args.bank or (4000 if on_cuda else 192)
        cfg.pair_bank = args.pair_bank if args.pair_bank is not None else (0 if on_cuda else 4 * cfg.bank_size)
        cfg.init = args.init_from is not None
        if args.lr:
            cfg.lr = args.lr
        train_unet(cfg)
        if not args.no_package:
            build_folder(work, out)
    return _run(go)


def cmd_train_preview(args) -> int:
    return _train_head(args, "preview")


def cmd_train_encode_head(args) -> int:
    return _train_head(args, "encode")


def _train_head(args, which: str) -> int:
    """Fits one of a model folder's heads to its VAE on training crops and writes it there: ``which`` is
    "preview" (the tiny decoder) or "encode" (the tiny encoder)."""
    bad = _positive(args, "steps", "minutes", "crops")
    if bad:
        return _fail(bad)

    def go():
        import torch

        from backend.training import data
        from backend.training.package import DEFAULT_MODEL_DIR, write_card

        if which == "preview":
            from backend.training.preview_head import PreviewHeadConfig as Config
            from backend.training.preview_head import save_head, train_preview_head as train
        else:
            from backend.training.encode_head import EncodeHeadConfig as Config
            from backend.training.encode_head import save_encode_head, train_encode_head as train

        model = Path(args.model or DEFAULT_MODEL_DIR)
        if not (model / "model_index.json").is_file() or not (model / "vae").is_dir():
            return _fail(f"no model folder with a VAE at {model}")
        from diffusers import AutoencoderKL

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        vae = AutoencoderKL.from_pretrained(str(model / "vae")).to(device)
        d = data.ensure_prepared(args.data_dir)
        config = Config(crops=args.crops, steps=args.steps, minutes=args.minutes)
        crops = data.make_crop_bank(data.load_photos(d, "train"), config.crops, config.size, seed=config.seed)
        state = train(vae, crops.permute(0, 2, 3, 1).numpy(), config, device=device)
        path = save_head(state, model) if which == "preview" else save_encode_head(state, model, vae)
        print(f"{which} head written to {path}")
        if (model / "README.md").is_file() and (model / "latent_studio.json").is_file():
            write_card(model)
    return _run(go)


def cmd_evaluate(args) -> int:
    bad = _positive(args, "crops", "steps")
    if bad:
        return _fail(bad)

    def go():
        from backend.training import data
        from backend.training.evaluate import run
        from backend.training.package import DEFAULT_MODEL_DIR, update_card_metrics

        model = args.model or DEFAULT_MODEL_DIR
        if not (Path(model) / "model_index.json").is_file():
            return _fail(f"no model folder at {model} (train it: python main.py train-vae / train-unet)")
        d = data.ensure_prepared(args.data_dir)
        sheet = args.sheet or Path(d).parent / "evaluation" / "contact_sheet.png"
        metrics = run(Path(model), d, sheet, n_inpaint=args.crops, steps=args.steps, device=args.device or "cpu",
                      json_path=args.json, img2img=not args.no_img2img)
        if args.write_card:
            update_card_metrics(Path(model), metrics)
            print(f"metrics written to {Path(model) / 'README.md'}")
    return _run(go)


def main_package(src: Path, dest: Path | None = None) -> int:
    """tools/package_gpu_result.py: the same as `train-unet --package-from SRC`."""
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    ns = parser.parse_args(["train-unet", "--package-from", str(src)] + (["--out", str(dest)] if dest else []))
    return cmd_train_unet(ns)
