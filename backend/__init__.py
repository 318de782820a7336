"""Latent Studio's diffusion backend: no Qt, no document, torch only on the worker thread.

The public surface: the engine interface and the in-process :class:`Engine`, the request
dataclasses (one per operation, in ``backend.ops``), the events and the error classes.
Importing this package does not import torch.
"""
from .engine import Engine, engine_factory
from .errors import BackendError, InvalidRequest, ModelError
from .events import Cancelled, Event, Failed, ModelState, Preview, Progress, Result, ResultImage, Started
from .interface import EngineFactory, EngineInterface, ModelInfo
from .ops.img2img import Img2ImgRequest
from .ops.inpaint import InpaintRequest
from .ops.outpaint import OutpaintRequest
from .ops.upscale import UpscaleRequest
from .requests import GenerationRequest

__all__ = [
    "Engine", "engine_factory", "EngineInterface", "EngineFactory", "ModelInfo",
    "BackendError", "InvalidRequest", "ModelError",
    "Event", "ModelState", "Started", "Progress", "Preview", "Result", "ResultImage", "Failed", "Cancelled",
    "GenerationRequest", "InpaintRequest", "Img2ImgRequest", "OutpaintRequest", "UpscaleRequest",
]
