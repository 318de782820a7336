"""Speed on GPUs and small GPUs (issue 19), every figure measured in one run.

    python bench/bench_gpu.py                 # CPU (or any device) at small sizes: the embedded model, 256²
    python bench/bench_gpu.py --full          # CUDA: SD 1.5 inpaint 512² and SDXL 1024², random weights
    bash tools/gpu_bench.sh                   # the unattended GPU session: --full, everything printed

Sections (each prints its figures as it goes; a section that fails prints one line and the rest go on):

* ``unet``: UNet steps per second (one call with classifier-free guidance, batch 2) and MFU: the FLOPs of
  one call from ``torch.utils.flop_counter.FlopCounterMode`` / the step time / the device's peak
  (:data:`PEAKS`, dense fp16 with fp32 accumulation; on a CPU the peak is measured: a 2048² fp32 matmul);
  fast path off and on.
* ``engine``: the engine's inpaint job / the raw diffusers call (the stock pipeline in the same dtype,
  PyTorch SDPA, no compile), same model, steps, size, sampler, alternated, medians.
* ``first-job`` (CUDA): load + first job in a fresh process with an empty compile cache, then again with
  the cache it left (``TORCHINDUCTOR_CACHE_DIR``).
* ``memory`` (CUDA): peak ``torch.cuda.max_memory_allocated`` of one job per memory-plan mode
  (full, model offload, sequential offload, + VAE tiling), through ``backend.memory_plan.apply``; and
  what the planner chooses for 4, 8 and 24 GB free.
* ``cpu``: the embedded model, 256² inpaint, fast path on vs off, side by side (alternated, medians); then
  the fast path with OpenMP's opt-in short spin (``backend/threads.py``) against the stock one
  (fast path off, ``OMP_WAIT_POLICY=PASSIVE`` alone), each in its own process, alternated.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common  # noqa: F401  (paths, OpenMP defaults)
from _common import ROOT, full_size_folder

PEAKS = {  # dense fp16 tensor FLOP/s (fp32 accumulate), from the vendors' data sheets
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12,
}


def device_peak(device) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAKS.items():
            if key.lower() in name.lower():
                return peak, f"{name}: {peak / 1e12:.0f} TFLOP/s fp16 dense (data sheet)"
        return float("nan"), f"{name}: peak unknown (add it to PEAKS)"
    a = torch.randn(2048, 2048)
    a @ a
    t = time.perf_counter()
    for _ in range(5):
        a @ a
    peak = 5 * 2 * 2048**3 / (time.perf_counter() - t)
    return peak, f"CPU, {torch.get_num_threads()} threads: {peak / 1e9:.0f} GFLOP/s fp32 (measured, 2048² matmul)"


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat=5, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def line(name, value, unit="", note=""):
    print(f"  {name:<52} {value:>10}{unit}  {note}".rstrip(), flush=True)


# --- models ---------------------------------------------------------------------------------------------

def model_folders(args) -> list[tuple[str, str, int]]:
    """(label, model reference, side) of the models this run measures."""
    if not args.full:
        return [("embedded", "", args.side)]
    import torch

    cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / "latent-studio-bench"
    wanted = set(args.models.split(","))
    out = []
    if "sd15" in wanted:
        out.append(("SD 1.5 inpaint", str(full_size_folder(cache / "sd15-inpainting", dtype=torch.float16)), 512))
    if "sdxl" in wanted:
        out.append(("SDXL", str(sdxl_folder(cache / "sdxl-base")), 1024))
    return out


def sdxl_folder(target: Path) -> Path:
    """SDXL base with random weights (fp16) at its real size, from the shipped configs."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if (target / "model_index.json").is_file():
        return target
    src = ROOT / "resources" / "model-configs" / "sdxl-base"
    torch.manual_seed(0)
    pipe = StableDiffusionXLInpaintPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(src / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(src / "text_encoder")),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(src / "text_encoder_2")),
        tokenizer=CLIPTokenizer.from_pretrained(src / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(src / "tokenizer_2"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(src / "unet")),
        scheduler=EulerDiscreteScheduler.from_pretrained(src / "scheduler"),
    )
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(target, safe_serialization=True)
    return target


def load(ref: str, device, fast_path: bool, compile: bool | None = None):
    """A LoadedModel through the app's loader, fast path on or off (``compile`` overrides its default)."""
    from backend import fastpath
    from backend.models import ModelManager

    if compile is not None:
        real = fastpath.apply
        fastpath.apply = lambda pipe, dev, **kw: real(pipe, dev, **{**kw, "compile": compile})
    try:
        return ModelManager(device=str(device), fast_path=fast_path).get(ref)
    finally:
        if compile is not None:
            fastpath.apply = real


