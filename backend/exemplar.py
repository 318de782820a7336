"""Exemplar-based fill: the hole continued from the image itself (OpenCV contrib's shift-map).

Photoshop's Content-Aware Fill and GIMP's Resynthesizer copy patches of the picture into the hole;
OpenCV's ``xphoto.inpaint`` with ``INPAINT_SHIFTMAP`` (He and Sun, "Statistics of patch offsets for
image completion", 2012) does the same by choosing, per pixel, an offset into the known part, so a
roof line or a row of windows carries on across the hole. We use it as a prefill that the
diffusion model then refines. The search works in CIELab on the region at most
:data:`MAX_SIDE` px a side (a larger region is searched scaled down and the fill scaled back up),
so its time and memory stay bounded whatever the hole.
"""
from __future__ import annotations

import numpy as np

MAX_SIDE = 384  # px: the shift-map's search area a side (≈0.7 s for 256², 1.8 s for 384² on one core)
MIN_SOURCE = 0.05  # the known share of the region below which there is nothing to copy from


class NoExemplarSource(ValueError):
    """The exemplar fill cannot run here; ``str(error)`` is the sentence a painter is shown."""


NOTHING_TO_COPY = "Nothing around the hole to copy from: the blur fill was used instead."
NO_CONTRIB = ("The exemplar fill needs OpenCV's contrib modules (pip install opencv-contrib-python-headless, "
              "with no other opencv package beside it): the blur fill was used instead.")


def unavailable() -> str | None:
    """The sentence to show when this installation cannot run the exemplar fill, else None."""
    try:
        import cv2
    except ImportError:
        return NO_CONTRIB
    return None if hasattr(cv2, "xphoto") else NO_CONTRIB


def exemplar_fill(rgb: np.ndarray, hole: np.ndarray, *, max_side: int = MAX_SIDE) -> np.ndarray:
    """``rgb`` (h, w, 3) uint8 with the ``hole`` (h, w) bool filled from the rest of it."""
    import cv2

    if not hasattr(cv2, "xphoto"):  # opencv-python or -headless installed over the contrib build
        raise NoExemplarSource(NO_CONTRIB)
    keep = ~hole
    if keep.mean() < MIN_SOURCE or keep.sum() < 64:
        raise NoExemplarSource(NOTHING_TO_COPY)
    if not hole.any():
        return rgb
    h, w = hole.shape
    scale = min(1.0, max_side / max(h, w))
    small, small_hole = rgb, hole
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        # A pixel partly in the hole is hole: no half-known pixel is copied from.
        small_hole = cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        small_hole |= cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    lab = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2Lab)
    filled = np.zeros_like(lab)
    cv2.xphoto.inpaint(lab, (~small_hole).astype(np.uint8), filled, cv2.xphoto.INPAINT_SHIFTMAP)
    filled = cv2.cvtColor(filled, cv2.COLOR_Lab2RGB)
    if scale < 1.0:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC)
    out = rgb.copy()
    out[hole] = filled[hole]
    return out
