"""Finding and loading models.

A model reference is one of:

* ``""``: the embedded default model (``resources/models``), when one ships;
* a name from ``python main.py models``: an embedded model, or a folder or
  ``.safetensors`` file in the user's model folder;
* a path to a diffusers folder (``model_index.json`` inside; its component classes and weights are
  checked by :mod:`backend.modelconfig` before diffusers reads it);
* a path to a single-file ``.safetensors`` checkpoint of SD 1.x, SD 2.x or
  SDXL, loaded offline with the config folders shipped in
  ``resources/model-configs`` (or a diffusers config folder placed beside it
  as ``NAME.config/``, for unusual architectures);
* a pickle checkpoint (``.ckpt``/``.pt``/``.pth``/``.bin``): refused unless
  the request opts in, then read with ``weights_only=True``;
* a hub id ``owner/name``: taken from the local hub cache, else downloaded.

All operations of one model share its weights: the img2img pipeline is made
from the inpaint pipeline with ``from_pipe``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import paths
from .checkpoints import PICKLE_SUFFIXES, CheckpointInfo, inspect_checkpoint, load_pickle_weights
from .errors import ModelError, out_of_memory
from .modelconfig import check_folder, read_config

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "folder", "single_file", "pickle" or "hub"
    location: str  # a path, or the hub id
    name: str  # what the user sees and what goes into the PNG parameters

    @property
    def path(self) -> Path:
        return Path(self.location)


# What inpainting starts from when neither the user nor the model says otherwise (the evaluation's
# "denoiser alone"; the front ends take their defaults from the operation specs).
GENERIC_INPAINT_DEFAULTS = (("fill", "original"), ("strength", 1.0))


def read_info(source: ModelSource) -> dict:
    """A folder model's ``latent_studio.json`` (embedded models carry one), else {}.

    A file that cannot be read is ignored: it only holds hints, never weights.
    """
    info_file = source.path / "latent_studio.json" if source.kind == "folder" else None
    if info_file is None or not info_file.is_file():
        return {}
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def recommended_settings(info: dict) -> tuple[tuple[str, str, object], ...]:
    """The settings a model recommends, as ((operation, setting, value), ...): ``fill`` and
    ``strength`` of ``"inpaint_defaults"`` and ``"outpaint_defaults"`` in latent_studio.json (values
    that are not valid are left out). The app and the CLI use them for that model unless told otherwise.

    The embedded model recommends the exemplar prefill refined at a middle strength: the structure
    comes from the picture itself, the blending and variety from the denoiser.
    """
    from .region import FILL_MODES, OUTPAINT_FILLS

    out = []
    for operation, fills in (("inpaint", FILL_MODES), ("outpaint", OUTPAINT_FILLS)):
        given = info.get(f"{operation}_defaults")
        if not isinstance(given, dict):
            continue
        if given.get("fill") in fills:
            out.append((operation, "fill", given["fill"]))
        strength = given.get("strength")
        if isinstance(strength, (int, float)) and not isinstance(strength, bool) and 0.0 < strength <= 1.0:
            out.append((operation, "strength", float(strength)))
    return tuple(out)


def live_defaults(info: dict) -> tuple[tuple[str, object], ...]:
    """A model's live-painting setting, ``"live_defaults": {"steps": N, "sampler": name, "strength": s}`` in
    latent_studio.json, as (("steps", N), ("sampler", name), ("strength", s)); () when absent or not valid
    (each value must be one a request takes)."""
    from .samplers import SAMPLERS

    given = info.get("live_defaults")
    if not isinstance(given, dict):
        return ()
    steps, sampler, strength = given.get("steps"), given.get("sampler"), given.get("strength")
    if (not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 500 or sampler not in SAMPLERS
            or not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0 < strength <= 1
            or steps * strength < 1):
        return ()
    return (("steps", steps), ("sampler", sampler), ("strength", float(strength)))


def inpaint_defaults(info: dict) -> tuple[tuple[str, object], ...]:
    """The inpaint settings to evaluate a model with: its recommendation, else the generic ones."""
    out = dict(GENERIC_INPAINT_DEFAULTS)
    out.update({name: value for op, name, value in recommended_settings(info) if op == "inpaint"})
    return tuple(out.items())


def model_info(ref: str = ""):
    """What a model's folder says of it, without reading weights (raises ModelError when not found)."""
    from .interface import ModelInfo

    source = resolve(ref)
    info = read_info(source)
    return ModelInfo(source.name, bool(info.get("ignores_prompt", False)), recommended_settings(info),
                     live_defaults(info))


