"""Picking the device and dtype: CUDA (fp16), Apple MPS (fp16), else CPU (fp32)."""
from __future__ import annotations

import os

from .errors import BackendError

DEVICES = ("cuda", "mps", "cpu")


def pick_device(override: str | None = None):
    """(torch.device, dtype). ``override`` or $LATENT_STUDIO_DEVICE forces one of cuda, mps, cpu."""
    import torch

    choice = (override or os.environ.get("LATENT_STUDIO_DEVICE") or "").strip().lower()
    if choice and choice.split(":")[0] not in DEVICES:
        raise BackendError(f"Device {choice!r} is unknown: choose cuda, mps or cpu.")
    if not choice:
        if torch.cuda.is_available():
            choice = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            choice = "mps"
        else:
            choice = "cpu"
    kind = choice.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise BackendError("CUDA was asked for but no CUDA GPU is available: choose cpu.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BackendError("MPS was asked for but is not available on this machine: choose cpu.")
    dtype = torch.float32 if kind == "cpu" else torch.float16
    return torch.device(choice), dtype