def request(ref: str, side: int, steps: int, seed: int = 1):
    from backend import InpaintRequest

    img = np.zeros((side, side, 4), np.uint8)
    img[..., :3] = np.linspace(0, 255, side, dtype=np.uint8)[None, :, None]
    img[..., 3] = 255
    mask = np.zeros((side, side), np.uint8)
    mask[side // 8: -side // 8, side // 8: -side // 8] = 255
    return InpaintRequest.from_document(img, mask, model=ref, steps=steps, guidance=7.0, strength=1.0, seed=seed,
                                        prompt="a cat", feather=0, grow=0, padding=side, fill="original")


# --- sections -------------------------------------------------------------------------------------------

def unet_inputs(unet, side, device, dtype):
    import torch

    cfg = unet.config
    n = side // 8
    kw = {}
    if cfg.addition_embed_type == "text_time":
        text = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(2, text, dtype=dtype, device=device),
                                   "time_ids": torch.randn(2, 6, dtype=dtype, device=device)}
    return (torch.randn(2, cfg.in_channels, n, n, dtype=dtype, device=device), torch.tensor(500.0, device=device)), \
        dict(encoder_hidden_states=torch.randn(2, 77, (cfg.encoder_hid_dim or cfg.cross_attention_dim), dtype=dtype, device=device), **kw)


def section_unet(label, ref, side, device, args, peak):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    print(f"== unet: {label}, {side}², batch 2 (classifier-free guidance)", flush=True)
    flops = None
    for fast in (False, True):
        model = load(ref, device, fast)
        unet = model.inpaint.unet
        a, kw = unet_inputs(unet, side, device, model.dtype)
        with torch.no_grad():
            if flops is None:
                counter = FlopCounterMode(display=False)
                with counter:
                    unet(*a, **kw)
                flops = counter.get_total_flops()
                line("FLOPs of one UNet call", f"{flops / 1e12:.3f}", " TFLOP")
            t = timed(lambda: unet(*a, **kw), device, repeat=args.repeat, warmup=2)
        mfu = flops / t / peak
        said = ", ".join(model.fast_path.applied) if model.fast_path else "stock"
        line(f"fast path {'on ' if fast else 'off'}: steps/s", f"{1 / t:.2f}", "/s",
             f"MFU {100 * mfu:.1f} %  ({t * 1000:.1f} ms/step; {said})")
        if model.fast_path and model.fast_path.notes:
            print("   notes:", " ".join(model.fast_path.notes))
        del model, unet
        free(device)


def section_engine(label, ref, side, device, args):
    """The engine's job / the stock pipeline's call: same model, steps, size and sampler."""
    import torch
    from backend.engine import Engine
    from backend.samplers import DEFAULT_SAMPLER, make_scheduler
    from _common import run_job

    print(f"== engine job / raw diffusers: {label}, {side}², {args.steps} steps", flush=True)
    for fast in ([False, True] if args.full else [None]):
        events: queue.Queue = queue.Queue()
        engine = Engine(events.put, device=str(device), preview_interval=0.1, fast_path=fast)
        req = request(ref, side, args.steps)
        try:
            run_job(engine, events, req)  # load (and compile) outside the timing
            sync(device)
            eng = []
            for _ in range(args.repeat_jobs):
                t = time.perf_counter()
                result = run_job(engine, events, req)
                sync(device)
                eng.append(time.perf_counter() - t)
            memory = result.images[0].parameters.get("Memory", "full")
        finally:
            engine.shutdown()
        free(device)
        raw_pipe = raw_pipeline(ref, device)
        raw_pipe.scheduler = make_scheduler(DEFAULT_SAMPLER, dict(raw_pipe.scheduler.config))
        from PIL import Image

        init = Image.fromarray(np.ascontiguousarray(req.image[..., :3]))
        mask = Image.fromarray(req.mask)

        def raw():
            raw_pipe(prompt="a cat", image=init, mask_image=mask, height=side, width=side,
                     num_inference_steps=args.steps, guidance_scale=7.0, strength=1.0,
                     generator=torch.Generator("cpu").manual_seed(1), output_type="np")

        t_raw = timed(raw, device, repeat=args.repeat_jobs, warmup=1)
        del raw_pipe
        free(device)
        t_eng = statistics.median(eng)
        name = {None: "engine", False: "engine, fast path off", True: "engine, fast path on"}[fast]
        line(f"{name} / raw", f"{t_eng / t_raw:.2f}", "×",
             f"(engine {t_eng:.3f} s, raw {t_raw:.3f} s; memory plan: {memory})")


