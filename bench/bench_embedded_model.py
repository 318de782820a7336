"""The embedded model's quality bars, side by side with two anchors: the exemplar fill alone (OpenCV
contrib's shift-map) and OpenCV's Telea.

Runs the same evaluation as `python main.py evaluate` (all 40 held-out crops by default; the photos
are fetched and prepared on first use) and prints each figure with its goal: VAE reconstruction PSNR
(>= 24 dB); our inpainting colour error over the exemplar fill's (<= 1.02) and over Telea's; our texture
distance over the exemplar's (<= 1.1) and Telea's (< 1); the last step's and the halfway preview's mean
colour difference to the result (<= 4 for the last); img2img's SSIM to the input at strengths 0.3
(>= 0.80) and 0.6 (>= 0.5) at full resolution, and how much two seeds differ. About half an hour on 2 CPU
cores; `--crops N` is quicker and rougher (`--crops 8`: about 12 minutes).
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
    exemplar_colour = max(m["exemplar_colour_error"], 1e-9)
    print(f"# embedded model on {m['crops']} held-out crops (recommended settings: fill {m['inpaint_fill']}, "
          f"strength {m['inpaint_strength']:g})")
    report("VAE reconstruction PSNR", m["vae_psnr"], ">= 24", " dB")
    report("inpaint colour error / the exemplar fill's", m["ours_colour_error"] / exemplar_colour, "<= 1.02", "x")
    report("inpaint texture distance / the exemplar fill's", m["ours_texture"] / max(m["exemplar_texture"], 1e-9),
           "<= 1.1", "x")
    report("inpaint colour error / Telea's", m["ours_colour_error"] / telea_colour, "< 1", "x")
    report("inpaint texture distance / Telea's", m["ours_texture"] / max(m["telea_texture"], 1e-9), "< 1", "x")
    if m.get("bare_colour_error") is not None:
        report("denoiser alone: colour error / the exemplar fill's", m["bare_colour_error"] / exemplar_colour, "-", "x")
    report("preview, last step: mean |preview - result| in the hole", m["preview_last"], "<= 4")
    report("preview, halfway: mean |preview - result| in the hole", m["preview_half"], "-")
    for key, strength, goal in (("img2img_s03", 0.3, ">= 0.80"), ("img2img_s06", 0.6, ">= 0.5")):
        if f"{key}_ssim" in m:
            report(f"img2img {strength:g}: SSIM to the input, full resolution", m[f"{key}_ssim"], goal)
            report(f"img2img {strength:g}: two seeds differ by (mean |a - b|)", m[f"{key}_seeds"], "> 1 (visible)")


if __name__ == "__main__":
    main()
