"""The in-process engine: one worker thread that owns torch and runs jobs in order.

    engine = Engine(on_event)          # on_event(event) is called on the worker thread
    job = engine.submit(InpaintRequest(...))
    engine.cancel(job)
    engine.shutdown()

It implements :class:`backend.interface.EngineInterface`, which is all the front ends use.

Jobs run one at a time in submission order. Each answers with ``Started``,
then ``Progress``/``Preview`` events, then exactly one of ``Result``,
``Failed`` or ``Cancelled``; the engine is ready for the next job whatever
happened. Nothing here imports torch until the worker runs its first job, so
creating an engine is instant.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from typing import Callable

from .errors import BackendError, InvalidRequest, JobCancelled
from .events import Cancelled, Event, Failed, ModelState, Result, Started
from .interface import EngineBase, ModelInfo
from .requests import GenerationRequest

log = logging.getLogger(__name__)
_STOP = object()


class Engine(EngineBase):
    def __init__(self, on_event: Callable[[Event], None], *, device: str | None = None, dtype=None,
                 preview_interval: float = 0.1, tiny_decoder: str | None = None, threads: int | None = None,
                 fast_path: bool | None = None):
        self._on_event = on_event
        self._device = device
        self._dtype = dtype
        self._preview_interval = preview_interval
        self._tiny_decoder_path = tiny_decoder
        self._threads = threads
        self._fast_path = fast_path  # backend.fastpath: None = $LATENT_STUDIO_FAST_PATH (on unless "0")
        self._ids = itertools.count(1)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._pending: dict[int, GenerationRequest] = {}
        self._running: tuple[int, threading.Event] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="latent-studio-engine", daemon=True)
        self._thread.start()

    # --- the caller's side -------------------------------------------------

    def submit(self, request: GenerationRequest) -> int:
        """Queues a job and returns its id (validation already happened when the request was built)."""
        _operation(request)
        with self._lock:
            if self._closed:
                raise BackendError("The engine has been shut down: start the app again.")
            job_id = next(self._ids)
            self._pending[job_id] = request
        self._queue.put(job_id)
        return job_id

    def check(self, request: GenerationRequest) -> None:
        """The checks that need no torch (the model's files, an upscaler and its scale, memory for the
        output); raises :class:`BackendError` with one sentence. Runs on the caller's thread."""
        check = _operation(request).check
        if check is not None:
            check(request)

    def model_info(self, model: str = "") -> ModelInfo:
        """What the model's folder says of it (no weights are read); raises ModelError when not found."""
        from .models import model_info

        return model_info(model)

    def list_models(self) -> list[tuple[str, str, str]]:
        """(name, kind, where) of every model found: embedded, the user's model folder, the hub cache."""
        from .models import list_models

        return list_models()

    def preload(self, model: str = "") -> None:
        """Starts torch and loads a model in the background; answers with ``ModelState`` events."""
        with self._lock:
            if self._closed:
                return
        self._queue.put(("preload", model))

    def cancel(self, job_id: int) -> bool:
        """Cancels a queued or running job; False when it already ended."""
        with self._lock:
            if job_id in self._pending:
                del self._pending[job_id]
                queued = True
            elif self._running and self._running[0] == job_id:
                self._running[1].set()
                return True
            else:
                return False
        if queued:
            self._emit(Cancelled(job_id))
        return True

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._pending)
            running = self._running
        for job_id in ids:
            self.cancel(job_id)
        if running:
            running[1].set()

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.cancel_all()
        self._queue.put(_STOP)
        if wait:
            self._thread.join(timeout)


    # --- the worker's side -------------------------------------------------

    def _work(self) -> None:
        ctx_factory = None
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, tuple):
                if ctx_factory is None:
                    ctx_factory = self._start_torch()
                self._preload(item[1])
                continue
            with self._lock:
                request = self._pending.pop(item, None)
                if request is None:
                    continue  # cancelled while queued
                flag = threading.Event()
                self._running = (item, flag)
            try:
                if ctx_factory is None:
                    ctx_factory = self._start_torch()
                self._run(item, request, flag, ctx_factory)
            finally:
                with self._lock:
                    self._running = None
        self._models = None

    def _start_torch(self):
        import os

        from .threads import openmp_defaults

        openmp_defaults()  # where torch is not imported yet (a plugin's process)
        import torch

        if self._threads:
            torch.set_num_threads(self._threads)
        _quiet_libraries()
        from .core import JobContext
        from .models import ModelManager

        self._models = ModelManager(self._device, self._dtype, fast_path=self._fast_path)
        tiny = None
        if self._tiny_decoder_path:
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny.from_pretrained(self._tiny_decoder_path)
        self._tiny = tiny

        def make(job_id, flag, total):
            return JobContext(job_id, self._emit, flag, self._models, self._preview_interval, self._tiny, total)

        return make

    def _preload(self, ref: str) -> None:
        from .models import resolve

        try:
            name = resolve(ref).name
        except BackendError as exc:
            self._emit(ModelState(0, ref, "failed", str(exc)))
            return
        self._emit(ModelState(0, name, "loading"))
        try:
            model = self._models.get(ref, progress=lambda text: self._emit(ModelState(0, name, "loading", text)))
        except BackendError as exc:
            self._emit(ModelState(0, name, "failed", str(exc)))
        except Exception as exc:  # keep the worker alive whatever a model file holds
            log.exception("loading %s failed", ref)
            self._emit(ModelState(0, name, "failed", f"{name} could not be loaded ({type(exc).__name__}: {exc})."))
        else:
            said = model.fast_path.describe() if model.fast_path is not None else ""
            self._emit(ModelState(0, name, "ready", said, ignores_prompt=model.ignores_prompt,
                                   recommended=model.recommended))

    def _run(self, job_id: int, request: GenerationRequest, flag: threading.Event, make_ctx) -> None:
        operation = _operation(request)
        total = operation.total(request)
        self._emit(Started(job_id, request.operation, total))
        try:
            ctx = make_ctx(job_id, flag, total)
            try:
                images = operation.run(ctx, request)
            except Exception as exc:  # out of memory mid-job: once more with the next thriftier plan
                mode = _retry_mode(exc, ctx)
                if mode is None:
                    raise
                del exc
                _free_memory()
                ctx = make_ctx(job_id, flag, total)
                ctx.memory_floor, ctx.memory_retry = mode, True
                ctx.stage(f"Out of memory: trying again with {mode}")
                images = operation.run(ctx, request)
        except JobCancelled:
            self._emit(Cancelled(job_id))
        except BackendError as exc:
            self._emit(Failed(job_id, str(exc), traceback.format_exc()))
        except MemoryError:
            self._emit(Failed(job_id, _OOM, traceback.format_exc()))
        except Exception as exc:  # anything unexpected: a message, a log entry, and on to the next job
            log.exception("job %s failed", job_id)
            message = _OOM if "out of memory" in str(exc).lower() else (
                f"The job failed unexpectedly ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                "details are in the log."
            )
            self._emit(Failed(job_id, message, traceback.format_exc()))
        else:
            if flag.is_set():
                self._emit(Cancelled(job_id))
            else:
                self._emit(Result(job_id, _with_notes(images, ctx)))
        finally:
            _free_memory()


