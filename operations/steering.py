"""Steering from the document and the app, for every operation (no Qt).

The document marks layers as control or reference layers (:mod:`canvas.role`); the app keeps a
LoRA list and the IP-Adapter model chosen (:class:`AppSteering`). :func:`steered` adds them to a
request an operation's spec built (``spec.build``):

* the enabled LoRAs, each as a :class:`~backend.steering.LoraRef` with its weight;
* one :class:`~backend.steering.Control` per control layer: the layer's pixels over the request's
  area (``request.origin`` and ``request.image``'s size, document coordinates; transparent
  outside the layer, its mask applied), its kind, model, strength and range, labelled with the
  layer's name. A control layer with nothing over that area is left out (a pose drawn on the left
  does not steer an inpaint on the right); an upscale takes only tile controls;
* one :class:`~backend.steering.Reference` per reference layer (its pixels over its own bounds),
  with the IP-Adapter model chosen.

Control and reference layers count whether shown or hidden. :func:`recall` is the reverse for
"Use these settings": the LoRAs recorded in a result become the app's enabled ones, a recorded
control or reference is found again as the control or reference layer of its label (the layer's
name), and what is not found is said in one sentence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.steering import Control, LoraRef, Reference, display_name
from backend.steering.record import lora_name
from canvas.geometry import Rect
from canvas.role import ControlRole, ReferenceRole

from .spec import NothingToDo


@dataclass(frozen=True)
class LoraEntry:
    """One row of the app's LoRA list: a file (or a name in ``loras/``), its weight, whether it is used."""

    name: str
    weight: float = 1.0
    enabled: bool = True

    @property
    def label(self) -> str:
        return display_name(self.name)

    def matches(self, name: str) -> bool:
        """Whether ``name`` (as a result's parameters record a LoRA) is this entry's file."""
        wanted = name.strip().lower()
        return wanted in {self.name.lower(), lora_name(self.name).lower(), self.label.lower()}


@dataclass(frozen=True)
class AppSteering:
    """What the app adds to every job besides the document's marked layers."""

    loras: tuple = ()  # LoraEntry, in the list's order
    ip_adapter: str = ""  # the IP-Adapter model for reference layers: a folder, a file, or a name in ip-adapters/

    def enabled_loras(self) -> tuple:
        return tuple(LoraRef(e.name, e.weight) for e in self.loras if e.enabled)


# Operations that take only some kinds of control: an upscale refines tiles of the image itself.
ONLY_KINDS = {"upscale": ("tile",)}


def steered(request, doc, app: AppSteering):
    """``request`` with the app's LoRAs and the document's control and reference layers added.
    Raises NothingToDo or InvalidRequest (one sentence naming the layer or field) for a marked
    layer that cannot be used as it is."""
    if not getattr(request, "refine", True):
        return request  # an upscale without refine runs no diffusion model: nothing to steer
    changes: dict = {}
    loras = app.enabled_loras()
    if loras:
        changes["loras"] = tuple(request.loras) + loras
    controls = tuple(c for c in (_control(layer, request) for layer in doc.layers
                                 if isinstance(layer.role, ControlRole)) if c is not None)
    if controls:
        changes["controls"] = tuple(request.controls) + controls
    references = tuple(_reference(layer) for layer in doc.layers if isinstance(layer.role, ReferenceRole))
    if references:
        if not app.ip_adapter.strip():
            names = ", ".join(f"“{r.label}”" for r in references)
            raise NothingToDo(f"The reference layer{'s' if len(references) > 1 else ''} {names} need"
                              f"{'' if len(references) > 1 else 's'} an IP-Adapter model: choose one in the "
                              "generation panel's Control section (IP-Adapter), or mark the layer plain.")
        changes["references"] = tuple(request.references) + references
        changes["ip_adapter"] = app.ip_adapter.strip()
    return request.replace(**changes) if changes else request


