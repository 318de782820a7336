"""The embedded model's live setting: the fewest steps and the sampler whose img2img figures (evaluate's SSIM
to the input, colour error, the difference two seeds make) stay within 10 % of the 20-step ones, and what the
live path's fast decode (the preview head instead of the VAE decoder) costs against the full decode.

    python bench/eval_live_settings.py [--crops 6] [--strength 0.5] [--painted]

Held-out 256² crops from ``prepare-data``'s eval_crops.npz, two seeds each.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.training.evaluate import EngineModel, mean_colour_error, ssim  # noqa: E402


def crops(n: int) -> tuple[list, str]:
    from backend import paths

    file = paths.cache_dir() / "data" / "eval_crops.npz"
    if file.is_file():
        all_crops = np.load(file)["crops"]
        step = max(1, len(all_crops) // n)
        return [all_crops[i] for i in range(0, len(all_crops), step)][:n], f"{n} held-out crops ({file})"
    raise SystemExit("no prepared held-out crops: run `python main.py prepare-data` first")


def psnr(a, b) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-9))


def figures(model, images, strength, steps, sampler, live, seeds=(0, 1000)):
    sims, colours, diffs, outs, times = [], [], [], [], []
    for i, image in enumerate(images):
        started = time.perf_counter()
        a = model.img2img(image, strength, steps, seeds[0] + i, sampler=sampler, live=live)
        times.append(time.perf_counter() - started)
        b = model.img2img(image, strength, steps, seeds[1] + i, sampler=sampler, live=live)
        sims.append(ssim(image, a))
        colours.append(mean_colour_error(a, image))
        diffs.append(float(np.abs(a.astype(np.float64) - b).mean()))
        outs.append(a)
    return dict(ssim=float(np.mean(sims)), colour=float(np.mean(colours)), seeds=float(np.mean(diffs)),
                ms=1000 * float(np.median(times))), outs


def decode_cost(model, images, strength, steps, sampler) -> None:
    """What the live path's fast decode costs: each live result's latents (and its start's, whose detail it
    keeps) decoded by the preview head and by the VAE decoder, compared."""
    from backend import core, preview

    pipe = model.model.inpaint
    seen = []
    original = preview.LatentPreviewer.decode

    def both(self, latents, size):
        seen.append((original(self, latents, size), core._decode(pipe, latents)))
        return seen[-1][0]

    preview.LatentPreviewer.decode = both
    ps, cs, ds = [], [], []
    try:
        for i, image in enumerate(images):
            seen.clear()
            model.img2img(image, strength, steps, i, sampler=sampler, live=True)
            (head_out, vae_out), *start = seen
            keep = core.input_detail_weight(strength)
            init = image.astype(np.float32) / 255
            live, full = head_out, vae_out
            if start:
                live, full = live + keep * (init - start[0][0]), full + keep * (init - start[0][1])
            live, full = ((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8) for x in (live, full))
            ps.append(psnr(live, full))
            cs.append(mean_colour_error(live, full))
            ds.append(float(np.abs(live.astype(np.float64) - full).mean()))
    finally:
        preview.LatentPreviewer.decode = original
    print(f"fast decode vs VAE decode of the same latents: PSNR {np.mean(ps):.2f} dB, mean |difference| "
          f"{np.mean(ds):.2f} (0-255), colour error {np.mean(cs):.2f}")


def encode_cost(model, images, strength, steps, sampler, base) -> None:
    """What the live path's fast encode (the model's encode head instead of its VAE encoder) costs: live
    results with each, compared, and each one's figures against the 20-step baseline."""
    from backend.models import LoadedModel

    if model.model.encode_head() is None:
        print("fast encode: this model ships no encode head (live updates encode with its VAE)")
        return
    head, head_outs = figures(model, images, strength, steps, sampler, live=True)
    original = LoadedModel.encode_head
    LoadedModel.encode_head = lambda self: None
    model.model.latent_cache.clear()
    try:
        vae, vae_outs = figures(model, images, strength, steps, sampler, live=True)
    finally:
        LoadedModel.encode_head = original
        model.model.latent_cache.clear()
    for name, f in (("encode head", head), ("VAE encoder", vae)):
        print(f"live with the {name}: SSIM {f['ssim']:.3f}, colour {f['colour']:.2f}, seeds differ by {f['seeds']:.2f}, "
              f"{f['ms']:.0f} ms a job{'  within 10 %' if within(f, base) else '  NOT within 10 %'}")
    encoder_fidelity(model)
    ps = [psnr(a, b) for a, b in zip(head_outs, vae_outs)]
    ds = [float(np.abs(a.astype(np.float64) - b).mean()) for a, b in zip(head_outs, vae_outs)]
    print(f"fast encode vs VAE encode, live results: PSNR {np.mean(ps):.2f} dB, mean |difference| {np.mean(ds):.2f} (0-255)")