def _with_notes(images, ctx):
    """The results with the job's steering notes (a control image scaled, a preprocessor missing …)."""
    notes = tuple(getattr(ctx.steering, "notes", None) or ())
    if not notes:
        return images
    import dataclasses

    return tuple(dataclasses.replace(im, notes=tuple(dict.fromkeys(tuple(im.notes) + notes))) for im in images)


def engine_factory(**options):
    """An :data:`backend.interface.EngineFactory` for the in-process engine made with ``options``
    (``device``, ``preview_interval``, ``threads`` …)."""

    def make(on_event):
        return Engine(on_event, **options)

    return make


def _operation(request):
    """The operation that runs ``request``, or InvalidRequest (light: no torch at import)."""
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest(f"The engine takes a request object, not {type(request).__name__}.")
    from .ops import OPERATIONS

    if type(request) not in OPERATIONS:
        raise InvalidRequest(f"No operation runs {type(request).__name__} requests.")
    return OPERATIONS[type(request)]


def _quiet_libraries() -> None:
    """Our own events report progress; the libraries' bars and notices would only be noise."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
        # What they still say goes through Python's logging (the app's and the CLI's log file), not
        # straight to the terminal.
        lib.disable_default_handler()
        lib.enable_propagation()


_OOM = "The job ran out of memory: use a smaller region or fewer variations, or close other programs."


def _retry_mode(exc: BaseException, ctx) -> str | None:
    """The memory plan to rerun a job with after ``exc``, or None (not out of memory, no plan, none left)."""
    from .errors import out_of_memory
    from .memory_plan import thriftier

    plan = getattr(ctx, "memory_plan", None)
    if plan is None or ctx.memory_retry or not out_of_memory(exc):
        return None
    return thriftier(plan)


def _free_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
