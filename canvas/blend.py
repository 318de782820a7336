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


# ab * B(Cb, Cs) computed from the premultiplied backdrop d = ab * Cb, without a division.
PREMUL = {
    "multiply": lambda d, ab, cs: d * cs,
    "screen": lambda d, ab, cs: d + ab * cs - d * cs,
    "darken": lambda d, ab, cs: np.minimum(d, ab * cs),
    "lighten": lambda d, ab, cs: np.maximum(d, ab * cs),
    "difference": lambda d, ab, cs: np.abs(d - ab * cs),
}


def source_alpha(src: np.ndarray, opacity: float, mask: np.ndarray | None) -> np.ndarray:
    """Effective source alpha in [0, 1] (H, W): layer alpha x opacity x mask."""
    a = np.multiply(src[..., 3], np.float32(opacity / 255.0), dtype=np.float32)
    if mask is not None:
        a *= np.multiply(mask, np.float32(1 / 255.0), dtype=np.float32)
    return a


def composite_layer(dst: np.ndarray, src: np.ndarray, opacity: float = 1.0,
                    mode: str = "normal", mask: np.ndarray | None = None) -> None:
    """Composite straight uint8 RGBA `src` (H, W, 4) onto `dst` in place.

    `dst` is premultiplied float32 in *planar* layout (4, H, W): numpy is several
    times faster on whole planes than on interleaved RGBA."""
    s = src.transpose(2, 0, 1)
    a = source_alpha(src, opacity, mask)
    if mode == "normal":
        ia = 1 - a
        dst *= ia
        a255 = a * np.float32(1 / 255.0)
        for c in range(3):
            dst[c] += s[c] * a255
        dst[3] += a
        return
    if mode == "add":
        a255 = a * np.float32(1 / 255.0)
        for c in range(3):
            dst[c] += s[c] * a255
        dst[3] += a
        np.minimum(dst, 1.0, out=dst)
        return
    fn = SEPARABLE.get(mode)
    if fn is None:
        raise ValueError(f"unknown blend mode {mode!r}")
    cs = np.multiply(s[:3], np.float32(1 / 255.0), dtype=np.float32)
    ab = dst[3].copy()
    fast = PREMUL.get(mode)
    if fast is not None:
        bp = fast(dst[:3], ab, cs)  # = ab * B(Cb, Cs)
    else:
        cb = np.zeros_like(cs)
        np.divide(dst[:3], ab, out=cb, where=ab > 1e-7)
        np.minimum(cb, 1, out=cb)
        bp = fn(cb, cs)  # every mode maps [0, 1] inputs into [0, 1]
        bp *= ab
    # co = a (1 - ab) cs + a ab B + (1 - a) cb_premul
    dst[:3] *= 1 - a
    cs *= a * (1 - ab)
    dst[:3] += cs
    bp *= a
    dst[:3] += bp
    dst[3] = a + ab * (1 - a)


def over(dst: np.ndarray, top: np.ndarray) -> None:
    """Premultiplied planar `top` over `dst`, in place (normal layers above a painted one)."""
    ia = 1 - top[3]
    dst *= ia
    dst += top


def to_straight_u8(premul: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Planar premultiplied float32 (4, H, W) in [0, 1] -> straight-alpha uint8 RGBA (H, W, 4)."""
    a = premul[3]
    if out is None:
        out = np.empty(premul.shape[1:] + (4,), np.uint8)
    scale = np.zeros_like(a)
    np.divide(np.float32(255.0), a, out=scale, where=a > 1e-7)
    tmp = np.empty_like(a)
    for c in range(3):
        np.multiply(premul[c], scale, out=tmp)
        np.maximum(tmp, 0, out=tmp)
        np.minimum(tmp, 255, out=tmp)
        np.rint(tmp, out=tmp)
        out[..., c] = tmp
    np.maximum(a, 0, out=tmp)
    np.minimum(tmp, 1, out=tmp)
    tmp *= 255
    np.rint(tmp, out=tmp)
    out[..., 3] = tmp
    return out


def to_premul_f32(rgba: np.ndarray) -> np.ndarray:
    """Straight uint8 RGBA (H, W, 4) -> planar premultiplied float32 (4, H, W) in [0, 1]."""
    f = np.multiply(rgba.transpose(2, 0, 1), np.float32(1 / 255.0), dtype=np.float32)
    f[:3] *= f[3]
    return f
