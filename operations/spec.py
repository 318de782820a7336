"""An operation's spec: the one place the front ends read to offer, build and apply it.

A spec names an operation (``inpaint``), its label and layer noun, its request class (from
``backend.ops``), its typed settings (a frozen dataclass whose fields carry what the panel and
the CLI need: label, range, choices, flag, help), how a request is built from a document (the
app) or from an image and a mask (the CLI), and how a result is applied to a document. The
generation panel, the studio's job controller and the CLI all derive from the specs; none of
them names an operation.

Defaults have one source: a setting's default *is* its request field's default
(``InpaintRequest.grow``), except where a front end documents its own (the app's Variations
count, ``app_default``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Callable, Mapping

import numpy as np

from backend.requests import MAX_SEED, GenerationRequest
from backend.samplers import SAMPLERS
from canvas.parameters import generated_layer_name


class NothingToDo(Exception):
    """The document gives the operation nothing to work on; the text says what to do."""


def setting(default, label: str, *, help: str = "", minimum=None, maximum=None, step=None, decimals: int = 2,
            choices: tuple = (), widget: str = "", cli: str = "", cli_help: str = "", negate: bool = False,
            app: bool = True, app_default=dataclasses.MISSING, special: str = "", recommended: bool = False,
            group: str = "", default_text: str = "") -> dataclasses.Field:
    """A typed setting: ``default`` (take it from the request field: one source of defaults) plus
    what the panel and the CLI need.

    ``widget``: "" (from the type), "multiline", "model", "upscaler", "seed", "choice".
    ``cli``: the flag ("--grow"; "" → ``--name``); ``negate``: a flag that sets a bool False
    (``--no-detail``). ``app``: False for settings only the CLI asks for (outpaint's sides come
    from the document in the app). ``special``: the spin box's text for its minimum ("Auto").
    ``recommended``: a model may recommend it (``<operation>_defaults`` in its latent_studio.json). ``group``: a box in the panel.
    """
    meta = dict(label=label, help=help, minimum=minimum, maximum=maximum, step=step, decimals=decimals,
                choices=tuple(choices), widget=widget, cli=cli, cli_help=cli_help or help, negate=negate,
                app=app, special=special, recommended=recommended, group=group)
    if default_text:
        meta["default_text"] = default_text
    if app_default is not dataclasses.MISSING:
        meta["app_default"] = app_default
    return field(default=default, metadata=meta)


def meta(f: dataclasses.Field) -> Mapping:
    return f.metadata


@dataclass(frozen=True)
class CommonSettings:
    """What every operation asks for (the panel shows these above the operation's own)."""

    model: str = setting(GenerationRequest.model, "Model", widget="model", default_text="the embedded model",
                         help="diffusers folder, .safetensors file, hub id or name from `models`")
    prompt: str = setting(GenerationRequest.prompt, "Prompt", widget="multiline")
    negative_prompt: str = setting(GenerationRequest.negative_prompt, "Negative prompt", widget="multiline",
                                   cli="--negative", help="negative prompt")
    steps: int = setting(GenerationRequest.steps, "Steps", minimum=1, maximum=500)
    guidance: float = setting(GenerationRequest.guidance, "Guidance", minimum=0.0, maximum=50.0, step=0.5,
                              help="classifier-free guidance (CFG) scale")
    seed: int = setting(GenerationRequest.seed, "Seed", minimum=0, maximum=MAX_SEED, widget="seed")
    count: int = setting(GenerationRequest.count, "Variations", minimum=1, maximum=64, app_default=4,
                         help="variations, with seeds seed … seed+count-1")
    sampler: str = setting(GenerationRequest.sampler, "Sampler", choices=tuple(SAMPLERS), widget="choice")


@dataclass(frozen=True)
class OperationSpec:
    name: str  # the request's `operation`, the CLI subcommand, the key in the app's settings
    label: str  # the panel's operation list
    noun: str  # generated layers are named "<noun>: <prompt…>"
    order: int  # position in the panel's list
    request: type  # the request dataclass of backend.ops.<name>
    settings: type  # the operation's own typed settings (frozen dataclass of `setting` fields)
    from_document: Callable  # (doc, common, settings) -> request; raises NothingToDo
    from_image: Callable  # (image, mask, origin, common, settings) -> request, for the CLI
    summary: str  # the CLI's one-line help
    description: str = ""
    needs_mask: bool = False  # the CLI asks for --mask
    needs_image: bool = True  # the CLI asks for --image (False: without one, the request comes from the settings)
    takes_mask: bool = False  # the CLI takes an optional --mask (a region of --image)
    new_image: tuple[str, ...] = ()  # settings that size the image made without --image (refused with one)
    makes_layer: bool = False  # the result is a new layer laid over the document, not a region composited into it
    cli_names: Mapping[str, str] = field(default_factory=dict)  # setting -> flag, where it differs
    varies: Callable = lambda settings: True  # False: every seed gives the same result (one result)
    uses_model: Callable = lambda settings: True  # False: the model (and prompt) play no part
    scales_document: bool = False  # the result is the whole document, scaled (applying it scales the document)
    to_request: Callable | None = None  # settings -> request kwargs (default: the fields as they are)
    from_recorded: Callable | None = None  # recorded request fields -> setting values (default: same names)
    from_parameters: Callable | None = None  # the parsed parameters -> setting values no request field records
    apply: Callable | None = None  # (doc, request, result, name) -> layer (default: add a layer)

    def request_kwargs(self, common: CommonSettings, settings) -> dict:
        kwargs = dataclasses.asdict(common)
        if not self.varies(settings):
            kwargs["count"] = 1
        kwargs.update(self.to_request(settings) if self.to_request else dataclasses.asdict(settings))
        return kwargs

    def build(self, doc, common: CommonSettings, settings):
        """The request for the document (the app's path)."""
        return self.from_document(doc, common, settings)

    def apply_result(self, doc, request, result, prompt: str = ""):
        """Adds ``result`` to ``doc`` as one undoable step; returns the new layer."""
        from canvas.parameters import format_parameters

        name = generated_layer_name(self.noun, prompt)
        if self.apply is not None:
            return self.apply(doc, request, result, name)
        from canvas.geometry import Rect

        rect = Rect(*result.rect)
        if not doc.bounds.contains(rect):
            doc.grow_to_include(rect)  # an outpaint past the edge: grow first
        return doc.add_generated_layer(result.image, rect.x, rect.y, name, format_parameters(result.parameters),
                                       mask=touched(result.mask))

    def default_settings(self):
        return self.settings()

    def app_settings(self) -> list[dataclasses.Field]:
        return [f for f in fields(self.settings) if f.metadata.get("app", True)]


# --- typed values ---------------------------------------------------------------------------------

def coerce(cls, data: Mapping | None, *, app: bool = False):
    """``cls`` from a mapping read from a file: unknown keys are ignored, a value of the wrong type
    (or outside its choices) takes the default, numbers are clamped to their range. Never raises."""
    values = {}
    for f in fields(cls):
        default = f.metadata.get("app_default", f.default) if app else f.default
        value = (data or {}).get(f.name, default)
        values[f.name] = _coerce_value(f, value, default)
    return cls(**values)


def _coerce_value(f: dataclasses.Field, value, default):
    m = f.metadata
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        value = int(value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            return default
        if m.get("choices") and value not in m["choices"]:
            return default
        return value
    if m.get("minimum") is not None:
        value = max(value, type(default)(m["minimum"]))
    if m.get("maximum") is not None:
        value = min(value, type(default)(m["maximum"]))
    return value


def replace(instance, **changes):
    return dataclasses.replace(instance, **changes)


def touched(mask: np.ndarray) -> np.ndarray:
    """A result's layer covers every pixel the job changed, fully: its image is already composited
    (feathered into the surroundings by the engine), so blending it through the soft mask again
    would feather the edge twice, and the document would differ from the image the engine made."""
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def opaque_content(rgba: np.ndarray) -> bool:
    """Whether anything in the pixels is visible (alpha above 0)."""
    return bool(rgba[..., 3].any())
