"""LoRA switching between jobs (issue 15): what changing the LoRA set costs a job, on an SD 1.5-size model.

    python bench/bench_lora.py                 # CPU: SD 1.5-size random weights, 64² jobs of one step
    python bench/bench_lora.py --device cuda --size 512

The model is SD 1.5's architecture (resources/model-configs/sd15) with random weights, built once in
memory: the engine's loader (``backend.models._load_pipeline``) is replaced by one that returns it and
counts the calls, so the figures count every base-model load the engine asks for without writing 4 GB to
disk. Its folder holds only model_index.json and a latent_studio.json whose native resolution is
``--size``, so the jobs run at that size (the switch costs the same at any size; the steps do not).
Two random kohya-layout LoRAs (rank 16 on the UNet's attention, projection and feed-forward layers and on
the text encoder) are loaded through diffusers by the engine's real path.

Timed in one run, interleaved: jobs whose LoRA set is the previous job's (A after A) and jobs that switch
set (A -> B -> A, each file already loaded). Figures:

  lora: switch extra N.NN s (target <= 0.5)   median over the rounds of (switching job - the unchanged
                                               job beside it), and the part of it spent in lora.apply
  base loads                                   the base model loads for the whole run (goal 1)
  lora file loads                              LoRA files read for the whole run (goal 2: each once)
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets up paths and the environment)
from _common import ROOT, gradient as picture

import numpy as np


def build_pipeline(config: Path):
    """SD 1.5-size components with random weights (no weights file), as the engine's inpaint pipeline."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))
    return StableDiffusionInpaintPipeline(
        vae=vae.eval(), text_encoder=text.eval(), tokenizer=CLIPTokenizer.from_pretrained(config / "tokenizer"),
        unet=unet.eval(), scheduler=PNDMScheduler.from_pretrained(config / "scheduler"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: the engine's choice)")
    parser.add_argument("--size", type=int, default=64, help="job size in pixels (default 64)")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds of A, A, B, A (default 6)")
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    import backend.models as models
    from backend import Img2ImgRequest
    from backend.engine import Engine
    from backend.steering import LoraRef

    import tiny_steering_lora as tl

    work = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    try:
        config = ROOT / "resources" / "model-configs" / "sd15"
        folder = work / "models" / "sd15-random"
        folder.mkdir(parents=True)
        shutil.copy(config / "model_index.json", folder / "model_index.json")
        (folder / "latent_studio.json").write_text(json.dumps({"native_resolution": args.size}))
        os.environ["LATENT_STUDIO_MODELS"] = str(work / "models")

        started = time.perf_counter()
        pipe = build_pipeline(config)
        print(f"built SD 1.5-size random model in {time.perf_counter() - started:.1f} s", flush=True)
        base_loads = []

        def load_pipeline(source, dtype, *, allow_pickle, progress):
            base_loads.append(source.name)
            return pipe.to(dtype=dtype), "sd15"

        models._load_pipeline = load_pipeline

        loras = work / "loras"
        sizes = []
        for name, seed in (("set-a", 1), ("set-b", 2)):
            path = tl.save_lora(loras / f"{name}.safetensors",
                                tl.lora_state_dict(pipe, "kohya", rank=args.rank, seed=seed, scale=0.02))
            sizes.append(path.stat().st_size / 2**20)
        print(f"two kohya LoRAs, rank {args.rank}: {sizes[0]:.1f} MB each", flush=True)

        import backend.steering.lora as lora

        apply_times = []
        real_apply = lora.apply

        def timed_apply(*a, **kw):  # the LoRA part of a job: what a switch changes
            t = time.perf_counter()
            try:
                return real_apply(*a, **kw)
            finally:
                apply_times.append(time.perf_counter() - t)

        lora.apply = timed_apply
        events: queue.Queue = queue.Queue()
        engine = Engine(events.put, device=args.device, preview_interval=1e9, threads=torch.get_num_threads())
        sets = {"A": (LoraRef("set-a", 1.0),), "B": (LoraRef("set-b", 0.8),)}

        def job(which: str, into=None) -> float:
            request = Img2ImgRequest(image=picture(args.size), model=str(folder), steps=2, strength=0.5, seed=1,
                                     prompt="a boat on a lake", guidance=1.0, loras=sets[which])
            t = time.perf_counter()
            job_id = engine.submit(request)
            while True:
                e = events.get()
                if e.job_id == job_id and type(e).__name__ in ("Result", "Failed", "Cancelled"):
                    if type(e).__name__ != "Result":
                        raise RuntimeError(getattr(e, "message", e))
                    took = time.perf_counter() - t
                    if into is not None:
                        into[0].append(took)
                        into[1].append(apply_times[-1])
                    return took

        first = job("A")  # loads the base model and LoRA A
        first_b = job("B")  # loads LoRA B
        job("A")
        unchanged, switching = ([], []), ([], [])  # (job seconds, LoRA-apply seconds)
        for _ in range(args.rounds):
            job("A", unchanged)  # A after A
            job("B", switching)  # A -> B  (paired with the job before)
            job("A", switching)  # B -> A  (paired with the job after)
            job("A", unchanged)
        model = engine._models.get(str(folder))
        engine.shutdown()
        same, switch = (statistics.median(x[0]) for x in (unchanged, switching))
        same_apply, switch_apply = (statistics.median(x[1]) for x in (unchanged, switching))
        print(f"first job (base model + LoRA A loaded) {first:.2f} s; first job with B (B read) {first_b:.2f} s")
        print(f"whole job, unchanged LoRA set {same:.3f} s, switching set {switch:.3f} s (medians of "
              f"{len(unchanged[0])}; at {args.size}² with one step): difference {switch - same:+.3f} s")
        print(f"setting the job's LoRAs (steering.lora.apply), unchanged {same_apply * 1000:.1f} ms, switching "
              f"{switch_apply * 1000:.1f} ms")
        # Each switching job against the unchanged one beside it (A, A->B | B->A, A): drift cancels.
        extra = statistics.median(s - u for s, u in zip(switching[0], unchanged[0]))
        print(f"lora: switch extra {extra:.2f} s (target <= 0.5; whole jobs, median of paired differences; "
              f"setting the LoRAs alone {switch_apply - same_apply:.3f} s), base loads {len(base_loads)}, "
              f"lora file loads {model.lora_loads}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
