"""Recognising single-file checkpoints from their tensor names, without loading weights.

Stable Diffusion checkpoints in the original (CompVis/Stability) layout name
their text encoder differently per family:

* SD 1.x: ``cond_stage_model.transformer.text_model.*`` (OpenAI CLIP ViT-L)
* SD 2.x: ``cond_stage_model.model.*`` (OpenCLIP ViT-H)
* SDXL:   ``conditioner.embedders.0.*`` and ``conditioner.embedders.1.*``

The UNet's first convolution tells the input channels: 9 for inpainting models. A full
checkpoint also has its text encoder's token embedding and the autoencoder (``first_stage_model.*``);
a file without them (a UNet-only or partial file) is refused before diffusers reads it.
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
VAE_PREFIX = "first_stage_model."
# Where each family keeps the text encoder whose token embedding a full checkpoint must have.
_TEXT_ENCODER_PREFIX = {"sd15": "cond_stage_model.transformer.", "sd21": "cond_stage_model.model.",
                        "sdxl": "conditioner.embedders."}


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
    prefix = _TEXT_ENCODER_PREFIX[family]
    if not any(k.startswith(prefix) and k.endswith("token_embedding.weight") for k in keys):
        raise ModelError(
            "This checkpoint has a UNet but only part of a text encoder (no token embedding), so it is a partial "
            "file: choose a full SD 1.x, SD 2.x or SDXL model file."
        )
    if not any(k.startswith(VAE_PREFIX) for k in keys):
        raise ModelError(
            "This checkpoint has a UNet and a text encoder but no autoencoder (VAE) weights, so it is a partial "
            "file: choose a full SD 1.x, SD 2.x or SDXL model file."
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


MAX_HEADER = 100 << 20  # bytes of a .safetensors header (safetensors' own limit; real ones are a few MB)


def read_header(path: Path) -> dict:
    """The tensor table of a ``.safetensors`` file (name -> {"dtype", "shape", "data_offsets"}), read
    from its header alone: no torch, no weights. Raises ModelError for a file that is not one."""
    import json

    def bad(why: str) -> ModelError:
        return ModelError(f"{path.name} could not be read as a .safetensors file ({why}): it may be truncated or "
                          "not a model; download it again.")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad("it is shorter than a header")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER or 8 + n > size:
                raise bad(f"its header claims {n:,} bytes")
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"{path.name} could not be read ({exc.strerror or exc}): check the file.") from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8
        raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a table of tensors")
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(entry.get("shape") if isinstance(entry, dict) else None, list)
                and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
                and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise bad("its tensor table is malformed")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise bad(f"it ends {8 + n + end - size:,} bytes short of its last tensor")
    return header


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Reads only the header of a ``.safetensors`` file (no torch)."""
    header = read_header(path)
    shape = header[UNET_IN]["shape"] if UNET_IN in header else None
    if shape is not None and len(shape) != 4:
        raise ModelError(f"{path.name} has a UNet whose first convolution is not one (shape {shape}): the file is "
                         "damaged; download it again.")
    return family_from_keys(header.keys(), shape)


def _torch_load(path: Path, *, mmap: bool = False):
    """``torch.load(weights_only=True)``: tensors and plain containers only, code in the file never runs.
    Raises ModelError with one sentence naming the file."""
    import torch

    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)  # the legacy format: no mmap
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, ImportError) as exc:
        if isinstance(exc, RuntimeError) and "zip archive" in str(exc):
            raise ModelError(f"{path.name} could not be read (it is not a complete archive): it may be truncated; "
                             "download it again.") from exc
        raise ModelError(
            f"{path.name} holds more than weights (Python objects or code), so it was refused: "
            "use a .safetensors version of this model."
        ) from exc
    except (EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path.name} could not be read ({_one_line(exc)}): it may be truncated; download it "
                         "again.") from exc


def load_pickle_weights(path: Path) -> dict:
    """Loads a pickle checkpoint's tensors only (``weights_only=True``): code in it never runs."""
    import torch

    data = _torch_load(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights: choose a model checkpoint.")
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def check_pickle(path: Path) -> None:
    """Opens a pickled weights file the way the loaders will (``weights_only=True``), memory-mapped
    where the format allows, so that nothing big is read; raises ModelError when it holds more than
    tensors or is not a dictionary of them."""
    data = _torch_load(path, mmap=True)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights: download the model again.")


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__
