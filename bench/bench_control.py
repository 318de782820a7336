"""ControlNet benchmark (issue 15, part 4). Ratios measured side by side in one run.

    python bench/bench_control.py            # the tiny random SD 1.5-family model, 256², 4 steps (a minute)
    python bench/bench_control.py --full     # SD 1.5-size random weights (UNet 860M, ControlNet 361M), 256², 4 steps

Figures:
  engine img2img job with one ControlNet / the raw diffusers ControlNet img2img call
      (same model, ControlNet, control image, size, steps, sampler, seed; interleaved, median)   goal <= 1.03
  parameters in memory: the base model alone; with two ControlNets loaded; with an IP-Adapter and its image
  encoder on top (weights shared across operations: every pipeline is the base's, made with from_pipe)

The engine job is what the app runs: the request's ControlNet resolved and checked, taken from the model's
cache, its control image made, the region diffused through the shared core (previews every 0.1 s, as the
app draws them), composited. The raw call is the same pipeline object (the model's ControlNet variant)
called once with the same arguments. With ``--full`` the model's latent_studio.json sets its working size to
the bench's (``native_resolution``), so both work at exactly that size.
"""
from __future__ import annotations

import argparse
import json
import queue
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets up paths and the environment)
from _common import full_size_folder, report, run_job, gradient as picture

import numpy as np



