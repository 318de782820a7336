"""What every request shares: the base dataclass, validation helpers, and the parameters record.

A request is a snapshot. It is built on the caller's thread (the studio's GUI
thread or the CLI) from copies of just the pixels the job needs, validated on
construction, and never changes afterwards: the worker cannot see the live
document. Every validation error names the field and says what to do, in the
style of diffusers' ``check_inputs``. Each operation defines its own request
class beside its ``run`` (``backend/ops/<name>.py``).

Coordinates: ``image`` is a crop of the document whose top-left pixel sits at
``origin`` in document coordinates; results and previews come back with
rectangles in document coordinates.

**Parameters.** A field declared with :func:`recorded` is written into every
result's generation parameters under its key (A1111's keys where A1111 has
one, our own otherwise), and :func:`fields_from_parameters` reads it back, so a
result can be reproduced from its own parameters.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from .errors import InvalidRequest
from .pixels import MAX_SIDE, _frozen_pixels  # noqa: F401  (ops import them from here)
from .samplers import DEFAULT_SAMPLER, SAMPLERS

MAX_SEED = 2**32 - 1


def recorded(default, key: str, **metadata):
    """A request field recorded in the result's parameters under ``key``."""
    return field(default=default, metadata={"parameter": key, **metadata})


def steered(default):
    """A steering field of the request: recorded by :mod:`backend.steering.record` in A1111's forms."""
    return field(default=default, metadata={"steering": True})


def _check_range(name: str, value, low, high, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"`{name}` must be a number, but is {value!r}.")
    if not (low <= value <= high):
        raise InvalidRequest(f"`{name}` must be between {low} and {high}, but is {value}: {hint}")


def _check_whole(request, *names: str) -> None:
    for name in names:
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"`{name}` must be a whole number, but is {value!r}.")


def _check_bool(request, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(request, name), bool):
            raise InvalidRequest(f"`{name}` must be true or false, but is {getattr(request, name)!r}.")


