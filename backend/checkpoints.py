"""Recognising single-file checkpoints from their tensor names, without loading weights.

Stable Diffusion checkpoints in the original (CompVis/Stability) layout name
their text encoder differently per family:

* SD 1.x: ``cond_stage_model.transformer.text_model.*`` (OpenAI CLIP ViT-L)
* SD 2.x: ``cond_stage_model.model.*`` (OpenCLIP ViT-H)
* SDXL:   ``conditioner.embedders.0.*`` and ``conditioner.embedders.1.*``

The UNet's first convolution tells the input channels: 9 for inpainting models.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .paths import MODEL_CONFIGS

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


@dataclass(frozen=True)
class CheckpointInfo:
    family: str  # "sd15", "sd21" or "sdxl"
    in_channels: int

    @property
    def inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def config_folder(self) -> Path:
        """The shipped diffusers config folder for this family."""
        if self.family == "sd15":
            return MODEL_CONFIGS / ("sd15-inpainting" if self.inpainting else "sd15")
        return MODEL_CONFIGS / {"sd21": "sd21-base", "sdxl": "sdxl-base"}[self.family]


def family_from_keys(keys, unet_in_shape) -> CheckpointInfo:
    """Pure logic of :func:`inspect_checkpoint`, for tests and other loaders."""
    keys = list(keys)
    if unet_in_shape is None:
        hint = _guess_other_kind(keys)
        raise ModelError(
            f"This file is not a Stable Diffusion checkpoint (no UNet weights found{hint}): "
            "choose a full SD 1.x, SD 2.x or SDXL model file."
        )
    in_channels = int(unet_in_shape[1])
    if in_channels not in (4, 9):
        raise ModelError(
            f"This checkpoint's UNet takes {in_channels} input channels; Latent Studio runs models with "
            "4 (regular) or 9 (inpainting): choose another model file."
        )
    if any(k.startswith("conditioner.embedders.") for k in keys):
        family = "sdxl"
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        family = "sd21"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
        family = "sd15"
    else:
        raise ModelError(
            "This checkpoint has a UNet but no text encoder Latent Studio recognises: "
            "choose a full SD 1.x, SD 2.x or SDXL model file."
        )
    return CheckpointInfo(family, in_channels)


def _guess_other_kind(keys) -> str:
    if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys):
        return "; it looks like a VAE"
    if any("lora" in k for k in keys[:200]):
        return "; it looks like a LoRA"
    if any(k.startswith(("conv_first", "body.", "model.0.")) for k in keys):
        return "; it looks like an upscaler"
    return ""


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Reads only the header of a ``.safetensors`` file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            shape = f.get_slice(UNET_IN).get_shape() if UNET_IN in keys else None
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelError(
            f"{path.name} could not be read as a .safetensors file ({exc}): it may be truncated or not "
            "a model; download it again."
        ) from exc
    return family_from_keys(keys, shape)


def load_pickle_weights(path: Path) -> dict:
    """Loads a pickle checkpoint's tensors only (``weights_only=True``): code in it never runs."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as exc:
        raise ModelError(
            f"{path.name} holds more than weights (Python objects or code), so it was refused: "
            "use a .safetensors version of this model."
        ) from exc
    except (EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path.name} could not be read ({exc}): it may be truncated; download it again.") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights: choose a model checkpoint.")
    import torch as _t

    return {k: v for k, v in data.items() if isinstance(v, _t.Tensor)}