def encoder_fidelity(model) -> None:
    """How close the encode head's latents are to the VAE encoder's mean on all held-out crops, as they are and
    painted over: squared error over the latents' variance, and both decoded by the VAE, PSNR to the crop."""
    import torch

    from backend.training.encode_head import paint_over

    vae, head = model.model.vae, model.model.encode_head()
    sf = vae.config.scaling_factor
    held, _ = crops(40)
    rng = np.random.default_rng(5)
    for name, images in (("held-out crops", held), ("painted over", [paint_over(np.ascontiguousarray(c), rng) for c in held])):
        errors, ours, theirs = [], [], []
        for i in range(0, len(images), 8):
            batch = np.stack(images[i:i + 8])[..., :3]
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1
            with torch.no_grad():
                zv = vae.encode(x).latent_dist.mean * sf
                zh = head(x.contiguous(memory_format=torch.channels_last))
                for z, out in ((zv, theirs), (zh, ours)):
                    decoded = ((vae.decode(z / sf).sample.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
                    out += [psnr(d, c) for d, c in zip(decoded, batch)]
            errors.append(float(((zh - zv) ** 2).mean() / zv.var()))
        print(f"encode head vs VAE encoder, {len(images)} {name}: latent squared error {np.mean(errors):.1%} of the "
              f"latents' variance; VAE-decoded PSNR to the crops {np.mean(ours):.2f} dB (the encoder's own "
              f"{np.mean(theirs):.2f} dB)")


def within(f, base, tol=0.10) -> bool:
    return (abs(f["ssim"] - base["ssim"]) <= tol * base["ssim"] and abs(f["seeds"] - base["seeds"]) <= tol * base["seeds"]
            and f["colour"] <= max((1 + tol) * base["colour"], base["colour"] + 0.5))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samplers", default="dpmpp_2m,euler,ddim,lcm,euler_trailing")
    parser.add_argument("--steps", default="2,4,6,8,10")
    parser.add_argument("--painted", action="store_true",
                        help="the crops with brush strokes and blocks of colour painted over them, as a live region holds")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from backend.models import resolve

    model = EngineModel(resolve("").path)
    images, what = crops(args.crops)
    if args.painted:
        from backend.training.encode_head import paint_over

        rng = np.random.default_rng(3)
        images = [paint_over(np.ascontiguousarray(c), rng) for c in images]
        what += ", painted over"
    s = args.strength
    print(f"{what}, strength {s:g}, two seeds each, {args.threads} threads")
    base, base_out = figures(model, images, s, 20, "dpmpp_2m", live=False)
    print(f"baseline dpmpp_2m 20 steps, VAE decode: SSIM {base['ssim']:.3f}, colour {base['colour']:.2f}, "
          f"seeds differ by {base['seeds']:.2f}, {base['ms']:.0f} ms a job")
    best = None
    for sampler in args.samplers.split(","):
        for steps in (int(v) for v in args.steps.split(",")):
            if steps * s < 1:
                continue
            f, outs = figures(model, images, s, steps, sampler, live=True)
            ok = within(f, base)
            print(f"live {sampler:15s} {steps:2d} steps ({max(1, int(steps * s))} run): SSIM {f['ssim']:.3f}, colour "
                  f"{f['colour']:.2f}, seeds differ by {f['seeds']:.2f}, {f['ms']:.0f} ms a job"
                  f"{'  within 10 %' if ok else ''}")
            if ok and (best is None or steps < best[1]):
                best = (sampler, steps, f)
    if best is None:
        print("no live setting stays within 10 % of the 20-step figures")
    else:
        sampler, steps, _ = best
        print(f"live setting: {steps} steps, {sampler}, strength {s:g}")
        decode_cost(model, images, s, steps, sampler)
        encode_cost(model, images, s, steps, sampler, base)

if __name__ == "__main__":
    main()
