"""The upscale checks the CLI runs before starting the engine (bad input → one sentence, exit 2)."""
from __future__ import annotations

from . import memory
from .esrgan import check_scale, load_upscaler, resolve_upscaler


def preflight_upscale(request) -> None:
    """Upscaler found and of the right kind, scale it can make, output that fits in memory."""
    h, w = request.image.shape[:2]
    source = resolve_upscaler(request.upscaler)
    if source.kind == "file":
        load_upscaler(source)  # reads the file: refuses pickles with code and files of another kind
    check_scale(source, request.scale)
    memory.check_output_fits(w, h, request.scale)