def raw_pipeline(ref, device):
    from diffusers import AutoPipelineForInpainting

    from backend.models import resolve

    import torch

    folder = resolve(ref).path
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # as backend.devices picks it
    pipe = AutoPipelineForInpainting.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def section_first_job(label, ref, side, device, args):
    print(f"== first job (load + compile + job) in a fresh process: {label}, {side}²", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        for which in ("empty compile cache", "with the cache"):
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, LATENT_STUDIO_FAST_PATH="1")
            cmd = [sys.executable, __file__, "--first-job-child", ref, "--side", str(side), "--steps", str(args.steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.child_timeout)
            if out.returncode:
                line(which, "failed", "", out.stderr.strip().splitlines()[-1][:150] if out.stderr.strip() else "")
                continue
            found = [ln for ln in out.stdout.splitlines() if ln.startswith("FIRST-JOB ")]
            if not found:
                line(which, "no figures", "", (out.stdout.strip().splitlines() or [""])[-1][:150])
                continue
            figures = json.loads(found[-1][len("FIRST-JOB "):])
            line(f"{which}: load + first job", f"{figures['first']:.1f}", " s",
                 f"(then a job takes {figures['second']:.2f} s; {figures['said']})")


def first_job_child(args):
    import torch
    from backend.engine import Engine
    from _common import run_job

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    events: queue.Queue = queue.Queue()
    states = []
    engine = Engine(lambda e: (states.append(e) if type(e).__name__ == "ModelState" else events.put(e)),
                    device=str(device))
    req = request(args.first_job_child, args.side, args.steps)
    t = time.perf_counter()
    engine.preload(args.first_job_child)
    run_job(engine, events, req)
    sync(device)
    first = time.perf_counter() - t
    t = time.perf_counter()
    run_job(engine, events, req)
    sync(device)
    second = time.perf_counter() - t
    engine.shutdown()
    said = next((s.message for s in states if s.state == "ready"), "")
    print("FIRST-JOB " + json.dumps({"first": first, "second": second, "said": said}), flush=True)


def section_memory(label, ref, side, device, args):
    import torch
    from backend import memory_plan
    from backend.upscale.memory import GB

    print(f"== peak GPU memory per memory-plan mode: {label}, {side}², {args.memory_steps} steps", flush=True)
    model = load(ref, device, False)
    pipe = model.inpaint
    sizes = memory_plan.component_bytes(pipe)
    for free_gb in (4, 8, 24):
        try:
            plan = memory_plan.choose(sizes, side, side, device="cuda", free=free_gb * GB, family=model.family)
            line(f"the planner with {free_gb} GB free", plan.mode + (" + VAE tiling" if plan.vae_tiling else ""))
        except Exception as exc:
            line(f"the planner with {free_gb} GB free", "refuses", "", str(exc)[:120])
    from PIL import Image

    req = request(ref, side, args.memory_steps)
    init, mask = Image.fromarray(np.ascontiguousarray(req.image[..., :3])), Image.fromarray(req.mask)
    modes = [("full", False), ("full", True), ("model offload", False), ("model offload", True),
             ("sequential offload", True), ("full", False)]
    for mode, tiling in modes:
        plan = memory_plan.JobMemoryPlan(mode, tiling, 0, 0, device="cuda")
        memory_plan.apply(model, pipe, plan)
        if tiling:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()
        free(device)
        torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        pipe(prompt="a cat", image=init, mask_image=mask, height=side, width=side,
             num_inference_steps=args.memory_steps, guidance_scale=7.0, strength=1.0,
             generator=torch.Generator("cpu").manual_seed(1), output_type="np")
        sync(device)
        took = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated(device)
        line(f"{plan.parameter}: peak", f"{peak / GB:.2f}", " GB", f"({took:.1f} s for the job)")
    del model, pipe
    free(device)


def section_cpu(args):
    """The embedded model, 256² inpaint: fast path on vs off, alternated in one run."""
    import torch
    from backend.engine import Engine
    from _common import run_job

    print(f"== CPU: embedded model, {args.side}² inpaint, {args.steps} steps, {torch.get_num_threads()} threads, "
          "fast path off vs on", flush=True)
    engines = {}
    queues = {}
    for fast in (False, True):
        queues[fast] = queue.Queue()
        engines[fast] = Engine(queues[fast].put, device="cpu", threads=args.threads, fast_path=fast)
    req = request("", args.side, args.steps)
    times = {False: [], True: []}
    try:
        for fast in (False, True):
            run_job(engines[fast], queues[fast], req)  # load outside the timing
        for _ in range(args.repeat_jobs):
            for fast in (False, True):
                t = time.perf_counter()
                run_job(engines[fast], queues[fast], req)
                times[fast].append(time.perf_counter() - t)
    finally:
        for e in engines.values():
            e.shutdown()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    line("fast path off: job", f"{off:.3f}", " s")
    line("fast path on: job", f"{on:.3f}", " s")
    line("speed-up (off / on)", f"{off / on:.2f}", "×", "goal ≥ 1.3×")
    cpu_processes(args)


STOCK_CPU = {"LATENT_STUDIO_FAST_PATH": "0", "GOMP_SPINCOUNT": "0"}  # OMP_WAIT_POLICY=PASSIVE alone
OURS_CPU = {"LATENT_STUDIO_FAST_PATH": "1", "GOMP_SPINCOUNT": "20000"}  # the opt-in spin of backend/threads.py


def cpu_processes(args):
    """The fast CPU setup against the stock one, each in its own process (OpenMP reads its spin count once,
    when torch loads): fast path and the opt-in ``GOMP_SPINCOUNT=20000`` (for an otherwise idle machine: it
    slows torch down when another process wants the cores, see backend/threads.py) vs fast path off and
    ``OMP_WAIT_POLICY=PASSIVE`` alone. Processes alternate, two of each; each loads the model, runs one job untimed, then times
    ``--repeat-jobs`` jobs."""
    print(f"== CPU, whole setup in separate processes: embedded model, {args.side}² inpaint, {args.steps} steps, "
          f"{args.threads} threads: stock (fast path off, PASSIVE threads) vs fast path + opt-in GOMP_SPINCOUNT=20000", flush=True)
    times = {"stock": [], "ours": []}
    for _ in range(2):
        for name, env in (("stock", STOCK_CPU), ("ours", OURS_CPU)):
            cmd = [sys.executable, __file__, "--cpu-child", "--side", str(args.side), "--steps", str(args.steps),
                   "--threads", str(args.threads), "--repeat-jobs", str(args.repeat_jobs)]
            out = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True,
                                 timeout=args.child_timeout)
            found = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode or not found:
                print(f"  {name} process failed: {(out.stderr or out.stdout).strip()[-300:]}")
                return
            times[name] += json.loads(found[-1])["times"]
    stock, ours = statistics.median(times["stock"]), statistics.median(times["ours"])
    line("stock CPU setup: job", f"{stock:.3f}", " s")
    line("fast path + spin: job", f"{ours:.3f}", " s")
    line("speed-up (stock / ours)", f"{stock / ours:.2f}", "×", "goal ≥ 1.3×")


