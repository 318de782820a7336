"""Checking a diffusers folder's configuration before diffusers sees it (no torch, nothing imported).

A ``model_index.json`` names, for every component, the library and the class that loads it
(``"unet": ["diffusers", "UNet2DConditionModel"]``), and diffusers imports that library by name.
A folder that names ``["os", "system"]`` would make the loader import whatever it names: code run
by configuration. So every ``model_index.json`` we load from (a model folder, a hub snapshot, a
``NAME.config/`` beside a single-file checkpoint, the shipped ``resources/model-configs``, a
diffusion upscaler folder) is read here first, and only the classes a Stable Diffusion 1.x/2.x/XL
(inpainting) pipeline or one of our upscale pipelines can have pass; anything else, and any file
that is not what diffusers expects, is one sentence naming the file.

Weights follow the pickle rule of the single files: a model component whose weights are only
pickles (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) is refused unless the user allows pickle files; then
each is opened with ``torch.load(weights_only=True)`` (tensors only) before the job, and a file that
needs more is refused with one sentence.

Nothing here imports diffusers, transformers or torch (bar ``torch.load`` for allowed pickles), so the
checks run before either library has read a byte of the folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelError

INDEX = "model_index.json"

SD_PIPELINES = frozenset({
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
})
UPSCALE_PIPELINES = frozenset({"StableDiffusionUpscalePipeline", "LDMSuperResolutionPipeline"})

# The schedulers an SD-family pipeline can run (diffusers' KarrasDiffusionSchedulers and the
# discrete-time others of diffusers.schedulers); tests/backend/test_modelconfig.py checks each exists.
SCHEDULERS = frozenset({
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
    "HeunDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler", "UniPCMultistepScheduler", "DPMSolverSDEScheduler", "EDMEulerScheduler",
    "EDMDPMSolverMultistepScheduler", "LCMScheduler", "TCDScheduler", "SASolverScheduler", "IPNDMScheduler",
    "DDIMParallelScheduler", "DDPMParallelScheduler",
})
# Each is imported by diffusers only when the component is loaded; tests/backend/test_modelconfig.py checks
# that every one exists, except LEGACY_CLASSES: names that old model indexes (our shipped SD 1.5
# inpainting config among them) give the feature extractor, which our loaders never load (they pass
# ``feature_extractor=None``) and transformers 5 no longer has.
LEGACY_CLASSES = frozenset({"CLIPFeatureExtractor"})
ALLOWED_CLASSES: dict[str, frozenset] = {
    "diffusers": frozenset({"UNet2DConditionModel", "UNet2DModel", "AutoencoderKL", "AutoencoderTiny", "VQModel"})
    | SCHEDULERS,
    "transformers": frozenset({
        "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "CLIPTokenizerFast",
        "CLIPImageProcessor", "CLIPFeatureExtractor", "CLIPVisionModelWithProjection",
    }),
    "stable_diffusion": frozenset({"StableDiffusionSafetyChecker"}),
}

# What each pipeline cannot do without (components whose folder must be there).
_SD = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
REQUIRED: dict[str, tuple[str, ...]] = {
    **{name: _SD for name in SD_PIPELINES if "XL" not in name},
    **{name: ("unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler") for name in SD_PIPELINES if "XL" in name},
    "StableDiffusionUpscalePipeline": _SD + ("low_res_scheduler",),
    "LDMSuperResolutionPipeline": ("unet", "vqvae", "scheduler"),
}
PICKLE_WEIGHTS = (".bin", ".ckpt", ".pt", ".pth")
MAX_CONFIG_BYTES = 1 << 20  # a model_index.json or config.json is a few KB; more is not a config
_NOT_WEIGHTS = ("scheduler", "tokenizer", "tokenizer_2", "feature_extractor", "low_res_scheduler")


def read_index(folder: Path, pipelines=SD_PIPELINES) -> dict:
    """``folder/model_index.json``, checked: a JSON object whose ``_class_name`` is one of
    ``pipelines``, whose components are allowed (library, class) pairs or ``[null, null]``, and
    which names every component its pipeline needs. Raises ModelError naming the file."""
    folder = Path(folder)
    path = folder / INDEX
    where = _where(path)
    if not path.is_file():
        raise ModelError(f"{where} is missing: choose the model's top folder (the one with {INDEX}).")
    index = _read_object(path)
    cls = index.get("_class_name")
    if not isinstance(cls, str) or not cls:
        raise ModelError(f"{where} names no pipeline (`_class_name` is missing): download the model again or fix "
                         "the file.")
    if cls not in pipelines:
        if cls in UPSCALE_PIPELINES and pipelines is SD_PIPELINES:
            raise ModelError(f"{folder.name} is an upscaler ({cls}), not a Stable Diffusion model: use it as the "
                             "upscaler (`upscale --model`).")
        if cls in SD_PIPELINES and pipelines is UPSCALE_PIPELINES:
            raise ModelError(f"{folder.name} is a Stable Diffusion model ({cls}), not an upscaler: use it for the "
                             "refine pass (--refine-model), and choose an upscaler file or nothing as --model.")
        raise ModelError(f"{where} names the pipeline {_show(cls)}, which Latent Studio does not load: choose a "
                         "Stable Diffusion 1.x, 2.x or XL model, or one of their upscalers.")
    for key, value in index.items():
        if key.startswith("_") or value is None or isinstance(value, (bool, int, float, str)):
            continue
        if not isinstance(value, list) or len(value) != 2:
            raise ModelError(f"{where} gives `{_show(key)}` a value that is neither a [library, class] pair nor a "
                             "plain setting: download the model again or fix the file.")
        library, name = value
        if library is None and name is None:
            continue
        if not (isinstance(library, str) and isinstance(name, str) and name in ALLOWED_CLASSES.get(library, ())):
            raise ModelError(
                f"{where} asks for the component `{_show(key)}` to be loaded by {_show(library)}.{_show(name)}, which "
                "is not a diffusers or transformers class of a Stable Diffusion pipeline, so the model is refused: "
                "use a model made for Stable Diffusion 1.x, 2.x or XL.")
    missing = [name for name in REQUIRED[cls] if not _component(index, name)]
    if missing:
        raise ModelError(f"{where} lacks the component{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(f'`{m}`' for m in missing)} that a {cls} needs: download the model again.")
    return index


def check_folder(folder: Path, *, allow_pickle: bool, pipelines=SD_PIPELINES, weights: bool = True) -> dict:
    """A model folder (``weights=True``) or a config folder beside a single file (``weights=False``,
    weights optional): its index as :func:`read_index`, each needed component's folder and config,
    and the pickle rule for weights. Returns the index."""
    folder = Path(folder)
    index = read_index(folder, pipelines)
    cls = index["_class_name"]
    for name in REQUIRED[cls]:
        sub = folder / name
        if not sub.is_dir():
            raise ModelError(f"{folder.name} has no `{name}` folder, which its {INDEX} names: download the model "
                             "again.")
        for config in ("config.json", "scheduler_config.json"):
            if (sub / config).is_file():
                _read_object(sub / config)
    pickles = []
    for name, value in index.items():
        if not _component(index, name) or name in _NOT_WEIGHTS or not (folder / name).is_dir():
            continue
        files = [p for p in (folder / name).iterdir() if p.is_file()]
        if any(p.name.endswith(".safetensors") for p in files):
            continue
        found = [p for p in files if p.suffix.lower() in PICKLE_WEIGHTS]
        if found:
            pickles.extend(found)
        elif weights and name in REQUIRED[cls]:
            raise ModelError(f"{_where(folder / name)} holds no weights (no .safetensors file): the model may be "
                             "incomplete; download it again.")
    if pickles:
        if not allow_pickle:
            raise ModelError(
                f"{_where(pickles[0])} is a pickle file, which can run code when opened, so {folder.name} is refused: "
                "use a .safetensors version of the model, or allow pickle files explicitly (--allow-pickle).")
        from .checkpoints import check_pickle

        for path in pickles:
            check_pickle(path)
    return index


def _component(index: dict, name: str) -> bool:
    value = index.get(name)
    return isinstance(value, list) and len(value) == 2 and value[1] is not None


def _read_object(path: Path) -> dict:
    """A JSON file that must hold an object (one sentence naming the file when it does not)."""
    where = _where(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ModelError(f"{where} is {path.stat().st_size:,} bytes, more than a model's configuration file can "
                             f"be ({MAX_CONFIG_BYTES:,}): download the model again.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{where} could not be read ({exc.strerror or exc}): check the file's permissions.") from None
    except (ValueError, RecursionError) as exc:  # invalid JSON, not UTF-8, or nested beyond reason
        raise ModelError(f"{where} is not valid JSON ({_short(exc)}): download the model again or fix the "
                         "file.") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where} holds a JSON {_json_kind(data)}, not an object: download the model again or fix "
                         "the file.")
    return data


def _json_kind(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def read_config(path: Path) -> dict:
    """A component's ``config.json`` as a dict (one sentence naming the file when it is not one)."""
    return _read_object(Path(path))


def _where(path: Path) -> str:
    """The file named with its folder: ``my-model/model_index.json``."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def _show(value) -> str:
    """A value from a file, fit for a one-line message (quoted when it is not plain text)."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__
