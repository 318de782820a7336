"""The wire format between a Latent Studio server and its clients (no Ray, no Qt, no torch).

HTTP carries the calls and one server-sent-events stream per client carries the engine's events,
the same event classes as in-process (:mod:`backend.events`). Every request and every event is
encoded generically from its frozen dataclass:

* a dataclass becomes ``{"$type": class name, "$fields": {...}}``, for the whitelisted classes only
  (the request classes of :data:`backend.ops.REQUESTS`, the events, ``ResultImage``, ``ModelInfo``);
* a numpy uint8 image becomes ``{"$png": base64}`` (lossless); a preview's image becomes
  ``{"$webp": base64}`` (lossy, at preview size; alpha kept);
* a tuple becomes ``{"$tuple": [...]}``, so it comes back a tuple; every other value is JSON.

Each HTTP request names :data:`PROTOCOL` in the ``X-Latent-Studio-Protocol`` header; a server of
another version answers with one sentence. Errors come back as ``{"error": sentence, "code": kind}``.
"""
from __future__ import annotations

import base64
import dataclasses
import io
from dataclasses import dataclass

import numpy as np

from backend import events as _events
from backend.errors import BackendError, InvalidRequest, ModelError
from backend.interface import ModelInfo

PROTOCOL = 1
PROTOCOL_HEADER = "X-Latent-Studio-Protocol"
SESSION_HEADER = "X-Latent-Session"
DEFAULT_PORT = 7860

EVENT_TYPES = (_events.Started, _events.Progress, _events.Preview, _events.Result, _events.Failed,
               _events.Cancelled, _events.ModelState)
TERMINAL_NAMES = frozenset(cls.__name__ for cls in _events.TERMINAL)


class RemoteError(BackendError):
    """The server refused a call or could not be reached; ``str()`` is one sentence for the user.
    ``code`` says why: protocol, auth, request, model, session, job, limit, server or network."""

    def __init__(self, message: str, code: str = "server", status: int = 0):
        super().__init__(message)
        self.code = code
        self.status = status


class RemoteRefused(RemoteError):
    """The server refused the token, the protocol version or the request."""


def mismatch_sentence(server: object, client: object) -> str:
    return (f"The server speaks Latent Studio protocol {server} and this client protocol {client}: "
            "use the same version of Latent Studio on both sides.")


def error_from(body: dict, status: int) -> RemoteError:
    """The exception a client raises for an error answer (``InvalidRequest`` and ``ModelError`` keep
    their classes, so front ends treat them as they do in-process)."""
    message = str(body.get("error") or f"The server answered HTTP {status}.")
    code = str(body.get("code") or "server")
    if code == "request":
        return InvalidRequest(message)
    if code == "model":
        return ModelError(message)
    if code in ("protocol", "auth", "limit"):
        return RemoteRefused(message, code, status)
    return RemoteError(message, code, status)


# --- images -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageLimits:
    """What a decoder accepts before it decodes any pixel (a decompression bomb is refused)."""

    max_side: int = 65536
    max_pixels: int = 1 << 31


