"""Quality of the embedded model on the held-out scenes.

- VAE PSNR: mean per-crop PSNR of autoencoder reconstructions of held-out 256² crops.
- Inpainting: a 64² hole in held-out crops, filled by the engine's inpainting with the model's
  recommended settings (``inpaint_defaults`` in latent_studio.json: what the app and CLI use unless
  told otherwise; for a model that restores detail (``restore_detail``), also once without that;
  for a model that recommends something or restores detail, also once more at the generic fill
  "original", strength 1, without detail transfer, i.e. the denoiser alone) and by OpenCV's Telea
  inpainting (the baseline, evaluation only). Inside the hole: the mean colour error (distance
  of the mean RGB to the truth's, 0..255) and a texture distance (L1 between normalised
  histograms of gradient magnitude, ours vs truth and Telea vs truth).
- A contact sheet: input with hole, ours, Telea, truth, one row per example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOLE = 64
GRAD_BINS = np.concatenate([np.linspace(0, 64, 17), [1e9]])  # grey-level gradient magnitude per pixel


@dataclass
class InpaintScores:
    ours_colour_error: float
    telea_colour_error: float
    ours_texture: float
    telea_texture: float
    examples: list = field(default_factory=list, repr=False)  # (input, ours, telea, truth) uint8

    @property
    def colour_ok(self) -> bool:
        return self.ours_colour_error <= 1.1 * self.telea_colour_error

    @property
    def texture_ok(self) -> bool:
        return self.ours_texture < self.telea_texture


def hole_boxes(n: int, size: int, hole: int = HOLE, seed: int = 0) -> list[tuple[int, int]]:
    """Deterministic hole positions (top, left), kept a quarter hole away from the borders."""
    rng = np.random.default_rng(seed)
    lo, hi = hole // 4, size - hole - hole // 4
    return [(int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))) for _ in range(n)]


def mean_colour_error(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between the mean RGB of two uint8 patches (0..~441)."""
    return float(np.linalg.norm(a.reshape(-1, 3).astype(np.float64).mean(0) - b.reshape(-1, 3).astype(np.float64).mean(0)))


def gradient_histogram(patch: np.ndarray) -> np.ndarray:
    grey = patch.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(grey)
    hist, _ = np.histogram(np.hypot(gx, gy), bins=GRAD_BINS)
    return hist / max(1, hist.sum())


def texture_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(gradient_histogram(a) - gradient_histogram(b)).sum())


