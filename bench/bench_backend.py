"""Backend benchmarks (issue 2). Prints ratios measured side by side in one run.

    python bench/bench_backend.py                 # tiny model, CPU (a few minutes)
    python bench/bench_backend.py --full --device cuda   # SD 1.5-size random weights, fp16, 512²

Figures:
  engine job / raw diffusers call (same model, size, steps, seed)    goal <= 1.03
  preview cost / step time                                          goal <= 0.05
  inpaint 128² hole on 8192² / on 512² image                        goal <= 1.2
  cancel latency in steps                                           goal <= 1
  resident memory, inpaint + img2img loaded / one loaded            goal <= 1.1
"""
from __future__ import annotations

import argparse
import queue
import subprocess
import sys
import tempfile

import time
from pathlib import Path

import _common  # noqa: F401  (sets up paths and the environment)
from _common import ROOT, full_size_folder, median_time, report, run_job
from _common import gradient as picture

import numpy as np


def engine_vs_raw(model_dir, device, dtype, size, steps):
    import torch
    from PIL import Image

    from backend.engine import Engine
    from backend.ops.inpaint import InpaintRequest

    events = queue.Queue()
    engine = Engine(events.put, device=device, preview_interval=0.0)
    img = picture(size)
    mask = np.zeros((size, size), np.uint8)
    q = size // 4
    mask[q:3 * q, q:3 * q] = 255
    # Padding large enough that the crop is the whole picture: the engine works at size × size,
    # exactly like the raw call.
    req = InpaintRequest(image=img, mask=mask, model=str(model_dir), steps=steps, seed=1, grow=0, feather=8,
                         padding=size, guidance=7.0, sampler="dpmpp_2m")
    run_job(engine, events, req)  # loads the model, fits the previewer
    model = engine._models.get(str(model_dir))
    pipe = model.inpaint
    from backend.samplers import make_scheduler

    init = Image.fromarray(img[..., :3])
    mask_img = Image.fromarray(mask)

    def raw():
        pipe.scheduler = make_scheduler("dpmpp_2m", model.scheduler_config)
        pipe(prompt="", image=init, mask_image=mask_img, height=size, width=size, strength=1.0,
             num_inference_steps=steps, guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(1),
             output_type="np")
        if device == "cuda":
            torch.cuda.synchronize()

    def job():
        run_job(engine, events, req)

    # Interleave so drift (thermal, other load) hits both alike.
    t_raw, t_job = [], []
    for _ in range(5):
        t_raw.append(median_time(raw, repeat=1, warmup=0))
        t_job.append(median_time(job, repeat=1, warmup=0))
    raw_s, job_s = float(np.median(t_raw)), float(np.median(t_job))
    report(f"raw diffusers call ({size}², {steps} steps), s", raw_s, "-")
    report("engine job, s", job_s, "-")
    report("engine job / raw diffusers call", job_s / raw_s, "<= 1.03")

    # Preview cost: the exact per-step preview work, on latents of this size.
    previewer = model.previewer()
    latents = torch.randn(1, 4, size // 8, size // 8, device=pipe.device, dtype=pipe.unet.dtype)
    alpha = torch.full((size, size), 255, dtype=torch.uint8, device=pipe.device)

    def one_preview():  # exactly what the core does at each step
        previewer.render(latents, (size, size), alpha)

    preview_s = median_time(one_preview, repeat=20, warmup=2)
    step_s = raw_s / steps
    report("preview, ms", preview_s * 1000, "-")
    report("preview cost / step time", preview_s / step_s, "<= 0.05")
    return engine, events


def big_vs_small(engine, events, model_dir, steps):
    from backend.ops.inpaint import InpaintRequest

    def hole_job(size):
        doc = picture(size) if size <= 512 else np.full((size, size, 4), 200, np.uint8)
        mask = np.zeros((size, size), np.uint8)
        c = size // 2
        mask[c - 64:c + 64, c - 64:c + 64] = 255

        def run():
            req = InpaintRequest.from_document(doc, mask, model=str(model_dir), steps=steps, seed=3)
            result = run_job(engine, events, req)
            for item in result.images:  # paste back into the document, as the app does
                x, y, w, h = item.rect
                doc[y:y + h, x:x + w] = item.image
        return run

    run_small, run_big = hole_job(512), hole_job(8192)
    run_small()  # warm up
    smalls, bigs = [], []
    for _ in range(3):  # interleaved, so load from elsewhere hits both alike
        smalls.append(median_time(run_small, repeat=1, warmup=0))
        bigs.append(median_time(run_big, repeat=1, warmup=0))
    small, big = float(np.median(smalls)), float(np.median(bigs))
    report("inpaint 128² hole on 512², s", small, "-")
    report("inpaint 128² hole on 8192², s", big, "-")
    report("inpaint 128² hole: 8192² / 512²", big / small, "<= 1.2")


def cancel_latency(engine, events, model_dir, size, steps):
    from backend.events import Cancelled, Progress
    from backend.ops.inpaint import InpaintRequest

    img = picture(size)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    lat_steps, lat_time = [], []
    for cancel_at in (2, 3, 4):
        req = InpaintRequest(image=img, mask=mask, model=str(model_dir), steps=steps, seed=5, padding=size)
        job = engine.submit(req)
        asked = None
        step_times = []
        last_step, t_prev = 0, None
        while True:
            e = events.get()
            if e.job_id != job:
                continue
            if isinstance(e, Progress) and e.step > 0:
                now = time.perf_counter()
                if t_prev is not None:
                    step_times.append(now - t_prev)
                t_prev = now
                last_step = e.step
                if e.step == cancel_at and asked is None:
                    asked = (time.perf_counter(), e.step)
                    engine.cancel(job)
            if isinstance(e, Cancelled):
                done = time.perf_counter()
                break
        lat_steps.append(last_step - asked[1])
        step = float(np.median(step_times)) if step_times else float("nan")
        lat_time.append((done - asked[0]) / step)
    report("cancel latency, whole steps run after the request", max(lat_steps), "<= 1")
    report("cancel latency, time / step time", max(lat_time), "<= 1")


MEMORY_PROBE = r"""
import sys, os
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from _common import rss_mb
from backend.models import ModelManager
import torch
m = ModelManager(device="cpu").get({model!r})

def touch(pipe):  # weights load lazily (memory-mapped): read every one so it is resident
    with torch.no_grad():
        for name in ("unet", "vae", "text_encoder"):
            for p in getattr(pipe, name).parameters():
                p.sum()

touch(m.inpaint)
one = rss_mb()
touch(m.img2img)  # built with from_pipe: the same tensors
both = rss_mb()
print(one, both)
"""


def memory(model_dir):
    code = MEMORY_PROBE.format(root=str(ROOT), bench=str(ROOT / "bench"), model=str(model_dir))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    one, both = map(float, out.split()[-2:])
    report("resident memory, inpaint loaded, MB", one, "-")
    report("resident memory, inpaint + img2img loaded, MB", both, "-")
    report("resident memory, both / one", both / one, "<= 1.1")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="SD 1.5-size random weights instead of the tiny model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", default="", help="comma list: speed,big,cancel,memory")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(","))) or {"speed", "big", "cancel", "memory"}
    import torch

    torch.set_num_threads(2 if args.device == "cpu" else torch.get_num_threads())
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-"))
    if args.full:
        model_dir = full_size_folder(tmp / "sd15-inpainting-random", "sd15-inpainting", torch.float16)
        size = 512
        label = "SD 1.5-inpainting size, random weights"
    else:
        import tiny_models

        model_dir = tiny_models.save_diffusers_folder(tmp / "tiny", "sd15", 4)
        size = 256
        label = "tiny random SD 1.5-family model"
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    print(f"# {label}, device {args.device}, {size}², {args.steps} steps, torch {torch.__version__}")
    if torch.cuda.is_available() and args.device == "cuda":
        print(f"# GPU: {torch.cuda.get_device_name()}")
    engine = events = None
    if "speed" in only:
        engine, events = engine_vs_raw(model_dir, args.device, dtype, size, args.steps)
    if engine is None:
        from backend.engine import Engine

        events = queue.Queue()
        engine = Engine(events.put, device=args.device, preview_interval=0.0)
    if "big" in only:
        big_vs_small(engine, events, model_dir, args.steps)
    if "cancel" in only:
        cancel_latency(engine, events, model_dir, size, max(args.steps, 10))
    engine.shutdown()
    if "memory" in only:
        memory(model_dir if args.full else full_size_folder(tmp / "sd15-fp32", "sd15-inpainting"))


if __name__ == "__main__":
    main()