def encode_image(array: np.ndarray, lossy: bool = False) -> dict:
    from PIL import Image

    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise TypeError(f"only uint8 images travel, not {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim == 3 and array.shape[2] not in (3, 4):
        raise TypeError(f"an image needs 3 or 4 channels, not {array.shape[2]}")
    image = Image.fromarray(np.ascontiguousarray(array))
    buffer = io.BytesIO()
    if lossy and array.ndim == 3:
        image.save(buffer, "WEBP", quality=85, method=0)
        key = "$webp"
    else:
        image.save(buffer, "PNG", compress_level=1)
        key = "$png"
    return {key: base64.b64encode(buffer.getvalue()).decode("ascii")}


def decode_image(data: dict, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    from PIL import Image

    key = "$png" if "$png" in data else "$webp"
    try:
        raw = base64.b64decode(data[key], validate=True)
        image = Image.open(io.BytesIO(raw))
        w, h = image.size  # the header only: nothing is decoded yet
        if max(w, h) > limits.max_side or w * h > limits.max_pixels:
            raise RemoteRefused(f"An image of {w}×{h} pixels is larger than this server takes (at most "
                                f"{limits.max_side} px a side and {limits.max_pixels} pixels): send a smaller region "
                                "or scale.", "limit", 413)
        if image.format != ("PNG" if key == "$png" else "WEBP"):
            raise ValueError(f"{image.format} data sent as {key[1:]}")
        image.load()
    except (InvalidRequest, RemoteError):
        raise
    except Exception as exc:
        raise InvalidRequest(f"An image in the request could not be read ({type(exc).__name__}): send "
                             "uint8 pixels as PNG.") from None
    if image.mode not in ("L", "RGB", "RGBA"):
        raise InvalidRequest(f"An image in the request is in mode {image.mode}: send L, RGB or RGBA pixels.")
    array = np.asarray(image)
    array.flags.writeable = False
    return array


# --- values -------------------------------------------------------------------------------------

def _types() -> dict[str, type]:
    from backend.ops import REQUESTS

    found = {cls.__name__: cls for cls in EVENT_TYPES}
    found.update({_events.ResultImage.__name__: _events.ResultImage, ModelInfo.__name__: ModelInfo})
    found.update({cls.__name__: cls for cls in REQUESTS.values()})
    from backend.steering import Control, LoraRef, Reference

    found.update({cls.__name__: cls for cls in (LoraRef, Control, Reference)})
    return found


def encode(value, *, lossy_images: bool = False):
    """``value`` as JSON-able data (see the module's docstring)."""
    if isinstance(value, np.ndarray):
        return encode_image(value, lossy_images)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        lossy = isinstance(value, _events.Preview)
        return {"$type": type(value).__name__,
                "$fields": {f.name: encode(getattr(value, f.name), lossy_images=lossy and f.name == "image")
                            for f in dataclasses.fields(value) if f.init}}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        out = {str(k): encode(v) for k, v in value.items()}
        return {"$dict": out} if any(k.startswith("$") for k in out) else out
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} values do not travel")


def decode(data, limits: ImageLimits = ImageLimits(), *, allowed: tuple[str, ...] | None = None,
           job_id: int | None = None):
    """The value :func:`encode` made. Only whitelisted classes are built (``allowed`` narrows them for
    the top-level value); a request is validated by its own ``__post_init__``. ``job_id`` replaces the
    top-level event's job id (a client's own numbering). Raises InvalidRequest with one sentence."""
    types = _types()

    def walk(item, top=False):
        if isinstance(item, list):
            return [walk(v) for v in item]
        if not isinstance(item, dict):
            return item
        if "$png" in item or "$webp" in item:
            return decode_image(item, limits)
        if "$tuple" in item:
            return tuple(walk(v) for v in item["$tuple"])
        if "$dict" in item:
            return {k: walk(v) for k, v in item["$dict"].items()}
        if "$type" in item:
            name = item["$type"]
            cls = types.get(name) if isinstance(name, str) else None
            if cls is None or (top and allowed is not None and name not in allowed):
                raise InvalidRequest(f"The server and client do not share the type {name!r}: use the same version "
                                     "of Latent Studio on both sides.")
            fields = item.get("$fields")
            if not isinstance(fields, dict):
                raise InvalidRequest(f"A {name} arrived without its fields: use the same version of Latent Studio "
                                     "on both sides.")
            known = {f.name for f in dataclasses.fields(cls) if f.init}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise InvalidRequest(f"A {name} arrived with fields this side does not know ({', '.join(unknown)}): "
                                     "use the same version of Latent Studio on both sides.")
            values = {k: walk(v) for k, v in fields.items()}
            if top and job_id is not None and "job_id" in known:
                values["job_id"] = job_id
            try:
                return cls(**values)
            except TypeError as exc:
                raise InvalidRequest(f"A {name} could not be rebuilt ({exc}): use the same version of Latent "
                                     "Studio on both sides.") from None
        return {k: walk(v) for k, v in item.items()}

    return walk(data, top=True)


def request_names() -> tuple[str, ...]:
    from backend.ops import REQUESTS

    return tuple(cls.__name__ for cls in REQUESTS.values())


EVENT_NAMES = tuple(cls.__name__ for cls in EVENT_TYPES)


# --- the server's limits ------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """What one request may ask of a server (``main.py serve --max-*``)."""

    max_side: int = 4096  # px, each side of every image in the request and of the result
    max_pixels: int = 4096 * 4096  # the request's images together, and the result's area
    max_steps: int = 150
    max_count: int = 16

    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_side, self.max_pixels)

    @property
    def max_body(self) -> int:
        """Bytes a request body may have: base64 of raw RGBA and a mask at the largest, room for
        control and reference images as large (PNG-compressed, as they travel), plus text."""
        return self.max_pixels * (5 + 2 * 4) * 4 // 3 + (1 << 20)

    def check(self, request) -> None:
        """Raises :class:`RemoteRefused` (code ``limit``) with one sentence when ``request`` asks too much."""
        if request.steps > self.max_steps:
            raise RemoteRefused(f"`steps` is {request.steps} but this server runs at most {self.max_steps} steps a "
                                "job: ask for fewer.", "limit", 413)
        if request.count > self.max_count:
            raise RemoteRefused(f"`count` is {request.count} but this server makes at most {self.max_count} "
                                "variations a job: ask for fewer.", "limit", 413)
        pixels = 0
        for f in dataclasses.fields(request):
            value = getattr(request, f.name)
            if isinstance(value, np.ndarray):
                h, w = value.shape[:2]
                self._check_side(f"`{f.name}`", w, h)
                pixels += w * h if f.name == "image" else 0
            elif f.name in ("controls", "references"):
                for i, item in enumerate(value):
                    image = getattr(item, "image", None)
                    if isinstance(image, np.ndarray):
                        self._check_side(f"The {f.name[:-1]} image {item.label or i + 1!r}", image.shape[1],
                                         image.shape[0])
        rect = getattr(request, "result_rect", None)
        if rect is not None:
            self._check_side("The result", rect[2], rect[3])
            pixels = max(pixels, rect[2] * rect[3])
        if pixels > self.max_pixels:
            raise RemoteRefused(f"The job covers {pixels} pixels but this server takes at most {self.max_pixels} a "
                                "job: send a smaller region or scale.", "limit", 413)

    def _check_side(self, what: str, w: int, h: int) -> None:
        if max(w, h) > self.max_side:
            raise RemoteRefused(f"{what} is {w}×{h} pixels but this server takes at most {self.max_side} px a "
                                "side: send a smaller region or scale.", "limit", 413)
