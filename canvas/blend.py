"""Blend modes and layer compositing on premultiplied float32 pixels.

Layers store straight-alpha uint8 (see :mod:`canvas.tiles`); compositing works
on a premultiplied float32 backdrop in [0, 1] and follows the W3C *Compositing
and Blending Level 1* formulas that OpenRaster refers to:

    co = as * (1 - ab) * Cs + as * ab * B(Cb, Cs) + (1 - as) * cb
    ao = as + ab * (1 - as)

where ``as`` already includes the layer opacity and mask.  ``add`` is the
Porter-Duff *plus* operator (``svg:plus``): ``co = min(1, cs + cb)``,
``ao = min(1, as + ab)``.
"""
from __future__ import annotations

import numpy as np

# Our names -> OpenRaster (SVG compositing) names.
BLEND_MODES: dict[str, str] = {
    "normal": "svg:src-over",
    "multiply": "svg:multiply",
    "screen": "svg:screen",
    "overlay": "svg:overlay",
    "darken": "svg:darken",
    "lighten": "svg:lighten",
    "add": "svg:plus",
    "difference": "svg:difference",
    "hard-light": "svg:hard-light",
    "soft-light": "svg:soft-light",
    "color-dodge": "svg:color-dodge",
    "color-burn": "svg:color-burn",
}
ORA_TO_MODE = {v: k for k, v in BLEND_MODES.items()}


def _multiply(cb, cs):
    return cb * cs


def _screen(cb, cs):
    return cb + cs - cb * cs


def _hard_light(cb, cs):
    return np.where(cs <= 0.5, cb * 2 * cs, _screen(cb, 2 * cs - 1))


def _overlay(cb, cs):
    return _hard_light(cs, cb)


def _soft_light(cb, cs):
    d = np.where(cb <= 0.25, ((16 * cb - 12) * cb + 4) * cb, np.sqrt(cb))
    return np.where(cs <= 0.5, cb - (1 - 2 * cs) * cb * (1 - cb), cb + (2 * cs - 1) * (d - cb))


def _color_dodge(cb, cs):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.minimum(1.0, cb / np.maximum(1 - cs, 1e-12))
    return np.where(cb <= 0, 0.0, np.where(cs >= 1, 1.0, q)).astype(cb.dtype)


def _color_burn(cb, cs):
    with np.errstate(divide="ignore", invalid="ignore"):
        q = 1 - np.minimum(1.0, (1 - cb) / np.maximum(cs, 1e-12))
    return np.where(cb >= 1, 1.0, np.where(cs <= 0, 0.0, q)).astype(cb.dtype)


SEPARABLE = {
    "multiply": _multiply,
    "screen": _screen,
    "overlay": _overlay,
    "darken": np.minimum,
    "lighten": np.maximum,
    "difference": lambda cb, cs: np.abs(cb - cs),
    "hard-light": _hard_light,
    "soft-light": _soft_light,
    "color-dodge": _color_dodge,
    "color-burn": _color_burn,
}


def source_alpha(src: np.ndarray, opacity: float, mask: np.ndarray | None) -> np.ndarray:
    """Effective source alpha in [0, 1]: layer alpha x opacity x mask."""
    a = src[..., 3].astype(np.float32)
    a *= np.float32(opacity / 255.0)
    if mask is not None:
        a *= mask.astype(np.float32) * np.float32(1 / 255.0)
    return a


def composite_layer(dst: np.ndarray, src: np.ndarray, opacity: float = 1.0,
                    mode: str = "normal", mask: np.ndarray | None = None) -> None:
    """Composite straight uint8 RGBA `src` onto premultiplied float32 `dst` in place."""
    a = source_alpha(src, opacity, mask)
    if mode == "normal":
        ia = 1 - a
        dst *= ia[..., None]
        a255 = a * np.float32(1 / 255.0)
        dst[..., :3] += src[..., :3] * a255[..., None]
        dst[..., 3] += a
        return
    cs = src[..., :3].astype(np.float32) * np.float32(1 / 255.0)
    if mode == "add":
        dst[..., :3] += cs * a[..., None]
        dst[..., 3] += a
        np.minimum(dst, 1.0, out=dst)
        return
    fn = SEPARABLE.get(mode)
    if fn is None:
        raise ValueError(f"unknown blend mode {mode!r}")
    ab = dst[..., 3].copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cb = np.where(ab[..., None] > 1e-7, dst[..., :3] / ab[..., None], 0).astype(np.float32)
    np.clip(cb, 0, 1, out=cb)
    b = np.clip(fn(cb, cs), 0, 1).astype(np.float32)
    as_ = a[..., None]
    dst[..., :3] = as_ * (1 - ab[..., None]) * cs + as_ * ab[..., None] * b + (1 - as_) * dst[..., :3]
    dst[..., 3] = a + ab * (1 - a)


def to_straight_u8(premul: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Premultiplied float32 [0, 1] -> straight-alpha uint8 RGBA."""
    a = premul[..., 3]
    if out is None:
        out = np.empty(premul.shape, np.uint8)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.where(a > 1e-7, np.float32(255.0) / a, 0).astype(np.float32)
    rgb = premul[..., :3] * scale[..., None]
    np.clip(rgb, 0, 255, out=rgb)
    out[..., :3] = np.rint(rgb)
    out[..., 3] = np.rint(np.clip(a, 0, 1) * 255)
    return out


def to_premul_f32(rgba: np.ndarray) -> np.ndarray:
    """Straight uint8 RGBA -> premultiplied float32 in [0, 1]."""
    f = rgba.astype(np.float32) * np.float32(1 / 255.0)
    f[..., :3] *= f[..., 3:4]
    return f
