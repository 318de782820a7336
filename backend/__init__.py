"""Latent Studio's diffusion backend: no Qt, torch only on the worker thread.

The public surface: :class:`Engine`, the request dataclasses, the events and
the error classes. Importing this package does not import torch.
"""
from .engine import Engine
from .errors import BackendError, InvalidRequest, ModelError
from .events import Cancelled, Event, Failed, ModelState, Preview, Progress, Result, ResultImage, Started
from .requests import GenerationRequest, Img2ImgRequest, InpaintRequest

__all__ = [
    "Engine", "BackendError", "InvalidRequest", "ModelError",
    "Event", "ModelState", "Started", "Progress", "Preview", "Result", "ResultImage", "Failed", "Cancelled",
    "GenerationRequest", "InpaintRequest", "Img2ImgRequest",
]
