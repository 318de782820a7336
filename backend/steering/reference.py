"""Reference images through an IP-Adapter (diffusers' ``load_ip_adapter``).

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    prepare(ctx, model, request) -> PreparedReference | None

loads ``request.ip_adapter`` when ``request.references`` is not empty (and unloads an adapter an
earlier job loaded when it is); ``PreparedReference.kwargs(work_size)`` is what every pipeline call
adds; ``PreparedReference.notes`` go to the results.

**Files.** The adapter is a ``.safetensors`` file in the layout of the original releases (``image_proj.*``
and ``ip_adapter.{1,3,5,…}.to_{k,v}_ip.weight``), a folder holding one, or a name in the
``ip-adapters/`` folder beside the user's model folder (``NAME`` or ``NAME.safetensors``). A ``.bin``
(the nested pickle of the first releases) follows the pickle rule: refused unless the request allows
pickles, then read with ``weights_only=True``. Its CLIP vision encoder is a transformers folder
(``config.json``, ``model.safetensors``, optionally ``preprocessor_config.json``): ``request.image_encoder``,
else ``image_encoder/`` inside the adapter's folder or beside the adapter file, as the releases lay
them out::

    ip-adapters/
      ip-adapter_sd15.safetensors
      ip-adapter-plus_sd15.safetensors
      image_encoder/            config.json, model.safetensors (ViT-H for these)
      sdxl/
        ip-adapter_sdxl.safetensors
        image_encoder/          (ViT-bigG for this one)

Before diffusers reads anything, the file's tensor table is checked against the model: only
``image_proj.*``/``ip_adapter.*`` keys, an image projection diffusers knows (the plain one, "Plus"'s
resampler, "Full"'s MLP; FaceID adapters need face embeddings and are refused), the cross-attention
width (another family: a sentence naming both), one pair of weights per cross-attention layer of this
UNet with its shapes, and the encoder's feature width. Each failure is one sentence naming the file.

**Kept loaded.** The adapter and encoder stay on the model (``model.ip_adapter_state``) while jobs use
them, so the next job with the same files only sets weights and encodes its images; another adapter
replaces it (the encoder is kept when it is the same folder); a job without references unloads both
(``unload_ip_adapter``), which gives back the base model's attention processors: its output is then
bit-exact the base one. The encoder and feature extractor are set on every pipeline the model has
made, and on the inpaint pipeline that later ones (``from_pipe``: img2img, txt2img, ControlNet
variants) copy.

**Weights and modes.** A reference's weight is the adapter's scale (``set_ip_adapter_scale``); at 0 the
attention processors skip the adapter and the result is bit-exact the one without references. Modes
follow InstantStyle's finding on SDXL's UNet: ``style`` acts only in the second transformer of the first
up block (``{"up": {"block_0": [0, w, 0]}}``), ``composition`` only in the second of the third down block
(``{"down": {"block_2": [0, w]}}``). Those blocks are SDXL's: on SD 1.x/2.x (whose layers at those names
sit at other resolutions and mean other things), or on a UNet without them, the reference is used in
full and a note says so — not an error, as a reference layer's mode stays set when the painter
changes model.

**Several references** go to the one adapter as a list of images (diffusers' several images per
adapter), each with its own weight and mode: the per-layer scales are lists with one entry per image,
and diffusers' IP-Adapter masks (all ones, the size of the region) make each image attend on its own
and add its own weighted share, ``Σ wᵢ·attention(imageᵢ)``, as chained adapters do in other tools;
two references at weights (w, 0) give the result of the first alone at w. (Without masks diffusers
concatenates the images' tokens under one shared scale, which could not weigh them apart.)

**Embeddings once per job.** The images are encoded once (``prepare_ip_adapter_image_embeds``, with the
negative half classifier-free guidance needs when the guidance is above 1) and every region, tile and
variation of the job reuses them. Transparent parts of a reference are filled with the encoder's mean
colour (which its normalisation maps to zero) after cropping to the opaque part's bounding box; the
feature extractor then resizes and centre-crops as CLIP was trained.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError, out_of_memory

# InstantStyle's blocks on SDXL's UNet: (up/down, block index, transformer index).
MODE_LAYERS = {"style": ("up", 0, 1), "composition": ("down", 2, 1)}
FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
_IP_KEY = re.compile(r"^(\d+)\.to_([kv])_ip\.weight$")
_PLUS_LAYER = {"0.norm1.weight", "0.norm1.bias", "0.norm2.weight", "0.norm2.bias", "0.to_q.weight", "0.to_kv.weight",
               "0.to_out.weight", "1.0.weight", "1.0.bias", "1.1.weight", "1.3.weight"}
_PLUS_KEYS = {"latents", "proj_in.weight", "proj_in.bias", "proj_out.weight", "proj_out.bias", "norm_out.weight",
              "norm_out.bias"} | {f"layers.{i}.{k}" for i in range(4) for k in _PLUS_LAYER}  # diffusers' depth: 4
PROJECTIONS = {
    "base": {"proj.weight", "proj.bias", "norm.weight", "norm.bias"},
    "full": {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "proj.3.weight", "proj.3.bias"},
    "plus": _PLUS_KEYS,
}
ENCODER_HINT = "config.json and model.safetensors"


@dataclass
class PreparedReference:
    """One job's references, encoded: what each pipeline call adds."""

    embeds: list  # diffusers' ip_adapter_image_embeds: one tensor for the one adapter, (batch, images, ...)
    count: int  # how many reference images
    notes: list = field(default_factory=list)
    levels: int = 4  # the UNet's resolutions (len(block_out_channels)): where the masks are resized to
    latent_scale: int = 8  # pixels per latent cell

    def kwargs(self, work_size=None) -> dict:
        """``work_size``: the (width, height) the pipeline runs at; needed with several references."""
        out = {"ip_adapter_image_embeds": self.embeds}
        if self.count > 1:  # per-image weights: each image attends on its own through an all-ones mask
            import torch

            h, w = ones_mask_shape(tuple(work_size or (64, 64)), self.levels, self.latent_scale)
            out["cross_attention_kwargs"] = {"ip_adapter_masks": [torch.ones(1, self.count, h, w)]}
        return out


