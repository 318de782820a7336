"""ControlNets from a layer: found, checked, loaded once per model, and their control images made.

Contract (used by :mod:`backend.steering.job`):

    check(request) -> sources                     # no torch: files found, allowed, of the model's family
                                                  # (every operation's check_model calls it)
    prepare(ctx, model, request) -> (prepared, controlnet, notes)
    region_kwargs(prepared, origin, rect, work_size, pixels, soft) -> dict

**Models.** A control's ``model`` is a diffusers folder (``config.json`` of a ``ControlNetModel`` and
its weights), a single ``.safetensors`` file, or a name in the ``controlnets/`` folder beside the
user's model folder. A single file is in the original ControlNet layout (``input_hint_block``,
``zero_convs``…, with or without the ``control_model.`` prefix: SD 1.x ControlNet v1.1, SD 2.x) or
in diffusers' (how SDXL ControlNets ship); it loads with ``ControlNetModel.from_single_file`` and
the shipped config of its family (``resources/model-configs/controlnet-*``, told apart by the width
of its cross-attention), or a diffusers config folder placed beside it as ``NAME.config/``. Before
any weight is read, the file's tensor table is mapped through diffusers' own converter onto the
model its config builds (on the meta device): a weight missing, left over or of another shape is one
sentence naming the file. Pickles (``.pth``…) follow the rule of every model file: refused unless
the request allows them, then read with ``weights_only=True``. A ControlNet made for another family
than the job's model (its cross-attention width, its SDXL text-time embedding) is refused with one
sentence naming both.

Loaded ControlNets are kept on the :class:`~backend.models.LoadedModel` (by path and modification
time; the last :data:`KEEP` used), on its device and in its dtype, so a later job, of whatever
operation, reuses them; several at once are one ``MultiControlNetModel``, the same object for the
same set, so the model's ControlNet pipelines (``model.pipeline(kind, controlnet)``) stay made.

**Control images** (:func:`prepare`, once per job, over the request's image): transparent parts
count as black; ``scribble``, ``lineart`` and ``softedge`` are used as drawn, white lines on black
(a drawing of dark lines on a light ground is inverted; strokes on a mostly transparent layer are
lines whatever their colour); ``depth`` goes through the user's depth-estimation model
(``preprocessors/depth``: a transformers folder, DPT or Depth Anything) unless the layer is grey
already; ``pose``, ``segmentation``, ``normal`` (and depth without a model) are taken as already
made, with a note; ``canny`` is OpenCV's Canny, run per region at the size the ControlNet sees;
``tile`` follows each region's own pixels; ``inpaint`` is the region's pixels with the masked ones
set to -1 (the convention of ``control_v11p_sd15_inpaint`` in diffusers).

:func:`region_kwargs` cuts each image to a region (document coordinates; what lies outside the
control image, as in an outpaint, is black: no control there), scales it to the working size and
returns what the diffusers ControlNet pipelines take.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoints import PICKLE_SUFFIXES, read_header
from ..errors import InvalidRequest, ModelError, out_of_memory
from ..modelconfig import read_config
from ..paths import MODEL_CONFIGS, find_model_file
from . import Control, display_name, steering_dir

# What a ControlNet's config.json may name: diffusers imports the class it names.
CONTROLNET_CLASSES = frozenset({"ControlNetModel"})
# The shipped config folder of a single-file ControlNet, by its cross-attention width.
SHIPPED_CONFIGS = {768: "controlnet-sd15", 1024: "controlnet-sd21", 2048: "controlnet-sdxl"}
# Depth estimators a ``preprocessors/depth`` folder may hold (transformers' model_type): they give
# relative inverse depth (near is large), what depth ControlNets were trained on.
DEPTH_MODEL_TYPES = frozenset({"dpt", "depth_anything"})
LINE_KINDS = ("scribble", "lineart", "softedge")
DRAWN_KINDS = ("pose", "segmentation", "normal")  # no preprocessor here: used as drawn, with a note
CANNY_THRESHOLDS = (100, 200)  # A1111's defaults
KEEP = 4  # ControlNets kept loaded on a model
_LDM_PREFIX = "control_model."
_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
_PICKLE_NAMES = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")


@dataclass(frozen=True)
class ControlNetSource:
    kind: str  # "folder" or "single_file"
    path: Path  # the folder, or the .safetensors file loaded (a pickle's converted copy)
    name: str  # what the painter called it: the file's or folder's name
    config: dict  # the ControlNetModel config it loads with
    config_folder: Path | None  # a single file's config folder (shipped, or NAME.config/ beside it)
    key: tuple  # (path, size, mtime_ns) of the weights: the cache key
    variant: str | None = None  # a folder's weights variant ("fp16") when only that one is there

    @property
    def family(self) -> str:
        return family_label(self.config.get("cross_attention_dim"), self.config.get("addition_embed_type"))


@dataclass(frozen=True, eq=False)
class PreparedControl:
    control: Control
    kind: str
    image: np.ndarray | None  # RGB uint8 over the request's image, None: each region's own pixels


# --- finding and checking (no torch) --------------------------------------------------------------

def family_label(width, addition_embed_type) -> str:
    """What family a cross-attention width (and an SDXL text-time embedding) is, for sentences."""
    if addition_embed_type == "text_time":
        return "SDXL"
    return {768: "SD 1.x", 1024: "SD 2.x"}.get(width, f"SD 1.x/2.x-style (cross-attention width {width})")


def _label(control: Control) -> str:
    return control.label or display_name(control.model)


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def resolve(ref: str, *, allow_pickle: bool = False, layout: bool = True) -> ControlNetSource:
    """A ControlNet reference as a checked source: found, allowed, its config's class, its family; with
    ``layout``, its tensor table mapped onto its config (:func:`check_layout`: torch's meta device,
    diffusers' converter). No weights are read; without ``layout`` no torch is imported either (bar
    opening an allowed pickle, converted once to a cached ``.safetensors``). Raises ModelError."""
    folder = steering_dir("controlnets")
    path = find_model_file(ref, (folder,), (".safetensors",) + PICKLE_SUFFIXES)
    if path.is_dir():
        return _folder_source(path, allow_pickle, layout)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            return _single_file_source(path, path, layout)
        if suffix in PICKLE_SUFFIXES:
            if not allow_pickle:
                raise ModelError(f"The ControlNet {path.name} is a pickle file, which can run code when opened, so it "
                                 "is refused: use a .safetensors version, or allow pickle files explicitly "
                                 "(--allow-pickle).")
            from ..models import _pickle_to_safetensors

            return _single_file_source(_pickle_to_safetensors(path), path, layout)
        raise ModelError(f"{path.name} is not a ControlNet file Latent Studio can load: use a .safetensors file or a "
                         "diffusers folder.")
    raise ModelError(f"The ControlNet {ref!r} was not found: give a diffusers folder or a .safetensors file, or put "
                     f"it in {folder}.")


def _check_config(config: dict, where: str) -> dict:
    cls = config.get("_class_name")
    if cls not in CONTROLNET_CLASSES:
        named = f"the class {cls!r}" if isinstance(cls, str) else "no class"
        raise ModelError(f"{where} names {named}, not ControlNetModel, so it is refused: choose a ControlNet for "
                         "Stable Diffusion 1.x, 2.x or XL.")
    return config


def _folder_source(folder: Path, allow_pickle: bool, layout: bool) -> ControlNetSource:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"The folder {folder.name} is not a diffusers ControlNet (it has no config.json): choose the "
                         "ControlNet's folder, or a .safetensors file.")
    config = _check_config(read_config(config_file), f"{folder.name}/config.json")
    for name in _WEIGHT_NAMES:
        weights = folder / name
        if weights.is_file():
            header = read_header(weights)
            if layout:
                check_layout({k: v["shape"] for k, v in header.items()}, config, weights.name)
            return ControlNetSource("folder", folder, folder.name, config, None, _stat_key(weights),
                                    "fp16" if ".fp16." in name else None)
    pickles = [folder / n for n in _PICKLE_NAMES if (folder / n).is_file()]
    if not pickles:
        raise ModelError(f"The ControlNet folder {folder.name} holds no weights ({_WEIGHT_NAMES[0]}): it may be "
                         "incomplete; download it again.")
    if not allow_pickle:
        raise ModelError(f"{folder.name}/{pickles[0].name} is a pickle file, which can run code when opened, so the "
                         f"ControlNet {folder.name} is refused: use a .safetensors version, or allow pickle files "
                         "explicitly (--allow-pickle).")
    from ..checkpoints import check_pickle

    check_pickle(pickles[0])
    return ControlNetSource("folder", folder, folder.name, config, None, _stat_key(pickles[0]),
                            "fp16" if ".fp16." in pickles[0].name else None)


def _file_width(shapes: dict) -> tuple[int | None, bool]:
    """A ControlNet file's cross-attention width and whether it has SDXL's text-time embedding."""
    width = None
    for key, shape in shapes.items():
        if key.endswith("attn2.to_k.weight") and len(shape) == 2:
            width = int(shape[1])
            break
    text_time = any(k.endswith(("add_embedding.linear_1.weight", "label_emb.0.0.weight")) for k in shapes)
    return width, text_time


def _single_file_source(path: Path, named: Path, layout: bool) -> ControlNetSource:
    shapes = {k: v["shape"] for k, v in read_header(path).items()}
    sidecar = named.with_name(named.stem + ".config")
    if (sidecar / "config.json").is_file():
        config_folder = sidecar
    else:
        if not any(k.endswith(("input_hint_block.0.weight", "controlnet_cond_embedding.conv_in.weight"))
                   for k in shapes):
            raise ModelError(f"{named.name} is not a ControlNet (it has no control-image input, "
                             "`input_hint_block`): choose a ControlNet file, or use the file where it belongs.")
        width, text_time = _file_width(shapes)
        folder = SHIPPED_CONFIGS.get(width) if (width == 2048) == text_time else None
        if folder is None:
            raise ModelError(f"{named.name} is a ControlNet of an architecture Latent Studio has no config for "
                             f"(cross-attention width {width}): put its diffusers config folder beside it as "
                             f"{named.stem}.config/.")
        config_folder = MODEL_CONFIGS / folder
    config = _check_config(read_config(config_folder / "config.json"), f"{config_folder.name}/config.json")
    if layout:
        check_layout(shapes, config, named.name)
    return ControlNetSource("single_file", path, named.stem, config, config_folder, _stat_key(path))


_EXPECTED: dict = {}


def _expected_shapes(config: dict) -> dict:
    """Parameter name -> shape of the ControlNetModel ``config`` builds (on the meta device: no memory)."""
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _EXPECTED:
        import torch
        from diffusers import ControlNetModel

        with torch.device("meta"):
            net = ControlNetModel.from_config(config)
        _EXPECTED[key] = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    return _EXPECTED[key]


def _unprefixed(state: dict) -> dict:
    """A ControlNet's own tensors: those under ``control_model.`` when the file has that prefix."""
    if any(k.startswith(_LDM_PREFIX) for k in state):
        return {k[len(_LDM_PREFIX):]: v for k, v in state.items() if k.startswith(_LDM_PREFIX)}
    return state


