"""Requests: one frozen dataclass per operation, holding copies of its pixels.

A request is a snapshot. It is built on the caller's thread (the studio's GUI
thread or the CLI) from copies of just the pixels the job needs, validated on
construction, and never changes afterwards: the worker cannot see the live
document. Every validation error names the field and says what to do, in the
style of diffusers' ``check_inputs``.

Coordinates: ``image`` is a crop of the document whose top-left pixel sits at
``origin`` in document coordinates; results and previews come back with
rectangles in document coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from .errors import InvalidRequest
from .samplers import DEFAULT_SAMPLER, SAMPLERS

FILL_MODES = ("original", "blur", "flat", "noise")
MAX_SEED = 2**32 - 1
MAX_SIDE = 65536


def _frozen_pixels(array, name: str, channels: int | None) -> np.ndarray:
    """A private, read-only uint8 copy; RGB images get an opaque alpha channel."""
    if not isinstance(array, np.ndarray):
        raise InvalidRequest(f"`{name}` must be a numpy array of pixels, but is {type(array).__name__}.")
    if array.dtype != np.uint8:
        raise InvalidRequest(f"`{name}` must hold uint8 pixels (0-255), but holds {array.dtype}.")
    if channels == 4 and array.ndim == 3 and array.shape[2] == 3:
        alpha = np.full(array.shape[:2] + (1,), 255, np.uint8)
        array = np.concatenate([array, alpha], axis=2)
    expected = (2,) if channels is None else (3,)
    if array.ndim not in expected or (channels and array.shape[2] != channels):
        shape = "(height, width)" if channels is None else f"(height, width, {channels})"
        raise InvalidRequest(f"`{name}` must have the shape {shape}, but has {array.shape}.")
    h, w = array.shape[:2]
    if h < 8 or w < 8:
        raise InvalidRequest(f"`{name}` is {w}×{h} pixels; it must be at least 8×8.")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise InvalidRequest(f"`{name}` is {w}×{h} pixels; each side must be at most {MAX_SIDE}.")
    copy = np.array(array, dtype=np.uint8, copy=True, order="C")
    copy.flags.writeable = False
    return copy


def _check_range(name: str, value, low, high, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"`{name}` must be a number, but is {value!r}.")
    if not (low <= value <= high):
        raise InvalidRequest(f"`{name}` must be between {low} and {high}, but is {value}: {hint}")


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What every diffusion operation shares."""

    image: np.ndarray
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance: float = 7.0
    strength: float = 1.0
    count: int = 1
    sampler: str = DEFAULT_SAMPLER
    origin: tuple[int, int] = (0, 0)
    allow_pickle: bool = False
    # Inpaint and outpaint, with a model that asks for it ("restore_detail" in latent_studio.json):
    # give the masked area the surroundings' fine detail that the model's autoencoder loses.
    restore_detail: bool = True

    operation: ClassVar[str] = "generate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", _frozen_pixels(self.image, "image", 4))
        object.__setattr__(self, "origin", tuple(int(v) for v in self.origin))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidRequest(f"`seed` must be a whole number, but is {self.seed!r}.")
        _check_range("seed", self.seed, 0, MAX_SEED, "use a seed from 0 to 4294967295.")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool):
            raise InvalidRequest(f"`steps` must be a whole number, but is {self.steps!r}.")
        _check_range("steps", self.steps, 1, 500, "choose a number of denoising steps such as 20.")
        _check_range("guidance", self.guidance, 0.0, 50.0, "a guidance (CFG) scale of 5 to 9 is usual.")
        _check_range("strength", self.strength, 0.0, 1.0, "use 1 to repaint fully, lower to keep more.")
        if self.strength <= 0.0:
            raise InvalidRequest("`strength` must be above 0: at 0 nothing would change.")
        self._check_denoising()
        if not isinstance(self.count, int) or isinstance(self.count, bool):
            raise InvalidRequest(f"`count` must be a whole number, but is {self.count!r}.")
        _check_range("count", self.count, 1, 64, "ask for 1 to 64 variations.")
        if self.seed + self.count - 1 > MAX_SEED:
            raise InvalidRequest("`seed` + `count` runs past 4294967295: choose a smaller seed.")
        if self.sampler not in SAMPLERS:
            names = ", ".join(SAMPLERS)
            raise InvalidRequest(f"`sampler` {self.sampler!r} is unknown: choose one of {names}.")
        for name in ("allow_pickle", "restore_detail"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequest(f"`{name}` must be true or false, but is {getattr(self, name)!r}.")
        for name in ("prompt", "negative_prompt", "model"):
            if not isinstance(getattr(self, name), str):
                raise InvalidRequest(f"`{name}` must be text, but is {getattr(self, name)!r}.")

    def _check_denoising(self) -> None:
        if self.steps * self.strength < 1:
            raise InvalidRequest(
                f"`steps` × `strength` is {self.steps * self.strength:g}, which leaves no denoising step: "
                "raise the steps or the strength."
            )

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.count)

    def summary(self) -> dict[str, object]:
        """The scalar fields, for logs and the queue panel."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not isinstance(getattr(self, f.name), np.ndarray)}


@dataclass(frozen=True, eq=False)
class InpaintRequest(GenerationRequest):
    """Repaint where ``mask`` is set (255 = repaint, grey = partly)."""

    mask: np.ndarray = field(default=None)
    grow: int = 8
    feather: int = 8
    fill: str = "original"
    padding: int = 48

    operation: ClassVar[str] = "inpaint"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mask is None:
            raise InvalidRequest("`mask` is missing: paint or select the area to repaint.")
        object.__setattr__(self, "mask", _frozen_pixels(self.mask, "mask", None))
        if self.mask.shape != self.image.shape[:2]:
            mh, mw = self.mask.shape
            ih, iw = self.image.shape[:2]
            raise InvalidRequest(
                f"`mask` is {mw}×{mh} but the image is {iw}×{ih}: the mask must be the size of the image."
            )
        if not self.mask.any():
            raise InvalidRequest("`mask` is empty: paint (in white) or select the area to repaint.")
        _check_range("grow", self.grow, -256, 256, "grow (or, negative, shrink) the mask by up to 256 px.")
        _check_range("feather", self.feather, 0, 256, "feather the mask edge by 0 to 256 px.")
        _check_range("padding", self.padding, 0, 4096, "add 0 to 4096 px of context around the mask.")
        if self.fill not in FILL_MODES:
            raise InvalidRequest(f"`fill` {self.fill!r} is unknown: choose one of {', '.join(FILL_MODES)}.")

    @classmethod
    def from_document(cls, image: np.ndarray, mask: np.ndarray, *, origin=(0, 0), **kwargs) -> "InpaintRequest":
        """Crops a large document to the part the job needs before copying it.

        ``image`` and ``mask`` may be views of the whole document; only the
        mask's bounding box plus grow, feather and padding is copied.
        """
        if not isinstance(mask, np.ndarray) or mask.ndim != 2 or not isinstance(image, np.ndarray):
            return cls(image=image, mask=mask, origin=origin, **kwargs)
        if mask.shape != image.shape[:2]:
            return cls(image=image, mask=mask, origin=origin, **kwargs)  # raises with the sizes
        box = mask_bbox(mask)
        if box is None:
            return cls(image=image[:8, :8], mask=mask[:8, :8], origin=origin, **kwargs)  # raises: empty
        grow = max(0, int(kwargs.get("grow", cls.grow)))
        margin = grow + max(0, int(kwargs.get("feather", cls.feather))) + max(0, int(kwargs.get("padding", cls.padding)))
        x0, y0, x1, y1 = box
        h, w = mask.shape
        x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
        x1, y1 = min(w, x1 + margin), min(h, y1 + margin)
        if x1 - x0 < 8:
            x0, x1 = (max(0, min(x0, w - 8)), max(0, min(x0, w - 8)) + 8) if w >= 8 else (x0, x1)
        if y1 - y0 < 8:
            y0, y1 = (max(0, min(y0, h - 8)), max(0, min(y0, h - 8)) + 8) if h >= 8 else (y0, y1)
        ox, oy = origin
        return cls(
            image=image[y0:y1, x0:x1], mask=mask[y0:y1, x0:x1], origin=(ox + x0, oy + y0), **kwargs
        )


@dataclass(frozen=True, eq=False)
class Img2ImgRequest(GenerationRequest):
    """Variations of a whole layer or region: ``image`` is re-imagined at ``strength``."""

    strength: float = 0.6

    operation: ClassVar[str] = "img2img"


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the non-zero pixels, end-exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]: rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


OUTPAINT_FILLS = ("edge", "blur", "noise")
MAX_EXTEND = 16384


@dataclass(frozen=True, eq=False)
class OutpaintRequest(GenerationRequest):
    """Extends ``image`` by ``left``/``right``/``top``/``bottom`` pixels and paints the new area.

    The result covers the extended canvas: its rect starts at ``origin - (left, top)``, so it may
    begin at negative document coordinates (the studio grows the document to it). Pixels of
    ``image`` farther than ``overlap`` from an extended side come back bit-exact.
    """

    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0
    overlap: int = 48
    fill: str = "blur"

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

    @property
    def result_rect(self) -> tuple[int, int, int, int]:
        """The extended canvas in document coordinates."""
        h, w = self.image.shape[:2]
        ox, oy = self.origin
        return (ox - self.left, oy - self.top, w + self.left + self.right, h + self.top + self.bottom)


@dataclass(frozen=True, eq=False)
class UpscaleRequest(GenerationRequest):
    """Upscales ``image`` by ``scale`` with a pretrained upscaler, then optionally refines it by diffusion.

    ``upscaler``: "" for the bundled Real-ESRGAN x4plus, "lanczos", an upscaler file (ESRGAN,
    Real-ESRGAN, SwinIR, HAT… as ``.safetensors`` or ``.pth``), a diffusers folder of the Stable
    Diffusion x4 upscaler or of CompVis LDM super-resolution, or a name in the model folder.
    ``refine``: after upscaling, an img2img pass per tile at ``strength`` with ``model`` (any SD
    family model; "" = the embedded one). ``tile``: tile side in pixels of each stage's input
    (0 = chosen from the memory available). ``noise_level``: the SD x4 upscaler's noise level.

    The result is the whole upscaled image with its rect at ``origin * scale`` (the studio scales
    the document by ``scale``).
    """

    upscaler: str = ""
    scale: int = 4
    refine: bool = False
    strength: float = 0.3
    tile: int = 0
    noise_level: int = 20

    operation: ClassVar[str] = "upscale"

    def _check_denoising(self) -> None:
        if self.refine:  # `strength` is the refine's; the upscalers themselves run all `steps`
            super()._check_denoising()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.upscaler, str):
            raise InvalidRequest(f"`upscaler` must be text, but is {self.upscaler!r}.")
        if not isinstance(self.refine, bool):
            raise InvalidRequest(f"`refine` must be True or False, but is {self.refine!r}.")
        for name in ("scale", "tile", "noise_level"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidRequest(f"`{name}` must be a whole number, but is {value!r}.")
        _check_range("scale", self.scale, 2, 8, "upscale by 2 to 8 (4 is the usual model's own factor).")
        if self.tile != 0:
            _check_range("tile", self.tile, 64, 4096, "use tiles of 64 to 4096 px, or 0 to choose from memory.")
        _check_range("noise_level", self.noise_level, 0, 350, "the x4 upscaler's noise level is 0 to 350 (20 is usual).")
        h, w = self.image.shape[:2]
        if w * self.scale > MAX_SIDE or h * self.scale > MAX_SIDE:
            raise InvalidRequest(
                f"`scale` {self.scale} would make the image {w * self.scale}×{h * self.scale} px; each side must be "
                f"at most {MAX_SIDE}: choose a smaller scale or upscale a part of the image."
            )

    @property
    def result_rect(self) -> tuple[int, int, int, int]:
        """The upscaled image in the coordinates of the document scaled by ``scale``."""
        h, w = self.image.shape[:2]
        ox, oy = self.origin
        return (ox * self.scale, oy * self.scale, w * self.scale, h * self.scale)