def scribble(size, offset=0):
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 3] = 255
    img[size // 8 + offset: size // 8 + offset + 3, :, :3] = 255
    img[:, size // 3 + offset: size // 3 + offset + 3, :3] = 255
    img[size // 2:, size // 2:, :3] = 255
    return img


def full_controlnet(target: Path, seed: int) -> Path:
    """An SD 1.5 ControlNet v1.1-size ControlNet with random weights (fp16 on disk), from the shipped config."""
    import torch
    from diffusers import ControlNetModel

    if (target / "config.json").is_file():
        return target
    torch.manual_seed(seed)
    config = ControlNetModel.load_config(_common.ROOT / "resources" / "model-configs" / "controlnet-sd15")
    net = ControlNetModel.from_config(config)
    with torch.no_grad():  # its zero convolutions made non-zero: a ControlNet that steers
        for p in net.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    net.half().save_pretrained(target, safe_serialization=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="SD 1.5-size random weights instead of the tiny model")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from PIL import Image

    from backend.engine import Engine
    from backend.ops.img2img import Img2ImgRequest
    from backend.samplers import make_scheduler
    from backend.steering import Control
    from backend.steering import control as ctl

    tmp = Path(tempfile.mkdtemp(prefix="bench-control-"))
    try:
        started = time.perf_counter()
        if args.full:
            model_dir = full_size_folder(tmp / "sd15-random", "sd15", torch.float16)
            (model_dir / "latent_studio.json").write_text(json.dumps({"native_resolution": args.size}))
            nets = [full_controlnet(tmp / f"controlnet-{k}", k) for k in (1, 2)]
            what = f"SD 1.5-size random model (UNet 860M; ControlNets 361M, the v1.1 config), {args.device}"
        else:
            import tiny_models
            import tiny_steering_control as tsc

            model_dir = tiny_models.save_diffusers_folder(tmp / "tiny-sd15", "sd15", 4)
            nets = [tsc.save_controlnet_folder(tmp / f"controlnet-{k}", "sd15", k) for k in (1, 2)]
            what = f"tiny random SD 1.5-family model (UNet 32/64 channels), {args.device}"
            if args.size != 256:
                (model_dir / "latent_studio.json").write_text(json.dumps({"native_resolution": args.size}))
        print(f"# {what}; {args.size}², {args.steps} steps, dpmpp_2m, CFG 7, {args.threads} threads; "
              f"made in {time.perf_counter() - started:.0f} s", flush=True)

        events = queue.Queue()
        engine = Engine(events.put, device=args.device, threads=args.threads)  # previews as the app: every 0.1 s
        size, steps = args.size, args.steps
        control = Control(str(nets[0]), scribble(size), "scribble", label="lines")
        request = Img2ImgRequest(image=picture(size), model=str(model_dir), prompt="a house by a lake", steps=steps,
                                 strength=1.0, seed=1, guidance=7.0, sampler="dpmpp_2m", controls=(control,))
        first = run_job(engine, events, request).images[0]  # loads the model and the ControlNet
        assert first.parameters["Size"] == f"{size}x{size}", first.parameters["Size"]

        model = engine._models.get(str(model_dir))
        net = ctl.load(model, ctl.resolve(str(nets[0])))  # the engine's own, from the model's cache
        pipe = model.pipeline("img2img", net)  # the variant the engine ran
        assert pipe.unet is model.inpaint.unet  # weights shared with the base pipelines
        init = Image.fromarray(picture(size)[..., :3])
        hint = Image.fromarray(ctl.lines(scribble(size)))

        def raw():
            pipe.scheduler = make_scheduler("dpmpp_2m", model.scheduler_config)
            # (the img2img ControlNet pipeline's default strength is 0.8: the engine passes the control's)
            out = pipe(prompt="a house by a lake", image=init, control_image=hint, strength=1.0, height=size,
                       width=size, num_inference_steps=steps, guidance_scale=7.0, controlnet_conditioning_scale=1.0,
                       generator=torch.Generator("cpu").manual_seed(1), output_type="np").images[0]
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        raw_image = (np.clip(raw(), 0, 1) * 255 + 0.5).astype(np.uint8)
        same = np.array_equal(raw_image, first.image[..., :3])
        # Wall time, and this process's CPU time (all its threads; only one of the two runs at a time), which
        # other processes' load on a shared machine disturbs less.
        t_raw, t_job, c_raw, c_job = [], [], [], []
        for _ in range(args.repeat):  # interleaved: load from elsewhere hits both alike
            t, c = time.perf_counter(), time.process_time()
            raw()
            t_raw.append(time.perf_counter() - t)
            c_raw.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            run_job(engine, events, request)
            t_job.append(time.perf_counter() - t)
            c_job.append(time.process_time() - c)
        raw_s, job_s = float(np.median(t_raw)), float(np.median(t_job))
        report("raw diffusers ControlNet img2img call, s", raw_s, "-")
        report("engine job with one ControlNet, s", job_s, "-")
        report("engine job / raw call, CPU time", float(np.median(c_job)) / float(np.median(c_raw)), "<= 1.03")
        print(f"  (the engine's image is the raw call's, bit-exact: {same}; wall s raw "
              f"{', '.join(f'{t:.2f}' for t in t_raw)}; engine {', '.join(f'{t:.2f}' for t in t_job)}; CPU s raw "
              f"{', '.join(f'{t:.2f}' for t in c_raw)}; engine {', '.join(f'{t:.2f}' for t in c_job)})")

        def weights(modules) -> int:
            return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())

        base = weights([model.inpaint.unet, model.inpaint.vae, model.inpaint.text_encoder])
        two = Img2ImgRequest(image=picture(size), model=str(model_dir), steps=1, strength=1.0, seed=1, controls=(
            control, Control(str(nets[1]), picture(size), "canny", 0.5)))
        run_job(engine, events, two)
        loaded = list(model.controlnets["nets"].values())
        assert len(loaded) == 2
        both = base + weights(loaded)
        report("parameters: base model alone, MB", base / 2**20, "-")
        report("parameters: base + two ControlNets loaded, MB", both / 2**20, "-")
        report("parameters: base + two ControlNets / base alone", both / base, "reported")
        # And an IP-Adapter with its image encoder (ViT-H-size with --full) on top of the two ControlNets.
        import tiny_steering_reference as tsr
        from bench_reference import VIT_H, encoder_folder

        from backend.steering import Reference

        adapter = tsr.save_adapter(tmp / "ip" / "ip-adapter.safetensors", model.inpaint.unet,
                                   clip_dim=VIT_H["projection_dim"] if args.full else tsr.ENCODER_HIDDEN)
        encoder_folder(tmp / "ip" / "image_encoder", args.full)
        run_job(engine, events, two.replace(references=(Reference(picture(size), 0.8),), ip_adapter=str(adapter)))
        unet = model.inpaint.unet
        ip = [unet.encoder_hid_proj] + [p for p in unet.attn_processors.values() if hasattr(p, "to_k_ip")]
        everything = both + weights(ip) + weights([model.ip_adapter_state.image_encoder])
        report("parameters: base + two ControlNets + IP-Adapter (with its image encoder), MB", everything / 2**20, "-")
        report("parameters: base + two ControlNets + IP-Adapter / base alone", everything / base, "reported")
        engine.shutdown()
        cpu = float(np.median(c_job)) / float(np.median(c_raw))
        print(f"control: engine job / raw diffusers = {job_s / raw_s:.3f}x (target <= 1.03; wall time, median of "
              f"{args.repeat}; fastest runs {min(t_job) / min(t_raw):.3f}x; CPU time {cpu:.3f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