def cpu_child(args):
    """One process of :func:`cpu_processes`: prints {"times": [seconds per job]}."""
    from backend.engine import Engine
    from _common import run_job

    events = queue.Queue()
    engine = Engine(events.put, device="cpu", threads=args.threads)
    req = request("", args.side, args.steps)
    try:
        run_job(engine, events, req)
        times = []
        for _ in range(args.repeat_jobs):
            t = time.perf_counter()
            run_job(engine, events, req)
            times.append(time.perf_counter() - t)
    finally:
        engine.shutdown()
    print(json.dumps({"times": times}), flush=True)


def free(device):
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="CUDA: SD 1.5 inpaint 512² and SDXL 1024², random weights")
    p.add_argument("--models", default="sd15,sdxl", help="with --full: sd15, sdxl or both (comma-separated)")
    p.add_argument("--only", default="", help="comma-separated sections: unet,engine,first-job,memory,cpu")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--steps", type=int, default=None, help="default: 20 with --full, 4 otherwise")
    p.add_argument("--memory-steps", type=int, default=4)
    p.add_argument("--repeat", type=int, default=None, help="UNet calls timed (default 20 on CUDA, 3 on a CPU)")
    p.add_argument("--repeat-jobs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="", help="where the random-weight folders are kept")
    p.add_argument("--child-timeout", type=int, default=420)
    p.add_argument("--first-job-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cpu-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps or (20 if args.full else 4)
    import torch

    torch.set_num_threads(args.threads) if not torch.cuda.is_available() else None
    if args.first_job_child is not None:
        return first_job_child(args)
    if args.cpu_child:
        return cpu_child(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.repeat = args.repeat or (20 if device.type == "cuda" else 3)
    if args.full and device.type != "cuda":
        p.error("--full needs a CUDA GPU")
    only = set(filter(None, args.only.split(","))) or {"unet", "engine", "first-job", "memory", "cpu"}
    from backend.engine import _quiet_libraries

    _quiet_libraries()
    peak, peak_said = device_peak(device)
    print(f"bench_gpu on {peak_said}; torch {torch.__version__}", flush=True)
    for label, ref, side in model_folders(args):
        for name, fn in (("unet", lambda: section_unet(label, ref, side, device, args, peak)),
                         ("engine", lambda: section_engine(label, ref, side, device, args)),
                         ("first-job", lambda: section_first_job(label, ref, side, device, args)),
                         ("memory", lambda: section_memory(label, ref, side, device, args))):
            if name not in only or (name in ("first-job", "memory") and device.type != "cuda"):
                continue
            try:
                fn()
            except Exception as exc:  # one section's failure is one line; the others still run
                print(f"  {name} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", flush=True)
            free(device)
    if "cpu" in only and device.type == "cpu":
        section_cpu(args)


if __name__ == "__main__":
    main()
