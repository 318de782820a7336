"""Jobs: generate, follow the engine's events, show previews in the canvas, collect results, apply them.

One QObject on the GUI thread, driven by the specs: the panel gives the operation's spec and
typed settings, the spec builds the request from the document, ``operations.steering.steered``
adds the app's LoRAs and the document's control and reference layers to it, and the spec applies
a result to the document. No operation is named here.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, Signal

from backend.errors import BackendError
from backend.events import Cancelled, Failed, Preview, Progress, Result, Started
from operations.spec import CommonSettings, NothingToDo, OperationSpec, touched
from operations.steering import AppSteering, steered


@dataclass
class Job:
    job_id: int
    spec: OperationSpec
    request: object
    common: CommonSettings
    settings: object
    steering: AppSteering = AppSteering()
    state: str = "queued"
    previews: set = field(default_factory=set)


class JobController(QObject):
    results_ready = Signal(int)  # job_id
    busy_changed = Signal(bool)

    def __init__(self, session, bridge, panel, view, queue, strip, *, show_message, layer_applied, parent=None):
        """``show_message(text, details)``: the message bar; ``layer_applied(layer)``: after a result
        became a layer (the window makes it active and autosaves)."""
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.panel = panel
        self.view = view
        self.queue = queue
        self.strip = strip
        self.show_message = show_message
        self.layer_applied = layer_applied
        self.jobs: dict[int, Job] = {}
        self.results: list = []  # ResultImage of the strip
        self.results_job: Job | None = None
        bridge.event.connect(self.on_event)
        strip.picked.connect(self.pick)
        strip.apply_requested.connect(self.apply)
        strip.discard_requested.connect(self.discard)
        strip.more_requested.connect(self.more_like_this)
        queue.cancel_requested.connect(self.cancel)
        session.document_changed.connect(lambda _doc: self.discard())

    # --- starting ----------------------------------------------------------
    def generate(self, spec: OperationSpec | None = None, common: CommonSettings | None = None, settings=None,
                 random_seed: bool | None = None, steering: AppSteering | None = None) -> int | None:
        """Builds the request from the document, with its steering, and submits it; a problem is one
        sentence in the bar."""
        spec = spec or self.panel.spec()
        common = common or self.panel.common()
        settings = settings if settings is not None else self.panel.settings(spec.name)
        steering = steering if steering is not None else self.panel.app_steering()
        if random_seed if random_seed is not None else self.panel.random_seed.isChecked():
            common = replace(common, seed=random.randrange(0, 2**31 - 1))
        try:
            request = steered(spec.build(self.session.doc, common, settings), self.session.doc, steering)
            job_id = self.bridge.submit(request)
        except (NothingToDo, BackendError) as exc:
            self.show_message(str(exc))
            return None
        self.jobs[job_id] = Job(job_id, spec, request, common, settings, steering)
        self.queue.add(job_id, f"{spec.noun} ×{request.count}")
        self.busy_changed.emit(True)
        return job_id

    def more_like_this(self) -> int | None:
        job = self.results_job
        if job is None:
            return None
        return self.generate(job.spec, job.common, job.settings, random_seed=True, steering=job.steering)

    def cancel(self, job_id: int | None = None) -> None:
        targets = [job_id] if job_id is not None else list(self.jobs)
        for j in targets:
            self.bridge.cancel(j)

    # --- events ------------------------------------------------------------------
    def on_event(self, event) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        if isinstance(event, Preview):
            rect = self._view_rect(job, event.rect)
            self.view.set_region(rect)
            self.view.show_preview(("job", job.job_id, tuple(rect)), event.image, rect)
        elif isinstance(event, Progress):
            self.panel.set_progress(event.step, event.total, event.stage)
        elif isinstance(event, Started):
            job.state = "running"
            self.queue.set_state(job.job_id, "running")
            self.panel.set_progress(0, event.total, "starting")
        elif isinstance(event, Result):
            self._finished(job, "done")
            n = len(event.images)
            notes = " ".join(dict.fromkeys(note for r in event.images for note in r.notes))
            self.panel.set_idle(f"done: {n} result{'s' if n != 1 else ''}" + (f" — {notes}" if notes else ""))
            self.results = list(event.images)
            self.results_job = job
            self.strip.set_results(event.images)  # picks the first, which previews it in place
            self.results_ready.emit(job.job_id)
        elif isinstance(event, Failed):
            self._finished(job, "failed")
            self.panel.set_idle("failed")
            self.show_message(event.message, event.details)
        elif isinstance(event, Cancelled):
            self._finished(job, "cancelled")
            self.panel.set_idle("cancelled")
            if not self.jobs:
                self.view.set_region(None)

    def _finished(self, job: Job, state: str) -> None:
        del self.jobs[job.job_id]
        self.view.clear_job_previews(job.job_id)
        self.queue.set_state(job.job_id, state)
        if not self.jobs:
            self.busy_changed.emit(False)

    # --- results -----------------------------------------------------------------
    def pick(self, index: int) -> None:
        if 0 <= index < len(self.results):
            r = self.results[index]
            rect = self._view_rect(self.results_job, r.rect)
            self.view.set_region(rect)
            self.view.show_preview("pick", _layer_pixels(r), rect)

    def apply(self) -> None:
        r = self.strip.current()
        job = self.results_job
        if r is None or job is None:
            return
        try:
            layer = job.spec.apply_result(self.session.doc, job.request, r, job.request.prompt)
        except (BackendError, ValueError) as exc:
            self.show_message(str(exc))
            return
        self.discard()
        self.layer_applied(layer)
        if job.spec.scales_document:
            self.view.fit()

    def discard(self) -> None:
        self.results = []
        self.results_job = None
        self.strip.clear()
        self.view.clear_preview("pick")
        self.view.set_region(None)

    @staticmethod
    def _view_rect(job: Job | None, rect):
        """Where a job's image shows in the current document: a scaling job's come back scaled."""
        if job is None or not job.spec.scales_document:
            return tuple(rect)
        s = job.request.scale
        x, y, w, h = rect
        return (x / s, y / s, w / s, h / s)


def _layer_pixels(r):
    """What applying this result would add: its pixels where the job changed something."""
    image = r.image.copy()
    image[..., 3] = (image[..., 3].astype("uint16") * touched(r.mask) // 255).astype("uint8")
    return image
