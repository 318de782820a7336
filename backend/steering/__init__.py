"""What steers a generation besides its prompt: LoRAs, textual-inversion embeddings, ControlNets and
reference images (IP-Adapter). This module is the request side (no torch): the frozen values a
request carries, each validated on construction with one sentence naming the field.

* :class:`LoraRef`: a LoRA file (a path, or a name in the ``loras/`` folder beside the user's model
  folder) and its weight in [-2, 2];
* :class:`Control`: a ControlNet model, its control image (a layer as drawn, over the same area as
  the request's ``image``; ``None`` for a ``tile`` control: each region's own pixels), its kind,
  strength in [0, 2] and the start/end of the steps it acts on;
* :class:`Reference`: a reference image for the request's IP-Adapter, with a weight in [0, 2].

Textual-inversion embeddings are strings (a file, or a name in the ``embeddings/`` folder) whose
token is written in the prompt. The engine side is :mod:`backend.steering.job` (``prepare``),
built on :mod:`.lora`, :mod:`.embeddings`, :mod:`.control` and :mod:`.reference`; the parameters
record is :mod:`.record`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidRequest
from ..paths import models_dir

# The kinds of control a layer can be: how its pixels are read (see ``control.preprocess``).
CONTROL_KINDS = ("scribble", "lineart", "softedge", "canny", "depth", "normal", "pose", "segmentation", "tile",
                 "inpaint", "other")
REFERENCE_MODES = ("full", "style", "composition")
LORA_WEIGHT = (-2.0, 2.0)
CONTROL_STRENGTH = (0.0, 2.0)
REFERENCE_WEIGHT = (0.0, 2.0)


def steering_dir(kind: str) -> Path:
    """A folder beside the user's model folder: ``loras``, ``embeddings``, ``controlnets``,
    ``ip-adapters`` or ``preprocessors``."""
    return models_dir().parent / kind


def _number(name: str, value, low: float, high: float, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise InvalidRequest(f"`{name}` must be a number, but is {value!r}.")
    if not (low <= value <= high):
        raise InvalidRequest(f"`{name}` must be between {low:g} and {high:g}, but is {value:g}: {hint}")
    return float(value)


def _text(name: str, value, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be text, but is {value!r}.")
    if not empty_ok and not value.strip():
        raise InvalidRequest(f"`{name}` is empty: give a file or a name.")
    return value


def display_name(ref: str) -> str:
    """What a file reference is called in the parameters and the panels: its stem."""
    return Path(ref).stem if ("/" in ref or "\\" in ref or "." in Path(ref).name) else ref


@dataclass(frozen=True)
class LoraRef:
    name: str  # a .safetensors path, or a name in loras/
    weight: float = 1.0

    def __post_init__(self) -> None:
        _text("lora", self.name)
        object.__setattr__(self, "weight", _number(f"lora {display_name(self.name)} weight", self.weight,
                                                   *LORA_WEIGHT, "LoRA weights go from -2 to 2 (1 is usual)."))

    @property
    def label(self) -> str:
        return display_name(self.name)


def _control_pixels(array, name: str) -> np.ndarray:
    from ..pixels import _frozen_pixels

    return _frozen_pixels(array, name, 4)


@dataclass(frozen=True, eq=False)
class Control:
    model: str  # a ControlNet: diffusers folder, .safetensors file, or a name in controlnets/
    image: np.ndarray | None = None  # RGBA over the request's image area; None: each region's own pixels
    kind: str = "auto"  # one of CONTROL_KINDS, or "auto": from the model's name
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    label: str = ""  # the layer's or file's name, for the parameters and notes
    scaled_from: tuple | None = None  # (w, h) of a control image that was scaled to the request's size

    def __post_init__(self) -> None:
        _text("control model", self.model)
        what = f"control {self.label or display_name(self.model)}"
        if self.kind != "auto" and self.kind not in CONTROL_KINDS:
            raise InvalidRequest(f"`{what}` kind {self.kind!r} is unknown: choose one of {', '.join(CONTROL_KINDS)}.")
        object.__setattr__(self, "strength", _number(f"{what} strength", self.strength, *CONTROL_STRENGTH,
                                                     "control strengths go from 0 to 2 (1 is usual)."))
        object.__setattr__(self, "start", _number(f"{what} start", self.start, 0.0, 1.0,
                                                  "the start is a fraction of the steps, 0 to 1."))
        object.__setattr__(self, "end", _number(f"{what} end", self.end, 0.0, 1.0,
                                                "the end is a fraction of the steps, 0 to 1."))
        if self.end <= self.start:
            raise InvalidRequest(f"`{what}` ends ({self.end:g}) before it starts ({self.start:g}): the end must "
                                 "be after the start.")
        _text("control label", self.label, empty_ok=True)
        if self.image is None:
            if self.resolved_kind not in ("tile", "inpaint"):
                raise InvalidRequest(f"`{what}` has no image: only tile and inpaint controls take the image itself.")
            return
        pixels = _control_pixels(self.image, what)
        # Empty: nothing painted (fully transparent), or one flat colour everywhere (black lines on a
        # transparent layer are lines; a uniform image carries no control, except as a flat depth map).
        flat = pixels[..., 3].all() and (pixels == pixels[:1, :1]).all()
        if not pixels[..., 3].any() or flat and self.resolved_kind not in ("depth", "inpaint"):
            raise InvalidRequest(f"The control {self.label or display_name(self.model)!r} is empty: paint the control "
                                 "(lines, edges, a depth map…) into it, or remove the control.")
        object.__setattr__(self, "image", pixels)

    @property
    def resolved_kind(self) -> str:
        return self.kind if self.kind != "auto" else kind_from_name(self.model)

    def fitted(self, width: int, height: int) -> "Control":
        """This control with its image scaled to ``width``×``height`` (noted in ``scaled_from``), if it is
        of another size: a control image of another size is not an error."""
        if self.image is None or self.image.shape[:2] == (height, width):
            return self
        from PIL import Image

        h, w = self.image.shape[:2]
        scaled = np.asarray(Image.fromarray(self.image).resize((width, height), Image.LANCZOS))
        return Control(self.model, scaled, self.kind, self.strength, self.start, self.end, self.label,
                       scaled_from=self.scaled_from or (w, h))

    def cropped(self, x0: int, y0: int, x1: int, y1: int) -> "Control":
        """This control over the box x0…x1, y0…y1 of its image (transparent where the box reaches past it:
        an outpaint's new area)."""
        if self.image is None:
            return self
        h, w = self.image.shape[:2]
        if (x0, y0, x1, y1) == (0, 0, w, h):
            return self
        out = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = self.image[sy0:sy1, sx0:sx1]
        return Control(self.model, out, self.kind, self.strength, self.start, self.end, self.label, self.scaled_from)


def kind_from_name(model: str) -> str:
    """A ControlNet's kind guessed from its file or folder name (``control_v11p_sd15_canny`` → canny);
    ``other`` when the name does not say (the image is then used as drawn)."""
    name = Path(model).name.lower().replace("-", "_")
    for kind, words in (("canny", ("canny",)), ("depth", ("depth",)), ("normal", ("normal",)),
                        ("pose", ("openpose", "pose")), ("segmentation", ("seg",)), ("lineart", ("lineart", "mlsd")),
                        ("softedge", ("softedge", "hed", "pidi")), ("scribble", ("scribble", "sketch")),
                        ("tile", ("tile",)), ("inpaint", ("inpaint",))):
        if any(word in name for word in words):
            return kind
    return "other"


@dataclass(frozen=True, eq=False)
class Reference:
    image: np.ndarray  # RGBA, any size
    weight: float = 1.0
    mode: str = "full"  # REFERENCE_MODES: what of the reference to follow, where the adapter supports it
    label: str = ""

    def __post_init__(self) -> None:
        what = f"reference {self.label}".strip()
        object.__setattr__(self, "image", _control_pixels(self.image, what))
        if not self.image[..., 3].any():
            raise InvalidRequest(f"The {what} image is empty (fully transparent): choose an image or a layer with "
                                 "something in it.")
        object.__setattr__(self, "weight", _number(f"{what} weight", self.weight, *REFERENCE_WEIGHT,
                                                   "reference weights go from 0 to 2 (0.5 to 1 is usual)."))
        if self.mode not in REFERENCE_MODES:
            raise InvalidRequest(f"`{what}` mode {self.mode!r} is unknown: choose one of {', '.join(REFERENCE_MODES)}.")
        _text("reference label", self.label, empty_ok=True)


def check_steering(request) -> None:
    """Validates the steering fields of a request (called by ``GenerationRequest.__post_init__``):
    lists become tuples, every element is of its type, control images cover the request's image
    (scaled when of another size)."""
    for name, cls in (("loras", LoraRef), ("controls", Control), ("references", Reference)):
        value = getattr(request, name)
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple) or not all(isinstance(v, cls) for v in value):
            raise InvalidRequest(f"`{name}` must be a list of {cls.__name__} values, but is {value!r}.")
        object.__setattr__(request, name, value)
    embeddings = request.embeddings
    if isinstance(embeddings, (list, str)):
        embeddings = tuple([embeddings] if isinstance(embeddings, str) else embeddings)
    if not isinstance(embeddings, tuple):
        raise InvalidRequest(f"`embeddings` must be a list of files or names, but is {embeddings!r}.")
    for e in embeddings:
        _text("embedding", e)
    object.__setattr__(request, "embeddings", embeddings)
    _text("ip_adapter", request.ip_adapter, empty_ok=True)
    _text("image_encoder", request.image_encoder, empty_ok=True)
    if request.references and not request.ip_adapter.strip():
        raise InvalidRequest("Reference images need an IP-Adapter model: choose one (--ip-adapter), or remove the "
                             "references.")
    names = [lora.label.lower() for lora in request.loras]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidRequest(f"The LoRA {twice[0]!r} is listed twice: give each LoRA once, with one weight.")
    _, _, w, h = request.control_area
    object.__setattr__(request, "controls", tuple(c.fitted(w, h) for c in request.controls))