def telea(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    import cv2

    bgr = np.ascontiguousarray(image[..., ::-1])
    out = cv2.inpaint(bgr, (mask > 0).astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)
    return out[..., ::-1]


class EngineModel:
    """The model as Latent Studio runs it: loaded by the engine's loader, inpainting through the
    region core (prefill, working size, latent anchoring, seam-matched compositing) — what users get."""

    def __init__(self, model_dir: Path, device="cpu"):
        from backend.models import ModelManager

        self.ref = str(model_dir)
        self.manager = ModelManager(device=device)
        self.model = self.manager.get(self.ref)

    @property
    def vae(self):
        return self.model.vae

    @property
    def device(self):
        return self.model.device

    @property
    def inpaint_defaults(self) -> dict:
        return dict(self.model.inpaint_defaults)

    @property
    def restores_detail(self) -> bool:
        return self.model.restores_detail

    def inpaint(self, image: np.ndarray, mask: np.ndarray, steps: int, seed: int, fill: str | None = None,
                strength: float | None = None, restore_detail: bool = True) -> np.ndarray:
        import threading

        from backend.core import JobContext
        from backend.ops.inpaint import run as run_inpaint
        from backend.ops.inpaint import InpaintRequest

        h, w = image.shape[:2]
        rgba = np.dstack([image, np.full((h, w), 255, np.uint8)])
        defaults = self.inpaint_defaults
        request = InpaintRequest(image=rgba, mask=mask, model=self.ref, steps=steps, seed=seed, grow=0, feather=0,
                                 padding=max(h, w), guidance=1.0, fill=fill or defaults["fill"],
                                 strength=strength or defaults["strength"], restore_detail=restore_detail)
        ctx = JobContext(0, lambda _event: None, threading.Event(), self.manager, preview_interval=1e9)
        (result,) = run_inpaint(ctx, request)
        x, y, rw, rh = result.rect
        out = image.copy()
        out[y:y + rh, x:x + rw] = result.image[..., :3]
        return out


def load_pipeline(model_dir: Path, device="cpu"):
    """The stock diffusers pipeline of a model folder (for checks that bypass the engine)."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()
    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(model_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def inpaint_ours(model: EngineModel, image: np.ndarray, mask: np.ndarray, steps: int, seed: int,
                 **settings) -> np.ndarray:
    result = model.inpaint(image, mask, steps, seed, **settings)
    out = image.copy()
    m = mask > 0
    out[m] = result[m]
    return out


def evaluate_inpainting(pipe: EngineModel, crops: np.ndarray, steps: int = 25, hole: int = HOLE, seed: int = 0,
                        log=print, **settings) -> InpaintScores:
    """Scores over ``crops``; ``settings`` (fill, strength) default to the model's recommendation."""
    size = crops.shape[1]
    boxes = hole_boxes(len(crops), size, hole, seed)
    ce_o, ce_t, tx_o, tx_t, examples = [], [], [], [], []
    for i, (crop, (y, x)) in enumerate(zip(crops, boxes)):
        mask = np.zeros(crop.shape[:2], np.uint8)
        mask[y : y + hole, x : x + hole] = 255
        ours = inpaint_ours(pipe, crop, mask, steps, seed + i, **settings)
        base = telea(crop, mask)
        sl = (slice(y, y + hole), slice(x, x + hole))
        truth = crop[sl]
        ce_o.append(mean_colour_error(ours[sl], truth))
        ce_t.append(mean_colour_error(base[sl], truth))
        tx_o.append(texture_distance(ours[sl], truth))
        tx_t.append(texture_distance(base[sl], truth))
        shown = crop.copy()
        shown[sl] = (255, 0, 255)
        examples.append((shown, ours, base, crop))
        log(f"  crop {i + 1}/{len(crops)}: colour error ours {ce_o[-1]:.1f} Telea {ce_t[-1]:.1f}; "
            f"texture ours {tx_o[-1]:.3f} Telea {tx_t[-1]:.3f}")
    return InpaintScores(float(np.mean(ce_o)), float(np.mean(ce_t)), float(np.mean(tx_o)), float(np.mean(tx_t)),
                         examples)


def contact_sheet(examples, path: Path, max_rows: int = 8) -> Path:
    """Rows of (input with hole, ours, Telea, truth), labelled, saved as PNG."""
    from PIL import Image, ImageDraw

    rows = examples[:max_rows]
    s = rows[0][0].shape[0]
    pad, head = 4, 18
    sheet = Image.new("RGB", (4 * s + 5 * pad, head + len(rows) * (s + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(("input (hole)", "latent-studio-mini", "OpenCV Telea", "truth")):
        draw.text((pad + c * (s + pad) + 4, 3), label, fill=(230, 230, 230))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (pad + c * (s + pad), head + pad + r * (s + pad)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def run(model_dir: Path, data_dir: Path, sheet_path: Path, n_inpaint: int | None = None, steps: int = 25,
        device: str = "cpu", log=print) -> dict:
    """All metrics on the held-out set; prints one line per metric and returns them."""
    from backend.models import GENERIC_INPAINT_DEFAULTS

    from . import data
    from .vae import psnr, reconstruct

    crops = data.heldout_crops(data_dir)
    pipe = EngineModel(model_dir, device)
    recon = reconstruct(pipe.vae, crops, pipe.device)
    vae_psnr = psnr(crops, recon)
    n_inpaint = min(n_inpaint or len(crops), len(crops))  # default: every held-out crop
    pick = crops[:: max(1, len(crops) // n_inpaint)][:n_inpaint]
    recommended = pipe.inpaint_defaults
    generic = dict(GENERIC_INPAINT_DEFAULTS)
    fill_said = f"fill {recommended['fill']}, strength {recommended['strength']:g}"
    said = fill_said + (", detail transfer" if pipe.restores_detail else "")
    log(f"inpainting {len(pick)} held-out crops ({steps} steps each, {said}) and the Telea baseline ...")
    scores = evaluate_inpainting(pipe, pick, steps=steps, log=log)
    plain = bare = None
    if pipe.restores_detail:
        log(f"once more without detail transfer ({fill_said}) ...")
        plain = evaluate_inpainting(pipe, pick, steps=steps, log=log, restore_detail=False)
    if recommended != generic or pipe.restores_detail:
        log(f"once more with fill {generic['fill']}, strength {generic['strength']:g}, no detail transfer "
            "(the denoiser alone) ...")
        bare = evaluate_inpainting(pipe, pick, steps=steps, log=log, restore_detail=False, **generic)
    sheet = contact_sheet(scores.examples, sheet_path)
    verdict = lambda ok: "ok" if ok else "below the bar"  # noqa: E731
    ratio = lambda s: s.ours_colour_error / max(s.telea_colour_error, 1e-9)  # noqa: E731
    log(f"VAE PSNR: {vae_psnr:.2f} dB ({len(crops)} held-out crops; goal >= 24: {verdict(vae_psnr >= 24)})")
    log(f"Inpaint colour error: {scores.ours_colour_error:.2f} (Telea {scores.telea_colour_error:.2f}; "
        f"ratio {ratio(scores):.2f}, goal <= 1.10: {verdict(scores.colour_ok)}; {said})")
    log(f"Inpaint texture distance: {scores.ours_texture:.3f} (Telea {scores.telea_texture:.3f}; goal below Telea: "
        f"{verdict(scores.texture_ok)}; {said})")
    metrics = dict(vae_psnr=vae_psnr, ours_colour_error=scores.ours_colour_error,
                   telea_colour_error=scores.telea_colour_error, ours_texture=scores.ours_texture,
                   telea_texture=scores.telea_texture, inpaint_fill=recommended["fill"],
                   inpaint_strength=recommended["strength"], restore_detail=pipe.restores_detail, crops=len(pick),
                   contact_sheet=str(sheet))
    if plain is not None:
        log(f"Inpaint colour error, without detail transfer: {plain.ours_colour_error:.2f} (ratio {ratio(plain):.2f})")
        log(f"Inpaint texture distance, without detail transfer: {plain.ours_texture:.3f}")
        metrics.update(nodetail_colour_error=plain.ours_colour_error, nodetail_texture=plain.ours_texture)
    if bare is not None:
        log(f"Inpaint colour error, denoiser alone: {bare.ours_colour_error:.2f} (ratio {ratio(bare):.2f}; "
            f"fill {generic['fill']}, strength {generic['strength']:g})")
        log(f"Inpaint texture distance, denoiser alone: {bare.ours_texture:.3f} "
            f"(fill {generic['fill']}, strength {generic['strength']:g})")
        metrics.update(bare_colour_error=bare.ours_colour_error, bare_texture=bare.ours_texture)
    log(f"Contact sheet: {sheet}")
    return metrics
