"""Picking the device and dtype: CUDA (fp16), Apple MPS (fp16), else CPU (fp32)."""
from __future__ import annotations

import os
import re

from .errors import BackendError

DEVICES = ("cuda", "mps", "cpu")
_NAME = re.compile(r"^(cpu|mps|cuda(:\d{1,3})?)$")


def device_name(override: str | None = None) -> str:
    """The device asked for (``override``, else $LATENT_STUDIO_DEVICE), normalised; "" for the best
    available. Checks the name only (no torch): ``cuda``, ``cuda:N``, ``mps`` or ``cpu``."""
    choice = (override or os.environ.get("LATENT_STUDIO_DEVICE") or "").strip().lower()
    if choice and not _NAME.match(choice):
        raise BackendError(f"Device {choice[:40]!r} is unknown: choose cuda, cuda:N (the GPU's number), mps or cpu.")
    return choice


def pick_device(override: str | None = None):
    """(torch.device, dtype). ``override`` or $LATENT_STUDIO_DEVICE forces one of cuda, mps, cpu."""
    choice = device_name(override)
    import torch

    if not choice:
        if torch.cuda.is_available():
            choice = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            choice = "mps"
        else:
            choice = "cpu"
    kind, _, number = choice.partition(":")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BackendError("CUDA was asked for but no CUDA GPU is available: choose cpu.")
    if kind == "cuda" and number and int(number) >= torch.cuda.device_count():
        raise BackendError(f"There is no CUDA GPU {number} (this machine has {torch.cuda.device_count()}): choose "
                           "cuda:0 or leave --device out.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BackendError("MPS was asked for but is not available on this machine: choose cpu.")
    dtype = torch.float32 if kind == "cpu" else torch.float16
    return torch.device(choice), dtype
