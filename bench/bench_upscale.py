"""Upscale benchmarks (ratios measured side by side in one run):

* peak resident memory of a 4× upscale of 2048² / of 512² (goal ≤ 2, while the pixels grow ×16);
* tiled / untiled time on a size both can do (goal ≤ 1.3);
* seam score of the bundled Real-ESRGAN in tiles on a gradient: max step across tile borders /
  median step inside tiles (goal ≤ 1.5).

The memory and time figures use a random ESRGAN of the real architecture at reduced width
(16 filters, 2 blocks: the bundled 64-filter, 23-block model takes ~30 min for 2048² on two CPU
cores); each memory run is a fresh process, so peak RSS is its own. ``--real`` uses the bundled
model for the time ratio too (slow on a CPU).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import _common  # noqa: F401 - paths and environment
from _common import ROOT, report

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(2)
from backend.ops import upscale as operation
from backend.ops.upscale import UpscaleRequest
from backend.core import JobContext
import threading
size, model, tile = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
yy, xx = np.mgrid[0:size, 0:size]
img = np.zeros((size, size, 4), np.uint8); img[..., 0] = xx * 255 // size; img[..., 1] = yy * 255 // size; img[..., 3] = 255
ctx = JobContext(1, lambda e: None, threading.Event(), None, 0.0, None, 0)
req = UpscaleRequest(image=img, upscaler=model, tile=tile)
t = time.perf_counter(); out = operation.run(ctx, req); dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(out[0].image.shape)}))
"""


def child(size: int, model: str, tile: int = 0) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(size), model, str(tile)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, str(ROOT / "tests"))
    from spandrel.architectures.ESRGAN import ESRGAN
    from safetensors.torch import save_file

    folder = Path(tempfile.mkdtemp(prefix="bench-upscale-"))
    torch.manual_seed(0)
    model = folder / "esrgan-16nf-2nb.safetensors"
    save_file({k: v.contiguous() for k, v in ESRGAN(num_filters=16, num_blocks=2, scale=4).state_dict().items()},
              str(model))

    small, large = child(512, str(model)), child(2048, str(model))
    print(f"  512²: {small['peak_mb']:.0f} MB in {small['seconds']:.1f} s; 2048²: {large['peak_mb']:.0f} MB in "
          f"{large['seconds']:.1f} s (output {large['shape']})")
    report("peak RSS, 4x upscale of 2048² / of 512² (pixels x16)", large["peak_mb"] / small["peak_mb"], "<= 2")

    which = "" if "--real" in sys.argv else str(model)
    size = 192 if which == "" else 384
    untiled = min(child(size, which, 0)["seconds"] for _ in range(2))
    tiled = min(child(size, which, 128)["seconds"] for _ in range(2))
    print(f"  {size}²: untiled {untiled:.2f} s, tiles of 128 px {tiled:.2f} s")
    report(f"tiled / untiled time ({size}², tiles of 128 px)", tiled / untiled, "<= 1.3")

    from backend.upscale.tiling import make_plan, overlap_centres, seam_score

    t = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", CHILD.replace(
        'print(json.dumps({', 'np.save(sys.argv[4], out[0].image); print(json.dumps({'), "128", "", "64",
        str(folder / "seam.npy")], cwd=ROOT, capture_output=True, text=True, check=True)
    assert run.returncode == 0
    image = np.load(folder / "seam.npy")
    plan = make_plan(128, 128, 64, 16)
    score = seam_score(image, overlap_centres(plan.xs, 4), overlap_centres(plan.ys, 4))
    print(f"  bundled Real-ESRGAN, 128² gradient, {len(plan)} tiles of 64 px, {time.perf_counter() - t:.0f} s")
    report("seam score (max border step / median inside step)", score, "<= 1.5")


if __name__ == "__main__":
    main()