@functools.lru_cache(maxsize=256)
def ones_mask_shape(work_size: tuple[int, int], levels: int, latent_scale: int = 8) -> tuple[int, int]:
    """The (height, width) of an all-ones IP-Adapter mask that diffusers resizes to exactly each
    attention layer's token count. Diffusers guesses a layer's grid from the mask's aspect ratio and
    its token count; with the region's own ratio that guess misses on some long regions (about 1 in
    30 working sizes, 1:3 and longer), which would leave a few tokens without the references (and
    warn), so another shape whose guesses all hit is taken (checked with diffusers' own resizing; the
    mask is uniform, so its shape means nothing else). Cached: a few ms, rarely most of a second."""
    import warnings

    import torch
    from diffusers.image_processor import IPAdapterMaskProcessor

    w, h = work_size
    lh, lw = max(1, h // latent_scale), max(1, w // latent_scale)
    counts = []
    for _ in range(levels):  # each down block halves the grid, rounding up
        counts.append(lh * lw)
        lh, lw = (lh + 1) // 2, (lw + 1) // 2
    lh, lw = max(1, h // latent_scale), max(1, w // latent_scale)

    def fits(mh: int, mw: int) -> bool:
        mask = torch.ones(1, mh, mw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                return all(IPAdapterMaskProcessor.downsample(mask, 1, n, 1).shape[1] == n for n in counts)
            except (UserWarning, ZeroDivisionError, RuntimeError):
                return False

    if fits(lh, lw):
        return lh, lw
    import math

    ratio = math.log(lw / lh)
    for mh, mw in sorted(((a, b) for a in range(1, 65) for b in range(1, 65)),
                         key=lambda ab: abs(math.log(ab[1] / ab[0]) - ratio)):
        if fits(mh, mw):
            return mh, mw
    return lh, lw  # not met in practice (every working size from 256² to 1024² areas has one)


@dataclass
class LoadedAdapter:
    """What ``model.ip_adapter_state`` holds while an adapter is loaded."""

    key: tuple  # the adapter file and encoder folder with their sizes and times: the same key, no reload
    adapter: Path
    encoder_key: tuple
    image_encoder: object
    feature_extractor: object


# --- finding the files ----------------------------------------------------------------------------


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def find_adapter(ref: str, allow_pickle: bool) -> Path:
    """The adapter's weights file for ``ref`` (a file, a folder holding one, or a name in ip-adapters/)."""
    from . import steering_dir
    from ..checkpoints import PICKLE_SUFFIXES
    from ..paths import find_model_file

    folder = steering_dir("ip-adapters")
    path = find_model_file(ref.strip(), (folder,), (".safetensors", ".bin"))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".safetensors")
        if not files:
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
        if not files:
            raise ModelError(f"The IP-Adapter folder {path.name} holds no .safetensors file: put the adapter's weights "
                             "in it, or choose the file itself.")
        if len(files) > 1:
            raise ModelError(f"The IP-Adapter folder {path.name} holds several weights files ({files[0].name}, "
                             f"{files[1].name}…): choose one of the files.")
        path = files[0]
    if not path.is_file():
        raise ModelError(f"IP-Adapter {ref!r} was not found: give a .safetensors file, a folder holding one, or a "
                         f"name in {folder}.")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(f"{path.name} is a pickle file, which can run code when opened, so it is refused: use a "
                             ".safetensors version of the IP-Adapter, or allow pickle files explicitly "
                             "(--allow-pickle).")
    elif suffix != ".safetensors":
        raise ModelError(f"{path.name} is not an IP-Adapter file Latent Studio can load: use a .safetensors file.")
    return path


def find_encoder(request_encoder: str, adapter_ref: str, adapter: Path) -> Path:
    """The CLIP vision encoder folder: the request's, else ``image_encoder/`` inside or beside the adapter."""
    from . import steering_dir
    from ..paths import find_model_file

    if request_encoder.strip():
        path = find_model_file(request_encoder.strip(), (steering_dir("ip-adapters"),))
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelError(f"The image encoder {request_encoder!r} was not found: give the folder of a CLIP vision "
                             f"encoder ({ENCODER_HINT} inside).")
        return path
    candidates = [adapter.parent / "image_encoder"]
    given = Path(os.path.expanduser(adapter_ref.strip()))
    if given.is_dir() and given.resolve() == adapter.parent.resolve():  # the adapter was given as its folder
        candidates.append(adapter.parent.parent / "image_encoder")
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    where = " and ".join(str(c.parent) for c in candidates)
    raise ModelError(f"No image encoder was found for the IP-Adapter {adapter.name} (looked for image_encoder/ in "
                     f"{where}): put the adapter's CLIP vision encoder folder ({ENCODER_HINT}) there as "
                     "image_encoder/, or choose its folder (--image-encoder).")


# --- checking the files against the model ---------------------------------------------------------


def read_adapter(path: Path) -> tuple[dict, dict | None]:
    """``(shapes, state)``: the adapter's tensor shapes by flat key (``image_proj.x``, ``ip_adapter.y``),
    and for a pickle the nested state dict itself (read with ``weights_only=True``); for a
    ``.safetensors`` file only its header is read (``state`` is None: diffusers reads the file)."""
    if path.suffix.lower() == ".safetensors":
        from ..checkpoints import read_header

        return {k: tuple(v["shape"]) for k, v in read_header(path).items()}, None
    import torch

    from ..checkpoints import _torch_load

    data = _torch_load(path)
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} does not hold a dictionary of weights: choose an IP-Adapter file.")
    state: dict = {"image_proj": {}, "ip_adapter": {}}
    shapes: dict = {}
    for group, value in data.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, tensor in items:
            flat = f"{group}.{key}" if key is not None else str(group)
            if not isinstance(tensor, torch.Tensor):
                raise ModelError(f"{path.name} holds {flat!r}, which is not a tensor: choose an IP-Adapter file.")
            shapes[flat] = tuple(tensor.shape)
            head, _, rest = flat.partition(".")
            if head in state:
                state[head][rest] = tensor
    return shapes, state


def cross_attention_layers(unet) -> dict[int, int]:
    """{key id: hidden size} of the UNet's cross-attention layers, numbered as IP-Adapter files number
    them (1, 3, 5, … in diffusers' processor order, as ``load_ip_adapter`` reads them)."""
    out, key_id = {}, 1
    channels = list(unet.config.block_out_channels)
    for name in unet.attn_processors.keys():
        if name.endswith("attn1.processor") or "motion_modules" in name \
                or not name.startswith(("down_blocks.", "up_blocks.", "mid_block.")):  # a loaded Plus adapter's own
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        out[key_id] = hidden
        key_id += 2
    return out


def family_name(width: int, fallback: str = "") -> str:
    return FAMILY_BY_WIDTH.get(width) or fallback or "another model family"


def model_family(unet, family: str) -> str:
    """The model's family in words: from its cross-attention width, else LoadedModel.family."""
    return family_name(int(unet.config.cross_attention_dim), {"sd15": "SD 1.x/2.x", "sdxl": "SDXL"}.get(family, ""))


def adapter_kind(name: str, shapes: dict) -> str:
    """What the file's tensor table says by itself (no model needed): an IP-Adapter of a kind diffusers
    loads, whole and consistent. Returns the projection's kind ("base", "plus" or "full"); raises
    ModelError with one sentence naming the file."""
    unknown = sorted(k for k in shapes if not k.startswith(("image_proj.", "ip_adapter.")))
    proj = {k[len("image_proj."):]: s for k, s in shapes.items() if k.startswith("image_proj.")}
    ip = {k[len("ip_adapter."):]: s for k, s in shapes.items() if k.startswith("ip_adapter.")}
    if not proj or not ip:
        hint = f" (it has {unknown[0]!r})" if unknown else ""
        raise ModelError(f"{name} is not an IP-Adapter: it has no image_proj and ip_adapter weights{hint}; choose an "
                         "IP-Adapter file.")
    if "perceiver_resampler.proj_in.weight" in proj or "norm.weight" in proj and "proj.0.weight" in proj \
            or any("_lora." in k for k in ip):
        raise ModelError(f"{name} is a FaceID IP-Adapter, which needs face embeddings (InsightFace) that Latent Studio "
                         "does not compute: choose a regular or Plus IP-Adapter.")
    unknown += [f"ip_adapter.{k}" for k in ip if not _IP_KEY.match(k)]
    kind = next((kind for kind, keys in PROJECTIONS.items() if set(proj) == keys), None)
    if kind is None:
        known = set().union(*PROJECTIONS.values())
        odd = sorted(set(proj) - known) or sorted(set(proj))
        unknown += [f"image_proj.{k}" for k in odd]
    if unknown:
        raise ModelError(f"{name} has weights an IP-Adapter does not have ({', '.join(sorted(unknown)[:2])}…): it is "
                         "damaged or of a kind Latent Studio cannot use; choose a regular, Plus or Full IP-Adapter "
                         ".safetensors file.")
    linear = [f"ip_adapter.{k}" for k in ip] + [f"image_proj.{k}" for k in proj if k in (
        "proj.weight", "proj.0.weight", "proj.2.weight", "proj_in.weight", "proj_out.weight")]
    bad = next((k for k in linear if len(shapes[k]) != 2), None)
    if bad is None and kind == "plus" and len(proj["latents"]) != 3:
        bad = "image_proj.latents"
    if bad is not None:
        raise ModelError(f"{name} has a malformed weight ({bad} has shape {list(shapes[bad])}): the file is damaged; "
                         "download it again.")
    widths = {s[1] for s in ip.values()}
    if kind == "base":  # diffusers makes 4 tokens of the projection's output
        out = proj["proj.weight"][0] // 4 if proj["proj.weight"][0] % 4 == 0 else -1
    else:
        out = proj["proj.3.weight" if kind == "full" else "proj_out.weight"][0]
    if widths != {out}:
        raise ModelError(f"{name}'s image projection gives {out}-wide tokens but its attention weights take "
                         f"{'/'.join(map(str, sorted(widths)))}: the file is damaged or mixed from two adapters; "
                         "download it again.")
    return kind


def check_fits(name: str, shapes: dict, unet, model_name: str, family: str) -> None:
    """The adapter against the model's UNet: its family (cross-attention width), then one pair of
    weights of the right shapes per cross-attention layer. One sentence naming the file (and, for
    another family, both families)."""
    ip = {k[len("ip_adapter."):]: s for k, s in shapes.items() if k.startswith("ip_adapter.")}
    width = int(unet.config.cross_attention_dim)
    theirs = next(iter(ip.values()))[1]
    if theirs != width:
        mine = model_family(unet, family)
        raise ModelError(f"{name} is an IP-Adapter for {family_name(theirs)} (cross-attention width {theirs}), but the "
                         f"model {model_name} is {mine} (width {width}): choose an IP-Adapter made for {mine}.")
    layers = cross_attention_layers(unet)
    expected = {f"{i}.to_{kv}_ip.weight": (hidden, width) for i, hidden in layers.items() for kv in "kv"}
    if set(ip) != set(expected) or any(tuple(ip[k]) != v for k, v in expected.items()):
        raise ModelError(f"{name} does not fit the UNet of {model_name}: it has weights for {len(ip) // 2} "
                         f"cross-attention layers where this model has {len(layers)}, or of other sizes; choose an "
                         "IP-Adapter made for this model's family.")


def adapter_input_width(kind: str, shapes: dict) -> int:
    """The width of the image features the adapter's projection takes: the encoder's projected
    embedding (plain) or its hidden states (Plus, Full)."""
    key = {"base": "image_proj.proj.weight", "full": "image_proj.proj.0.weight", "plus": "image_proj.proj_in.weight"}
    return int(shapes[key[kind]][1])


def check_encoder(folder: Path, *, allow_pickle: bool) -> tuple[dict, Path | None]:
    """The encoder folder's config (a CLIP vision model with projection) and its weights file
    (``None`` for a sharded one); the pickle rule for ``.bin`` weights."""
    from ..checkpoints import read_header
    from ..modelconfig import read_config

    config = read_config(folder / "config.json")
    if config.get("model_type") != "clip_vision_model":
        raise ModelError(f"{folder.name} is not a CLIP vision encoder (its config.json says model_type "
                         f"{config.get('model_type')!r}): choose the image encoder folder that came with the "
                         "IP-Adapter.")
    weights = folder / "model.safetensors"
    if weights.is_file():
        if "visual_projection.weight" not in read_header(weights):
            raise ModelError(f"{folder.name} is a CLIP vision encoder without its projection (no visual_projection "
                             "weights): choose the image encoder folder that came with the IP-Adapter.")
        return config, weights
    if (folder / "model.safetensors.index.json").is_file():
        return config, None
    pickles = [folder / n for n in ("pytorch_model.bin",) if (folder / n).is_file()]
    if not pickles:
        raise ModelError(f"The image encoder folder {folder.name} holds no weights (no model.safetensors): put the "
                         f"encoder's {ENCODER_HINT} in it.")
    if not allow_pickle:
        raise ModelError(f"{folder.name}/{pickles[0].name} is a pickle file, which can run code when opened, so the "
                         "image encoder is refused: use a model.safetensors version, or allow pickle files explicitly "
                         "(--allow-pickle).")
    from ..checkpoints import check_pickle

    check_pickle(pickles[0])
    return config, pickles[0]


def encoder_width(kind: str, config: dict) -> int:
    return int(config.get("projection_dim" if kind == "base" else "hidden_size", 0) or 0)


# --- loading and unloading ------------------------------------------------------------------------


def _set_on_pipelines(model, image_encoder, feature_extractor) -> None:
    for pipe in model.pipelines():
        if hasattr(pipe, "image_encoder") and hasattr(pipe, "feature_extractor"):
            pipe.register_modules(image_encoder=image_encoder, feature_extractor=feature_extractor)


def unload(model) -> None:
    """Takes the IP-Adapter and its encoder off the model (its attention processors back to the base
    ones), from every pipeline it has made."""
    if getattr(model, "ip_adapter_state", None) is None:
        return
    model.inpaint.unload_ip_adapter()
    _set_on_pipelines(model, None, None)
    model.ip_adapter_state = None


def _load_encoder(folder: Path, weights: Path | None, model):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    try:
        encoder = CLIPVisionModelWithProjection.from_pretrained(
            str(folder), local_files_only=True, dtype=model.dtype,
            use_safetensors=weights is None or weights.suffix == ".safetensors")
        if (folder / "preprocessor_config.json").is_file():
            from ..modelconfig import read_config

            read_config(folder / "preprocessor_config.json")
            processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
        else:  # the releases' image_encoder/ folders have none: diffusers' default for the encoder's size
            size = encoder.config.image_size
            processor = CLIPImageProcessor(size=size, crop_size=size)
    except Exception as exc:  # transformers raises many types for a folder it cannot use
        if out_of_memory(exc):
            raise
        raise ModelError(f"The image encoder folder {folder.name} could not be loaded ({_first_line(exc)}): it may be "
                         "incomplete; copy it again.") from exc
    return encoder.to(model.device).eval(), processor


def _load(model, adapter: Path, state_dict, encoder, processor) -> None:
    pipe = model.inpaint
    pipe.register_modules(image_encoder=encoder, feature_extractor=processor)  # load_ip_adapter keeps them
    try:
        if state_dict is not None:
            pipe.load_ip_adapter(state_dict, subfolder="", weight_name="", image_encoder_folder=None)
        else:
            pipe.load_ip_adapter(str(adapter.parent), subfolder="", weight_name=adapter.name, image_encoder_folder=None,
                                 local_files_only=True)
    except Exception as exc:  # whatever diffusers or safetensors raise for a file that does not load
        try:
            pipe.unload_ip_adapter()  # what was set before the failure: the base processors back
        except Exception:  # nothing was set
            pass
        _set_on_pipelines(model, None, None)
        if out_of_memory(exc):
            raise
        raise ModelError(f"{adapter.name} could not be loaded as an IP-Adapter ({_first_line(exc)}): it may be "
                         "damaged; download it again.") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


# --- weights and modes ----------------------------------------------------------------------------


def _blocks_with_attention(unet) -> dict[str, list[int]]:
    return {"down": [i for i, b in enumerate(unet.down_blocks) if hasattr(b, "attentions")],
            "up": [i for i, b in enumerate(unet.up_blocks) if hasattr(b, "attentions")]}


def mode_supported(unet, family: str, mode: str) -> bool:
    """Whether ``mode``'s InstantStyle block exists: SDXL only, and a UNet that has it."""
    if mode == "full":
        return True
    if family != "sdxl":
        return False
    updown, block, transformer = MODE_LAYERS[mode]
    blocks = unet.down_blocks if updown == "down" else unet.up_blocks
    return block < len(blocks) and len(getattr(blocks[block], "attentions", ())) > transformer


def scale_config(unet, family: str, references) -> tuple[object, list[str]]:
    """The argument of ``set_ip_adapter_scale`` for ``references`` and the notes for modes that fell
    back to full. One reference: a float or InstantStyle's per-block dict; several: per-layer lists
    with one scale per image (used with the IP-Adapter masks)."""
    notes, modes = [], []
    for i, ref in enumerate(references):
        mode = ref.mode
        if not mode_supported(unet, family, mode):
            what = f"Reference {ref.label or i + 1}"
            why = ("this model's UNet has no such block" if family == "sdxl"
                   else "it needs an SDXL model (InstantStyle's blocks)")
            notes.append(f"{what}: the {mode} mode was used as full, as {why}.")
            mode = "full"
        modes.append(mode)
    per_block = {"down": unet.config.layers_per_block, "up": unet.config.layers_per_block + 1}
    blocks = _blocks_with_attention(unet)

    def scale(w: float, mode: str, updown: str, block: int, t: int) -> float:
        return w if mode == "full" or MODE_LAYERS[mode] == (updown, block, t) else 0.0

    if len(references) == 1:
        w, mode = float(references[0].weight), modes[0]
        if mode == "full":
            return w, notes
        updown, block, t = MODE_LAYERS[mode]
        return {updown: {f"block_{block}": [scale(w, mode, updown, block, k) for k in range(per_block[updown])]}}, notes
    config: dict = {"mid": [[float(r.weight) if m == "full" else 0.0 for r, m in zip(references, modes)]]}
    for updown in ("down", "up"):
        config[updown] = {
            f"block_{b}": [[scale(float(r.weight), m, updown, b, t) for r, m in zip(references, modes)]
                           for t in range(per_block[updown])]
            for b in blocks[updown]}
    return config, notes


# --- the images -----------------------------------------------------------------------------------


def reference_image(pixels, fill) -> object:
    """A reference as the RGB image the feature extractor takes: cropped to its opaque part, the
    transparent parts filled with ``fill`` (0–255 per channel)."""
    import numpy as np
    from PIL import Image

    alpha = pixels[..., 3]
    ys, xs = np.nonzero(alpha)
    crop = pixels[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    a = crop[..., 3:] / 255.0
    rgb = crop[..., :3] * a + np.asarray(fill, np.float32) * (1.0 - a)
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))


