"""Colour fix for diffusion tiles: keep the model's detail, take the low frequencies from the reference.

Each diffusion tile drifts a little in colour and brightness, differently per tile; blended
side by side the drifts show as seams in flat areas and gradients. Like StableSR's wavelet
colour fix, the tile's low-pass (a smooth blur) is replaced by the low-pass of the reference (the
plainly upscaled input of the same tile), which is seam-free by construction, so only the
high-frequency detail the model adds differs between tiles, and the feathered overlap hides it.
"""
from __future__ import annotations

import numpy as np

from ..region import _box_blur


def low_pass(rgb: np.ndarray, radius: int) -> np.ndarray:
    a = rgb.astype(np.float32)
    for _ in range(2):
        a = _box_blur(_box_blur(a, radius, 0), radius, 1)
    return a


def colour_fix(generated: np.ndarray, reference: np.ndarray, radius: int | None = None) -> np.ndarray:
    """float32 RGB (0-255): ``generated`` with the low frequencies of ``reference`` (same shape)."""
    if radius is None:
        radius = max(2, min(generated.shape[:2]) // 32)
    gen = generated[..., :3].astype(np.float32)
    return gen - low_pass(gen, radius) + low_pass(reference[..., :3], radius)
