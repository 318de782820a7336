"""A scriptable engine for front-end tests: the engine interface, no torch, instant and deterministic.

    engine = FakeEngine(on_event, steps=3)
    job = engine.submit(InpaintRequest(...))   # answered on the fake's own thread, like the real one

Each job answers like the real engine: ``Started``, a ``Progress`` and a ``Preview`` per step,
then a ``Result`` with one image per seed (``request.image`` tinted by the seed where the job
paints, bit-exact elsewhere; an upscale is a nearest-neighbour scale; text to image a new layer of the
tint, the mask as its alpha), unless scripted otherwise:

* ``fail_with`` / ``fail_next(message)``: the job ends with ``Failed(message)``;
* ``hold()``: jobs wait after their first step until ``release()`` (or a cancel);
* ``models``: what ``list_models`` returns; ``infos``: ``model_info`` by model reference;
* ``submitted``: every request received, in order; ``checked``: every request ``check`` saw.
"""
from __future__ import annotations

import itertools
import queue
import threading
from typing import Callable

import numpy as np

from .errors import BackendError, InvalidRequest, ModelError
from .events import Cancelled, Event, Failed, ModelState, Preview, Progress, Result, ResultImage, Started
from .interface import EngineBase, ModelInfo
from .requests import request_parameters

_STOP = object()


class FakeEngine(EngineBase):
    def __init__(self, on_event: Callable[[Event], None], *, steps: int = 2, fail_with: str | None = None,
                 models: list | None = None, infos: dict | None = None):
        self._on_event = on_event
        self.steps = steps
        self.fail_with = fail_with
        self.models = list(models or [])
        self.infos = dict(infos or {})
        self.submitted: list = []
        self.checked: list = []
        self.preloaded: list[str] = []
        self._fail_next: list[str] = []
        self._ids = itertools.count(1)
        self._queue: queue.Queue = queue.Queue()
        self._cancelled: set[int] = set()
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="fake-engine", daemon=True)
        self._thread.start()

    # --- scripting ---------------------------------------------------------------------------
    def fail_next(self, message: str) -> None:
        self._fail_next.append(message)

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    # --- the engine interface ----------------------------------------------------------------
    def submit(self, request) -> int:
        from .ops import OPERATIONS

        if type(request) not in OPERATIONS:
            raise InvalidRequest(f"No operation runs {type(request).__name__} requests.")
        with self._lock:
            if self._closed:
                raise BackendError("The engine has been shut down: start the app again.")
            job_id = next(self._ids)
        self.submitted.append(request)
        self._queue.put((job_id, request))
        return job_id

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            self._cancelled.add(job_id)
        return True

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled.update(range(1, next(self._ids)))
        self.release()

    def preload(self, model: str = "") -> None:
        self.preloaded.append(model)
        self._queue.put(("preload", model))

    def check(self, request) -> None:
        self.checked.append(request)
        if request.model and request.model not in self.infos and "/" in request.model:
            raise ModelError(f"Model {request.model!r} was not found: give a diffusers folder.")

    def model_info(self, model: str = "") -> ModelInfo:
        return self.infos.get(model, ModelInfo(model or "fake-model"))

    def list_models(self) -> list[tuple[str, str, str]]:
        return list(self.models)

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.cancel_all()
        self._queue.put(_STOP)
        if wait:
            self._thread.join(timeout)

    # --- the worker ----------------------------------------------------------------------------

    def _is_cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job_id, request = item
            if job_id == "preload":
                info = self.model_info(request)
                self._emit(ModelState(0, info.name, "ready", ignores_prompt=info.ignores_prompt,
                                      recommended=info.recommended))
                continue
            self._run(job_id, request)

    def _run(self, job_id: int, request) -> None:
        if self._is_cancelled(job_id):
            self._emit(Cancelled(job_id))
            return
        seeds = list(request.seeds)
        if request.operation == "upscale" and not request.refine:  # deterministic: one result, as the real one
            seeds = seeds[:1]
        total = self.steps * len(seeds)
        self._emit(Started(job_id, request.operation, total))
        step = 0
        results = []
        for seed in seeds:
            image, rect, mask = _paint(request, seed)
            for _ in range(self.steps):
                step += 1
                self._emit(Progress(job_id, step, total))
                self._emit(Preview(job_id, image, rect, step, total))
                while step == 1 and not self._gate.is_set() and not self._is_cancelled(job_id):
                    self._gate.wait(0.02)
                if self._is_cancelled(job_id):
                    self._emit(Cancelled(job_id))
                    return
            params = request_parameters(request, seed=seed)
            results.append(ResultImage(image=image, rect=rect, mask=mask, seed=seed, parameters=params))
        message = self._fail_next.pop(0) if self._fail_next else self.fail_with
        if message:
            self._emit(Failed(job_id, message, "scripted failure"))
        else:
            self._emit(Result(job_id, tuple(results)))


def _paint(request, seed: int):
    """(image, rect, mask) of a fake result: the request's pixels, tinted by the seed where it paints."""
    image = np.array(request.image, copy=True)
    h, w = image.shape[:2]
    x, y = request.origin
    tint = np.array([(seed * 67) % 256, (seed * 131 + 80) % 256, (seed * 29 + 160) % 256], np.uint8)
    if request.operation == "upscale":
        s = request.scale
        image = image.repeat(s, 0).repeat(s, 1)
        return image, request.result_rect, np.full(image.shape[:2], 255, np.uint8)
    if request.operation == "outpaint":
        rx, ry, rw, rh = request.result_rect
        canvas = np.zeros((rh, rw, 4), np.uint8)
        canvas[..., :3] = tint
        canvas[..., 3] = 255
        canvas[request.top: request.top + h, request.left: request.left + w] = image
        mask = np.full((rh, rw), 255, np.uint8)
        mask[request.top: request.top + h, request.left: request.left + w] = 0
        return canvas, (rx, ry, rw, rh), mask
    if request.operation == "txt2img":  # a new layer: the tint, the mask as its alpha
        x0, y0, x1, y1 = request.region()
        alpha = np.full((y1 - y0, x1 - x0), 255, np.uint8) if request.mask is None else request.mask[y0:y1, x0:x1]
        layer = np.zeros(alpha.shape + (4,), np.uint8)
        layer[..., :3] = tint
        layer[..., 3] = alpha
        layer[alpha == 0] = 0
        return layer, (x + x0, y + y0, x1 - x0, y1 - y0), np.array(alpha, copy=True)
    mask = request.mask if request.operation == "inpaint" else np.full((h, w), 255, np.uint8)
    m = (mask.astype(np.uint16)[..., None])
    image[..., :3] = ((image[..., :3].astype(np.uint16) * (255 - m) + tint.astype(np.uint16) * m) // 255).astype(np.uint8)
    return image, (x, y, w, h), np.array(mask, copy=True)
