"""The operations the engine runs, one module each, found by looking here.

Each module ``backend/ops/<name>.py`` defines a request dataclass (on
:class:`backend.requests.GenerationRequest`), ``run(ctx, request)``, ``total(request)`` and
``OPERATION = Operation(RequestClass, run, total[, check])``; :data:`OPERATIONS` maps each
request class to its operation. Adding a module here adds an operation to the engine: nothing
else in ``backend`` changes. Importing this package does not import torch.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import Operation

_SHARED = {"base"}


def _discover() -> dict[type, Operation]:
    found: dict[type, Operation] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _SHARED or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        operation = getattr(module, "OPERATION", None)
        if isinstance(operation, Operation):
            found[operation.request] = operation
    return found


OPERATIONS: dict[type, Operation] = _discover()
REQUESTS: dict[str, type] = {request.operation: request for request in OPERATIONS}


def operation_for(request) -> Operation:
    return OPERATIONS[type(request)]


def total_steps(request) -> int:
    return OPERATIONS[type(request)].total(request)