def needs_embedding_keys(shapes: dict) -> bool:
    """Whether a file in the original layout has an added embedding (``label_emb``: SDXL's text-time
    one), which diffusers' ControlNet converter leaves out."""
    return any(k.startswith("label_emb.") for k in _unprefixed(shapes))


def convert(state: dict, config: dict) -> dict:
    """A ControlNet state dict (original or diffusers layout, unprefixed) in diffusers' layout:
    diffusers' converter, plus the added-embedding weights by diffusers' own table of their names,
    which its ControlNet converter does not apply."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(dict(state), config)
    if "time_embed.0.weight" in state:
        table = DIFFUSERS_TO_LDM_MAPPING["controlnet"]
        for kind in ("addition_embed_type", "class_embed_type"):
            if config.get(kind):
                converted.update({new: state[old] for new, old in table[kind].items() if old in state})
    return converted


def check_layout(shapes: dict, config: dict, name: str) -> None:
    """Maps a ControlNet's tensor table (name -> shape) through diffusers' converter onto the model
    ``config`` builds: every weight of the model found with its shape, none left over. Tensors are
    meta tensors: nothing is read or allocated. Raises ModelError naming the file."""
    import torch

    source = {k: torch.empty(tuple(v), device="meta") for k, v in _unprefixed(shapes).items()}
    try:
        converted = convert(source, config)
    except Exception as exc:  # the converter indexes what it expects: a damaged table raises anything
        raise ModelError(f"{name} does not have the layout of a ControlNet ({type(exc).__name__}: "
                         f"{str(exc)[:80]}): it may be damaged or another kind of file; download it again.") from None
    expected = _expected_shapes(config)
    used = {id(v) for v in converted.values() if v is not None}
    missing = sorted(k for k in expected if converted.get(k) is None)
    leftover = sorted([k for k, v in source.items() if id(v) not in used]
                      + [k for k, v in converted.items() if v is not None and k not in expected])
    wrong = sorted(k for k, v in converted.items() if v is not None and k in expected and tuple(v.shape) != expected[k])
    if missing:
        raise ModelError(f"{name} lacks {len(missing)} of the {len(expected)} weights of its ControlNet "
                         f"(`{missing[0]}`…): it is truncated or not a whole ControlNet; download it again.")
    if leftover:
        family = family_label(config.get("cross_attention_dim"), config.get("addition_embed_type"))
        raise ModelError(f"{name} has {len(leftover)} weights that an {family} ControlNet does not have "
                         f"(`{leftover[0]}`…): it is another kind of file, or a ControlNet of an unusual "
                         f"architecture whose diffusers config folder belongs beside it as {Path(name).stem}.config/.")
    if wrong:
        k = wrong[0]
        raise ModelError(f"{name} has `{k}` of shape {list(converted[k].shape)} where its config needs "
                         f"{list(expected[k])}: it is a ControlNet of another size; put its diffusers config folder "
                         f"beside it as {Path(name).stem}.config/.")


def check_family(source: ControlNetSource, unet_config, model_name: str) -> None:
    """Refuses a ControlNet made for another family than the model whose UNet config is given."""
    width, embed = unet_config.get("cross_attention_dim"), unet_config.get("addition_embed_type")
    if source.config.get("cross_attention_dim") != width or source.config.get("addition_embed_type") != embed:
        theirs = family_label(width, embed)
        raise ModelError(f"The ControlNet {source.name} is made for {source.family} models, but the model "
                         f"{model_name} is an {theirs} model: choose a ControlNet made for {theirs} models.")


def model_unet_config(ref: str) -> dict | None:
    """The UNet config of the request's model, read from its folder or its family's shipped config
    (no torch); None when that cannot be known before loading it (a hub model, a model not found)."""
    from ..errors import BackendError
    from ..models import resolve as resolve_model, single_file_config

    try:
        source = resolve_model(ref)
        if source.kind == "folder":
            path = source.path / "unet" / "config.json"
        elif source.kind == "single_file":
            path = single_file_config(source.path)[1] / "unet" / "config.json"
        else:
            return None
        return read_config(path) if path.is_file() else None
    except BackendError:  # the model's own check says what is wrong with it
        return None


def check_upscale(request) -> None:
    """An upscale's controls steer its refine pass, and only tile controls can: each refine tile
    follows its own pixels (raises InvalidRequest with one sentence)."""
    if getattr(request, "operation", "") != "upscale" or not request.controls:
        return
    if not getattr(request, "refine", False):
        raise InvalidRequest("Controls steer the refine pass of an upscale: turn refine on, or remove the controls.")
    for control in request.controls:
        if control.resolved_kind != "tile":
            raise InvalidRequest(f"The control {_label(control)!r} is a {control.resolved_kind} control, but an "
                                 "upscale's refine takes tile controls only (each tile follows its own pixels): use "
                                 "a tile ControlNet, or remove it.")


def check(request, *, layout: bool = False, family: bool = True) -> list[ControlNetSource]:
    """The checks that need no weights: every control's ControlNet found, allowed, of the model's
    family (when its config can be read without loading it); an upscale takes tile controls only, on
    its refine pass. No torch unless ``layout`` (see :func:`resolve`). Returns the sources. (The job
    checks the family against the model it loaded: ``family=False``.)"""
    check_upscale(request)
    sources = [resolve(c.model, allow_pickle=request.allow_pickle, layout=layout) for c in request.controls]
    unet = model_unet_config(request.model) if sources and family else None
    if unet is not None:
        from ..models import resolve as resolve_model

        for source in sources:
            check_family(source, unet, resolve_model(request.model).name)
    return sources


# --- loading --------------------------------------------------------------------------------------

def _cache(model) -> dict:
    store = model.controlnets
    store.setdefault("nets", OrderedDict())
    store.setdefault("sets", {})
    return store


def load(model, source: ControlNetSource):
    """The ControlNet of ``source`` on ``model``'s device and dtype, loaded once and kept."""
    nets = _cache(model)["nets"]
    if source.key in nets:
        nets.move_to_end(source.key)
        return nets[source.key]
    from diffusers import ControlNetModel

    try:
        if source.kind == "folder":
            net = ControlNetModel.from_pretrained(str(source.path), local_files_only=True, variant=source.variant,
                                                  use_safetensors=source.key[0].endswith(".safetensors"))
        else:
            weights = str(source.path)
            if needs_embedding_keys({k: v["shape"] for k, v in read_header(source.path).items()}):
                from safetensors.torch import load_file

                weights = convert(_unprefixed(load_file(weights)), source.config)  # SDXL in the original layout
            net = ControlNetModel.from_single_file(weights, config=str(source.config_folder), local_files_only=True)
    except Exception as exc:  # diffusers raises many types for a file it cannot use
        if out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"The ControlNet {source.name} could not be loaded ({first}): it may be damaged; download "
                         "it again.") from exc
    net.to(device=model.device, dtype=model.dtype)
    net.eval().requires_grad_(False)
    nets[source.key] = net
    return net


