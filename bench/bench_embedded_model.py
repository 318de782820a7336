"""The embedded model's quality bars (issue: "Embedded default model"), side by side with OpenCV's Telea.

Runs the same evaluation as `python main.py evaluate` (all 40 held-out crops by default; the photos
are fetched and prepared on first use) and prints each figure with its goal:
VAE reconstruction PSNR (>= 24 dB), our inpainting colour error over Telea's (<= 1.10) and our texture
distance over Telea's (< 1). About 8 minutes on 2 CPU cores; `--crops N` is quicker and rougher.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common  # noqa: F401  (paths, environment)
from _common import report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=None, help="held-out crops to inpaint (default: all 40)")
    ap.add_argument("--data-dir", type=Path, default=None, help="prepared photos (default: the user cache)")
    args = ap.parse_args()

    from backend.training import data
    from backend.training.evaluate import run
    from backend.training.package import DEFAULT_MODEL_DIR

    d = data.ensure_prepared(args.data_dir)
    sheet = Path(tempfile.mkdtemp()) / "contact_sheet.png"
    m = run(DEFAULT_MODEL_DIR, d, sheet, n_inpaint=args.crops, log=lambda line: None)
    telea_colour = max(m["telea_colour_error"], 1e-9)
    print(f"# embedded model on {m['crops']} held-out crops (recommended settings)")
    report("VAE reconstruction PSNR", m["vae_psnr"], ">= 24", " dB")
    report("inpaint colour error / Telea's", m["ours_colour_error"] / telea_colour, "<= 1.10", "x")
    report("inpaint texture distance / Telea's", m["ours_texture"] / max(m["telea_texture"], 1e-9), "< 1", "x")
    if m.get("bare_colour_error") is not None:
        report("denoiser alone: colour error / Telea's", m["bare_colour_error"] / telea_colour, "-", "x")


if __name__ == "__main__":
    main()
