"""The engine side of steering: what a job sets up once, after its model is loaded, and what each
region it diffuses adds to the pipeline call.

    steering = prepare(ctx, model, request)    # LoRAs set, embeddings, ControlNets, IP-Adapter loaded
    pipe = steering.pipeline(model, "inpaint") # the model's pipeline of that kind, with the ControlNets
    kwargs.update(steering.region_kwargs("inpaint", rect, (w, h), pixels, soft))

Every job sets the whole state: a job without LoRAs disables the adapters a previous job loaded, one
without references unloads the IP-Adapter, so two queued jobs with different LoRAs each get their
own, and the base model is never reloaded for it (:mod:`.lora`, :mod:`.reference`).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Steering:
    origin: tuple[int, int] = (0, 0)  # the top-left of the request's control area in document coordinates
    controls: tuple = ()  # control.PreparedControl, in the request's order
    controlnet: object = None  # the ControlNetModel / MultiControlNetModel the pipelines take, or None
    reference: object = None  # reference.PreparedReference, or None
    notes: list = field(default_factory=list)  # sentences for the results (a control image scaled, …)

    def pipeline(self, model, kind: str):
        """The model's pipeline for ``kind`` ("inpaint", "img2img" or "txt2img") with this job's ControlNets."""
        return model.pipeline(kind, self.controlnet)

    def region_kwargs(self, kind: str, rect, work_size: tuple[int, int], pixels, soft) -> dict:
        """What one region's pipeline call adds: the control images cropped to ``rect`` (document
        coordinates) and scaled to ``work_size``, their strengths and ranges; the reference images."""
        out: dict = {}
        if self.controls:
            from .control import region_kwargs

            out.update(region_kwargs(self.controls, self.origin, rect, work_size, pixels, soft))
            if kind == "txt2img" and "control_image" in out:
                out["image"] = out.pop("control_image")  # the text-to-image ControlNet pipeline's name for it
        if self.reference is not None:
            out.update(self.reference.kwargs(work_size))
        return out


NO_STEERING = Steering()


def prepare(ctx, model, request) -> Steering:
    """Sets the model up for ``request``'s steering (see the module's docstring); raises BackendError
    with one sentence for a file that cannot be used."""
    from . import embeddings, lora, reference

    notes: list[str] = []
    lora.apply(ctx, model, request.loras, allow_pickle=request.allow_pickle)
    notes += embeddings.apply(ctx, model, request.prompt, request.negative_prompt, request.embeddings,
                              allow_pickle=request.allow_pickle)
    controls, controlnet = (), None
    if request.controls:
        from . import control

        controls, controlnet, more = control.prepare(ctx, model, request)
        notes += more
    prepared = reference.prepare(ctx, model, request)
    if prepared is not None:
        notes += prepared.notes
    ctx.check_cancel()
    return Steering(tuple(request.control_area[:2]), tuple(controls), controlnet, prepared, notes)