def _guided(model, request) -> bool:
    """Whether the pipelines run classifier-free guidance for this request (as they decide it)."""
    guidance = request.guidance if not model.ignores_prompt else 1.0
    return guidance > 1.0 and model.inpaint.unet.config.time_cond_proj_dim is None


# --- the job --------------------------------------------------------------------------------------


@dataclass
class CheckedFiles:
    adapter: Path
    kind: str
    shapes: dict
    state_dict: dict | None  # the pickle's weights, read with weights_only=True; None for .safetensors
    encoder: Path
    encoder_config: dict
    encoder_weights: Path | None

    @property
    def encoder_key(self) -> tuple:
        return _encoder_key(self.encoder)


def _encoder_key(folder: Path) -> tuple:
    weights = [folder / n for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")]
    return tuple(_stamp(p) for p in [folder / "config.json", *weights] if p.is_file())


def check_files(request) -> CheckedFiles:
    """Every check of the request's IP-Adapter and image encoder that needs no model and no torch (bar
    ``torch.load(weights_only=True)`` for an allowed pickle): found, allowed, whole, of a kind diffusers
    loads, and of matching widths. Raises ModelError with one sentence naming the file."""
    adapter = find_adapter(request.ip_adapter, request.allow_pickle)
    shapes, state_dict = read_adapter(adapter)  # the adapter first: a LoRA given as one says so
    kind = adapter_kind(adapter.name, shapes)
    encoder = find_encoder(request.image_encoder, request.ip_adapter, adapter)
    config, weights = check_encoder(encoder, allow_pickle=request.allow_pickle)
    takes, gives = adapter_input_width(kind, shapes), encoder_width(kind, config)
    if takes != gives:
        raise ModelError(f"The image encoder {encoder.name} gives {gives}-wide image features but the IP-Adapter "
                         f"{adapter.name} takes {takes}: use the image encoder the adapter was made with (its model "
                         "card says which: ViT-H for most, ViT-bigG for ip-adapter_sdxl).")
    return CheckedFiles(adapter, kind, shapes, state_dict, encoder, config, weights)


def check_family(checked: CheckedFiles, model_name: str, cross_width: int, family: str) -> None:
    """Before the job, from the model's config alone: the adapter is of the model's family (the same
    cross-attention width); one sentence naming both otherwise."""
    ip = [s for k, s in checked.shapes.items() if k.startswith("ip_adapter.")]
    theirs = int(ip[0][1]) if ip and len(ip[0]) > 1 else cross_width
    if theirs != cross_width:
        mine = family_name(cross_width, family)
        raise ModelError(f"{checked.adapter.name} is an IP-Adapter for {family_name(theirs)} (cross-attention width "
                         f"{theirs}), but the model {model_name} is {mine} (width {cross_width}): choose an IP-Adapter "
                         f"made for {mine}.")


def _loaded_key(request) -> tuple | None:
    """The key of the files the request names, from file stamps alone (no reading), or None when
    they cannot be found: then check_files says why."""
    try:
        adapter = find_adapter(request.ip_adapter, request.allow_pickle)
        encoder = find_encoder(request.image_encoder, request.ip_adapter, adapter)
    except ModelError:
        return None
    return _stamp(adapter), _encoder_key(encoder)


def prepare(ctx, model, request) -> PreparedReference | None:
    if not request.references:
        unload(model)
        return None
    state = getattr(model, "ip_adapter_state", None)
    unet = model.inpaint.unet
    if state is None or state.key != _loaded_key(request):
        files = check_files(request)
        check_fits(files.adapter.name, files.shapes, unet, model.name, model.family)
        ctx.check_cancel()
        key = (_stamp(files.adapter), files.encoder_key)
        keep = state is not None and state.encoder_key == files.encoder_key
        encoder, processor = (state.image_encoder, state.feature_extractor) if keep else (None, None)
        unload(model)
        if encoder is None:
            ctx.stage(f"Loading the image encoder {files.encoder.name}")
            encoder, processor = _load_encoder(files.encoder, files.encoder_weights, model)
        ctx.stage(f"Loading the IP-Adapter {files.adapter.stem}")
        _load(model, files.adapter, files.state_dict, encoder, processor)
        state = LoadedAdapter(key, files.adapter, files.encoder_key, encoder, processor)
        model.ip_adapter_state = state
    _set_on_pipelines(model, state.image_encoder, state.feature_extractor)
    ctx.check_cancel()
    config_scale, notes = scale_config(unet, model.family, request.references)
    model.inpaint.set_ip_adapter_scale(config_scale)
    import torch

    processor = state.feature_extractor
    fill = [round(255 * m) for m in (processor.image_mean or (0.5, 0.5, 0.5))]
    images = [reference_image(r.image, fill) for r in request.references]
    with torch.no_grad():
        embeds = model.inpaint.prepare_ip_adapter_image_embeds([images], None, model.device, 1, _guided(model, request))
    return PreparedReference(embeds, len(images), notes, levels=len(unet.config.block_out_channels),
                             latent_scale=int(model.inpaint.vae_scale_factor))
