"""Reference images (IP-Adapter): what a reference costs a job, loading and keeping the adapter, memory.

    python bench/bench_reference.py          # tiny random SD 1.5-family model, tiny adapter and encoder
    python bench/bench_reference.py --full   # SD 1.5-size random weights, an SD 1.5-shaped adapter, a ViT-H encoder

Figures (measured side by side in one run, medians):
  img2img job with one reference / without (same model, size, steps, seed; adapter loaded)
  prepare(): first job (encoder + adapter loaded), a later job (weights set, image encoded), unloading
  parameters: adapter / base model, image encoder / base model; resident memory before and after loading
"""
from __future__ import annotations

import argparse
import queue
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import _common  # noqa: F401  (paths, environment)
from _common import full_size_folder, median_time, report, rss_mb, run_job

import numpy as np

VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, patch_size=14,
             image_size=224, projection_dim=1024, hidden_act="gelu")


def encoder_folder(folder: Path, full: bool) -> Path:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    import tiny_steering_reference as tiny

    if not full:
        return tiny.save_image_encoder(folder)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H)).save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size=224, crop_size=224).save_pretrained(folder)
    return folder


def picture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.dstack([rng.integers(0, 256, (h, w, 3)), np.full((h, w), 255)]).astype(np.uint8)
    return img


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="SD 1.5-size random weights, ViT-H encoder")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    import tiny_models
    import tiny_steering_reference as tiny
    from backend import Img2ImgRequest
    from backend.engine import Engine
    from backend.steering import Reference, reference

    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-ref-"))
    if args.full:
        model_dir = full_size_folder(tmp / "sd15-random", "sd15")
        clip = VIT_H["projection_dim"]
        label = "SD 1.5-size random weights, ViT-H-size encoder"
    else:
        model_dir = tiny_models.save_diffusers_folder(tmp / "tiny", "sd15", 4)
        clip = tiny.ENCODER_HIDDEN
        label = "tiny random SD 1.5-family model"
    adapter = tiny.save_adapter(tmp / "ip" / "ip-adapter.safetensors", tiny.unet_of(model_dir), clip_dim=clip)
    encoder_folder(tmp / "ip" / "image_encoder", args.full)
    print(f"# {label}, CPU ({torch.get_num_threads()} threads), img2img {args.size}², {args.steps} steps at "
          f"strength 1, torch {torch.__version__}")

    events = queue.Queue()
    engine = Engine(events.put, preview_interval=0.0, threads=2)
    img = picture(args.size, args.size, 0)
    common = dict(image=img, model=str(model_dir), steps=args.steps, strength=1.0, guidance=5.0, seed=1)
    plain = Img2ImgRequest(**common)
    steered = Img2ImgRequest(**common, references=[Reference(picture(300, 400, 2), 0.8)], ip_adapter=str(adapter))
    run_job(engine, events, plain)  # the model loaded
    model = engine._models.get(str(model_dir))
    base_params = params(model.inpaint.unet) + params(model.inpaint.vae) + params(model.inpaint.text_encoder)

    # prepare() on its own (the engine idle): first load, kept, unload.
    ctx = SimpleNamespace(check_cancel=lambda: None, stage=lambda text: None)
    before = rss_mb()
    t = time.perf_counter()
    reference.prepare(ctx, model, steered)
    first = time.perf_counter() - t
    after = rss_mb()
    adapter_params = params(model.inpaint.unet.encoder_hid_proj) + sum(
        params(p) for p in model.inpaint.unet.attn_processors.values() if hasattr(p, "to_k_ip"))
    encoder_params = params(model.ip_adapter_state.image_encoder)
    kept = median_time(lambda: reference.prepare(ctx, model, steered), repeat=args.repeat)
    t = time.perf_counter()
    reference.unload(model)
    unload = time.perf_counter() - t

    # Jobs in turns, so that both kinds see the same machine: a steered job right after a plain one
    # (the adapter loaded again), a second steered one (kept), a plain one (unloads), a second plain one.
    reload, with_ref, unloading, without = [], [], [], []
    for _ in range(args.repeat):
        for request, times in ((steered, reload), (steered, with_ref), (plain, unloading), (plain, without)):
            t = time.perf_counter()
            run_job(engine, events, request)
            times.append(time.perf_counter() - t)
    engine.shutdown()
    med = lambda xs: float(np.median(xs))  # noqa: E731
    report("img2img job without reference, s", med(without), "-")
    report("img2img job with one reference (adapter kept), s", med(with_ref), "-")
    report("job with reference / without", med(with_ref) / med(without), "- (encoding + IP attention)")
    report("job with reference right after one without (reloads), s", med(reload), "-")
    report("job without reference right after one with (unloads), s", med(unloading), "-")
    report("prepare(), first job: encoder + adapter loaded, s", first, "-")
    report("prepare(), later job: weights set, image encoded, s", kept, "-")
    report("unload (job without references), s", unload, "-")
    report("adapter parameters, millions", adapter_params / 1e6, "-")
    report("image encoder parameters, millions", encoder_params / 1e6, "-")
    report("adapter / base model parameters", adapter_params / base_params, "-")
    report("adapter + encoder / base model parameters", (adapter_params + encoder_params) / base_params, "-")
    report("resident memory, after / before loading (this process)", after / before, "-")


if __name__ == "__main__":
    main()
