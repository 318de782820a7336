"""Jobs: generate, follow the events, show previews in the canvas, collect variations, apply them.

One QObject on the GUI thread; every slot here is connected to an
:class:`EngineBridge` signal, so it runs on the GUI thread.
"""
from __future__ import annotations


from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from backend.errors import BackendError
from canvas.parameters import format_parameters, generated_layer_name
from canvas.geometry import Rect

from .snapshot import NothingToDo, build_request

OP_NAMES = {"inpaint": "Inpaint", "img2img": "Variation", "outpaint": "Outpaint", "upscale": "Upscale"}


@dataclass
class Job:
    job_id: int
    request: object
    values: dict
    state: str = "queued"


class JobController(QObject):
    results_ready = Signal(int)  # job_id
    busy_changed = Signal(bool)

    def __init__(self, window, bridge):
        super().__init__(window)
        self.window = window
        self.bridge = bridge
        self.jobs: dict[int, Job] = {}
        self.results: list = []  # ResultImage of the strip
        self.results_job: Job | None = None
        bridge.started.connect(self.on_started)
        bridge.progress.connect(self.on_progress)
        bridge.preview.connect(self.on_preview)
        bridge.result.connect(self.on_result)
        bridge.failed.connect(self.on_failed)
        bridge.cancelled.connect(self.on_cancelled)

    # --- starting ----------------------------------------------------------
    def generate(self, values: dict | None = None) -> int | None:
        w = self.window
        values = values or w.generation.values()
        try:
            request = build_request(w.doc, values)
            job_id = self.bridge.submit(request)
        except (NothingToDo, BackendError) as exc:
            w.show_message(str(exc))
            return None
        self.jobs[job_id] = Job(job_id, request, values)
        w.queue.add(job_id, f"{OP_NAMES.get(values['operation'], values['operation'])} ×{request.count}")
        self.busy_changed.emit(True)
        return job_id

    def more_like_this(self) -> int | None:
        if self.results_job is None:
            return None
        values = dict(self.results_job.values, random_seed=True)
        return self.generate(values)

    def cancel(self, job_id: int | None = None) -> None:
        targets = [job_id] if job_id is not None else list(self.jobs)
        for j in targets:
            self.bridge.cancel(j)

    # --- events ------------------------------------------------------------------
    def on_started(self, job_id: int, operation: str, total: int) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.state = "running"
        self.window.queue.set_state(job_id, "running")
        self.window.generation.set_progress(0, total, "starting")

    def on_progress(self, job_id: int, step: int, total: int, stage: str) -> None:
        if job_id in self.jobs:
            self.window.generation.set_progress(step, total, stage)

    def on_preview(self, job_id: int, image, rect) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            rect = _view_rect(job, rect)
            self.window.view.set_region(rect)
            self.window.view.show_preview(("job", job_id, tuple(rect)), image, rect)

    def on_result(self, job_id: int, images) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        w = self.window
        w.view.clear_job_previews(job_id)
        w.queue.set_state(job_id, "done")
        w.generation.set_idle(f"done: {len(images)} result{'s' if len(images) != 1 else ''}")
        self.results = list(images)
        self.results_job = job
        w.variations.set_results(images)  # picks the first, which previews it in place
        self._idle_check()
        self.results_ready.emit(job_id)

    def on_failed(self, job_id: int, message: str, details: str) -> None:
        if self.jobs.pop(job_id, None) is None:
            return
        self.window.view.clear_job_previews(job_id)
        self.window.queue.set_state(job_id, "failed")
        self.window.generation.set_idle("failed")
        self.window.show_message(message, details)
        self._idle_check()

    def on_cancelled(self, job_id: int) -> None:
        if self.jobs.pop(job_id, None) is None:
            return
        self.window.view.clear_job_previews(job_id)
        self.window.queue.set_state(job_id, "cancelled")
        self.window.generation.set_idle("cancelled")
        if not self.jobs:
            self.window.view.set_region(None)
        self._idle_check()

    def _idle_check(self) -> None:
        if not self.jobs:
            self.busy_changed.emit(False)

    # --- variations -----------------------------------------------------------------
    def pick(self, index: int) -> None:
        if 0 <= index < len(self.results):
            r = self.results[index]
            rect = _view_rect(self.results_job, r.rect)
            self.window.view.set_region(rect)
            self.window.view.show_preview("pick", _layer_pixels(r), rect)

    def apply(self) -> None:
        r = self.window.variations.current()
        if r is None or self.results_job is None:
            return
        job = self.results_job
        op = job.values["operation"]
        name = generated_layer_name(OP_NAMES.get(op, op), job.values["prompt"])
        x, y = r.rect[0], r.rect[1]
        doc = self.window.doc
        params = format_parameters(r.parameters)
        if op == "upscale":
            doc.scale(job.request.scale, r.image, (x, y), name, params)
            self.window.view.fit()
        else:
            if not doc.bounds.contains(Rect(*r.rect)):
                doc.grow_to_include(Rect(*r.rect))  # an outpaint past the edge: grow first
            doc.add_generated_layer(r.image, x, y, name, params, mask=r.mask)
        self.discard()
        self.window.layers.set_active(doc.layers[-1])
        self.window.after_generation_applied()

    def discard(self) -> None:
        self.results = []
        self.results_job = None
        self.window.variations.clear()
        self.window.view.clear_preview("pick")
        self.window.view.set_region(None)


def _view_rect(job, rect):
    """Where a job's image shows in the current document: upscales come back in scaled coordinates."""
    scale = getattr(job.request, "scale", 1) if job is not None and job.values["operation"] == "upscale" else 1
    if scale == 1:
        return tuple(rect)
    x, y, w, h = rect
    return (x / scale, y / scale, w / scale, h / scale)


def _layer_pixels(r):
    """What applying this result would add: its pixels where the job changed something."""
    image = r.image.copy()
    image[..., 3] = (image[..., 3].astype("uint16") * r.mask // 255).astype("uint8")
    return image



