"""The exemplar fill's cost and the previews' cost with the embedded model, side by side in one run.

  256² inpaint (64² hole), exemplar prefill / blur prefill, same strength and steps      goal <= 1.5
  one preview (the model's preview head) / one denoising step, 256²                      issue's goal <= 0.05
  share of an inpaint's denoising time spent drawing previews, at the engine's default
  preview interval (0.1 s, with the engine's throttle to 5 % of the job)                  goal <= 0.05

A held-out-like synthetic photo (no data download needed); CPU by default, `--device cuda` on a GPU.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import _common  # noqa: F401  (paths, environment)
import numpy as np
from _common import report


def photo(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """Stripes, a gradient and noise: structure an exemplar fill can continue."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = np.clip(90 + 80 * ((xx // 16) % 2) + rng.normal(0, 8, (h, w)), 0, 255)
    img[..., 1] = np.clip(60 + yy * 120 // h + rng.normal(0, 8, (h, w)), 0, 255)
    img[..., 2] = np.clip(140 + rng.normal(0, 12, (h, w)), 0, 255)
    img[..., 3] = 255
    return img


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import torch

    from backend.core import JobContext
    from backend.models import ModelManager
    from backend.ops.inpaint import InpaintRequest, run

    torch.set_num_threads(2)
    manager = ModelManager(args.device, None)
    img = photo()
    mask = np.zeros((256, 256), np.uint8)
    mask[96:160, 96:160] = 255

    stamps: list[float] = []

    def inpaint(fill: str, previews: float = 1e9) -> float:
        ctx = JobContext(1, lambda e: stamps.append(time.perf_counter()) if type(e).__name__ == "Progress" else None,
                         threading.Event(), manager, previews, None, 100)
        request = InpaintRequest(image=img, mask=mask, fill=fill, strength=0.5, steps=20, seed=1, padding=96)
        t = time.perf_counter()
        run(ctx, request)
        return time.perf_counter() - t

    inpaint("blur")  # loads the model, fits anything cached
    times = {"exemplar": [], "blur": []}
    for _ in range(args.repeat):
        for fill in ("exemplar", "blur"):
            times[fill].append(inpaint(fill))
    ex, bl = statistics.median(times["exemplar"]), statistics.median(times["blur"])
    print(f"# embedded model, 256² region, strength 0.5, 20 steps, {manager.get('').device}")
    report("256² inpaint with the exemplar prefill, s", ex, "-", " s")
    report("256² inpaint with the blur prefill, s", bl, "-", " s")
    report("exemplar / blur", ex / bl, "<= 1.5", "x")

    model = manager.get("")
    previewer = model.previewer()
    latents = torch.randn(1, 4, 32, 32, device=model.device)
    previewer.render(latents, (256, 256))
    t = time.perf_counter()
    for _ in range(20):
        previewer.render(latents, (256, 256))
    preview = (time.perf_counter() - t) / 20
    stamps.clear()
    inpaint("blur")  # no previews: the time between two steps' progress events is one denoising step
    step = statistics.median(np.diff(stamps[-10:]))
    kind = "preview head" if previewer.head is not None else "linear map"
    report(f"one 256² preview ({kind}), ms", preview * 1000, "-", " ms")
    report("one denoising step, ms", step * 1000, "-", " ms")
    report("preview / denoising step", preview / step, "<= 0.05", "x")

    # What a painter pays: previews at the engine's default interval, timed inside a real job.
    spent = {"previews": 0.0, "count": 0}
    render = type(previewer).render

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return render(self, *a, **k)
        finally:
            spent["previews"] += time.perf_counter() - t0
            spent["count"] += 1

    type(previewer).render = timed
    stamps.clear()
    inpaint("blur", previews=0.1)
    type(previewer).render = render
    denoising = stamps[-1] - stamps[0] + step  # first progress event to the last, plus the first step
    report("previews drawn in a 10-step job", spent["count"], "-", "")
    report("preview time / denoising time, default interval", spent["previews"] / denoising, "<= 0.05", "x")


if __name__ == "__main__":
    main()
