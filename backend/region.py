"""The pixel side of the region-diffusion core (numpy only, no torch).

Every operation comes down to: pixels + a coverage mask → a region to diffuse
at the model's working size → composited back. This module holds the parts
that are plain image processing: mask grow/shrink/feather, the working size,
masked-content prefill, detail transfer and seam-matched compositing that
leaves every pixel outside the final mask bit-exact.
"""
from __future__ import annotations

import numpy as np


# --- mask morphology -------------------------------------------------------

def _sliding_max(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Max over a window of 2*radius+1 along ``axis`` (sparse-table doubling)."""
    if radius <= 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius, radius)
    cur = np.pad(a, pad)
    window = 2 * radius + 1
    n = a.shape[axis]
    width = 1
    while width * 2 <= window:
        length = cur.shape[axis]
        lo = np.take(cur, np.arange(0, length - width), axis=axis)
        hi = np.take(cur, np.arange(width, length), axis=axis)
        cur = np.maximum(lo, hi)
        width *= 2
    # cur[i] = max over [i, i+width); cover [i, i+window) with two overlapping spans.
    first = np.take(cur, np.arange(0, n), axis=axis)
    second = np.take(cur, np.arange(window - width, window - width + n), axis=axis)
    return np.maximum(first, second)


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grows (pixels > 0) or shrinks (pixels < 0) a uint8/float mask by a square of that radius."""
    if pixels == 0:
        return mask
    if pixels > 0:
        return _sliding_max(_sliding_max(mask, pixels, 0), pixels, 1)
    top = np.iinfo(mask.dtype).max if mask.dtype.kind in "ui" else 1.0
    inverted = top - mask
    return top - _sliding_max(_sliding_max(inverted, -pixels, 0), -pixels, 1)


def _box_blur(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    if radius <= 0:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return ((hi - lo) / (2 * radius + 1)).astype(np.float32)


def feather_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """An edge that ramps from 0 to 1 over ``pixels``, centred on the mask's edge.

    Two box blurs (a smooth, finite-support kernel). Input uint8 (0-255) or
    float (0-1); output float32 in [0, 1]. A pixel farther than ``pixels / 2``
    from every masked pixel stays exactly 0.
    """
    m = mask.astype(np.float32) / (255.0 if mask.dtype == np.uint8 else 1.0)
    if pixels <= 1:
        return m
    half = pixels // 2
    r1 = half // 2
    r2 = half - r1
    for r in (r1, r2):
        m = _box_blur(_box_blur(m, r, 0), r, 1)
    # Clean float noise so "outside" is exactly zero and "inside" exactly one.
    m[m < 1e-6] = 0.0
    m[m > 1 - 1e-6] = 1.0
    return m


def blend_mask(mask: np.ndarray, grow: int, feather: int) -> np.ndarray:
    """The final soft mask of an inpaint: grown/shrunk, then feathered (float32 0-1)."""
    return feather_mask(grow_mask(mask, grow), feather)


# --- working size ------------------------------------------------------------

def working_size(width: int, height: int, native: int, multiple: int = 8) -> tuple[int, int]:
    """Scales a region to about the model's native area, keeping its aspect, in multiples of 8."""
    scale = native / np.sqrt(width * height)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


# --- prefill -------------------------------------------------------------------

FILL_MODES = ("original", "blur", "flat", "noise", "exemplar")  # what a masked area can start as (inpaint's `fill`)
OUTPAINT_FILLS = ("edge", "blur", "noise", "exemplar")  # what a new canvas area can start as (outpaint's `fill`)

def prefill(rgb: np.ndarray, mask: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """Fills the masked area (mask > 0.5) before encoding, as the ``fill`` setting asks.

    original: keep the pixels; blur: a blur of the surroundings grown into the
    hole; flat: the surroundings' mean colour; noise: random colour noise with
    the surroundings' mean and spread; exemplar: the hole continued from the
    surroundings' own patches (:mod:`backend.exemplar`), or the blur when there is
    nothing around the hole to copy from.
    """
    if mode == "original":
        return rgb
    hole = mask > 0.5
    keep = ~hole
    if mode == "exemplar":
        from .exemplar import NoExemplarSource, exemplar_fill

        try:
            return exemplar_fill(rgb, hole)
        except NoExemplarSource:
            mode = "blur"
    out = rgb.astype(np.float32).copy()
    if not keep.any():
        if mode == "noise":
            rng = np.random.default_rng(seed)
            out[:] = rng.uniform(0, 255, out.shape)
        else:
            out[:] = 127.5
        return out.round().astype(np.uint8)
    known = out[keep]
    if mode == "flat":
        out[hole] = known.mean(axis=0)
    elif mode == "noise":
        rng = np.random.default_rng(seed)
        mean, std = known.mean(axis=0), known.std(axis=0) + 8.0
        out[hole] = rng.normal(mean, std, size=(int(hole.sum()), 3))
    elif mode == "blur":
        out[hole] = _diffuse_into_hole(out, keep)[hole]
    else:
        raise ValueError(f"unknown fill mode {mode!r}")
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _diffuse_into_hole(rgb: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Normalised convolution at falling resolutions: each hole pixel gets the
    blurred colour of the nearest known pixels, smooth across the hole."""
    h, w = keep.shape
    weight = keep.astype(np.float32)
    acc = rgb * weight[..., None]
    result = np.zeros_like(rgb)
    filled = np.zeros((h, w), bool)
    radius = max(2, min(h, w) // 64)
    while not filled.all() and radius < 4 * max(h, w):
        wsum = _box_blur(_box_blur(weight, radius, 0), radius, 1)
        csum = _box_blur(_box_blur(acc, radius, 0), radius, 1)
        ok = (wsum > 1e-3) & ~filled
        result[ok] = csum[ok] / wsum[ok][:, None]
        filled |= ok
        radius *= 2
    result[~filled] = rgb[keep].mean(axis=0)
    return result


# --- compositing -------------------------------------------------------------

def seam_offset(original_rgb: np.ndarray, generated_rgb: np.ndarray, soft: np.ndarray, band: int = 8) -> np.ndarray:
    """Mean colour difference (original − generated) on a band just outside the mask.

    Outside the mask the model only reconstructs context, so any difference
    there is a colour drift of the VAE/model; removing it makes the seam match.
    """
    outside = soft <= 0.0
    ring = grow_mask((soft > 0).astype(np.uint8), band).astype(bool) & outside
    if ring.sum() < 16:
        return np.zeros(3, np.float32)
    diff = original_rgb[ring].astype(np.float32) - generated_rgb[ring].astype(np.float32)
    return diff.mean(axis=0)


def _binomial(a: np.ndarray) -> np.ndarray:
    """Two passes of the [1, 2, 1] / 4 kernel along both axes (close to a Gaussian of sigma 1), edges repeated."""
    out = a.astype(np.float32)
    for _ in range(2):
        p = np.concatenate([out[:1], out, out[-1:]], axis=0)
        out = (p[:-2] + 2 * p[1:-1] + p[2:]) * 0.25
        p = np.concatenate([out[:, :1], out, out[:, -1:]], axis=1)
        out = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) * 0.25
    return out


def _high_pass(rgb: np.ndarray) -> np.ndarray:
    """The finest detail of an image: itself minus a blur of sigma ≈ 1 px."""
    a = rgb.astype(np.float32)
    return a - _binomial(a)


def _window_means(img: np.ndarray, cy: np.ndarray, cx: np.ndarray, half: int) -> np.ndarray:
    """Mean colour of the windows [cy-half, cy+half) × [cx-half, cx+half), clipped to the image,
    from one integral image (any number of windows at the cost of one pass)."""
    h, w = img.shape[:2]
    integral = np.zeros((h + 1, w + 1, img.shape[2]), np.float64)
    integral[1:, 1:] = img.cumsum(0, dtype=np.float64).cumsum(1)
    y0, y1 = np.clip(cy - half, 0, h), np.clip(cy + half, 0, h)
    x0, x1 = np.clip(cx - half, 0, w), np.clip(cx + half, 0, w)
    area = np.maximum(1, (y1 - y0) * (x1 - x0))[:, None]
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (total / area).astype(np.float32)


def detail_gap(original_detail: np.ndarray, generated_rgb: np.ndarray, band: np.ndarray) -> float:
    """How much of the finest detail the generation lacks, 0..1, measured where it only
    reconstructs the original (``band``): sqrt(1 − E_generated / E_original), E the energy of the
    high-pass (``original_detail`` is the original's). 0 when the generation is as detailed there."""
    if band.sum() < 16:
        return 0.0
    e_orig = float((original_detail[band] ** 2).mean())
    e_gen = float((_high_pass(generated_rgb)[band] ** 2).mean())
    if e_orig <= 1e-6:
        return 0.0
    return float(np.sqrt(max(0.0, 1.0 - e_gen / e_orig)))


def transfer_detail(original: np.ndarray, generated_rgb: np.ndarray, soft: np.ndarray, seed: int = 0,
                    patch: int = 16, reach: int = 32, band: int = 16) -> np.ndarray:
    """Gives the masked area the fine detail (grain, foliage, gravel) that a small model's
    autoencoder cannot draw, taken from the surroundings.

    The generation is measured on a ``band`` just outside the mask, where it only reconstructs
    the original: the share of the original's high-pass energy it lacks there (``detail_gap``)
    is the share added inside. What is added is the original's own high-pass, in Hann-windowed
    patches (half-overlapping, energy-preserving) drawn from known pixels within ``reach`` of
    the mask; each patch is one of the 3 of 64 random candidates whose mean colour is closest
    to the generation's there, so a red cup gets the cup's detail and the wood beside it the wood's.
    Coarse content and colour stay the model's. ``original`` is RGBA (transparent pixels are
    not known); returns float32 RGB, changed only where ``soft`` > 0.
    """
    gen = generated_rgb.astype(np.float32)
    hole = soft > 0
    if not hole.any():
        return gen
    known = ~hole & (original[..., 3] > 0)
    ring = grow_mask(hole.astype(np.uint8), band).astype(bool) & known
    detail = _high_pass(original[..., :3])
    gap = detail_gap(detail, generated_rgb, ring)
    h, w = hole.shape
    half = patch // 2
    if gap <= 0.0 or h < patch or w < patch:
        return gen
    # Patch centres (cy, cx) whose patch [cy-half, cy+half) lies on known pixels.
    blocked = grow_mask((~known).astype(np.uint8), half).astype(bool)
    blocked[:half], blocked[h - half + 1:], blocked[:, :half], blocked[:, w - half + 1:] = True, True, True, True
    near = grow_mask(hole.astype(np.uint8), reach).astype(bool)
    cy, cx = np.nonzero(~blocked & near)
    if not len(cy):
        cy, cx = np.nonzero(~blocked)
        if not len(cy):
            return gen
    src_colour = _window_means(original[..., :3], cy, cx, half)
    ys, xs = np.nonzero(hole)
    ty = np.arange(ys.min() - half, ys.max() + 1, half)
    tx = np.arange(xs.min() - half, xs.max() + 1, half)
    gy, gx = np.meshgrid(ty, tx, indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    rng = np.random.default_rng(seed)
    cand = rng.integers(0, len(cy), size=(len(gy), min(64, len(cy))))
    want = _window_means(gen, gy + half, gx + half, half)
    dist = ((src_colour[cand] - want[:, None, :]) ** 2).sum(-1)
    best = np.argsort(dist, axis=1)[:, :3]
    pick = cand[np.arange(len(gy)), best[np.arange(len(gy)), rng.integers(0, best.shape[1], len(gy))]]
    added = _overlap_add(detail, cy[pick] - half, cx[pick] - half, gy, gx, patch, (h, w))
    out = gen.copy()
    out[hole] += gap * added[hole]
    return out


def _overlap_add(src: np.ndarray, sy: np.ndarray, sx: np.ndarray, ty: np.ndarray, tx: np.ndarray, patch: int,
                 shape: tuple[int, int]) -> np.ndarray:
    """Hann-windowed patches of ``src`` (top-left corners sy, sx; wholly inside it) laid at the
    grid corners ty, tx (stride patch/2, possibly hanging over the edges of ``shape``), summed
    and divided by the root of the summed squared window, so overlaps keep the detail's energy.

    Patches of one parity of the grid (row and column index even or odd) do not overlap, so each
    of the four parities is one vectorised gather and one scatter into a padded canvas.
    """
    if patch % 2:
        raise ValueError(f"patch must be even (half-overlapping patches), got {patch}")
    h, w = shape
    half = patch // 2
    win = np.hanning(patch + 2)[1:-1].astype(np.float32)
    win = np.outer(win, win)
    acc = np.zeros((h + 2 * patch, w + 2 * patch, src.shape[2]), np.float32)
    wsum = np.zeros((h + 2 * patch, w + 2 * patch), np.float32)
    d = np.arange(patch)
    row, col = (ty - ty.min()) // half, (tx - tx.min()) // half
    for parity in ((0, 0), (0, 1), (1, 0), (1, 1)):
        k = np.flatnonzero((row % 2 == parity[0]) & (col % 2 == parity[1]))
        if not len(k):
            continue
        ys = (sy[k, None] + d)[:, :, None]  # [n, patch, 1]
        xs = (sx[k, None] + d)[:, None, :]  # [n, 1, patch]
        yt = (ty[k, None] + patch + d)[:, :, None]
        xt = (tx[k, None] + patch + d)[:, None, :]
        acc[yt, xt] += src[ys, xs] * win[None, :, :, None]
        wsum[yt, xt] += win * win
    inner = (slice(patch, patch + h), slice(patch, patch + w))
    return acc[inner] / np.sqrt(np.maximum(wsum[inner], 1e-6))[..., None]


def composite(original: np.ndarray, generated_rgb: np.ndarray, soft: np.ndarray, *, match_seam: bool = True) -> np.ndarray:
    """Blends generated pixels over the original RGBA by ``soft`` (0-1).

    Pixels where ``soft`` is 0 are returned bit-exact. Blending is done in
    premultiplied alpha, so transparent areas (outpainting) take the new
    pixels' colour; generated pixels are opaque.
    """
    orig_rgb = original[..., :3].astype(np.float32)
    orig_a = original[..., 3:4].astype(np.float32) / 255.0
    gen = generated_rgb.astype(np.float32)
    if match_seam:
        gen = gen + seam_offset(original[..., :3], generated_rgb, soft)
    m = soft[..., None].astype(np.float32)
    out_a = orig_a * (1.0 - m) + m
    premult = orig_rgb * orig_a * (1.0 - m) + gen * m
    rgb = premult / np.maximum(out_a, 1e-6)
    out = np.empty_like(original)
    out[..., :3] = np.clip(rgb, 0, 255).round().astype(np.uint8)
    out[..., 3] = np.clip(out_a[..., 0] * 255.0, 0, 255).round().astype(np.uint8)
    untouched = soft <= 0.0
    out[untouched] = original[untouched]
    return out
