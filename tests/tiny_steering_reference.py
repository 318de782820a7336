"""Tiny random IP-Adapters and CLIP vision image encoders for the reference-image tests, written in the
real file layouts and read back only through the real loaders (diffusers' ``load_ip_adapter``,
transformers' ``from_pretrained``).

* ``adapter_state_dict(unet, kind, clip_dim, seed) -> dict``: the flat ``image_proj.*`` / ``ip_adapter.*``
  state dict of an IP-Adapter for ``unet`` (a ``UNet2DConditionModel``), as tencent-ailab's files hold it:
  ``ip_adapter.{1,3,5,…}.to_{k,v}_ip.weight`` numbered over the UNet's attention processors in
  diffusers' order (the cross-attention ones, odd), and the image projection of the ``kind``:
  ``"base"`` (``proj``, ``norm``: 4 tokens from the CLIP image embedding) or ``"plus"`` (the Resampler:
  ``latents``, ``proj_in``, ``proj_out``, ``norm_out``, 4 ``layers``, from the encoder's hidden states).
  Diffusers' own tests build the base one the same way (``create_ip_adapter_state_dict``).
* ``save_adapter(path, unet, kind, clip_dim, seed) -> Path``: that state dict as a ``.safetensors`` file,
  or, for a path ending ``.bin``, as the nested ``{"image_proj": …, "ip_adapter": …}`` pickle of the
  original releases.
* ``save_image_encoder(folder, seed, projection_dim) -> Path``: a ``CLIPVisionModelWithProjection``
  (hidden 32, 2 layers, 32 px images, patch 8) and its ``CLIPImageProcessor`` saved as a folder
  (``config.json``, ``model.safetensors``, ``preprocessor_config.json``), as the ``image_encoder/``
  folders of the IP-Adapter releases are.
* ``unet_of(model_folder)``: the UNet of a tiny diffusers folder (what an adapter is built for).

All parameters are random (norms included), deterministic in ``seed``.
"""
from __future__ import annotations

from pathlib import Path

import torch

ENCODER_HIDDEN = 32


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module.eval()


def unet_of(model_folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(Path(model_folder), subfolder="unet", local_files_only=True)


def _cross_attention_layers(unet):
    """(key id, hidden size) of every cross-attention processor, numbered as the IP-Adapter files do."""
    from backend.steering.reference import cross_attention_layers

    return list(cross_attention_layers(unet).items())


def _plus_projection(clip_dim: int, cross: int, seed: int) -> dict:
    """The Resampler's weights in the original layout (diffusers renames them on load)."""
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    torch.manual_seed(seed)
    proj = _randomize(IPAdapterPlusImageProjection(embed_dims=clip_dim, output_dims=cross, hidden_dims=32, depth=4,
                                                   dim_head=64, heads=1, num_queries=4), seed)
    sd = proj.state_dict()
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] != "layers":
            out[key] = value
            continue
        i, rest = parts[1], ".".join(parts[2:])
        original = {"ln0.weight": "0.norm1.weight", "ln0.bias": "0.norm1.bias", "ln1.weight": "0.norm2.weight",
                    "ln1.bias": "0.norm2.bias", "attn.to_q.weight": "0.to_q.weight",
                    "attn.to_out.0.weight": "0.to_out.weight", "ff.0.weight": "1.0.weight", "ff.0.bias": "1.0.bias",
                    "ff.1.net.0.proj.weight": "1.1.weight", "ff.1.net.2.weight": "1.3.weight"}
        if rest == "attn.to_k.weight":
            out[f"layers.{i}.0.to_kv.weight"] = torch.cat([value, sd[key.replace("to_k", "to_v")]], dim=0)
        elif rest == "attn.to_v.weight":
            continue
        else:
            out[f"layers.{i}.{original[rest]}"] = value
    return out


def adapter_state_dict(unet, kind: str = "base", clip_dim: int = ENCODER_HIDDEN, seed: int = 0) -> dict:
    cross = int(unet.config.cross_attention_dim)
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key_id, hidden in _cross_attention_layers(unet):
        for name in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key_id}.{name}.weight"] = torch.randn(hidden, cross, generator=gen) / cross ** 0.5
    if kind == "base":
        sd["image_proj.proj.weight"] = torch.randn(4 * cross, clip_dim, generator=gen) / clip_dim ** 0.5
        sd["image_proj.proj.bias"] = torch.randn(4 * cross, generator=gen) * 0.1
        sd["image_proj.norm.weight"] = 1 + torch.randn(cross, generator=gen) * 0.1
        sd["image_proj.norm.bias"] = torch.randn(cross, generator=gen) * 0.1
    elif kind == "plus":
        sd.update({f"image_proj.{k}": v for k, v in _plus_projection(clip_dim, cross, seed + 1).items()})
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return {k: v.contiguous() for k, v in sd.items()}


def save_adapter(path, unet, kind: str = "base", clip_dim: int = ENCODER_HIDDEN, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = adapter_state_dict(unet, kind, clip_dim, seed)
    if path.suffix == ".bin":
        nested = {"image_proj": {}, "ip_adapter": {}}
        for key, value in sd.items():
            group, _, rest = key.partition(".")
            nested[group][rest] = value
        torch.save(nested, path)
    else:
        from safetensors.torch import save_file

        save_file(sd, str(path))
    return path


def save_image_encoder(folder, seed: int = 0, projection_dim: int = ENCODER_HIDDEN) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    config = CLIPVisionConfig(hidden_size=ENCODER_HIDDEN, intermediate_size=37, projection_dim=projection_dim,
                              num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = _randomize(CLIPVisionModelWithProjection(config), seed)
    encoder.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size=32, crop_size=32).save_pretrained(folder)
    return folder
