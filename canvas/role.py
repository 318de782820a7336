"""A layer's role in generation: a plain layer (part of the picture), a control layer (its pixels
steer a ControlNet) or a reference layer (its pixels are an IP-Adapter's reference image).

The roles are plain data, checked for shape and range only: the canvas knows nothing of the
engine, so a control's ``kind`` and ``model`` are strings whose meaning the operations give them
(``operations.steering``; the kinds are ``backend.steering.CONTROL_KINDS``). Marked layers are not
part of the picture the operations work on (:meth:`canvas.document.Document.flatten` leaves them
out); the view still shows them while they are visible.

In OpenRaster files (:mod:`canvas.ora`) a role is a few attributes in our ``ls:`` namespace on
the ``<layer>``; :func:`role_attributes` writes them and :func:`role_from_attributes` reads them
back, giving ``None`` (a plain layer) for anything it cannot take, so a file never fails to open
because of a role.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

REFERENCE_MODES = ("full", "style", "composition")
STRENGTH = (0.0, 2.0)  # a control's strength, and a reference's weight
_KIND = re.compile(r"[a-z][a-z0-9_\-]{0,31}\Z")
MAX_MODEL_CHARS = 4096


@dataclass(frozen=True)
class ControlRole:
    """The layer's pixels are a control image: ``kind`` (how they are read: scribble, canny, depth…),
    the ControlNet ``model`` (a file, folder or name; "" until one is chosen), its ``strength`` in
    [0, 2] and the fraction of the steps it acts on, ``start`` to ``end``."""

    kind: str = "scribble"
    model: str = ""
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.match(self.kind):
            raise ValueError(f"a control layer's kind must be a short lower-case word, got {self.kind!r}")
        _check_model(self.model)
        object.__setattr__(self, "strength", _number("strength", self.strength, *STRENGTH))
        object.__setattr__(self, "start", _number("start", self.start, 0.0, 1.0))
        object.__setattr__(self, "end", _number("end", self.end, 0.0, 1.0))
        if self.end <= self.start:
            raise ValueError(f"a control layer's end ({self.end:g}) must come after its start ({self.start:g})")

    name = "control"


@dataclass(frozen=True)
class ReferenceRole:
    """The layer's pixels are a reference image, followed at ``weight`` in [0, 2]; ``mode``: what of
    it to follow (everything, its style, its composition)."""

    weight: float = 1.0
    mode: str = "full"

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _number("weight", self.weight, *STRENGTH))
        if self.mode not in REFERENCE_MODES:
            raise ValueError(f"a reference layer's mode must be one of {', '.join(REFERENCE_MODES)}, got {self.mode!r}")

    name = "reference"


Role = ControlRole | ReferenceRole


def check_role(role) -> None:
    if role is not None and not isinstance(role, (ControlRole, ReferenceRole)):
        raise ValueError(f"a layer's role must be a ControlRole, a ReferenceRole or None, got {role!r}")


def _number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"a layer role's {name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"a layer role's {name} must lie in [{low:g}, {high:g}], got {value:g}")
    return float(value)


def _check_model(model) -> None:
    if not isinstance(model, str) or len(model) > MAX_MODEL_CHARS or "\x00" in model:
        raise ValueError(f"a control layer's model must be a file, folder or name, got {model!r}")


# --- in OpenRaster files ----------------------------------------------------------------------------

def role_attributes(role) -> dict[str, str]:
    """The ``ls:`` attributes (local names) that record ``role``; none for a plain layer."""
    if isinstance(role, ControlRole):
        return {"role": "control", "control-kind": role.kind, "control-model": role.model,
                "control-strength": repr(role.strength), "control-start": repr(role.start),
                "control-end": repr(role.end)}
    if isinstance(role, ReferenceRole):
        return {"role": "reference", "reference-weight": repr(role.weight), "reference-mode": role.mode}
    return {}


def role_from_attributes(get: Callable[[str], str | None]):
    """The role that ``get(local name)`` describes, or None: no role, or one whose values do not read
    (the layer is then a plain layer, as other applications see it)."""
    kind = get("role")
    try:
        if kind == "control":
            return ControlRole(kind=(get("control-kind") or "").strip(), model=get("control-model") or "",
                               strength=_read(get("control-strength"), 1.0), start=_read(get("control-start"), 0.0),
                               end=_read(get("control-end"), 1.0))
        if kind == "reference":
            return ReferenceRole(weight=_read(get("reference-weight"), 1.0), mode=(get("reference-mode") or "full").strip())
    except ValueError:
        return None
    return None


def _read(text: str | None, default: float) -> float:
    if text is None:
        return default
    return float(text.strip())  # ValueError for text that is not a number; the role checks the range
