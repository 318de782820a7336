"""Steering in the generation parameters, in A1111's forms where A1111 has one.

* LoRAs: ``<lora:NAME:WEIGHT>`` appended to the recorded prompt (NAME: the name in ``loras/``, or the
  path as given);
* embeddings given by file: ``Embeddings: "a, b"`` (their tokens are already in the prompt);
* ControlNets: ``ControlNet 0: "Module: canny, Model: M, Weight: 1, Guidance Start: 0, Guidance End: 1,
  Image: LABEL"`` (LABEL: the control layer's name, or the image file as given on the command line);
* IP-Adapter: ``IP-Adapter: M`` and ``Reference 0: "Image: LABEL, Weight: 0.8, Mode: style"``.

:func:`steering_fields` reads them back: the LoRAs and embeddings as request values, the controls and
references as settings without their images (``RecordedControl``/``RecordedReference``), which the
front end finds again by their label (a layer, a file).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..errors import InvalidRequest
from . import LoraRef

LORA_TAG = re.compile(r"<lora:([^<>]+?)(?::(-?\d+(?:\.\d+)?))?>", re.IGNORECASE)
_ITEM = re.compile(r'\s*([\w \-]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"\n') or value != value.strip() else value


def _items(pairs) -> str:
    return ", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs)


def _read_items(text: str) -> dict[str, str]:
    out = {}
    for m in _ITEM.finditer(text):
        key, value = m.group(1).strip(), m.group(2).strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        out[key] = value
    return out


def lora_tag(lora: LoraRef) -> str:
    return f"<lora:{lora_name(lora.name)}:{lora.weight:g}>"


def lora_name(ref: str) -> str:
    """The name a LoRA is recorded by: its name in ``loras/`` when it is there, else the path as given."""
    from pathlib import Path

    from . import steering_dir

    path = Path(ref)
    folder = steering_dir("loras")
    try:
        if path.parent.resolve() == folder.resolve() and path.suffix.lower() == ".safetensors":
            return path.stem
    except OSError:
        pass
    return ref


def steering_parameters(request, params: dict) -> dict:
    """The parameters ``request``'s steering adds to ``params`` (the prompt with its LoRA tags)."""
    out: dict = {}
    if request.loras:
        prompt = str(params.get("prompt", request.prompt))
        tags = " ".join(lora_tag(lora) for lora in request.loras)
        out["prompt"] = f"{prompt} {tags}".strip()
    if request.embeddings:
        out["Embeddings"] = ", ".join(request.embeddings)
    for i, c in enumerate(request.controls):
        out[f"ControlNet {i}"] = _items([("Module", c.resolved_kind), ("Model", c.model), ("Weight", f"{c.strength:g}"),
                                         ("Guidance Start", f"{c.start:g}"), ("Guidance End", f"{c.end:g}"),
                                         ("Image", c.label or "")])
    if request.ip_adapter:
        out["IP-Adapter"] = request.ip_adapter
        if request.image_encoder:
            out["Image encoder"] = request.image_encoder
    for i, r in enumerate(request.references):
        out[f"Reference {i}"] = _items([("Image", r.label or ""), ("Weight", f"{r.weight:g}"), ("Mode", r.mode)])
    return out


@dataclass(frozen=True)
class RecordedControl:
    """A control as its parameters recorded it: everything but the image, found again by ``label``."""

    model: str
    kind: str
    strength: float
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class RecordedReference:
    label: str
    weight: float
    mode: str


def _float(key: str, text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise InvalidRequest(f"The parameters' `{key}` is {text!r}, which is not a number.") from None


def steering_fields(params: dict) -> dict:
    """The steering recorded in ``params``: ``prompt`` without its LoRA tags, ``loras``,
    ``embeddings``, ``ip_adapter``, ``image_encoder``, and ``recorded_controls`` /
    ``recorded_references`` (lists of :class:`RecordedControl` / :class:`RecordedReference`).
    Keys not recorded are left out. Raises InvalidRequest naming a value that does not read."""
    out: dict = {}
    prompt = params.get("prompt")
    if isinstance(prompt, str) and LORA_TAG.search(prompt):
        loras = []
        for m in LORA_TAG.finditer(prompt):
            weight = _float("<lora:…> weight", m.group(2)) if m.group(2) is not None else 1.0
            loras.append(LoraRef(m.group(1).strip(), weight))
        out["loras"] = tuple(loras)
        out["prompt"] = re.sub(r"\s{2,}", " ", LORA_TAG.sub("", prompt)).strip()
    if params.get("Embeddings"):
        out["embeddings"] = tuple(e.strip() for e in str(params["Embeddings"]).split(",") if e.strip())
    if params.get("IP-Adapter"):
        out["ip_adapter"] = str(params["IP-Adapter"])
    if params.get("Image encoder"):
        out["image_encoder"] = str(params["Image encoder"])
    controls, references = [], []
    for i in range(64):
        key = f"ControlNet {i}"
        if key not in params:
            break
        items = _read_items(str(params[key]))
        controls.append(RecordedControl(
            model=items.get("Model", ""), kind=items.get("Module", "auto") or "auto",
            strength=_float(f"{key} Weight", items.get("Weight", "1")),
            start=_float(f"{key} Guidance Start", items.get("Guidance Start", "0")),
            end=_float(f"{key} Guidance End", items.get("Guidance End", "1")), label=items.get("Image", "")))
    for i in range(64):
        key = f"Reference {i}"
        if key not in params:
            break
        items = _read_items(str(params[key]))
        references.append(RecordedReference(items.get("Image", ""), _float(f"{key} Weight", items.get("Weight", "1")),
                                            items.get("Mode", "full")))
    if controls:
        out["recorded_controls"] = tuple(controls)
    if references:
        out["recorded_references"] = tuple(references)
    return out
