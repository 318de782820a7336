"""The docker's model, with no Qt: jobs submitted to an engine, their events handled on the GUI thread,
the preview layer, the variations of the last result and which of them is applied.

    controller = Controller(engine_factory, post)      # post(func, event) runs func(event) on the GUI thread
    job = controller.generate(krita_doc, "inpaint", common, settings)   # NothingToDo: one sentence
    ... events: Started, Progress/Preview …, then Result (variations shown), Failed or Cancelled
    controller.apply(0)                                 # variation 0 becomes a layer; the preview goes

Events arrive on the engine's thread; ``post`` hands each one to the GUI thread before anything touches a
document (in Krita: :class:`latent_studio_krita.qt.Poster`). ``listeners`` are called (on the GUI thread)
with the job after every change.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from backend.errors import BackendError
from backend.events import Cancelled, Failed, Preview, Progress, Result, Started
from operations import NothingToDo

from .apply import PreviewLayer, apply_result, remove_stale_previews
from .build import build_request
from .document import KritaDocument


@dataclass
class Job:
    id: int
    spec: object
    request: object
    doc: object  # the krita.Document the job was made from
    prompt: str
    state: str = "queued"  # queued, running, done, failed, cancelled
    step: int = 0
    total: int = 0
    stage: str = ""
    message: str = ""
    results: tuple = ()
    applied: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.spec.label} #{self.id}"


class Controller:
    def __init__(self, engine_factory, post, placement: str = ""):
        self.placement = placement  # what the docker says is in use ("in Krita's process", …)
        self._post = post
        self.engine = engine_factory(self._from_engine)
        self.jobs: dict[int, Job] = {}
        self.listeners: list = []
        self.variations: Job | None = None  # the job whose results the strip shows
        self.selected = 0
        self._preview_layer: PreviewLayer | None = None  # one at a time: jobs run one after another

    # --- the docker's actions (GUI thread) -----------------------------------------------------
    def generate(self, doc, operation: str, common, settings, layer=None) -> int:
        """Builds the request from ``doc`` (a krita.Document; ``layer``: the layer to vary, default the active
        one) and submits it; raises NothingToDo with one sentence (nothing in the document changed) when the
        document gives nothing to work on."""
        if doc is None:
            raise NothingToDo("Open or create an image first.")
        spec, request = build_request(KritaDocument(doc, layer), operation, common, settings)
        if self._preview_layer is None or self._preview_layer.node is None:
            remove_stale_previews(doc)  # left by a Krita that stopped mid-job, or saved with one
        try:
            self.engine.check(request)
        except BackendError as exc:
            raise NothingToDo(str(exc)) from None
        job_id = self.engine.submit(request)
        job = self.jobs.setdefault(job_id, Job(job_id, spec, request, doc, common.prompt))
        job.spec, job.request, job.doc, job.prompt = spec, request, doc, common.prompt
        self._changed(job)
        return job_id

    def recommended(self, operation: str, model: str, settings):
        """``settings`` with the model's recommendations (its ``latent_studio.json``) for the settings that
        take them: what the docker starts from, as the CLI and the studio do."""
        try:
            info = self.engine.model_info(model)
        except BackendError:
            return settings
        open_ = {f.name for f in dataclasses.fields(settings) if f.metadata.get("recommended")}
        changes = {name: value for op, name, value in info.recommended if op == operation and name in open_}
        return dataclasses.replace(settings, **changes)

    def cancel(self, job_id: int | None = None) -> None:
        """Cancels ``job_id``, or every queued and running job."""
        if job_id is None:
            self.engine.cancel_all()
        else:
            self.engine.cancel(job_id)

    def select(self, index: int) -> None:
        """Shows variation ``index`` of the last result in the preview layer."""
        job = self.variations
        if job is None or not 0 <= index < len(job.results):
            return
        self.selected = index
        image = job.results[index]
        self._preview(job.doc).show(image.image, image.rect)
        self._changed(job)

    def apply(self, index: int | None = None):
        """Variation ``index`` (default: the selected one) becomes a new layer; the preview goes. Returns
        the new node."""
        job = self.variations
        if job is None or not job.results:
            return None
        index = self.selected if index is None else index
        if self._preview(job.doc).rect != tuple(job.results[index].rect):
            self.select(index)  # the preview layer shows this variation, and becomes its layer
        node = apply_result(job.doc, job.spec, job.request, job.results[index], job.prompt, self._preview(job.doc))
        job.applied.append(index)
        if job.spec.scales_document:  # the document is scaled now: its other variations no longer fit
            self.variations = None
        self._changed(job)
        return node

    def discard(self) -> None:
        """Forgets the variations and removes their preview."""
        job, self.variations = self.variations, None
        if job is not None:
            self._preview(job.doc).remove()
            self._changed(job)

    def shutdown(self) -> None:
        if self._preview_layer is not None:
            self._preview_layer.remove()
        self.engine.shutdown(wait=False)

    @property
    def busy(self) -> bool:
        return any(j.state in ("queued", "running") for j in self.jobs.values())

    # --- events ---------------------------------------------------------------------------------
    def _from_engine(self, event) -> None:  # the engine's thread: hand over, touch nothing here
        self._post(self.handle, event)

    def handle(self, event) -> None:
        """One engine event, on the GUI thread."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        if isinstance(event, Started):
            job.state, job.total = "running", event.total
        elif isinstance(event, Progress):
            job.step, job.total, job.stage = event.step, event.total, event.stage
        elif isinstance(event, Preview):
            self._preview(job.doc).show(event.image, event.rect)
        elif isinstance(event, Result):
            job.state, job.results = "done", tuple(event.images)
            job.message = " ".join(n for image in event.images for n in image.notes)
            self.variations, self.selected = job, 0
            if job.results:
                first = job.results[0]
                self._preview(job.doc).show(first.image, first.rect)
        elif isinstance(event, Failed):
            job.state, job.message = "failed", event.message
            self._end_preview(job)
        elif isinstance(event, Cancelled):
            job.state, job.message = "cancelled", "Cancelled: the document is as it was."
            self._end_preview(job)
        self._changed(job)

    def _end_preview(self, job: Job) -> None:
        if self.variations is not None and self.variations.results:
            self.select(self.selected)  # the strip's preview stays: show its selected variation again
        elif self._preview_layer is not None:
            self._preview_layer.remove()

    def _preview(self, doc) -> PreviewLayer:
        """The preview layer, in ``doc`` (Krita hands out a new wrapper of a document each time it is asked, so
        a job keeps the one it was made from)."""
        layer = self._preview_layer
        if layer is None or layer.doc is not doc:
            if layer is not None:
                layer.remove()
            layer = self._preview_layer = PreviewLayer(doc)
        return layer

    def _changed(self, job: Job) -> None:
        for listener in list(self.listeners):
            listener(job)