def layer_pixels(layer, rect: Rect) -> np.ndarray:
    """The layer's straight RGBA over ``rect`` (document coordinates), its mask applied; transparent
    where the layer has nothing."""
    pixels = layer.pixels.read(rect)
    if layer.mask is not None:
        mask = layer.mask.read(rect).astype(np.uint16)
        pixels[..., 3] = ((pixels[..., 3].astype(np.uint16) * mask + 127) // 255).astype(np.uint8)
    return pixels


def _control(layer, request) -> Control | None:
    role: ControlRole = layer.role
    only = ONLY_KINDS.get(request.operation)
    if only is not None and role.kind not in only:
        return None
    x, y, w, h = request.control_area  # an outpaint's covers the extended canvas
    pixels = layer_pixels(layer, Rect(x, y, w, h))
    if not pixels[..., 3].any() and layer.pixels.content_bbox() is not None:
        return None  # the layer steers another part of the document
    if not role.model.strip():
        raise NothingToDo(f"The control layer “{layer.name}” has no ControlNet model: choose one in the generation "
                          "panel's Control section, or mark the layer plain.")
    return Control(role.model, pixels, role.kind, role.strength, role.start, role.end, label=layer.name)


def _reference(layer) -> Reference:
    role: ReferenceRole = layer.role
    box = layer.pixels.content_bbox()
    pixels = layer_pixels(layer, box) if box is not None else np.zeros((1, 1, 4), np.uint8)
    return Reference(pixels, role.weight, role.mode, label=layer.name)


# --- "Use these settings" ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Recalled:
    """What a result's steering gives back: the app's steering, the layers' new roles (one undo step
    for the caller), and one sentence for what could not be found ("" when all was)."""

    steering: AppSteering
    roles: tuple = ()  # (layer, ControlRole | ReferenceRole)
    message: str = ""
    missing: tuple = field(default=())  # the labels not found


def recall(fields: dict, doc, app: AppSteering) -> Recalled:
    """``fields``: :func:`backend.steering.record.steering_fields` of a result's parameters (a
    Recipe's ``steering``). The recorded LoRAs become the enabled ones of the list (with their
    weights; the others are disabled, one not in the list is added); a recorded control or
    reference is matched to the control or reference layer named as its label."""
    recorded = tuple(fields.get("loras", ()))
    entries = []
    for entry in app.loras:
        match = next((r for r in recorded if entry.matches(r.name)), None)
        entries.append(LoraEntry(entry.name, match.weight if match else entry.weight, match is not None))
    for r in recorded:
        if not any(e.matches(r.name) for e in app.loras):
            entries.append(LoraEntry(r.name, r.weight, True))
    steering = AppSteering(tuple(entries), fields.get("ip_adapter", app.ip_adapter))

    roles, missing, unreadable = [], [], []
    recorded_roles = [("control", rc.label, ControlRole, rc) for rc in fields.get("recorded_controls", ())]
    recorded_roles += [("reference", rr.label, ReferenceRole, rr) for rr in fields.get("recorded_references", ())]
    for kind, label, role_type, rec in recorded_roles:
        layer = _named(doc, label, role_type)
        if layer is None:
            missing.append((kind, label))
            continue
        try:
            if role_type is ControlRole:
                role = ControlRole(rec.kind if rec.kind != "auto" else layer.role.kind, rec.model, rec.strength,
                                   rec.start, rec.end)
            else:
                role = ReferenceRole(rec.weight, rec.mode)
        except ValueError:  # a hand-edited record out of range: the layer keeps its own settings
            unreadable.append(label)
            continue
        roles.append((layer, role))
    message = _missing_sentence(missing)
    if not message and unreadable:
        message = (f"The recorded settings of {', '.join(f'“{n}”' for n in unreadable)} are out of range, so the "
                   "layer keeps its own.")
    return Recalled(steering, tuple(roles), message, tuple(label for _kind, label in missing))


def _named(doc, label: str, role_type):
    """The topmost layer of that role named ``label``."""
    return next((layer for layer in reversed(doc.layers) if isinstance(layer.role, role_type) and label
                 and layer.name == label), None)


def _missing_sentence(missing: list) -> str:
    if not missing:
        return ""
    kinds = sorted({kind for kind, _label in missing})
    what = " or ".join(f"{k} layer" for k in kinds)
    names = ", ".join(f"“{label}”" if label else "(unnamed)" for _kind, label in missing)
    if len(missing) == 1:
        return (f"No {what} is named {names}, so its settings were not restored: mark a layer of that name as "
                f"a {kinds[0]} layer to use them.")
    return (f"No {what} is named {names}, so their settings were not restored: mark layers of those names to "
            "use them.")
