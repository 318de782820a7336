"""LoRAs: found, checked and applied through diffusers' ``load_lora_weights`` / ``set_adapters`` (peft).

Contract (used by :func:`backend.steering.job.prepare`, once per job):

    apply(ctx, model, loras, allow_pickle=False) -> None

sets exactly ``loras`` (a tuple of :class:`backend.steering.LoraRef`) with their weights on ``model``
(a :class:`backend.models.LoadedModel`); an empty tuple disables every adapter (``disable_lora``), so
the base model's output is bit-exact.

* A LoRA is a path (a ``.safetensors`` file, or a diffusers LoRA folder with
  ``pytorch_lora_weights.safetensors``) or a name in :func:`backend.steering.steering_dir` ``("loras")``,
  with or without its suffix. Pickles (``.ckpt``/``.pt``/``.pth``/``.bin``) are refused unless the
  request allows them, then read with ``weights_only=True``.
* Layouts: A1111/kohya-ss (``lora_unet_…``, ``lora_te_…``, ``lora_te1_``/``lora_te2_`` for SDXL, with
  ``.alpha``; SDXL UNet names in the original sgm layout) and diffusers/peft (``unet.…lora_A.weight``,
  ``text_encoder.…``, ``text_encoder_2.…``); diffusers converts both. LyCORIS (LoHa, LoKr, LoCon with a
  mid weight) and DoRA files are refused: diffusers' Stable Diffusion loader does not read them whole.
* :func:`check` reads the file's header only (no torch; names, shapes): truncated, not a LoRA, or made
  for another family (a second text encoder, or cross-attention/text widths that differ from the
  model's: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL) is one sentence naming the file, before the job.
* The model keeps what it loaded (``model.lora_state``): one peft adapter per file, keyed by its
  resolved path, modification time and size, so switching LoRA set or weights between jobs re-reads
  nothing and never reloads the base model; ``model.lora_loads`` counts the files read. At most
  :data:`KEEP` adapters stay loaded; the least recently used unused one is deleted beyond that.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import PICKLE_SUFFIXES, read_header
from ..errors import ModelError

KEEP = 8  # adapters kept loaded on a model (the current job's always are)
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"  # in a folder saved by diffusers' save_lora_weights

_KOHYA = re.compile(r"^lora_(unet|te|te1|te2)_(\w+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
_KOHYA_COMPONENT = {"unet": "unet", "te": "text_encoder", "te1": "text_encoder", "te2": "text_encoder_2"}
_DIFFUSERS = re.compile(r"^(unet|text_encoder|text_encoder_2)\.(.+)$")
_DOWN = ("lora_A.weight", "_lora.down.weight", "lora_linear_layer.down.weight", "lora.down.weight")
_UP = ("lora_B.weight", "_lora.up.weight", "lora_linear_layer.up.weight", "lora.up.weight")
_LYCORIS = re.compile(r"\.(hada_|lokr_|oft_|lora_mid|diff\b|diff_b\b|w_norm|b_norm)")
_CROSS_KV = re.compile(r"attn2[._](processor[._])?to_[kv]")
_TEXT_IN = re.compile(r"(q_proj|k_proj|v_proj|to_q|to_k|to_v|fc1)")  # layers whose input is the hidden size
_FAMILY_BY_CROSS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


# --- what a LoRA file is (no torch) -------------------------------------------------------------------

@dataclass(frozen=True)
class LoraFile:
    path: Path
    layout: str  # "kohya" or "diffusers"
    layers: int  # layers it changes (one down/up pair each)
    components: frozenset  # of "unet", "text_encoder", "text_encoder_2"
    cross_width: int | None  # the input width of its cross-attention key/value layers, when it has them
    text_widths: tuple  # ((component, hidden size), ...) of its text-encoder layers

    @property
    def family(self) -> str:
        """Which models it was made for, as far as its names and shapes say."""
        if "text_encoder_2" in self.components or self.cross_width == 2048:
            return "SDXL"
        if self.cross_width in _FAMILY_BY_CROSS:
            return _FAMILY_BY_CROSS[self.cross_width]
        if self.layout == "kohya" and "text_encoder" in self.components:
            return "SD 1.x/2.x"  # one text encoder (lora_te_)
        if self.cross_width:
            return f"a model with {self.cross_width}-wide cross-attention"
        return "another model"


@dataclass(frozen=True)
class ModelShape:
    """What of a model a LoRA must fit: its cross-attention width and its text encoders' widths."""
    name: str
    cross_width: int | None
    text_widths: tuple  # ((component, hidden size), ...)

    @property
    def family(self) -> str:
        if any(c == "text_encoder_2" for c, _ in self.text_widths) or self.cross_width == 2048:
            return "SDXL"
        return _FAMILY_BY_CROSS.get(self.cross_width, "SD 1.x/2.x")


