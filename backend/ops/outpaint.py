"""Outpaint: extend the canvas by left/right/top/bottom pixels and paint the new area.

The new area is prefilled (``edge``: the border pixels stretched outwards; ``blur``: the
surroundings blurred into it; ``noise``: colour noise of the surroundings' statistics) and painted
through the shared region core (:func:`backend.core.diffuse_region`), like an inpaint whose mask
is the new strip plus a band of ``overlap`` pixels into the existing image, feathered linearly
across the band (1 at the old edge, 0 at ``overlap`` px inside). Sides are done left, right, top,
bottom; an extension wider than half the model's native size is done in several passes outwards,
each seeing the last one's result as context, and a side longer than the model's native size is done
in overlapping segments along its length, each blended into the one before it, so every diffusion
runs on a region of about the model's working size. Pixels of the original farther than ``overlap``
from an extended side are returned bit-exact.

The result covers the whole extended canvas; its rect is ``request.result_rect`` (document
coordinates: it starts ``left``/``top`` px before the original's origin, which may be negative).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..core import JobContext, diffuse_region, effective_steps
from ..errors import InvalidRequest
from ..events import ResultImage
from ..exemplar import NoExemplarSource, exemplar_fill, unavailable
from ..region import OUTPAINT_FILLS, prefill
from ..requests import MAX_SIDE, GenerationRequest, _check_bool, _check_range, _check_whole, recorded, request_parameters
from .base import Operation, check_model, diffusion_settings, load_model, native_size_guess, region_seed

GUIDED_OUTPAINT_FILLS = ("edge", "blur", "exemplar")  # prefills made from the old image: colour guidance follows them
MAX_EXTEND = 16384


@dataclass(frozen=True, eq=False)
class OutpaintRequest(GenerationRequest):
    """Extends ``image`` by ``left``/``right``/``top``/``bottom`` pixels and paints the new area.

    The result covers the extended canvas: its rect starts at ``origin - (left, top)``, so it may
    begin at negative document coordinates (the studio grows the document to it). Pixels of
    ``image`` farther than ``overlap`` from an extended side come back bit-exact.
    """

    left: int = recorded(0, "Extend left")
    right: int = recorded(0, "Extend right")
    top: int = recorded(0, "Extend top")
    bottom: int = recorded(0, "Extend bottom")
    overlap: int = recorded(48, "Overlap")
    fill: str = recorded("blur", "Fill")
    restore_detail: bool = recorded(True, "Detail transfer")

    operation: ClassVar[str] = "outpaint"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("left", "right", "top", "bottom", "overlap"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidRequest(f"`{name}` must be a whole number of pixels, but is {value!r}.")
        for name in ("left", "right", "top", "bottom"):
            _check_range(name, getattr(self, name), 0, MAX_EXTEND, f"extend a side by 0 to {MAX_EXTEND} px.")
        if not (self.left or self.right or self.top or self.bottom):
            raise InvalidRequest("`left`, `right`, `top` and `bottom` are all 0: extend at least one side.")
        h, w = self.image.shape[:2]
        _check_range("overlap", self.overlap, 0, 512, "blend 0 to 512 px of the old image into the new area.")
        if self.overlap > min(w, h) // 2:
            raise InvalidRequest(
                f"`overlap` {self.overlap} px is more than half the image ({w}×{h}): use at most {min(w, h) // 2}."
            )
        new_w, new_h = w + self.left + self.right, h + self.top + self.bottom
        if new_w > MAX_SIDE or new_h > MAX_SIDE:
            raise InvalidRequest(
                f"The extended image would be {new_w}×{new_h} px; each side must be at most {MAX_SIDE}: extend less."
            )
        if self.fill not in OUTPAINT_FILLS:
            raise InvalidRequest(f"`fill` {self.fill!r} is unknown: choose one of {', '.join(OUTPAINT_FILLS)}.")
        _check_bool(self, "restore_detail")

    @property
    def result_rect(self) -> tuple[int, int, int, int]:
        """The extended canvas in document coordinates."""
        h, w = self.image.shape[:2]
        ox, oy = self.origin
        return (ox - self.left, oy - self.top, w + self.left + self.right, h + self.top + self.bottom)

    @property
    def control_area(self) -> tuple[int, int, int, int]:
        return self.result_rect


@dataclass(frozen=True)
class Pass:
    side: str  # "left", "right", "top" or "bottom"
    amount: int  # new pixels this pass adds on that side


def plan_passes(request: OutpaintRequest, native: int) -> list[Pass]:
    step = max(32, native // 2)
    passes = []
    for side in ("left", "right", "top", "bottom"):
        remaining = getattr(request, side)
        while remaining > 0:
            e = min(step, remaining)
            passes.append(Pass(side, e))
            remaining -= e
    return passes


def segments(length: int, native: int) -> list[tuple[int, int]]:
    """Overlapping (start, end) spans of at most ``native`` covering ``length`` (one span if it fits)."""
    if length <= native:
        return [(0, length)]
    overlap = max(32, native // 4)
    n = int(np.ceil((length - overlap) / (native - overlap)))
    size = int(np.ceil((length + (n - 1) * overlap) / n))
    starts = [min(k * (size - overlap), length - size) for k in range(n)]
    return [(s, s + size) for s in starts]


def _pass_lengths(request: OutpaintRequest, passes: list[Pass]) -> list[int]:
    """The known edge's length each pass extends along (left/right: height; top/bottom: width)."""
    h, w = request.image.shape[:2]
    width = w + request.left + request.right
    return [h if p.side in ("left", "right") else width for p in passes]


