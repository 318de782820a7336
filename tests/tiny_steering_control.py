"""Tiny random ControlNets and depth estimators for tests, written in the real files' formats.

* ``build_controlnet(family, seed)``: ``ControlNetModel.from_unet`` of the tiny 4-channel UNet of
  ``family`` (``tiny_models``), every parameter perturbed (a fresh ControlNet's output convolutions
  are zero: it would change nothing) and the control image's input convolutions given He's
  initialisation (the last is zero when fresh), so the control image, not only the ControlNet, steers.
* ``save_controlnet_folder(path, family, seed)``: a diffusers folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``).
* ``save_controlnet_single_file(path, family, seed, layout, prefix)``: one ``.safetensors`` in the
  original ControlNet layout (``layout="ldm"``: ``input_hint_block``, ``zero_convs``,
  ``middle_block_out`` and the UNet encoder's LDM names, optionally under ``control_model.``) or in
  diffusers' (``"diffusers"``: how SDXL ControlNets ship), with its config folder beside it as
  ``NAME.config/`` (a tiny model has no shipped config).
* ``controlnet_to_ldm(state_dict, config, prefix)``: the diffusers -> original key mapping (the
  inverse of diffusers' ``convert_controlnet_checkpoint``), for any tensors (meta ones included).
* ``full_size_shapes(config_folder, layout, prefix)``: name -> shape of a full-size ControlNet's file
  in that layout, from a config folder, built on the meta device (nothing allocated).
* ``save_depth_estimator(folder, seed, kind)``: a tiny random DPT (``"dpt"``) or Depth Anything
  (``"depth_anything"``) depth-estimation model and its image processor, saved with transformers.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import ldm_layout
import tiny_models


def build_controlnet(family: str = "sd15", seed: int = 0):
    from diffusers import ControlNetModel, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 100)
        unet = UNet2DConditionModel(**tiny_models._unet_kwargs(family, 4))
        net = ControlNetModel.from_unet(unet)
        # The control image's way in ends in a zero convolution too, and its default initialisation shrinks
        # the signal at every layer; a trained one carries the image: variance-keeping (He) weights.
        for conv in net.controlnet_cond_embedding.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    return tiny_models._randomize(net, seed * 10 + 7)


def save_controlnet_folder(path, family: str = "sd15", seed: int = 0) -> Path:
    path = Path(path)
    build_controlnet(family, seed).save_pretrained(path, safe_serialization=True)
    return path


def controlnet_to_ldm(state_dict, config, prefix: str = "") -> dict:
    """ControlNetModel state dict -> the original layout (``input_blocks``…, ``zero_convs``,
    ``middle_block_out``, ``input_hint_block``); unknown keys raise KeyError."""
    unet_part = {k: v for k, v in state_dict.items() if not k.startswith("controlnet_")}
    out = ldm_layout.unet_to_ldm(unet_part, config, prefix=prefix)
    blocks = {int(m[1]) for k in state_dict if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))}
    for key, value in state_dict.items():
        if not key.startswith("controlnet_"):
            continue
        if m := re.match(r"controlnet_down_blocks\.(\d+)\.(weight|bias)$", key):
            new = f"zero_convs.{m[1]}.0.{m[2]}"
        elif m := re.match(r"controlnet_mid_block\.(weight|bias)$", key):
            new = f"middle_block_out.0.{m[1]}"
        elif m := re.match(r"controlnet_cond_embedding\.conv_in\.(weight|bias)$", key):
            new = f"input_hint_block.0.{m[1]}"
        elif m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)$", key):
            new = f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
        elif m := re.match(r"controlnet_cond_embedding\.conv_out\.(weight|bias)$", key):
            new = f"input_hint_block.{2 * (len(blocks) + 1)}.{m[1]}"
        else:
            raise KeyError(f"unknown ControlNet key {key!r}")
        out[prefix + new] = value
    return out


def _write_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=list) + "\n")
    return folder


def save_controlnet_single_file(path, family: str = "sd15", seed: int = 0, layout: str = "ldm",
                                prefix: str = "", sidecar: bool = True) -> Path:
    """One ``.safetensors`` ControlNet (and ``NAME.config/`` beside it when ``sidecar``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = build_controlnet(family, seed)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    if layout == "ldm":
        state = controlnet_to_ldm(state, net.config, prefix)
    elif prefix:
        raise ValueError("the diffusers layout has no prefix")
    save_file(state, str(path), metadata={"format": "pt"})
    if sidecar:
        config = {k: v for k, v in dict(net.config).items() if not k.startswith("_") or k == "_class_name"}
        config["_class_name"] = "ControlNetModel"
        _write_config(path.with_name(path.stem + ".config"), config)
    return path


def full_size_shapes(config_folder, layout: str = "ldm", prefix: str = "") -> dict:
    """name -> shape of the file of a full-size ControlNet with this config, in ``layout``."""
    from diffusers import ControlNetModel

    config = json.loads((Path(config_folder) / "config.json").read_text())
    with torch.device("meta"):
        net = ControlNetModel.from_config(config)
    state = net.state_dict()
    if layout == "ldm":
        state = controlnet_to_ldm(state, config, prefix)
    return {k: list(v.shape) for k, v in state.items()}


def write_header_only(path, shapes: dict) -> Path:
    """A ``.safetensors`` file of the given tensor names and shapes whose data are all zero bytes,
    written without allocating them (float16, the size of the real thing): for layout checks."""
    path = Path(path)
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        f.truncate(8 + len(blob) + offset)  # a sparse file: no data written
    return path


def save_depth_estimator(folder, seed: int = 0, kind: str = "dpt") -> Path:
    """A tiny random depth-estimation model (transformers' own classes and files)."""
    from transformers import AutoModelForDepthEstimation, DPTImageProcessor

    folder = Path(folder)
    if kind == "dpt":
        from transformers import DPTConfig

        config = DPTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=37, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                           fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], head_in_index=-1,
                           is_hybrid=False)
    else:
        from transformers import DepthAnythingConfig, Dinov2Config

        backbone = Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                                num_attention_heads=4, intermediate_size=37,
                                out_features=["stage1", "stage2", "stage3", "stage4"],
                                reshape_hidden_states=False)
        config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[16, 16, 32, 32],
                                     fusion_hidden_size=16, head_hidden_size=16, reassemble_hidden_size=32,
                                     patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 200)
        net = AutoModelForDepthEstimation.from_config(config)
    tiny_models._randomize(net, seed * 10 + 8)
    with torch.no_grad():  # depth heads end in a ReLU: lift the last convolution so a random one is not all 0
        last = [m for m in net.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.bias += 1.0
    net.save_pretrained(folder, safe_serialization=True)
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=8)
    processor.save_pretrained(folder)
    return folder
