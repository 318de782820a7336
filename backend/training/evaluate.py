"""Quality of the embedded model on the held-out scenes.

- VAE PSNR: mean per-crop PSNR of autoencoder reconstructions of held-out 256² crops.
- Inpainting: a 64² hole in held-out crops, filled by the engine's inpainting with the model's
  recommended settings (``inpaint_defaults`` in latent_studio.json: what the app and CLI use unless
  told otherwise; for a model that restores detail (``restore_detail``), also once without that;
  for a model that recommends something or restores detail, also once more at the generic fill
  "original", strength 1, without detail transfer, i.e. the denoiser alone), against two anchors:
  OpenCV's Telea (a smooth diffusion fill) and the exemplar fill alone (OpenCV contrib's shift-map,
  the kind of fill Content-Aware Fill and Resynthesizer make). Inside the hole: the mean colour error
  (distance of the mean RGB to the truth's, 0..255) and a texture distance (L1 between normalised
  histograms of gradient magnitude, against the truth).
- Previews: the mean |preview − result| over the hole (0..255) of the last step's preview and of the
  halfway one, during the recommended-settings runs.
- img2img at full resolution on the held-out scenes (at half their prepared size, as the crops are
  cut): SSIM and mean colour error to the input at strengths 0.3 and 0.6, and how much two seeds
  differ (mean |a − b|, 0..255).
- A contact sheet: input with hole, ours, exemplar, Telea, truth, one row per example.
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
    examples: list = field(default_factory=list, repr=False)  # (input, ours, exemplar, telea, truth) uint8
    exemplar_colour_error: float = float("nan")
    exemplar_texture: float = float("nan")
    preview_last: float = float("nan")  # mean |last step's preview − result| in the hole, 0..255
    preview_half: float = float("nan")  # the same for the preview halfway through
    seconds: float = 0.0  # mean time of one inpaint

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


def exemplar(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The exemplar fill alone (OpenCV contrib's shift-map), as the engine's ``exemplar`` fill makes it."""
    from backend.exemplar import exemplar_fill

    return exemplar_fill(image, mask > 0)


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
                strength: float | None = None, restore_detail: bool = True, previews: list | None = None
                ) -> np.ndarray:
        """The inpainted image; ``previews``, when given, receives (step, total, rgba, rect) of each preview."""
        import threading

        from backend.core import JobContext
        from backend.events import Preview
        from backend.ops.inpaint import InpaintRequest
        from backend.ops.inpaint import run as run_inpaint

        h, w = image.shape[:2]
        rgba = np.dstack([image, np.full((h, w), 255, np.uint8)])
        defaults = self.inpaint_defaults
        request = InpaintRequest(image=rgba, mask=mask, model=self.ref, steps=steps, seed=seed, grow=0, feather=0,
                                 padding=max(h, w), guidance=1.0, fill=fill or defaults["fill"],
                                 strength=strength or defaults["strength"], restore_detail=restore_detail)

        def sink(event):
            if previews is not None and isinstance(event, Preview):
                previews.append((event.step, event.total, event.image, event.rect))

        ctx = JobContext(0, sink, threading.Event(), self.manager, preview_interval=0.0 if previews is not None else 1e9)
        (result,) = run_inpaint(ctx, request)
        x, y, rw, rh = result.rect
        out = image.copy()
        out[y:y + rh, x:x + rw] = result.image[..., :3]
        return out

    def img2img(self, image: np.ndarray, strength: float, steps: int, seed: int, sampler: str | None = None,
                live: bool = False) -> np.ndarray:
        import threading

        from backend.core import JobContext
        from backend.ops.img2img import Img2ImgRequest
        from backend.ops.img2img import run as run_img2img

        h, w = image.shape[:2]
        rgba = np.dstack([image, np.full((h, w), 255, np.uint8)])
        request = Img2ImgRequest(image=rgba, model=self.ref, steps=steps, seed=seed, strength=strength, guidance=1.0,
                                 live=live, **({"sampler": sampler} if sampler else {}))
        ctx = JobContext(0, lambda _e: None, threading.Event(), self.manager, preview_interval=1e9)
        (result,) = run_img2img(ctx, request)
        return result.image[..., :3]


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