def default_model() -> str:
    """The embedded model's name, or "" when none ships."""
    if paths.EMBEDDED_MODELS.is_dir():
        for folder in sorted(paths.EMBEDDED_MODELS.iterdir()):
            if (folder / "model_index.json").is_file():
                return folder.name
    return ""


def resolve(ref: str) -> ModelSource:
    """Turns what the user typed into a :class:`ModelSource`, or says clearly why not."""
    ref = (ref or "").strip()
    if not ref:
        ref = default_model()
        if not ref:
            raise ModelError(
                "No model was chosen and no embedded model is installed: pass --model with a diffusers "
                "folder, a .safetensors file or a hub id."
            )
    path = paths.find_model_file(ref, (paths.EMBEDDED_MODELS, paths.models_dir()), (".safetensors",))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"The folder {path} is not a diffusers model (it has no model_index.json): choose the "
                "model's top folder, or a .safetensors file."
            )
        return ModelSource("folder", str(path), path.name)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            return ModelSource("single_file", str(path), path.stem)
        if suffix in PICKLE_SUFFIXES:
            return ModelSource("pickle", str(path), path.stem)
        raise ModelError(
            f"{path.name} is not a model file Latent Studio can load: use a .safetensors checkpoint or a "
            "diffusers folder."
        )
    if HUB_ID.match(ref) and not ref.startswith((".", "/")):
        return ModelSource("hub", ref, ref)
    raise ModelError(
        f"Model {ref!r} was not found: give a diffusers folder, a .safetensors file, a hub id like "
        "owner/name, or a name listed by `python main.py models`."
    )


