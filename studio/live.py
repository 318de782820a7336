"""Live painting: the live region regenerates after each stroke; the result shows over the canvas.

One QObject on the GUI thread. Turning live on fixes the *live region*: the selection's box, or the
whole canvas when nothing is selected (a rectangle, in document coordinates). Every change to the
picture inside it (a stroke, an undo, a layer shown or hidden) asks for an update; an update
builds an img2img request of the region's flattened pixels (a snapshot: the worker never sees the
document) through the img2img spec, adds the app's steering (``operations.steering.steered``:
LoRAs, control and reference layers) and submits it. Live is always img2img of the rectangle, not
an inpaint of a soft selection: the painter is painting the whole region, and the result lays over
it as it is.

The newest painting always wins, and the engine never holds stale live jobs: at most one live job
is in the engine. A change while one runs cancels it (``engine.cancel``: it stops at its next step)
and marks an update *pending*; when the running job ends (cancelled, done or failed) the pending
update is built from the document as it is *then* and submitted. A burst of strokes therefore runs
one job for the first and one for the last.

Updates come when a stroke ends (the canvas view's ``stroke_ended``), at the next event-loop turn
after any other change (coalesced), and every ``during_stroke_s`` while a long stroke goes on.
Previews and the result show as the view's ``"live"`` preview, never in the document; **Keep** adds
the current result as a new layer with its parameters (one undo step); leaving live removes the
preview. The region, strength, seed and on/off state are the document's (``canvas.live``, saved
in ``.ora``); an opened document's live stays off until the painter turns it on (opening a file
should not start the engine, nor show an error before the painter asked for anything).

Steps, sampler and guidance come from the model's live settings when the engine's ``ModelInfo``
offers them (``ModelInfo.live``, from the model's ``live_defaults``: pairs or a mapping; or
``("live", setting, value)`` entries of ``recommended``), else :data:`FALLBACK`. Live jobs take the
engine's live path (``live=True``: one encode, the preview decoder for the result).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace

from PySide6.QtCore import QObject, QTimer, Signal

from backend.errors import BackendError
from backend.events import Cancelled, Failed, Preview, Result
from backend.samplers import SAMPLERS
from canvas.geometry import Rect
from canvas.live import LiveSettings
from canvas.parameters import format_parameters, generated_layer_name
from operations.img2img import SPEC as IMG2IMG, Img2ImgSettings
from operations.spec import NothingToDo, opaque_content, touched
from operations.steering import steered

FALLBACK = {"steps": 4, "strength": 0.5, "sampler": "dpmpp_2m"}
MAX_SIDE = 1024  # a larger live region would take seconds per update: live is for a region you paint in
MIN_SIDE = 16
PREVIEW_KEY = "live"


class LiveController(QObject):
    state_changed = Signal(bool)  # live on / off
    result_shown = Signal(int)  # the job id whose result now shows

    def __init__(self, session, bridge, panel, view, box, *, show_message, layer_applied,
                 during_stroke_s: float = 0.5, parent=None):
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.panel = panel
        self.view = view
        self.box = box
        self.show_message = show_message
        self.layer_applied = layer_applied
        self.on = False
        self.region: Rect | None = None
        self.defaults: dict = dict(FALLBACK)
        self.running: int | None = None  # the one live job in the engine
        self.running_request = None
        self.pending = False  # a change came while a job ran: update when it ends
        self.dirty = False  # the picture changed in the region since the last submit
        self.result = None  # (request, ResultImage) now shown
        self.submitted = 0  # live jobs submitted (tests, benchmarks)
        self.completed = 0  # live jobs that ended with a result
        self.last_build_s = 0.0  # GUI-thread time of the latest update (build + submit)
        self._doc = None
        self._last_submit = 0.0
        self._soon = QTimer(self)  # coalesces the changes of one event-loop turn into one update
        self._soon.setSingleShot(True)
        self._soon.setInterval(0)
        self._soon.timeout.connect(self.update)
        self._during = QTimer(self)  # updates during a long stroke
        self._during.setSingleShot(True)
        self._during.setInterval(max(1, int(during_stroke_s * 1000)))
        self._during.timeout.connect(self._during_stroke)
        bridge.event.connect(self.on_event)
        view.stroke_ended.connect(self._stroke_ended)
        box.toggled.connect(self.set_on)
        box.keep_requested.connect(self.keep)
        box.values_changed.connect(self._values_changed)
        session.document_changed.connect(self._document_changed)

    # --- on and off -------------------------------------------------------------------------
    def set_on(self, on: bool) -> bool:
        """Turns live on (True when it is on) or off; a problem is one sentence in the bar, and live
        stays off."""
        if not on:
            self.leave()
            return False
        if self.on:
            return True
        doc = self.session.doc
        box = doc.selection.bbox() if not doc.selection.is_empty else None
        region = box.intersect(doc.bounds) if box is not None else doc.bounds
        try:
            if region.empty:
                raise NothingToDo("The selection is outside the canvas: select an area on the canvas for live painting.")
            if region.w > MAX_SIDE or region.h > MAX_SIDE:
                raise NothingToDo(f"The live region is {region.w}×{region.h} pixels, larger than live painting "
                                  f"allows ({MAX_SIDE} a side): select a smaller area and turn live on again.")
            if region.w < MIN_SIDE or region.h < MIN_SIDE:
                raise NothingToDo(f"The live region is {region.w}×{region.h} pixels: select at least "
                                  f"{MIN_SIDE}×{MIN_SIDE} and turn live on again.")
            self.defaults = live_defaults(self.bridge.model_info(self.panel.model_ref()))
            if doc.live is None:  # the document's first live: the model's strength
                self.box.set_values(self.defaults["strength"], self.box.values()[1])
            self.region = region
            request = self._request()
            self.bridge.check(request)
        except (NothingToDo, BackendError) as exc:
            self.region = None
            self.box.set_on(False)
            self.show_message(str(exc))
            return False
        self.on = True
        self._store()
        self.box.set_on(True)
        self.view.set_live_region(region)
        self._set_status("waiting for the first result")
        self.state_changed.emit(True)
        self._submit(request)
        return True

    def toggle(self) -> bool:
        return self.set_on(not self.on)

    def leave(self) -> None:
        """Live off: the job is cancelled, the preview and the region's outline go; the document is
        not touched (only its live settings record that live is off)."""
        was_on = self.on
        self.on = False
        self.pending = self.dirty = False
        self._soon.stop()
        self._during.stop()
        if self.running is not None:
            self.bridge.cancel(self.running)
            self.running = self.running_request = None  # whatever it still sends is ignored
        self.result = None
        self.view.clear_preview(PREVIEW_KEY)
        self.view.set_live_region(None)
        self.box.set_on(False)
        self._set_status("off")
        if was_on:
            self._store()
            self.state_changed.emit(False)

    # --- changes -----------------------------------------------------------------------------
    def _document_changed(self, doc) -> None:
        if self._doc is not None and self._on_doc_change in self._doc.listeners:
            self._doc.listeners.remove(self._on_doc_change)
        if self.on:
            self.on = False  # the old document's settings stay as they were
            self.leave()
        self._doc = doc
        doc.listeners.append(self._on_doc_change)
        live = doc.live
        if live is not None:
            self.box.set_values(live.strength, live.seed)

    def _on_doc_change(self, kind: str, rect) -> None:
        """Called for every change, on the GUI thread: cheap (no pixels read here)."""
        if not self.on or kind == "selection":
            return
        if rect is not None and Rect(*rect).intersect(self.region).empty:
            return
        self.dirty = True
        if self.session.doc.stroking:
            if not self._during.isActive():
                self._during.start()
        else:
            self._soon.start()

    def _stroke_ended(self) -> None:
        self._during.stop()
        if self.on and self.dirty:
            self._soon.start()

    def _during_stroke(self) -> None:
        if self.on and self.dirty and self.session.doc.stroking:
            self.update()

    def _values_changed(self) -> None:
        self._store()
        if self.on:
            self.dirty = True
            self._soon.start()

    def update(self) -> None:
        """Regenerate from the document as it is now: submit, or (a job running) cancel it and
        submit when it has ended."""
        if not self.on:
            return
        if self.running is not None:
            if not self.pending:
                self.pending = True
                self.bridge.cancel(self.running)
            return
        t0 = time.perf_counter()
        try:
            request = self._request()
        except NothingToDo as exc:  # e.g. everything erased: nothing to show until there is again
            self.dirty = False
            self.result = None
            self.view.clear_preview(PREVIEW_KEY)
            self._set_status(str(exc))
            return
        except BackendError as exc:
            self.leave()
            self.show_message(str(exc))
            return
        self._submit(request)
        self.last_build_s = time.perf_counter() - t0

    def _request(self):
        doc = self.session.doc
        region = self.region.intersect(doc.bounds)
        if region.empty:
            raise NothingToDo("The live region is outside the canvas: turn live off and on over the canvas.")
        pixels = doc.flatten(region)
        if not opaque_content(pixels):
            raise NothingToDo("Nothing is visible in the live region: paint something or show a layer first.")
        strength, seed = self.box.values()
        d = self.defaults
        steps = max(d["steps"], math.ceil(1 / strength))  # at least one denoising step
        common = replace(self.panel.common(), count=1, seed=seed, steps=steps, sampler=d["sampler"],
                         **({"guidance": d["guidance"]} if "guidance" in d else {}))
        request = IMG2IMG.from_image(pixels, None, (region.x, region.y), common, Img2ImgSettings(strength=strength))
        # The engine's live path: one encode, the preview decoder for the result (recorded as `Live`).
        return steered(request.replace(live=True), doc, self.panel.app_steering())

    def _submit(self, request) -> None:
        try:
            job = self.bridge.submit(request)
        except BackendError as exc:
            self.leave()
            self.show_message(str(exc))
            return
        self.running, self.running_request = job, request
        self.dirty = self.pending = False
        self.submitted += 1
        self._last_submit = time.monotonic()

    # --- the engine's events -------------------------------------------------------------------
    def on_event(self, event) -> None:
        if event.job_id != self.running or self.running is None:
            return
        if isinstance(event, Preview):
            if not self.pending:  # a preview of a painting already changed would flicker back
                self.view.show_preview(PREVIEW_KEY, event.image, tuple(event.rect))
            return
        if not isinstance(event, (Result, Failed, Cancelled)):
            return
        request, self.running, self.running_request = self.running_request, None, None
        if not self.on:  # ended after live was left: nothing of it shows
            return
        if isinstance(event, Result) and event.images:
            self.completed += 1
            r = event.images[0]
            self.result = (request, r)
            image = r.image.copy()
            image[..., 3] = (image[..., 3].astype("uint16") * touched(r.mask) // 255).astype("uint8")
            self.view.show_preview(PREVIEW_KEY, image, tuple(r.rect))
            self._set_status(f"showing seed {r.seed} · strength {request.strength:g} · {request.steps} steps")
            self.result_shown.emit(event.job_id)
        elif isinstance(event, Failed):
            self.leave()
            self.show_message(event.message, event.details)
            return
        if self.pending or self.dirty:
            self.update()

    # --- keep --------------------------------------------------------------------------------
    def keep(self):
        """The live result as a new layer with its parameters (one undo step); returns the layer."""
        if self.result is None:
            self.show_message("There is no live result to keep yet: paint in the live region and wait for it.")
            return None
        request, r = self.result
        rect = Rect(*r.rect)
        layer = self.session.doc.add_generated_layer(
            r.image, rect.x, rect.y, generated_layer_name("Live", request.prompt),
            format_parameters(r.parameters), mask=touched(r.mask))
        self.layer_applied(layer)
        return layer

    # --- helpers -----------------------------------------------------------------------------
    def _store(self) -> None:
        strength, seed = self.box.values()
        self.session.doc.live = LiveSettings(region=self.region, strength=strength, seed=seed, on=self.on)

    def _set_status(self, text: str) -> None:
        self.box.set_status(text, self.result is not None)


def live_defaults(info) -> dict:
    """Steps, sampler, strength (and guidance, when given) for live jobs: the model's live settings
    where ``info`` offers them and they are valid, else :data:`FALLBACK`."""
    pairs: list = []
    given = getattr(info, "live", None) or getattr(info, "live_defaults", None)  # ModelInfo.live: pairs
    if isinstance(given, Mapping):
        pairs.extend(given.items())
    elif isinstance(given, (tuple, list)):
        pairs.extend(p for p in given if isinstance(p, (tuple, list)) and len(p) == 2)
    for entry in getattr(info, "recommended", ()) or ():
        if isinstance(entry, (tuple, list)) and len(entry) == 3 and entry[0] == "live":
            pairs.append((entry[1], entry[2]))
    out = dict(FALLBACK)
    for key, value in pairs:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if key == "steps" and number and 1 <= value <= 100 and value == int(value):
            out["steps"] = int(value)
        elif key == "sampler" and value in SAMPLERS:
            out["sampler"] = value
        elif key == "strength" and number and 0.01 <= value <= 1:
            out["strength"] = float(value)
        elif key in ("guidance", "cfg") and number and 0 <= value <= 50:
            out["guidance"] = float(value)
    return out