def find(name: str) -> Path:
    """The LoRA file ``name`` stands for: a path, or a name in the loras folder; raises ModelError."""
    from .. import paths
    from . import steering_dir

    folder = steering_dir("loras")
    path = paths.find_model_file(name, (folder,), (".safetensors",) + PICKLE_SUFFIXES)
    if path.is_dir() and (path / DIFFUSERS_FILE).is_file():
        path = path / DIFFUSERS_FILE
    if not path.is_file():
        raise ModelError(f"The LoRA {name!r} was not found: give the path of its .safetensors file, or put it "
                         f"into {folder}.")
    return path


def _pickle_refused(path: Path) -> str:
    return (f"The LoRA {path.name} is a pickle file, which can run code when opened, so it is refused: use a "
            ".safetensors version, or allow pickle files explicitly (--allow-pickle).")


def tensor_table(path: Path, *, allow_pickle: bool = False) -> dict:
    """name -> shape of every tensor in the file: from a ``.safetensors`` header (no torch), or from a
    pickle read with ``weights_only=True`` when allowed. Raises ModelError."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelError(_pickle_refused(path))
        from ..checkpoints import load_pickle_weights

        return {k: list(v.shape) for k, v in load_pickle_weights(path).items()}
    if suffix != ".safetensors":
        raise ModelError(f"The LoRA {path.name} is not a .safetensors file: choose a LoRA saved as .safetensors.")
    return {k: entry["shape"] for k, entry in read_header(path).items()}


def inspect(path: Path, table: dict) -> LoraFile:
    """The layout, layers and widths of a LoRA from its tensor names and shapes; raises ModelError with one
    sentence when it is not a LoRA diffusers loads."""
    if not table:
        raise ModelError(f"{path.name} holds no tensors, so it is not a LoRA: choose another file.")
    lycoris = next((k for k in table if _LYCORIS.search(k)), None)
    if lycoris is not None:
        raise ModelError(f"{path.name} is a LyCORIS file (LoHa, LoKr or LoCon with a mid weight, e.g. "
                         f"{lycoris!r}), which diffusers' LoRA loader cannot read: use a plain LoRA.")
    if any(k.endswith(("dora_scale", "lora_magnitude_vector")) for k in table):
        raise ModelError(f"{path.name} is a DoRA, which diffusers loads for Stable Diffusion only without its "
                         "magnitudes (a different result): use a plain LoRA.")
    downs: dict[str, tuple[str, list]] = {}  # layer -> (component, down weight's shape)
    ups: set[str] = set()
    kohya = all(k.startswith("lora_") and _KOHYA.match(k) for k in table)
    for key, shape in table.items():
        if kohya:
            m = _KOHYA.match(key)
            component, layer, part = _KOHYA_COMPONENT[m.group(1)], f"lora_{m.group(1)}_{m.group(2)}", m.group(3)
            if part == "lora_down.weight":
                downs[layer] = (component, shape)
            elif part == "lora_up.weight":
                ups.add(layer)
            continue
        m = _DIFFUSERS.match(key)
        if m is None or "lora" not in m.group(2):
            raise ModelError(f"{path.name} has tensors that are not a LoRA's (e.g. {key!r}): choose a LoRA in the "
                             "kohya (lora_unet_…) or diffusers (unet.…lora_A) layout.")
        component, rest = m.group(1), m.group(2)
        down = next((s for s in _DOWN if rest.endswith(s)), None)
        up = next((s for s in _UP if rest.endswith(s)), None)
        if down:
            downs[f"{component}.{rest[: -len(down)]}"] = (component, shape)
        elif up:
            ups.add(f"{component}.{rest[: -len(up)]}")
    missing = sorted(set(downs) ^ ups)
    if not downs or missing:
        what = f"{missing[0]!r} has only one of its two matrices" if missing else "it has no down/up matrices"
        raise ModelError(f"{path.name} is not a complete LoRA ({what}): download it again.")
    cross = {shape[1] for layer, (c, shape) in downs.items() if c == "unet" and _CROSS_KV.search(layer)
             and len(shape) == 2}
    text: dict[str, int] = {}
    for layer, (c, shape) in downs.items():
        if c != "unet" and _TEXT_IN.search(layer) and len(shape) == 2:
            text.setdefault(c, shape[1])
    return LoraFile(path, "kohya" if kohya else "diffusers", len(downs), frozenset(c for c, _ in downs.values()),
                    min(cross) if len(cross) == 1 else (max(cross) if cross else None), tuple(sorted(text.items())))


def check_fits(lora: LoraFile, model: ModelShape) -> None:
    """Raises ModelError naming both families when ``lora`` was made for another kind of model."""
    widths = dict(model.text_widths)
    other = ("text_encoder_2" in lora.components and "text_encoder_2" not in widths
             or lora.cross_width is not None and model.cross_width is not None and lora.cross_width != model.cross_width
             or any(c in widths and widths[c] != w for c, w in lora.text_widths))
    if other:
        theirs = lora.family if lora.family != model.family else "another model"
        raise ModelError(f"{lora.path.name} is a LoRA for {theirs}, but the model {model.name} is {model.family}: "
                         f"choose a LoRA made for {model.family}.")


def source_shape(source) -> ModelShape | None:
    """A model's :class:`ModelShape` from its config files (no torch, no weights), or None when they are not
    at hand (a hub model not downloaded yet, a pickle)."""
    from ..modelconfig import read_config

    folder = None
    try:
        if source.kind == "folder":
            folder = source.path
        elif source.kind == "single_file":
            from ..models import single_file_config

            folder = single_file_config(source.path)[1]
        elif source.kind == "hub":
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(source.location, local_files_only=True))
    except Exception:  # not cached: the job's load says what is wrong
        return None
    if folder is None or not (folder / "unet" / "config.json").is_file():
        return None
    unet = read_config(folder / "unet" / "config.json")
    cross = unet.get("cross_attention_dim")
    text = []
    for component in ("text_encoder", "text_encoder_2"):
        config = folder / component / "config.json"
        if config.is_file():
            hidden = read_config(config).get("hidden_size")
            if isinstance(hidden, int):
                text.append((component, hidden))
    return ModelShape(source.name, cross if isinstance(cross, int) else None, tuple(text))


def loaded_shape(model) -> ModelShape:
    pipe = model.inpaint
    cross = pipe.unet.config.cross_attention_dim
    text = tuple((c, int(getattr(pipe, c).config.hidden_size)) for c in ("text_encoder", "text_encoder_2")
                 if getattr(pipe, c, None) is not None)
    return ModelShape(model.name, cross if isinstance(cross, int) else None, text)


def check(request, source) -> None:
    """The request's LoRAs exist, are allowed, are LoRAs, and fit the model ``source`` (a
    :class:`backend.models.ModelSource`); no torch (except to open allowed pickles). Raises ModelError."""
    if not request.loras:
        return
    shape = source_shape(source)
    for ref in request.loras:
        path = find(ref.name)
        lora = inspect(path, tensor_table(path, allow_pickle=request.allow_pickle))
        if shape is not None:
            check_fits(lora, shape)


# --- applying them (the worker thread) -------------------------------------------------------------

@dataclass
class LoraState:
    """What a model keeps of its LoRAs between jobs."""
    adapters: dict = field(default_factory=dict)  # file key -> peft adapter name
    used: dict = field(default_factory=dict)  # adapter name -> the job count when last used
    active: tuple | None = ()  # ((adapter name, weight), ...) set on the model now; None: not known
    jobs: int = 0


def file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def adapter_name(key: tuple) -> str:
    return "lora_" + hashlib.sha256(repr(key).encode()).hexdigest()[:12]


def apply(ctx, model, loras, *, allow_pickle: bool = False) -> None:
    state = getattr(model, "lora_state", None)
    if not loras and state is None:
        return
    pipe = model.inpaint
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelError(f"The model {model.name} cannot take LoRAs: remove them, or choose an SD 1.x, 2.x or "
                         "SDXL model.")
    if state is None:
        from ..fastpath import unfuse

        unfuse(pipe)  # a LoRA's layers are the separate q, k, v projections that fused attention skips
        state = model.lora_state = LoraState()
        model.lora_loads = 0
    state.jobs += 1
    # Every file is found and checked before anything is loaded: a bad one fails the job as it was.
    wanted = []
    shape = None
    for ref in loras:
        path = find(ref.name)
        key = file_key(path)
        if key not in state.adapters:
            shape = shape or loaded_shape(model)
            lora = inspect(path, tensor_table(path, allow_pickle=allow_pickle))
            check_fits(lora, shape)
            wanted.append((ref, key, lora))
        else:
            wanted.append((ref, key, None))
    active = []
    for ref, key, lora in wanted:
        if ref.weight == 0:
            continue  # changes nothing: not loaded until it does
        if key not in state.adapters:
            state.active = None  # loading makes the new adapter active: set the whole state below, or next job
            ctx.stage(f"Loading LoRA {ref.label}")
            state.adapters[key] = _load(model, lora, allow_pickle=allow_pickle)
            ctx.check_cancel()
        name = state.adapters[key]
        state.used[name] = state.jobs
        active.append((name, float(ref.weight)))
    active = tuple(active)
    if active != state.active:
        if active:
            pipe.enable_lora()
            pipe.set_adapters([n for n, _ in active], [w for _, w in active])
        elif state.active != ():
            pipe.disable_lora()
        state.active = active
    _forget_old(pipe, state)


def _forget_old(pipe, state: LoraState) -> None:
    in_use = {n for n, _ in state.active or ()}
    spare = sorted((used, name) for name, used in state.used.items() if name not in in_use)
    while len(state.adapters) > KEEP and spare:
        _, name = spare.pop(0)
        _drop(pipe, name)
        del state.used[name]
        for key in [k for k, v in state.adapters.items() if v == name]:
            del state.adapters[key]


def _quiet():
    """diffusers, transformers and peft report every adapter they add (a second one is expected here)."""
    import contextlib
    import warnings

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    @contextlib.contextmanager
    def quiet():
        levels = dlog.get_verbosity(), tlog.get_verbosity()
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
                yield
        finally:
            dlog.set_verbosity(levels[0])
            tlog.set_verbosity(levels[1])

    return quiet()


def injected_layers(pipe, name: str) -> int:
    """How many layers of the pipeline's UNet and text encoders carry the adapter ``name``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    count = 0
    for component in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        count += sum(1 for m in module.modules()
                     if isinstance(m, BaseTunerLayer) and name in getattr(m, "lora_A", {}))
    return count


