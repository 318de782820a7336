"""The operations as the front ends see them: one spec per operation, found by looking here.

Each module ``operations/<name>.py`` defines ``SPEC`` (an :class:`~operations.spec.OperationSpec`)
for the engine's ``backend/ops/<name>.py``. The studio's generation panel, its job controller and
the CLI read :data:`SPECS`; adding a module here adds the operation to all of them. No Qt here.
"""
from __future__ import annotations

import importlib
import pkgutil

from .spec import CommonSettings, NothingToDo, OperationSpec

_SHARED = {"spec", "recipe"}


def _discover() -> dict[str, OperationSpec]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SHARED or info.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SPEC", None)
        if isinstance(spec, OperationSpec):
            found.append(spec)
    return {spec.name: spec for spec in sorted(found, key=lambda s: (s.order, s.name))}


SPECS: dict[str, OperationSpec] = _discover()


def spec_for(name: str) -> OperationSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise NothingToDo(f"The operation {name!r} is not available: choose one of {', '.join(SPECS)}.") from None


__all__ = ["SPECS", "spec_for", "CommonSettings", "NothingToDo", "OperationSpec"]
