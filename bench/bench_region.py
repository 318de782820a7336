"""Detail transfer (region.transfer_detail) against the compositing it comes before, side by side.

For regions of 256² to 2048² with a hole of half the side: the median time of each, and their ratio.
Goal: a fraction of a second at the embedded model's 256², and a small share of a diffusion run (seconds
on a CPU) at any size.
"""
from __future__ import annotations

import _common  # noqa: F401  (paths, environment)
import numpy as np
from _common import median_time, report

from backend.region import composite, transfer_detail


def scene(side: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(120, 25, (side, side, 3)), 0, 255)
    original = np.dstack([rgb.astype(np.uint8), np.full((side, side), 255, np.uint8)])
    generated = np.full((side, side, 3), 120, np.float32)  # a soft decoding: no fine detail at all
    soft = np.zeros((side, side), np.float32)
    q = side // 4
    soft[q:side - q, q:side - q] = 1
    return original, generated, soft


def main() -> None:
    print("# detail transfer vs compositing, median of 3 runs (seconds)")
    for side in (256, 1024, 2048):
        original, generated, soft = scene(side)
        t_detail = median_time(lambda: transfer_detail(original, generated, soft, seed=1), repeat=3)
        t_comp = median_time(lambda: composite(original, generated, soft), repeat=3)
        report(f"{side}² region: transfer_detail", t_detail, "< 0.3 s at 256²" if side == 256 else "-", " s")
        report(f"{side}² region: composite", t_comp, "-", " s")
        report(f"{side}² region: transfer / composite", t_detail / t_comp, "-", "x")


if __name__ == "__main__":
    main()