def total(request: OutpaintRequest) -> int:
    native = native_size_guess(request.model)
    passes = plan_passes(request, native)
    regions = sum(len(segments(n, native)) for n in _pass_lengths(request, passes))
    return regions * effective_steps(request.steps, request.strength) * request.count


def _band(length: int, overlap: int) -> np.ndarray:
    """Mask values for the ``length`` known pixels next to the edge, nearest first: 1 → 0 over ``overlap``."""
    d = np.arange(length, dtype=np.float32) + 0.5
    return np.clip(1.0 - d / max(overlap, 1), 0.0, 1.0) if overlap > 0 else np.zeros(length, np.float32)


def _region(p: Pass, known, overlap: int, context: int, shape):
    """The pass's region (x0, y0, x1, y1) in canvas coordinates and its soft mask."""
    kx0, ky0, kx1, ky1 = known
    e = p.amount
    horizontal = p.side in ("left", "right")
    extent = (kx1 - kx0) if horizontal else (ky1 - ky0)
    c = min(context, extent)
    band = _band(c, min(overlap, c))
    if p.side == "left":
        box = (kx0 - e, ky0, kx0 + c, ky1)
        profile = np.concatenate([np.ones(e, np.float32), band])
    elif p.side == "right":
        box = (kx1 - c, ky0, kx1 + e, ky1)
        profile = np.concatenate([band[::-1], np.ones(e, np.float32)])
    elif p.side == "top":
        box = (kx0, ky0 - e, kx1, ky0 + c)
        profile = np.concatenate([np.ones(e, np.float32), band])
    else:
        box = (kx0, ky1 - c, kx1, ky1 + e)
        profile = np.concatenate([band[::-1], np.ones(e, np.float32)])
    x0, y0, x1, y1 = box
    if horizontal:
        soft = np.broadcast_to(profile[None, :], (y1 - y0, x1 - x0)).copy()
    else:
        soft = np.broadcast_to(profile[:, None], (y1 - y0, x1 - x0)).copy()
    return box, soft


def _grow_known(p: Pass, known):
    kx0, ky0, kx1, ky1 = known
    e = p.amount
    return {"left": (kx0 - e, ky0, kx1, ky1), "right": (kx0, ky0, kx1 + e, ky1),
            "top": (kx0, ky0 - e, kx1, ky1), "bottom": (kx0, ky0, kx1, ky1 + e)}[p.side]


def _prefill(pixels: np.ndarray, soft: np.ndarray, p: Pass, fill: str, seed: int) -> np.ndarray:
    """RGB of the region with its still empty (alpha 0) new pixels filled as ``fill`` asks.

    Pixels an earlier segment already painted stay as they are: they are context now.
    """
    rgb = pixels[..., :3].copy()
    empty = pixels[..., 3] == 0
    e = p.amount
    if fill == "edge":
        stretched = rgb.copy()
        if p.side == "left":
            stretched[:, :e] = rgb[:, e: e + 1]
        elif p.side == "right":
            stretched[:, -e:] = rgb[:, -e - 1: -e]
        elif p.side == "top":
            stretched[:e] = rgb[e: e + 1]
        else:
            stretched[-e:] = rgb[-e - 1: -e]
        return np.where(empty[..., None], stretched, rgb)
    hole = np.zeros(soft.shape, np.float32)
    if p.side == "left":
        hole[:, :e] = 1
    elif p.side == "right":
        hole[:, -e:] = 1
    elif p.side == "top":
        hole[:e] = 1
    else:
        hole[-e:] = 1
    hole *= empty
    if fill == "exemplar":
        return _exemplar_outwards(rgb, hole > 0.5, p)
    return prefill(rgb, hole, fill, seed)