@dataclass
class LoadedModel:
    """One model in memory: its pipelines share every weight."""

    source: ModelSource
    inpaint: object  # a diffusers inpainting pipeline
    family: str
    device: object
    dtype: object
    _img2img: object = None
    _txt2img: object = None
    _variants: dict = field(default_factory=dict)  # (kind, id(controlnet)) -> a ControlNet pipeline
    info: dict = field(default_factory=dict)  # latent_studio.json of embedded models
    scheduler_config: dict = field(default_factory=dict)  # the model's own, before any sampler swap
    _previewers: dict = field(default_factory=dict)
    controlnets: dict = field(default_factory=dict)  # steering.control's: the ControlNets loaded for this model
    ip_adapter_state: object = None  # steering.reference.LoadedAdapter while an IP-Adapter is loaded
    text_cache: dict = field(default_factory=dict)  # core.text_kwargs': the last prompt's embeddings
    latent_cache: dict = field(default_factory=dict)  # core's live path: the grey masked image's latents
    _encode_head: object = False  # False: not looked for yet; None: the model ships none
    fast_path: object = None  # fastpath.FastPathReport: what the fast path did at load (None: it was off)
    memory_mode: str = "full"  # memory_plan's mode the pipelines are in now

    def encode_head(self):
        """The live encoder shipped in the model's folder (``encode_head.safetensors``), on the model's
        device, or None: live updates then encode with the VAE."""
        if self._encode_head is False:
            head = None
            if self.source.kind == "folder":
                from .preview import load_encode_head

                head = load_encode_head(self.source.path, self.vae.config.latent_channels, self.vae)
            self._encode_head = head.to(self.device) if head is not None else None
        return self._encode_head

    def previewer(self, tiny_decoder=None):
        """The latent→RGB previewer for this model's VAE (fitted once, then cached)."""
        from .preview import LatentPreviewer

        key = id(tiny_decoder)
        if key not in self._previewers:
            head = None
            if tiny_decoder is None and self.source.kind == "folder":
                from .preview import load_head

                head = load_head(self.source.path, self.vae.config.latent_channels)
            self._previewers[key] = LatentPreviewer(self.vae, tiny_decoder, head)
        return self._previewers[key]

    @property
    def ignores_prompt(self) -> bool:
        return bool(self.info.get("ignores_prompt", False))

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def inpaint_defaults(self) -> tuple[tuple[str, object], ...]:
        return inpaint_defaults(self.info)

    @property
    def recommended(self) -> tuple[tuple[str, str, object], ...]:
        return recommended_settings(self.info)

    @property
    def colour_guide_cell(self) -> int:
        """Latent cells over which the hole's coarse colours follow the prefilled image at every
        step (``"colour_guide_cell"`` in latent_studio.json; 0 = off). Needs ``anchor_latents``."""
        cell = self.info.get("colour_guide_cell", 0)
        return int(cell) if isinstance(cell, int) and not isinstance(cell, bool) and 0 < cell <= 64 else 0

    @property
    def restores_detail(self) -> bool:
        """Whether inpaint and outpaint give the masked area the surroundings' fine detail, which this
        model's autoencoder loses (``"restore_detail": true`` in latent_studio.json; see
        ``region.transfer_detail``)."""
        return self.info.get("restore_detail") is True

    @property
    def unet_in_channels(self) -> int:
        return int(self.inpaint.unet.config.in_channels)

    @property
    def is_inpainting(self) -> bool:
        return self.unet_in_channels == 9

    @property
    def native_size(self) -> int:
        """The side in pixels the model was trained at (512 for SD 1.5, 1024 for SDXL)."""
        if "native_resolution" in self.info:
            return int(self.info["native_resolution"])
        return int(self.inpaint.unet.config.sample_size) * int(self.inpaint.vae_scale_factor)

    @property
    def vae(self):
        return self.inpaint.vae

    @property
    def img2img(self):
        """The image-to-image pipeline, built from the inpaint one (no new weights).

        A 9-channel inpainting UNet cannot run the plain img2img pipeline;
        those models do img2img as an inpaint with a full mask.
        """
        if self.is_inpainting:
            return self.inpaint
        if self._img2img is None:
            self._img2img = self._from_pipe("img2img")
        return self._img2img

    @property
    def txt2img(self):
        """The text-to-image pipeline, built from the inpaint one (no new weights); an inpainting
        model makes images from text as an inpaint with a full mask."""
        if self.is_inpainting:
            return self.inpaint
        if self._txt2img is None:
            self._txt2img = self._from_pipe("txt2img")
        return self._txt2img

    def _from_pipe(self, kind: str, **components):
        """diffusers' pipeline of ``kind`` made from the inpaint one with ``from_pipe`` (its weights shared),
        with ``components`` (a ControlNet) added."""
        import diffusers

        auto = {"inpaint": diffusers.AutoPipelineForInpainting, "img2img": diffusers.AutoPipelineForImage2Image,
                "txt2img": diffusers.AutoPipelineForText2Image}[kind]
        pipe = auto.from_pipe(self.inpaint, **components)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def pipeline(self, kind: str, controlnet=None):
        """The pipeline for ``kind`` ("inpaint", "img2img" or "txt2img"), with ``controlnet`` (a
        ControlNetModel or MultiControlNetModel) when given: diffusers' ControlNet pipeline of the same
        kind, made with ``from_pipe`` (the base weights shared) and kept while the same ControlNets are
        in use. A 9-channel inpainting model does every kind through its inpaint pipeline."""
        if self.is_inpainting:
            kind = "inpaint"
        if controlnet is None:
            return {"inpaint": self.inpaint, "img2img": self.img2img, "txt2img": self.txt2img}[kind]
        key = (kind, id(controlnet))
        if key not in self._variants:
            stale = [k for k in self._variants if k[1] != id(controlnet)]
            for k in stale:  # the ControlNets of an earlier job: let them go
                del self._variants[k]
            self._variants[key] = self._from_pipe(kind, controlnet=controlnet)
        return self._variants[key]

    def pipelines(self) -> list:
        """Every pipeline made so far (they share the weights): what a component set on one
        (an IP-Adapter's image encoder) must be set on."""
        found = [self.inpaint, self._img2img, self._txt2img, *self._variants.values()]
        return [p for p in found if p is not None]


Progress = Callable[[str], None]