def _forget(model, keep: set) -> None:
    """Lets go of the ControlNets used longest ago beyond :data:`KEEP` (never those in ``keep``)."""
    store = _cache(model)
    nets = store["nets"]
    for key in list(nets):
        if len(nets) <= KEEP:
            break
        if key not in keep:
            del nets[key]
    for keys in [k for k in store["sets"] if not all(n in nets for n in k)]:
        del store["sets"][keys]


def controlnet_for(model, sources: list[ControlNetSource]):
    """One ControlNetModel, or the MultiControlNetModel of several (the same object for the same set)."""
    nets = [load(model, s) for s in sources]
    keys = tuple(s.key for s in sources)
    _forget(model, set(keys))
    if len(nets) == 1:
        return nets[0]
    sets = _cache(model)["sets"]
    if keys not in sets:
        from diffusers import MultiControlNetModel

        sets[keys] = MultiControlNetModel(nets)
    return sets[keys]


# --- control images -------------------------------------------------------------------------------

def over_black(rgba: np.ndarray) -> np.ndarray:
    """RGB of an RGBA layer composited over black: transparent parts count as black."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def lines(rgba: np.ndarray) -> np.ndarray:
    """A line drawing as the line ControlNets take it: white lines on black.

    A layer that is mostly opaque has its own ground: a light one (dark lines on paper) is
    inverted, a dark one is used as drawn. Strokes on a mostly transparent layer are lines whatever
    their colour (their opacity is the line)."""
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    lum = _luminance(rgba[..., :3].astype(np.float32)) / 255.0
    opaque = alpha > 0.5
    if opaque.mean() > 0.5:
        light_ground = float(np.median(lum[opaque])) > 0.5
        value = alpha * (1.0 - lum) if light_ground else alpha * lum
    else:
        value = alpha
    grey = (np.clip(value, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _is_grey(rgb: np.ndarray) -> bool:
    signed = rgb.astype(np.int16)
    return int(np.abs(np.diff(signed, axis=2)).max()) <= 2


def depth_folder() -> Path:
    return steering_dir("preprocessors") / "depth"


def _depth_estimator(model, allow_pickle: bool):
    """(processor, network) of the user's depth-estimation model, loaded once per model; None when
    there is none."""
    folder = depth_folder()
    config_file = folder / "config.json"
    if not config_file.is_file():
        return None
    config = read_config(config_file)
    kind = config.get("model_type")
    where = f"{folder.parent.name}/{folder.name}"
    if kind not in DEPTH_MODEL_TYPES:
        raise ModelError(f"The depth preprocessor in {where} is a {kind!r} model; Latent Studio runs "
                         f"{', '.join(sorted(DEPTH_MODEL_TYPES))} depth estimators: replace it, or remove the folder.")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if not pickles:
            raise ModelError(f"The depth preprocessor in {where} holds no weights (no .safetensors file): download it "
                             "again, or remove the folder.")
        if not allow_pickle:
            raise ModelError(f"The depth preprocessor's {pickles[0].name} in {where} is a pickle file, which can run "
                             "code when opened, so it is refused: use a .safetensors version, or allow pickle files "
                             "explicitly (--allow-pickle).")
        from ..checkpoints import check_pickle

        check_pickle(pickles[0])
        weights = pickles
    key = ("depth",) + _stat_key(weights[0])
    store = _cache(model)
    if store.get("depth", (None,))[0] != key:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        try:
            processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            net = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True,
                                                              use_safetensors=weights[0].suffix == ".safetensors")
        except Exception as exc:
            if out_of_memory(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelError(f"The depth preprocessor in {where} could not be loaded ({first}): download it again, or "
                             "remove the folder.") from exc
        net.to(model.device).eval().requires_grad_(False)
        store["depth"] = (key, processor, net)
    return store["depth"][1:]


def estimate_depth(estimator, rgb: np.ndarray) -> np.ndarray:
    """A depth map (near is white) of ``rgb`` at its own size, as depth ControlNets take it."""
    import torch
    from PIL import Image

    processor, net = estimator
    h, w = rgb.shape[:2]
    param = next(net.parameters())
    inputs = processor(images=Image.fromarray(rgb), return_tensors="pt")
    inputs = {k: v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device)
              for k, v in inputs.items()}
    with torch.no_grad():
        outputs = net(**inputs)
    depth = processor.post_process_depth_estimation(outputs, target_sizes=[(h, w)])[0]["predicted_depth"]
    depth = depth.float().cpu().numpy()
    depth = depth - depth.min()
    top = float(depth.max())
    grey = (depth / top * 255 + 0.5).astype(np.uint8) if top > 0 else np.zeros((h, w), np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _prepare_image(ctx, model, request, control: Control, kind: str, notes: list) -> np.ndarray | None:
    if control.image is None or getattr(request, "operation", "") == "upscale":
        return None  # each region's (each refine tile's) own pixels
    label = _label(control)
    if kind in LINE_KINDS:
        return lines(control.image)
    rgb = over_black(control.image)
    if kind == "depth" and not _is_grey(rgb):
        estimator = _depth_estimator(model, request.allow_pickle)
        if estimator is not None:
            ctx.stage(f"Estimating the depth of {label}")
            return estimate_depth(estimator, rgb)
        notes.append(f"The control layer {label!r} is used as a depth map as it is: no depth preprocessor is "
                     f"installed (a transformers depth-estimation model in {depth_folder()} makes one from a photo).")
    elif kind in DRAWN_KINDS:
        notes.append(f"The control layer {label!r} is used as a {kind} image as it is: Latent Studio has no {kind} "
                     "preprocessor, so it should hold the control image itself.")
    return rgb


def prepare(ctx, model, request):
    """Loads (or reuses) the request's ControlNets on ``model`` and makes their control images;
    returns (prepared controls in the request's order, the ControlNet(s) for the pipelines, notes)."""
    sources = check(request, layout=True, family=False)
    unet_config = model.inpaint.unet.config
    for source in sources:
        check_family(source, unet_config, model.name)
    notes: list[str] = []
    for control in request.controls:
        if control.scaled_from is not None:
            w, h = control.scaled_from
            ih, iw = control.image.shape[:2]
            notes.append(f"The control image {_label(control)!r} was {w}×{h}; it was scaled to {iw}×{ih}, the size "
                         "of the image it steers.")
    ctx.stage("Loading the ControlNet" + ("s" if len(sources) > 1 else ""))
    controlnet = controlnet_for(model, sources)
    ctx.check_cancel()
    prepared = []
    for control in request.controls:
        kind = control.resolved_kind
        prepared.append(PreparedControl(control, kind, _prepare_image(ctx, model, request, control, kind, notes)))
    return tuple(prepared), controlnet, notes


# --- per region -----------------------------------------------------------------------------------

def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return np.ascontiguousarray(rgb)
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.LANCZOS))