def _exemplar_outwards(rgb: np.ndarray, hole: np.ndarray, p: Pass) -> np.ndarray:
    """The exemplar fill of a strip at the region's edge. The shift-map only fills a hole with known
    pixels around it, so the known context is put again beyond the strip, as if the picture wrapped
    round: the strip then lies between the picture's edge and its far side, and is continued from both."""
    flip = p.side in ("top", "bottom")
    if flip:  # work on columns as rows
        rgb, hole = rgb.transpose(1, 0, 2), hole.T
    at_start = p.side in ("left", "top")
    if at_start:
        rgb, hole = rgb[:, ::-1], hole[:, ::-1]
    e = p.amount
    known = rgb[:, : rgb.shape[1] - e]
    # The far side: the known context again, as it starts (wrapped round, not reflected: a reflection
    # makes mirror-image shapes at the seam).
    beyond = known[:, : max(16, min(known.shape[1], e))]
    wide = np.concatenate([rgb, beyond], axis=1)
    wide_hole = np.concatenate([hole, np.zeros(beyond.shape[:2], bool)], axis=1)
    try:
        out = exemplar_fill(np.ascontiguousarray(wide), wide_hole)[:, : rgb.shape[1]]
    except NoExemplarSource:
        out = prefill(np.ascontiguousarray(rgb), hole.astype(np.float32), "blur")
    if at_start:
        out = out[:, ::-1]
    if flip:
        out = out.transpose(1, 0, 2)
    return np.ascontiguousarray(out)


def _segment(box, soft: np.ndarray, p: Pass, span: tuple[int, int], first: bool, overlap: int):
    """Cuts a pass's region to one segment along the edge; later segments fade in over ``overlap``."""
    x0, y0, x1, y1 = box
    s0, s1 = span
    along = np.ones(s1 - s0, np.float32)
    if not first:
        ramp = min(overlap, s1 - s0)
        along[:ramp] = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    if p.side in ("left", "right"):
        return (x0, y0 + s0, x1, y0 + s1), soft[s0:s1] * along[:, None]
    return (x0 + s0, y0, x0 + s1, y1), soft[:, s0:s1] * along[None, :]


def run(ctx: JobContext, request: OutpaintRequest) -> tuple[ResultImage, ...]:
    model = load_model(ctx, request)
    native = model.native_size
    passes = plan_passes(request, native)
    spans = [segments(n, native) for n in _pass_lengths(request, passes)]
    n_regions = sum(len(s) for s in spans)
    total = n_regions * effective_steps(request.steps, request.strength) * request.count
    if total != ctx.total:
        ctx.total = total
        ctx.stage(f"{n_regions} regions")
    h, w = request.image.shape[:2]
    L, T = request.left, request.top
    rx, ry, rw, rh = request.result_rect
    canvas = np.zeros((rh, rw, 4), np.uint8)
    canvas[T: T + h, L: L + w] = request.image
    context = max(2 * request.overlap, native // 2)
    fill, notes = request.fill, ()
    if fill == "exemplar" and unavailable():
        fill, notes = "blur", (unavailable(),)
        ctx.stage(notes[0])
    results = []
    for k, seed in enumerate(request.seeds):
        c = canvas.copy()
        changed = np.zeros((rh, rw), np.float32)
        known = (L, T, L + w, T + h)
        info: dict = {}
        done = 0
        for i, p in enumerate(passes):
            box, pass_soft = _region(p, known, request.overlap, context, c.shape)
            for j, span in enumerate(spans[i]):
                ctx.check_cancel()
                (x0, y0, x1, y1), soft = _segment(box, pass_soft, p, span, j == 0, max(32, native // 4))
                # Each region has its own seed, derived from the variation's: the result is
                # reproduced from the one seed its parameters record.
                region = region_seed(seed, done)
                pixels = c[y0:y1, x0:x1].copy()
                pixels[..., :3] = _prefill(pixels, soft, p, fill, region)
                stage = f"Region {done + 1} of {n_regions}" if n_regions > 1 else ""
                if request.count > 1:
                    stage = f"Image {k + 1} of {request.count}" + (f", {stage.lower()}" if stage else "")
                settings = diffusion_settings(request, region, model, fill="original",
                                              guide_colours=request.fill in GUIDED_OUTPAINT_FILLS,
                                              restore_detail=request.restore_detail)
                region_rect = (rx + x0, ry + y0, x1 - x0, y1 - y0)
                out, info = diffuse_region(ctx, model, pixels, soft, region_rect, settings, stage=stage)
                touched = soft > 0
                c[y0:y1, x0:x1][touched] = out[touched]
                changed[y0:y1, x0:x1] = np.maximum(changed[y0:y1, x0:x1], soft)
                done += 1
            known = _grow_known(p, known)
        params = request_parameters(request, seed=seed, model=model, Size=f"{rw}x{rh}",
                                    **{"Region size": info.get("Size", "")})
        mask = (np.clip(changed, 0, 1) * 255 + 0.5).astype(np.uint8)
        results.append(ResultImage(image=c, rect=request.result_rect, mask=mask, seed=seed, parameters=params,
                                   notes=notes))
    return tuple(results)


OPERATION = Operation(OutpaintRequest, run, total, check_model)
