"""The one stream of events a job answers with, in this order:

``Started`` → ``Progress``/``Preview`` … → exactly one of ``Result``,
``Failed`` or ``Cancelled``. Every event names its ``job_id``. Images are
small CPU arrays (uint8 RGBA) with their rectangle in document coordinates,
never tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Rect = tuple[int, int, int, int]  # x, y, width, height in document coordinates


@dataclass(frozen=True)
class Event:
    job_id: int


@dataclass(frozen=True)
class Started(Event):
    operation: str
    total: int  # denoising steps over all variations (and tiles)


@dataclass(frozen=True)
class Progress(Event):
    step: int
    total: int
    stage: str = ""  # e.g. "Loading model", "Image 2 of 4"


@dataclass(frozen=True, eq=False)
class Preview(Event):
    image: np.ndarray  # (h, w, 4) uint8, straight alpha: alpha = where the job paints
    rect: Rect
    step: int
    total: int


@dataclass(frozen=True, eq=False)
class ResultImage:
    image: np.ndarray  # (h, w, 4) uint8: the region after compositing, bit-exact outside the mask
    rect: Rect
    mask: np.ndarray  # (h, w) uint8: how much of each pixel the job changed
    seed: int
    parameters: dict = field(default_factory=dict)  # A1111-style keys, see canvas.parameters
    notes: tuple = ()  # sentences for the user about how it was made (e.g. a fill that fell back)


@dataclass(frozen=True, eq=False)
class Result(Event):
    images: tuple[ResultImage, ...]


@dataclass(frozen=True)
class Failed(Event):
    message: str  # one sentence for the user
    details: str = ""  # the traceback or cause, for "details…"


@dataclass(frozen=True)
class Cancelled(Event):
    pass


@dataclass(frozen=True)
class ModelState(Event):
    """The model's loading state, from :meth:`Engine.preload` (``job_id`` is 0)."""

    name: str
    state: str  # "loading", "ready" or "failed"
    message: str = ""
    ignores_prompt: bool = False
    recommended: tuple = ()  # ((operation, setting, value), ...): the settings the model recommends


TERMINAL = (Result, Failed, Cancelled)