def preview_errors(previews: list, result: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean |preview − result| over the masked pixels (0..255) of the last preview and the halfway one."""
    if not previews:
        return float("nan"), float("nan")
    m = mask > 0

    def error(entry) -> float:
        _step, _total, rgba, (x, y, w, h) = entry
        if rgba.shape[:2] != (h, w):
            from PIL import Image

            rgba = np.asarray(Image.fromarray(rgba).resize((w, h), Image.BILINEAR))
        shown = result.copy()
        shown[y:y + h, x:x + w] = rgba[..., :3]
        return float(np.abs(shown[m].astype(np.float64) - result[m]).mean())

    total = previews[-1][1]
    half = min(previews, key=lambda p: abs(p[0] - total / 2))
    return error(previews[-1]), error(half)


def evaluate_inpainting(pipe: EngineModel, crops: np.ndarray, steps: int = 25, hole: int = HOLE, seed: int = 0,
                        log=print, **settings) -> InpaintScores:
    """Scores over ``crops``; ``settings`` (fill, strength) default to the model's recommendation."""
    import time

    size = crops.shape[1]
    boxes = hole_boxes(len(crops), size, hole, seed)
    ce = {k: [] for k in ("ours", "exemplar", "telea")}
    tx = {k: [] for k in ("ours", "exemplar", "telea")}
    prev_last, prev_half, seconds, examples = [], [], [], []
    for i, (crop, (y, x)) in enumerate(zip(crops, boxes)):
        mask = np.zeros(crop.shape[:2], np.uint8)
        mask[y : y + hole, x : x + hole] = 255
        previews: list = []
        t = time.perf_counter()
        ours = inpaint_ours(pipe, crop, mask, steps, seed + i, previews=previews, **settings)
        seconds.append(time.perf_counter() - t)
        last, half = preview_errors(previews, ours, mask)
        prev_last.append(last)
        prev_half.append(half)
        fills = {"ours": ours, "exemplar": exemplar(crop, mask), "telea": telea(crop, mask)}
        sl = (slice(y, y + hole), slice(x, x + hole))
        truth = crop[sl]
        for k, img in fills.items():
            ce[k].append(mean_colour_error(img[sl], truth))
            tx[k].append(texture_distance(img[sl], truth))
        shown = crop.copy()
        shown[sl] = (255, 0, 255)
        examples.append((shown, ours, fills["exemplar"], fills["telea"], crop))
        log(f"  crop {i + 1}/{len(crops)}: colour error ours {ce['ours'][-1]:.1f} exemplar {ce['exemplar'][-1]:.1f} "
            f"Telea {ce['telea'][-1]:.1f}; texture ours {tx['ours'][-1]:.3f} exemplar {tx['exemplar'][-1]:.3f} "
            f"Telea {tx['telea'][-1]:.3f}; preview last {last:.1f}, halfway {half:.1f}")
    mean = lambda v: float(np.nanmean(v)) if len(v) and not np.all(np.isnan(v)) else float("nan")  # noqa: E731
    return InpaintScores(mean(ce["ours"]), mean(ce["telea"]), mean(tx["ours"]), mean(tx["telea"]), examples,
                         exemplar_colour_error=mean(ce["exemplar"]), exemplar_texture=mean(tx["exemplar"]),
                         preview_last=mean(prev_last), preview_half=mean(prev_half), seconds=mean(seconds))


@dataclass
class Img2ImgScores:
    strength: float
    ssim: float  # to the input, full resolution
    colour_error: float  # mean colour of the result against the input's
    seed_difference: float  # mean |seed a − seed b| (0..255): how different two variations are
    examples: list = field(default_factory=list, repr=False)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def evaluate_img2img(pipe: EngineModel, scenes: list, strength: float, steps: int = 25, seed: int = 0,
                     log=print) -> Img2ImgScores:
    """SSIM and colour error to each scene at ``strength``, and the difference two seeds make."""
    sims, colours, diffs, examples = [], [], [], []
    for i, scene in enumerate(scenes):
        a = pipe.img2img(scene, strength, steps, seed + i)
        b = pipe.img2img(scene, strength, steps, seed + i + 1000)
        sims.append(ssim(scene, a))
        colours.append(mean_colour_error(a, scene))
        diffs.append(float(np.abs(a.astype(np.float64) - b).mean()))
        examples.append((scene, a, b))
        log(f"  scene {i + 1}/{len(scenes)} ({scene.shape[1]}x{scene.shape[0]}), strength {strength:g}: SSIM "
            f"{sims[-1]:.3f}, colour error {colours[-1]:.2f}, two seeds differ by {diffs[-1]:.2f}")
    return Img2ImgScores(strength, float(np.mean(sims)), float(np.mean(colours)), float(np.mean(diffs)), examples)


def heldout_scenes(data_dir: Path, max_side: int = 512) -> list:
    """The held-out photos at half their prepared size (as the crops are cut), at most ``max_side`` wide."""
    from PIL import Image

    from . import data

    out = []
    for photo in data.load_photos(data_dir, "heldout"):
        im = Image.fromarray(photo)
        scale = min(0.5 if min(im.size) >= 1024 else 1.0, max_side / max(im.size))
        if scale < 1:
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.LANCZOS)
        out.append(np.asarray(im))
    return out


