"""Reference images through an IP-Adapter (diffusers' ``load_ip_adapter``).

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    prepare(ctx, model, request) -> PreparedReference | None

loads ``request.ip_adapter`` when ``request.references`` is not empty (and unloads an adapter an
earlier job loaded when it is); ``PreparedReference.kwargs()`` is what every pipeline call adds.
"""
from __future__ import annotations


def prepare(ctx, model, request):
    if not request.references and not getattr(model, "ip_adapter_state", None):
        return None
    raise NotImplementedError("reference images are being built")