def _canny(rgb: np.ndarray) -> np.ndarray:
    import cv2

    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), *CANNY_THRESHOLDS)
    return np.repeat(edges[..., None], 3, axis=2)


def _cut(image: np.ndarray, origin, rect, work_size, kind: str) -> np.ndarray:
    """``image`` (over the request's area, whose top-left is ``origin``) cut to ``rect`` and scaled
    to ``work_size``; what lies outside the image is black."""
    work_w, work_h = work_size
    x, y, w, h = rect
    x0, y0 = x - origin[0], y - origin[1]
    ih, iw = image.shape[:2]
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(iw, x0 + w), min(ih, y0 + h)
    out = np.zeros((work_h, work_w, 3), np.uint8)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    sx, sy = work_w / w, work_h / h
    dx0, dy0 = round((ix0 - x0) * sx), round((iy0 - y0) * sy)
    dx1, dy1 = round((ix1 - x0) * sx), round((iy1 - y0) * sy)
    if dx1 <= dx0 or dy1 <= dy0:
        return out
    part = _resize(image[iy0:iy1, ix0:ix1], (dx1 - dx0, dy1 - dy0))
    out[dy0:dy1, dx0:dx1] = _canny(part) if kind == "canny" else part
    return out


def _inpaint_image(rgb: np.ndarray, soft: np.ndarray, work_size):
    """diffusers' convention for the inpaint ControlNet: RGB in 0-1, the masked pixels -1."""
    import torch
    from PIL import Image

    image = _resize(rgb, work_size).astype(np.float32) / 255.0
    mask = np.asarray(Image.fromarray((soft > 0.5).astype(np.uint8) * 255).resize(work_size, Image.BILINEAR))
    image[mask > 127] = -1.0
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def _region_image(p: PreparedControl, origin, rect, work_size, pixels: np.ndarray, soft: np.ndarray):
    from PIL import Image

    if p.kind == "inpaint":
        source = over_black(pixels) if p.image is None else _cut(p.image, origin, rect, (rect[2], rect[3]), "inpaint")
        return _inpaint_image(source, soft, work_size)
    if p.image is None:
        rgb = _resize(over_black(pixels), work_size)
        return Image.fromarray(_canny(rgb) if p.kind == "canny" else rgb)
    return Image.fromarray(_cut(p.image, origin, rect, work_size, p.kind))


def region_kwargs(prepared, origin, rect, work_size, pixels, soft) -> dict:
    """What one region's ControlNet pipeline call takes: ``control_image`` (one image, or a list for
    several), ``controlnet_conditioning_scale``, ``control_guidance_start`` and ``_end``."""
    images = [_region_image(p, origin, rect, tuple(work_size), pixels, soft) for p in prepared]
    scales = [p.control.strength for p in prepared]
    starts = [p.control.start for p in prepared]
    ends = [p.control.end for p in prepared]
    if len(prepared) == 1:
        return {"control_image": images[0], "controlnet_conditioning_scale": scales[0],
                "control_guidance_start": starts[0], "control_guidance_end": ends[0]}
    return {"control_image": images, "controlnet_conditioning_scale": scales, "control_guidance_start": starts,
            "control_guidance_end": ends}
