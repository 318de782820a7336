"""Tiny LoRAs and textual-inversion embeddings for the tiny random models (``tiny_models``), written in the
real file formats the loaders read.

LoRAs (random low-rank weights on the UNet's attention, projection and feed-forward layers, and on every
text encoder's attention and MLP layers):

* ``lora_state_dict(pipe_or_components, layout, rank, seed, scale)``: ``layout`` is ``"kohya"`` (A1111 /
  kohya-ss: ``lora_unet_…``, ``lora_te_…`` (SD 1.x/2.x) or ``lora_te1_…``/``lora_te2_…`` (SDXL), with
  ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``; SDXL UNet names in the original (sgm)
  layout, ``input_blocks_4_1_…``, as kohya-ss trains SDXL) or ``"diffusers"`` (peft names:
  ``unet.…lora_A.weight``/``lora_B.weight``, ``text_encoder.…``, ``text_encoder_2.…``);
* ``save_lora(path, state_dict)`` → ``path`` (``.safetensors``);
* ``kohya_names(unet, text_encoders, family)`` → the kohya module names of the LoRA-able layers, for
  full-size layout checks (``lora_module_shapes``).

Embeddings:

* ``embedding_state_dict(width or (width_l, width_g), layout, vectors, seed)``: ``"a1111"`` (``emb_params``),
  ``"diffusers"`` (one key: the token), or ``"sdxl"`` (``clip_l`` and ``clip_g``).
"""
from __future__ import annotations

from pathlib import Path

import torch

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _targets(module: torch.nn.Module, suffixes) -> list[tuple[str, torch.nn.Module]]:
    out = []
    for name, sub in module.named_modules():
        name = name.removesuffix(".base_layer")  # a layer a LoRA is loaded into (peft wraps it)
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)) and any(
                name == s or name.endswith("." + s) for s in suffixes):
            out.append((name, sub))
    return out


def lora_module_shapes(module: torch.nn.Module, suffixes) -> dict[str, tuple]:
    """name -> the layer's weight shape, for every LoRA-able layer of ``module`` (works on the meta device)."""
    return {name: tuple(sub.weight.shape) for name, sub in _targets(module, suffixes)}


def sgm_names(unet_names, unet_config) -> dict[str, str]:
    """diffusers UNet module name -> the original (sgm/LDM) name kohya-ss uses for SDXL."""
    import ldm_layout

    names = list(unet_names)
    mapped = ldm_layout.unet_to_ldm({f"{name}.weight": None for name in names}, dict(unet_config), prefix="")
    return {name: key[: -len(".weight")] for name, key in zip(names, mapped)}


def _pair(shape, rank, gen, scale):
    """(down, up) LoRA matrices for a layer of weight ``shape``: A ~ N(0, 1/in), B ~ N(0, scale²)."""
    out_f, in_f = shape[0], shape[1]
    if len(shape) == 4:  # a convolution: down takes the kernel, up is 1×1
        down = torch.randn(rank, in_f, *shape[2:], generator=gen) / (in_f * shape[2] * shape[3]) ** 0.5
        up = torch.randn(out_f, rank, 1, 1, generator=gen) * scale
    else:
        down = torch.randn(rank, in_f, generator=gen) / in_f ** 0.5
        up = torch.randn(out_f, rank, generator=gen) * scale
    return down, up


def _components(pipe_or_components) -> dict:
    if isinstance(pipe_or_components, dict):
        return pipe_or_components
    return {k: v for k, v in pipe_or_components.components.items() if v is not None}


def lora_state_dict(pipe_or_components, layout: str = "kohya", *, rank: int = 4, seed: int = 0,
                    scale: float = 0.5, alpha: float | None = None, text: bool = True, unet: bool = True) -> dict:
    """A random LoRA for this pipeline's UNet and text encoder(s) (see the module's docstring)."""
    if layout not in ("kohya", "diffusers"):
        raise ValueError(f"unknown layout {layout!r}")
    comps = _components(pipe_or_components)
    sdxl = "text_encoder_2" in comps
    gen = torch.Generator().manual_seed(seed)
    alpha = float(rank) if alpha is None else alpha
    out: dict[str, torch.Tensor] = {}

    def add(kohya_name: str, diffusers_name: str, shape) -> None:
        down, up = _pair(shape, rank, gen, scale)
        if layout == "kohya":
            out[f"{kohya_name}.lora_down.weight"] = down
            out[f"{kohya_name}.lora_up.weight"] = up
            out[f"{kohya_name}.alpha"] = torch.tensor(alpha)
        else:
            out[f"{diffusers_name}.lora_A.weight"] = down
            out[f"{diffusers_name}.lora_B.weight"] = up

    if unet:
        shapes = lora_module_shapes(comps["unet"], UNET_TARGETS)
        names = sgm_names(shapes, comps["unet"].config) if sdxl else {n: n for n in shapes}
        for name, shape in shapes.items():
            add("lora_unet_" + names[name].replace(".", "_"), f"unet.{name}", shape)
    if text:
        encoders = [("text_encoder", "lora_te1_" if sdxl else "lora_te_")]
        if sdxl:
            encoders.append(("text_encoder_2", "lora_te2_"))
        for component, prefix in encoders:
            for name, shape in lora_module_shapes(comps[component], TEXT_TARGETS).items():
                add(prefix + kohya_text_name(name), f"{component}.{name}", shape)
    return out


def save_lora(path, state_dict: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata)
    return path


def kohya_names(unet_names, unet_config, family: str) -> dict[str, str]:
    """diffusers UNet module name -> the kohya LoRA name (``lora_unet_…``) kohya-ss gives it for ``family``
    (SD 1.x/2.x: the diffusers names; SDXL: the original sgm names)."""
    names = sgm_names(unet_names, unet_config) if family == "sdxl" else {n: n for n in unet_names}
    return {n: "lora_unet_" + names[n].replace(".", "_") for n in unet_names}


def kohya_text_name(name: str) -> str:
    """A text-encoder layer's kohya name (after ``lora_te_``/``lora_te1_``/``lora_te2_``): kohya-ss names
    transformers' CLIP layers from ``text_model.`` (which transformers 5 no longer nests)."""
    name = name if name.startswith("text_model.") else "text_model." + name
    return name.replace(".", "_")


def embedding_state_dict(width, layout: str = "a1111", *, vectors: int = 2, seed: int = 0,
                         token: str = "tiny-style", scale: float = 1.0) -> dict:
    """A random textual-inversion embedding of ``vectors`` vectors: ``width`` is the text encoder's
    hidden size, or ``(width_l, width_g)`` for the ``"sdxl"`` layout."""
    gen = torch.Generator().manual_seed(seed)
    if layout == "sdxl":
        width_l, width_g = width
        return {"clip_l": torch.randn(vectors, width_l, generator=gen) * scale,
                "clip_g": torch.randn(vectors, width_g, generator=gen) * scale}
    tensor = torch.randn(vectors, width, generator=gen) * scale
    if layout == "a1111":
        return {"emb_params": tensor}
    if layout == "diffusers":
        return {token: tensor}
    raise ValueError(f"unknown layout {layout!r}")


def load_keys(path) -> list[str]:
    """The tensor names of a ``.safetensors`` file."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())
