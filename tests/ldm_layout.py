"""Diffusers -> original (CompVis / Stability LDM) state-dict layout.

The exact inverse of the forward converters in ``diffusers.loaders.single_file_utils``
(``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``,
``convert_open_clip_checkpoint``) for the Stable Diffusion 1.x / 2.x / XL families, so that a
tiny random diffusers model can be written as a single-file checkpoint and read back through the
real ``from_single_file`` loaders, tensor for tensor.

Every function takes a diffusers ``state_dict()`` (name -> tensor) and returns a new dict in the LDM
layout with the given key prefix. Tensors are not copied unless a reshape/concat/transpose is needed.
Unknown keys raise ``KeyError`` rather than being dropped, so an incomplete mapping cannot pass silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# Resnet parameter names, diffusers -> LDM (the inverse of update_unet_resnet_ldm_to_diffusers).
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL text_time additional embedding (and class embeddings, same LDM name).
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
}


def _split_param(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def _resnet_param(rest: str) -> str:
    """'norm1.weight' -> 'in_layers.0.weight' (rest is the path inside one resnet)."""
    head, _, tail = rest.partition(".")
    if head not in _UNET_RESNET:
        raise KeyError(f"unknown UNet resnet parameter {rest!r}")
    return f"{_UNET_RESNET[head]}.{tail}"


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping, prefix: str = UNET_PREFIX) -> dict:
    """UNet2DConditionModel state dict -> ``model.diffusion_model.*``.

    ``config`` is the UNet's config (``unet.config``); only ``layers_per_block`` and the number of
    blocks matter. LDM numbers the encoder ``input_blocks`` 0 (conv_in), then for every down block
    ``layers_per_block`` (resnet[, attention]) entries and one downsampler entry (except the last block);
    ``middle_block`` 0/1/2 = resnet/attention/resnet; ``output_blocks`` ``layers_per_block + 1`` entries
    per up block, the upsampler living in the last entry of a block (index 1 without attention, 2 with).
    """
    lpb = config["layers_per_block"]
    if not isinstance(lpb, int):
        raise ValueError("per-block layers_per_block is not a Stable Diffusion layout")
    up_has_attn = {}
    for key in state_dict:
        m = re.match(r"up_blocks\.(\d+)\.attentions\.", key)
        if m:
            up_has_attn[int(m.group(1))] = True

    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        module, param = _split_param(key)
        if module in _UNET_TOP:
            new = f"{_UNET_TOP[module]}.{param}"
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            b, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            new = f"input_blocks.{1 + b * (lpb + 1) + j}.0.{_resnet_param(rest)}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", key):
            b, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            new = f"input_blocks.{1 + b * (lpb + 1) + j}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)$", key):
            b, p = int(m.group(1)), m.group(2)
            new = f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op.{p}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)$", key):
            j, rest = int(m.group(1)), m.group(2)
            new = f"middle_block.{2 * j}.{_resnet_param(rest)}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)$", key):
            new = f"middle_block.1.{m.group(1)}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            b, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            new = f"output_blocks.{b * (lpb + 1) + j}.0.{_resnet_param(rest)}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$", key):
            b, j, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            new = f"output_blocks.{b * (lpb + 1) + j}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)$", key):
            b, p = int(m.group(1)), m.group(2)
            slot = 2 if up_has_attn.get(b) else 1
            new = f"output_blocks.{b * (lpb + 1) + lpb}.{slot}.conv.{p}"
        else:
            raise KeyError(f"unknown UNet key {key!r}")
        if prefix + new in out:
            raise KeyError(f"two UNet keys map to {new!r}")
        out[prefix + new] = value
    return out


_VAE_TOP = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}
_VAE_RESNET = {"norm1", "conv1", "norm2", "conv2", "conv_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_resnet_param(rest: str) -> str:
    head, _, tail = rest.partition(".")
    if head not in _VAE_RESNET:
        raise KeyError(f"unknown VAE resnet parameter {rest!r}")
    return f"{'nin_shortcut' if head == 'conv_shortcut' else head}.{tail}"


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping, prefix: str = VAE_PREFIX) -> dict:
    """AutoencoderKL state dict -> ``first_stage_model.*``.

    LDM's decoder numbers its ``up`` blocks in reverse (``up.{n-1-i}`` is diffusers' ``up_blocks.{i}``),
    mid resnets are ``block_1``/``block_2`` and the mid attention is ``attn_1`` with q/k/v/proj_out stored
    as 1x1 convolutions (4-D weights), which diffusers keeps as linear layers.
    """
    n_up = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        module, param = _split_param(key)
        if module in _VAE_TOP:
            new = f"{_VAE_TOP[module]}.{param}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            new = f"encoder.down.{m.group(1)}.block.{m.group(2)}.{_vae_resnet_param(m.group(3))}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)$", key):
            new = f"encoder.down.{m.group(1)}.downsample.conv.{m.group(2)}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.block.{m.group(2)}.{_vae_resnet_param(m.group(3))}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)$", key):
            new = f"decoder.up.{n_up - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$", key):
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{_vae_resnet_param(m.group(3))}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", key):
            part, p = m.group(2), m.group(3)
            if part not in _VAE_ATTN:
                raise KeyError(f"unknown VAE attention key {key!r}")
            new = f"{m.group(1)}.mid.attn_1.{_VAE_ATTN[part]}.{p}"
            if p == "weight" and part != "group_norm":
                value = value[:, :, None, None]  # linear -> 1x1 conv
        else:
            raise KeyError(f"unknown VAE key {key!r}")
        out[prefix + new] = value
    return out


def _with_text_model(key: str) -> str:
    """transformers >= 5.6 flattens CLIPTextModel (no ``text_model.`` level); LDM always has it."""
    if key.startswith("text_model.") or key == "text_projection.weight":
        return key
    return "text_model." + key


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """HF CLIPTextModel -> ``<prefix>text_model.*`` (SD1 ``cond_stage_model.transformer.``,
    SDXL ``conditioner.embedders.0.transformer.``): the HF layout under a prefix."""
    out = {}
    for key, value in state_dict.items():
        key = _with_text_model(key)
        if not key.startswith("text_model."):
            raise KeyError(f"unexpected key {key!r} for an LDM CLIP (ViT-L) text encoder")
        out[prefix + key] = value
    return out


_OPEN_CLIP_TOP = {
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def open_clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """HF CLIPTextModel(WithProjection) -> OpenCLIP layout ``<prefix>{token_embedding, positional_embedding,
    transformer.resblocks.N.{attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_1, ln_2, mlp.c_fc,
    mlp.c_proj}, ln_final, text_projection}``. q/k/v projections are concatenated (in that order) into
    ``in_proj``; ``text_projection`` is stored transposed, (width, embed_dim), and as a bare tensor.
    """
    sd = {_with_text_model(k): v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in _OPEN_CLIP_TOP:
            out[prefix + _OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key):
            qkv.setdefault((int(m.group(1)), m.group(3)), {})[m.group(2)] = value
        elif m := re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key):
            layer, part, p = m.groups()
            if part not in _OPEN_CLIP_LAYER:
                raise KeyError(f"unknown OpenCLIP layer key {key!r}")
            out[f"{prefix}transformer.resblocks.{layer}.{_OPEN_CLIP_LAYER[part]}.{p}"] = value
        else:
            raise KeyError(f"unknown text encoder key {key!r}")
    for (layer, p), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise KeyError(f"layer {layer}: incomplete q/k/v {p}")
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{p}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0
        )
    return out