def _load(model, lora: LoraFile, *, allow_pickle: bool) -> str:
    """Reads ``lora``'s file once into a new peft adapter on the model's UNet and text encoders."""
    pipe = model.inpaint
    name = adapter_name(file_key(lora.path))
    source = str(lora.path)
    if lora.path.suffix.lower() in PICKLE_SUFFIXES:
        from ..checkpoints import load_pickle_weights

        source = load_pickle_weights(lora.path)  # weights_only=True; allowed by the caller's check
    model.lora_loads = getattr(model, "lora_loads", 0) + 1
    try:
        with _quiet():
            pipe.load_lora_weights(source, adapter_name=name)
    except Exception as exc:  # diffusers and peft raise many types for a LoRA that does not fit
        _drop(pipe, name)
        from ..errors import out_of_memory

        if out_of_memory(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelError(f"{lora.path.name} could not be loaded as a LoRA for the model {model.name} ({first}): "
                         f"it may be for another model, or damaged.") from exc
    fitted = injected_layers(pipe, name)
    if fitted < lora.layers:
        _drop(pipe, name)
        family = loaded_shape(model).family
        theirs = lora.family if lora.family != family else "another model"
        raise ModelError(f"{lora.path.name} changes {lora.layers - fitted} of its {lora.layers} layers in places the "
                         f"model {model.name} does not have: it was made for {theirs}; choose a LoRA made for "
                         f"{family}.")
    return name


def _drop(pipe, name: str) -> None:
    try:
        with _quiet():
            pipe.delete_adapters(name)
    except Exception:  # nothing of it was added
        pass
