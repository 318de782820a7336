"""Settings read back from a result's generation parameters ("Use these settings", --settings-from).

Every result records what made it (``backend.requests.request_parameters``); a :class:`Recipe` is
that record turned back into the operation's spec, common settings and own settings, so the app
and the CLI can run it again: with the same input, on the same device, the same pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from backend.errors import InvalidRequest
from backend.requests import fields_from_parameters
from backend.steering.record import steering_fields
from canvas.parameters import parse_parameters

from .spec import CommonSettings, OperationSpec


class NoRecipe(InvalidRequest):
    """The parameters cannot be turned into settings; the text says why and what to do."""


@dataclass(frozen=True)
class Recipe:
    spec: OperationSpec
    common: dict  # CommonSettings fields found in the record
    settings: dict  # the operation's own settings found in the record
    # The steering recorded (backend.steering.record.steering_fields): loras, embeddings, ip_adapter,
    # recorded_controls and recorded_references (those without their images: the front end finds them).
    steering: dict = field(default_factory=dict)

    def apply(self, common: CommonSettings, settings):
        """``(common, settings)`` with the recorded values put in."""
        return dataclasses.replace(common, **self.common), dataclasses.replace(settings, **self.settings)


def read_recipe(text: str | None, *, source: str = "the image") -> Recipe:
    from . import SPECS

    if not text or not text.strip():
        raise NoRecipe(f"{source} has no generation parameters: choose an image that Latent Studio generated.")
    params = parse_parameters(text)
    operation = str(params.get("Operation", "")).strip().lower()
    if not operation:
        raise NoRecipe(f"{source} has no Latent Studio parameters (no `Operation` in them): choose an image "
                       "that Latent Studio generated.")
    spec = SPECS.get(operation)
    if spec is None:
        raise NoRecipe(f"{source} was made by an operation this version does not know ({operation!r}).")
    try:
        steering = steering_fields(params)  # the prompt without its <lora:…> tags, which become LoRAs
        if "prompt" in steering:
            params = dict(params, prompt=steering.pop("prompt"))
        recorded = fields_from_parameters(spec.request, params)
        more = spec.from_parameters(params) if spec.from_parameters is not None else {}
    except NoRecipe:
        raise
    except InvalidRequest as exc:  # a value that does not read: one sentence, as for any bad recipe
        raise NoRecipe(str(exc)) from None
    if "model" in recorded:
        recorded["model"] = _model_ref(recorded["model"])
    common_names = {f.name for f in fields(CommonSettings)}
    common = {k: v for k, v in recorded.items() if k in common_names}
    if spec.from_recorded is not None:
        own = spec.from_recorded(recorded)
    else:
        names = {f.name for f in fields(spec.settings)}
        own = {k: v for k, v in recorded.items() if k in names}
    own.update(more)
    return Recipe(spec, common, own, steering)


def _model_ref(name: str) -> str:
    """The embedded model's name means the default model (""); other names are looked up as given."""
    from backend.models import default_model

    return "" if name and name == default_model() else name