class ModelManager:
    """Loads models on the worker thread and keeps the last one in memory."""

    def __init__(self, device=None, dtype=None, fast_path: bool | None = None):
        self._device_override = device
        self._dtype_override = dtype
        self._fast_path = fast_path  # None: $LATENT_STUDIO_FAST_PATH decides (on by default)
        self._loaded: LoadedModel | None = None

    @property
    def device_override(self):
        """The device asked for (``--device``), or None to pick the best one."""
        return self._device_override

    def get(self, ref: str, *, allow_pickle: bool = False, progress: Progress | None = None) -> LoadedModel:
        source = resolve(ref)
        if self._loaded is not None and self._loaded.source == source:
            return self._loaded
        self.unload()
        from .devices import pick_device

        device, dtype = pick_device(self._device_override)
        if self._dtype_override is not None:
            dtype = self._dtype_override
        from . import fastpath

        dtype, dtype_note = fastpath.supported_dtype(device, dtype)
        if progress:
            progress(f"Loading {source.name}")
        pipe, family = _load_pipeline(source, dtype, allow_pickle=allow_pickle, progress=progress)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        report = fastpath.apply(pipe, device, progress=progress) if fastpath.enabled(self._fast_path) else None
        if dtype_note:
            report = report or fastpath.FastPathReport()
            report.notes.insert(0, dtype_note)
        info = read_info(source)
        self._loaded = LoadedModel(
            source, pipe, family, device, dtype, info=info, scheduler_config=dict(pipe.scheduler.config),
            fast_path=report,
        )
        return self._loaded

    def unload(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        import gc

        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _load_pipeline(source: ModelSource, dtype, *, allow_pickle: bool, progress: Progress | None):
    if source.kind == "hub":
        folder = _hub_snapshot(source.location, progress)
        return _load_folder(folder, dtype, allow_pickle=allow_pickle)
    if source.kind == "folder":
        return _load_folder(source.path, dtype, allow_pickle=allow_pickle)
    if source.kind == "pickle":
        if not allow_pickle:
            raise ModelError(_pickle_refused(source.path))
        converted = _pickle_to_safetensors(source.path)
        return _load_single_file(converted, dtype, config_hint=source.path)
    return _load_single_file(source.path, dtype)


def _pickle_refused(path: Path) -> str:
    return (f"{path.name} is a pickle file, which can run code when opened, so it is refused: use a .safetensors "
            "version, or allow pickle files explicitly (--allow-pickle).")


def _load_folder(folder: Path, dtype, *, allow_pickle: bool = False):
    index = check_folder(folder, allow_pickle=allow_pickle)  # before diffusers imports anything it names
    from diffusers import AutoPipelineForInpainting

    family = "sdxl" if "text_encoder_2" in index else "sd15"
    kwargs = {"dtype": dtype}
    if "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if "feature_extractor" in index:
        kwargs["feature_extractor"] = None
    if not allow_pickle:
        kwargs["use_safetensors"] = True
    try:
        pipe = AutoPipelineForInpainting.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers and transformers raise many types for a folder they cannot use
        if out_of_memory(exc):
            raise  # the engine says so in its own words
        raise ModelError(
            f"The model folder {folder.name} could not be loaded ({_first_line(exc)}): it may be incomplete; "
            "download it again."
        ) from exc
    return pipe, family


def _single_file_class(info: CheckpointInfo):
    import diffusers

    return diffusers.StableDiffusionXLInpaintPipeline if info.family == "sdxl" else diffusers.StableDiffusionInpaintPipeline


def single_file_config(path: Path, config_hint: Path | None = None) -> tuple[CheckpointInfo, Path]:
    """The checkpoint's family and the config folder it loads with (``NAME.config/`` beside it, else the
    shipped one), both checked (no torch, no weights read); raises ModelError."""
    info = inspect_checkpoint(path)
    hint = config_hint or path
    sidecar = hint.with_name(hint.stem + ".config")
    config = sidecar if sidecar.is_dir() else info.config_folder
    check_folder(config, allow_pickle=False, weights=False)  # from_single_file imports what it names
    return info, config


def _load_single_file(path: Path, dtype, config_hint: Path | None = None):
    info, config = single_file_config(path, config_hint)
    cls = _single_file_class(info)
    kwargs = {"dtype": dtype}
    if info.family != "sdxl":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    unet_config = read_config(config / "unet" / "config.json")
    try:
        if unet_config.get("in_channels") != info.in_channels:
            # E.g. an SD 2.x or SDXL inpainting file with the family's base config.
            from diffusers import UNet2DConditionModel

            kwargs["unet"] = UNet2DConditionModel.from_single_file(
                str(path), config=str(config), subfolder="unet", in_channels=info.in_channels,
                dtype=dtype, local_files_only=True,
            )
        pipe = cls.from_single_file(str(path), config=str(config), local_files_only=True, **kwargs)
    except Exception as exc:  # diffusers raises many types for a file that does not fit its config
        if out_of_memory(exc):
            raise
        raise ModelError(
            f"{path.name} could not be loaded as a {info.family.upper()} checkpoint ({_first_line(exc)}): "
            f"if it has an unusual architecture, put its diffusers config folder beside it as {path.stem}.config/."
        ) from exc
    return pipe, info.family


def _pickle_to_safetensors(path: Path) -> Path:
    """Converts once, with ``weights_only=True``; later loads read the cached copy."""
    from safetensors.torch import save_file

    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = paths.cache_dir() / "converted" / f"{path.stem}-{key}.safetensors"
    if not target.is_file():
        weights = load_pickle_weights(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
        os.replace(tmp, target)
    return target


def _offline() -> bool:
    """HF_HUB_OFFLINE is set, or the hub's host cannot be reached at all (no network, no DNS)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return True
    return False


def _hub_snapshot(repo_id: str, progress: Progress | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except Exception:  # a broken cache entry: try a download below
        pass
    advice = (
        f"Model {repo_id} is not downloaded and the hub cannot be reached: on a machine with internet run "
        f"`huggingface-cli download {repo_id}` and copy the folder into {paths.models_dir()}, or put a "
        ".safetensors file there."
    )
    if _offline():
        raise ModelError(advice)
    if progress:
        progress(f"Downloading {repo_id}")
    try:
        from diffusers import DiffusionPipeline

        return Path(DiffusionPipeline.download(repo_id, use_safetensors=True))
    except Exception as exc:
        text = str(exc).lower()
        if "404" in text or "not found" in text or ("repository" in text and "exist" in text):
            raise ModelError(f"Model {repo_id} does not exist on the hub: check the name.") from exc
        raise ModelError(advice) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def list_models() -> list[tuple[str, str, str]]:
    """(name, kind, where) for every model found: embedded, the user's folder, the hub cache."""
    found: list[tuple[str, str, str]] = []
    if paths.EMBEDDED_MODELS.is_dir():
        for folder in sorted(paths.EMBEDDED_MODELS.iterdir()):
            if (folder / "model_index.json").is_file():
                found.append((folder.name, "embedded", str(folder)))
    user = paths.models_dir()
    if user.is_dir():
        for entry in sorted(user.iterdir()):
            if entry.is_dir() and (entry / "model_index.json").is_file():
                found.append((entry.name, "folder", str(entry)))
            elif entry.suffix.lower() == ".safetensors":
                found.append((entry.stem, "checkpoint", str(entry)))
            elif entry.suffix.lower() in PICKLE_SUFFIXES:
                found.append((entry.stem, "pickle (needs --allow-pickle)", str(entry)))
    try:
        from huggingface_hub import scan_cache_dir

        cache = scan_cache_dir()
    except Exception:  # no cache folder yet
        cache = None
    if cache is not None:
        for repo in sorted(cache.repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model" and any(
                (rev.snapshot_path / "model_index.json").is_file() for rev in repo.revisions
            ):
                found.append((repo.repo_id, "hub cache", str(repo.repo_path)))
    return found


def preflight(ref: str, *, allow_pickle: bool = False) -> ModelSource:
    """The checks that can run before the job: found, recognised, allowed, reachable; a folder's (or
    cached hub snapshot's) ``model_index.json`` and weights, a single file's tensor names and config
    folder. No torch, except to open allowed pickles with ``weights_only=True`` (a single pickle file
    is converted here, once, to the cached ``.safetensors`` the job loads). Raises ModelError."""
    source = resolve(ref)
    if source.kind == "folder":
        check_folder(source.path, allow_pickle=allow_pickle)
    elif source.kind == "pickle":
        if not allow_pickle:
            raise ModelError(_pickle_refused(source.path))
        single_file_config(_pickle_to_safetensors(source.path), config_hint=source.path)
    elif source.kind == "single_file":
        single_file_config(source.path)
    elif source.kind == "hub":
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            snapshot = snapshot_download(source.location, local_files_only=True)
        except LocalEntryNotFoundError as exc:
            if not _offline():
                return source  # not cached, but the hub is reachable: the engine downloads it
            raise ModelError(
                f"Model {source.location} is not downloaded and the hub cannot be reached: on a "
                f"machine with internet run `huggingface-cli download {source.location}` and copy the folder "
                f"into {paths.models_dir()}, or put a .safetensors file there."
            ) from exc
        check_folder(Path(snapshot), allow_pickle=allow_pickle)
    return source
