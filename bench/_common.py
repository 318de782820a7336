"""Shared helpers for the benchmark scripts (not a benchmark itself)."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from backend.threads import openmp_defaults  # noqa: E402

openmp_defaults()


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(name: str, value: float, goal: str, unit: str = "") -> None:
    print(f"{name:<58} {value:10.3f}{unit}   goal {goal}", flush=True)


def full_size_folder(target: Path, config: str = "sd15-inpainting", dtype=None) -> Path:
    """A diffusers folder with random weights at the real size of a shipped config."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    src = ROOT / "resources" / "model-configs" / config
    if (target / "model_index.json").is_file():
        return target
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(src / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(src / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(src / "text_encoder"))
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(src / "tokenizer"), unet=unet,
        scheduler=PNDMScheduler.from_pretrained(src / "scheduler"), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype is not None:
        pipe.to(dtype=dtype)
    pipe.save_pretrained(target, safe_serialization=True)
    return target


def run_job(engine, events, request):
    """Submits ``request`` to ``engine`` (whose listener puts events on ``events``) and returns its Result;
    raises RuntimeError with the engine's sentence (and details) when the job fails or is cancelled."""
    job = engine.submit(request)
    while True:
        e = events.get()
        if e.job_id == job and type(e).__name__ in ("Result", "Failed", "Cancelled"):
            if type(e).__name__ != "Result":
                raise RuntimeError(getattr(e, "message", "cancelled") + "\n" + getattr(e, "details", ""))
            return e


def gradient(size: int):
    """A (size, size, 4) opaque colour ramp: red across, green down."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size]
    img = np.empty((size, size, 4), np.uint8)
    img[..., 0] = xx * 255 // (size - 1)
    img[..., 1] = yy * 255 // (size - 1)
    img[..., 2] = 128
    img[..., 3] = 255
    return img