def check_text(name: str, text: str) -> None:
    """Raises InvalidRequest when ``text`` cannot be written as UTF-8: a command-line argument whose bytes
    were not UTF-8 arrives as lone surrogates (``\\udcff`` for the byte 0xFF), which no tokenizer or
    PNG text chunk takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        what = f"the byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"the lone surrogate U+{code:04X}"
        raise InvalidRequest(f"`{name}` is not valid UTF-8 text ({what} at character {exc.start + 1}): set the "
                             "terminal to UTF-8, or type the text again.") from None


SAMPLER_LABELS = {name: label for name, (label, _, _) in SAMPLERS.items()}


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """What every diffusion operation shares."""

    image: np.ndarray
    model: str = recorded("", "Model")
    prompt: str = recorded("", "prompt")
    negative_prompt: str = recorded("", "negative_prompt")
    seed: int = recorded(0, "Seed")
    steps: int = recorded(20, "Steps")
    guidance: float = recorded(7.0, "CFG scale")
    strength: float = recorded(1.0, "Denoising strength")
    count: int = 1
    sampler: str = recorded(DEFAULT_SAMPLER, "Sampler", labels=SAMPLER_LABELS)
    origin: tuple[int, int] = (0, 0)
    allow_pickle: bool = False
    # Steering (backend.steering): recorded by backend.steering.record, not as fields of their own.
    loras: tuple = steered(())  # LoraRef
    embeddings: tuple = steered(())  # textual-inversion files or names, used by writing their token in the prompt
    controls: tuple = steered(())  # Control
    references: tuple = steered(())  # Reference (need ip_adapter)
    ip_adapter: str = steered("")  # an IP-Adapter model: folder, .safetensors file, or a name in ip-adapters/
    image_encoder: str = steered("")  # its CLIP vision encoder folder ("": the one inside or beside the adapter)

    operation: ClassVar[str] = "generate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", _frozen_pixels(self.image, "image", 4))
        object.__setattr__(self, "origin", tuple(int(v) for v in self.origin))
        _check_whole(self, "seed")
        _check_range("seed", self.seed, 0, MAX_SEED, "use a seed from 0 to 4294967295.")
        _check_whole(self, "steps")
        _check_range("steps", self.steps, 1, 500, "choose a number of denoising steps such as 20.")
        _check_range("guidance", self.guidance, 0.0, 50.0, "a guidance (CFG) scale of 5 to 9 is usual.")
        _check_range("strength", self.strength, 0.0, 1.0, "use 1 to repaint fully, lower to keep more.")
        if self.strength <= 0.0:
            raise InvalidRequest("`strength` must be above 0: at 0 nothing would change.")
        self._check_denoising()
        _check_whole(self, "count")
        _check_range("count", self.count, 1, 64, "ask for 1 to 64 variations.")
        if self.seed + self.count - 1 > MAX_SEED:
            raise InvalidRequest("`seed` + `count` runs past 4294967295: choose a smaller seed.")
        if self.sampler not in SAMPLERS:
            names = ", ".join(SAMPLERS)
            raise InvalidRequest(f"`sampler` {self.sampler!r} is unknown: choose one of {names}.")
        _check_bool(self, "allow_pickle")
        for name in ("prompt", "negative_prompt", "model"):
            if not isinstance(getattr(self, name), str):
                raise InvalidRequest(f"`{name}` must be text, but is {getattr(self, name)!r}.")
        for name in ("prompt", "negative_prompt"):
            check_text(name, getattr(self, name))
        from .steering import check_steering

        check_steering(self)

    def _check_denoising(self) -> None:
        if self.steps * self.strength < 1:
            raise InvalidRequest(
                f"`steps` × `strength` is {self.steps * self.strength:g}, which leaves no denoising step: "
                "raise the steps or the strength."
            )

    @property
    def control_area(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) in document coordinates that control images cover: the image's area (an
        outpaint's is the extended canvas, where the new content is made)."""
        h, w = self.image.shape[:2]
        return (*self.origin, w, h)

    @property
    def seeds(self) -> range:
        return range(self.seed, self.seed + self.count)

    def summary(self) -> dict[str, object]:
        """The scalar fields, for logs and the queue panel."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not isinstance(getattr(self, f.name), np.ndarray)}

    def extra_parameters(self) -> dict:
        """Keys the request adds to its results' parameters besides its recorded fields (text to
        image's ``Size``, which its pixels' size gives)."""
        return {}

    def replace(self, **changes) -> "GenerationRequest":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the non-zero pixels, end-exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]: rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


# --- the parameters record --------------------------------------------------------------------------

def _format(f: dataclasses.Field, value) -> object:
    labels = f.metadata.get("labels")
    if labels is not None:
        return labels.get(value, value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return f"{value:g}"
    return value


A1111_ORDER = ("prompt", "negative_prompt", "Steps", "Sampler", "CFG scale", "Seed", "Size", "Model",
               "Denoising strength")


def request_parameters(request: GenerationRequest, *, seed: int, model=None, skip: tuple[str, ...] = (),
                       **extra) -> dict:
    """The result's generation parameters: every recorded field of ``request`` (the variation's own
    ``seed``; with the loaded ``model``, its name for the reference and the guidance it really used),
    its operation, and ``extra`` keys (informational, e.g. the working ``Size``)."""
    params: dict = {}
    used = {"seed": seed}
    if model is not None:
        used["model"] = model.name
        if model.ignores_prompt:
            used["guidance"] = 1.0  # what ran: a model trained without captions has no guidance
    for f in fields(request):
        key = f.metadata.get("parameter")
        if key is None or f.name in skip:
            continue
        value = used.get(f.name, getattr(request, f.name))
        params[key] = _format(f, value)
    from .steering.record import steering_parameters

    params.update(steering_parameters(request, params))
    params["Operation"] = request.operation
    params.update(request.extra_parameters())
    params.update(extra)
    first = [k for k in A1111_ORDER if k in params]
    return {k: params[k] for k in first + [k for k in params if k not in first]}


def fields_from_parameters(request_type: type, params: dict) -> dict:
    """The recorded fields of ``request_type`` found in ``params`` (as parsed from the text), typed
    like the fields' defaults. Raises :class:`InvalidRequest` naming a key whose value does not read."""
    out = {}
    for f in fields(request_type):
        key = f.metadata.get("parameter")
        if key is None or key not in params:
            continue
        raw = params[key]
        default = f.default
        labels = f.metadata.get("labels")
        try:
            if labels is not None:
                by_label = {label.lower(): name for name, label in labels.items()}
                value = by_label.get(str(raw).strip().lower(), str(raw).strip())
            elif isinstance(default, bool):
                text = str(raw).strip().lower()
                if text not in ("true", "false", "on", "off", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value = text in ("true", "on", "1", "yes")
            elif isinstance(default, int):
                value = int(str(raw).strip())
            elif isinstance(default, float):
                value = float(str(raw).strip())
            else:
                value = str(raw)
        except ValueError:
            kind = ("true or false" if isinstance(default, bool) else
                    "a whole number" if isinstance(default, int) else "a number")
            raise InvalidRequest(f"The parameters' `{key}` is {raw!r}, which is not {kind}.") from None
        out[f.name] = value
    return out