def contact_sheet(examples, path: Path, max_rows: int = 8) -> Path:
    """Rows of (input with hole, ours, exemplar, Telea, truth), labelled, saved as PNG."""
    from PIL import Image, ImageDraw

    rows = examples[:max_rows]
    s = rows[0][0].shape[0]
    pad, head = 4, 18
    cols = len(rows[0])
    sheet = Image.new("RGB", (cols * s + (cols + 1) * pad, head + len(rows) * (s + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    labels = ("input (hole)", "latent-studio-mini", "exemplar (shift-map)", "OpenCV Telea", "truth")
    for c, label in enumerate(labels if cols == 5 else labels[:2] + labels[3:]):
        draw.text((pad + c * (s + pad) + 4, 3), label, fill=(230, 230, 230))
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (pad + c * (s + pad), head + pad + r * (s + pad)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def run(model_dir: Path, data_dir: Path, sheet_path: Path, n_inpaint: int | None = None, steps: int = 25,
        device: str = "cpu", log=print, json_path: Path | None = None, img2img: bool = True) -> dict:
    """All metrics on the held-out set; prints one line per metric and returns them (and writes them,
    as one flat JSON object, to ``json_path``)."""
    import json
    import time

    from backend.models import GENERIC_INPAINT_DEFAULTS

    from . import data
    from .vae import psnr, reconstruct

    started = time.perf_counter()
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
    log(f"inpainting {len(pick)} held-out crops ({steps} steps each, {said}), the exemplar fill and Telea ...")
    scores = evaluate_inpainting(pipe, pick, steps=steps, log=log)
    plain = bare = None
    if pipe.restores_detail:
        log(f"once more without detail transfer ({fill_said}) ...")
        plain = evaluate_inpainting(pipe, pick, steps=steps, log=log, restore_detail=False)
    if recommended != generic or pipe.restores_detail:
        log(f"once more with fill {generic['fill']}, strength {generic['strength']:g}, no detail transfer "
            "(the denoiser alone) ...")
        bare = evaluate_inpainting(pipe, pick, steps=steps, log=log, restore_detail=False, **generic)
    variations = {}
    if img2img:
        scenes = heldout_scenes(data_dir)
        for strength in (0.3, 0.6):
            log(f"img2img at strength {strength:g} on {len(scenes)} held-out scenes, full resolution, two seeds ...")
            variations[strength] = evaluate_img2img(pipe, scenes, strength, steps=steps, log=log)
    sheet = contact_sheet(scores.examples, sheet_path)
    verdict = lambda ok: "ok" if ok else "below the bar"  # noqa: E731
    ratio = lambda s: s.ours_colour_error / max(s.telea_colour_error, 1e-9)  # noqa: E731
    ex_ratio = lambda s: s.ours_colour_error / max(s.exemplar_colour_error, 1e-9)  # noqa: E731
    log(f"VAE PSNR: {vae_psnr:.2f} dB ({len(crops)} held-out crops; goal >= 24: {verdict(vae_psnr >= 24)})")
    log(f"Inpaint colour error: {scores.ours_colour_error:.2f} (exemplar {scores.exemplar_colour_error:.2f}, Telea "
        f"{scores.telea_colour_error:.2f}; ratio to the exemplar {ex_ratio(scores):.2f}, goal <= 1.02; to Telea "
        f"{ratio(scores):.2f}; {said})")
    log(f"Inpaint texture distance: {scores.ours_texture:.3f} (exemplar {scores.exemplar_texture:.3f}, Telea "
        f"{scores.telea_texture:.3f}; ratio to the exemplar "
        f"{scores.ours_texture / max(scores.exemplar_texture, 1e-9):.2f}, goal <= 1.1; {said})")
    log(f"Preview colour difference to the result: last step {scores.preview_last:.2f}, halfway "
        f"{scores.preview_half:.2f} (0-255; goal for the last step <= 4)")
    metrics = dict(vae_psnr=vae_psnr, ours_colour_error=scores.ours_colour_error,
                   telea_colour_error=scores.telea_colour_error, ours_texture=scores.ours_texture,
                   telea_texture=scores.telea_texture, exemplar_colour_error=scores.exemplar_colour_error,
                   exemplar_texture=scores.exemplar_texture, preview_last=scores.preview_last,
                   preview_half=scores.preview_half, inpaint_seconds=scores.seconds,
                   inpaint_fill=recommended["fill"], inpaint_strength=recommended["strength"],
                   restore_detail=pipe.restores_detail, crops=len(pick), contact_sheet=str(sheet))
    if plain is not None:
        log(f"Inpaint colour error, without detail transfer: {plain.ours_colour_error:.2f} (ratio to Telea "
            f"{ratio(plain):.2f})")
        log(f"Inpaint texture distance, without detail transfer: {plain.ours_texture:.3f}")
        metrics.update(nodetail_colour_error=plain.ours_colour_error, nodetail_texture=plain.ours_texture)
    if bare is not None:
        log(f"Inpaint colour error, denoiser alone: {bare.ours_colour_error:.2f} (ratio to Telea {ratio(bare):.2f}; "
            f"fill {generic['fill']}, strength {generic['strength']:g})")
        log(f"Inpaint texture distance, denoiser alone: {bare.ours_texture:.3f} "
            f"(fill {generic['fill']}, strength {generic['strength']:g})")
        metrics.update(bare_colour_error=bare.ours_colour_error, bare_texture=bare.ours_texture)
    for strength, v in variations.items():
        key = f"img2img_s{round(strength * 10):02d}"
        goal = ">= 0.80" if strength < 0.5 else ">= 0.5"
        log(f"img2img at {strength:g}: SSIM to the input {v.ssim:.3f} (goal {goal}), colour error {v.colour_error:.2f}, "
            f"two seeds differ by {v.seed_difference:.2f}")
        metrics.update({f"{key}_ssim": v.ssim, f"{key}_colour": v.colour_error, f"{key}_seeds": v.seed_difference})
    log(f"Contact sheet: {sheet}")
    metrics["seconds"] = time.perf_counter() - started
    log(f"Evaluation took {metrics['seconds'] / 60:.1f} min")
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(flat_metrics(metrics), indent=1) + "\n")
        log(f"Figures written to {json_path}")
    return metrics


def flat_metrics(m: dict) -> dict:
    """The figures under the dotted keys of ``evaluate --json``."""
    out = {"vae_psnr": m["vae_psnr"], "crops": m["crops"], "steps_seconds": m.get("seconds"),
           "inpaint.ours.colour": m["ours_colour_error"], "inpaint.ours.texture": m["ours_texture"],
           "inpaint.ours.seconds": m.get("inpaint_seconds"),
           "inpaint.ours.fill": m["inpaint_fill"], "inpaint.ours.strength": m["inpaint_strength"],
           "inpaint.telea.colour": m["telea_colour_error"], "inpaint.telea.texture": m["telea_texture"],
           "inpaint.exemplar.colour": m["exemplar_colour_error"], "inpaint.exemplar.texture": m["exemplar_texture"],
           "preview.last_step_colour_error": m["preview_last"], "preview.halfway_colour_error": m["preview_half"]}
    if "nodetail_colour_error" in m:
        out.update({"inpaint.nodetail.colour": m["nodetail_colour_error"], "inpaint.nodetail.texture": m["nodetail_texture"]})
    if "bare_colour_error" in m:
        out.update({"inpaint.denoiser_alone.colour": m["bare_colour_error"],
                    "inpaint.denoiser_alone.texture": m["bare_texture"]})
    for key in ("s03", "s06"):
        for part, name in (("ssim", "ssim"), ("colour", "colour"), ("seeds", "seed_difference")):
            if f"img2img_{key}_{part}" in m:
                out[f"img2img.{key}.{name}"] = m[f"img2img_{key}_{part}"]
    return out
