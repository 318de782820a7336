"""Tiny random Stable-Diffusion-family models for tests, written through the real loaders' formats.

Families: ``"sd15"`` (SD 1.x: CLIP ViT-L layout text encoder), ``"sd21"`` (SD 2.x: OpenCLIP layout,
linear projections, per-block heads) and ``"sdxl"`` (two text encoders, text-time embeddings).
``in_channels=9`` gives the inpainting UNet of the family.

Public API (all deterministic in ``seed``, CPU, float32 unless said otherwise):

* ``build_components(family, in_channels, seed) -> dict`` of diffusers/transformers objects
  (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler`` and, for SDXL, ``text_encoder_2``,
  ``tokenizer_2``), the keyword arguments of the family's pipeline class.
* ``build_pipeline(family, in_channels, seed)`` -> the pipeline instance (no safety checker).
* ``save_diffusers_folder(path, family, in_channels, seed) -> Path``: a complete diffusers folder.
* ``save_single_file(path, family, in_channels, seed, dtype) -> (checkpoint, config_folder)``: one
  ``.safetensors`` in the original LDM key layout plus the weightless diffusers config folder that
  ``from_single_file(checkpoint, config=config_folder, local_files_only=True)`` needs.
* ``ldm_state_dict(components, family) -> dict``: the LDM-layout state dict itself.
* ``write_malicious_pickle(path, marker_path) -> Path``: a ``.ckpt`` that creates ``marker_path`` when
  unpickled without restrictions (``torch.load(weights_only=False)``).
* ``pipeline_class_name(family, in_channels)``, ``reference_config_dir(family, in_channels)``.

Sizes: UNet block_out_channels (32, 64), layers_per_block 2, sample_size 32 (256 px default);
VAE 4 blocks (8x downsampling), block_out_channels (16, 32, 32, 32); text encoders hidden 32
(SDXL's second, OpenCLIP-bigG-shaped one: hidden 64, 10 layers, projection 32 — it must differ in
width from the first one, because diffusers picks the checkpoint's text encoder by comparing
position-embedding widths, and 10 layers let diffusers' own ``infer_diffusers_model_type`` recognise
SDXL); SD2's encoder has 23 layers and its checkpoint 24 resblocks, like the real one (diffusers
drops ``resblocks.23``: SD2 uses the penultimate layer). Real CLIP BPE tokenizers from
``resources/model-configs``. All parameters (norms included) are random, so that every tensor is
distinct and a misplaced key cannot round-trip unnoticed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

import ldm_layout

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = REPO_ROOT / "resources" / "model-configs"

FAMILIES = ("sd15", "sd21", "sdxl")

_PIPELINES = {
    ("sd15", 4): "StableDiffusionPipeline",
    ("sd15", 9): "StableDiffusionInpaintPipeline",
    ("sd21", 4): "StableDiffusionPipeline",
    ("sd21", 9): "StableDiffusionInpaintPipeline",
    ("sdxl", 4): "StableDiffusionXLPipeline",
    ("sdxl", 9): "StableDiffusionXLInpaintPipeline",
}

# The shipped (full-size, weightless) config folder each tiny model mirrors.
_REFERENCE = {
    ("sd15", 4): "sd15",
    ("sd15", 9): "sd15-inpainting",
    ("sd21", 4): "sd21-base",
    ("sd21", 9): "sd21-base",
    ("sdxl", 4): "sdxl-base",
    ("sdxl", 9): "sdxl-base",
}

SDXL_TIME_EMBED_DIM = 8
SDXL_TEXT2_HIDDEN = 64
SDXL_TEXT2_LAYERS = 10
SDXL_PROJECTION_DIM = 32
SD2_TEXT_LAYERS = 23


def _check(family: str, in_channels: int) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    if in_channels not in (4, 9):
        raise ValueError(f"in_channels must be 4 or 9, not {in_channels!r}")


def pipeline_class_name(family: str = "sd15", in_channels: int = 4) -> str:
    _check(family, in_channels)
    return _PIPELINES[family, in_channels]


def pipeline_class(family: str = "sd15", in_channels: int = 4):
    import diffusers

    return getattr(diffusers, pipeline_class_name(family, in_channels))


def reference_config_dir(family: str = "sd15", in_channels: int = 4) -> Path:
    """The shipped full-size config folder (resources/model-configs/...) of this family."""
    _check(family, in_channels)
    return MODEL_CONFIGS / _REFERENCE[family, in_channels]


def _tokenizer(subdir: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(subdir, local_files_only=True)


def _randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter (norm weights/biases are all-ones/zeros by default) so that no two
    tensors are equal; keeps the scale of the default initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.02)
    return module.eval()


def _unet_kwargs(family: str, in_channels: int) -> dict:
    common = dict(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        norm_num_groups=32,
    )
    if family == "sd15":
        return dict(
            common,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,  # SD1 convention: this is the number of heads
        )
    if family == "sd21":
        return dict(
            common,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
        )
    return dict(  # sdxl
        common,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        # 6 micro-conditioning ids (orig size, crop, target size) + pooled projected text embedding
        projection_class_embeddings_input_dim=6 * SDXL_TIME_EMBED_DIM + SDXL_PROJECTION_DIM,
        cross_attention_dim=32 + SDXL_TEXT2_HIDDEN,
    )


def _text_config(**overrides):
    from transformers import CLIPTextConfig

    kwargs = dict(
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=32,
    )
    kwargs.update(overrides)
    return CLIPTextConfig(**kwargs)


def _scheduler(family: str, in_channels: int):
    import diffusers

    folder = reference_config_dir(family, in_channels) / "scheduler"
    config = json.loads((folder / "scheduler_config.json").read_text())
    cls = getattr(diffusers, config["_class_name"])
    return cls.from_pretrained(folder.parent, subfolder="scheduler", local_files_only=True)


def build_components(family: str = "sd15", in_channels: int = 4, seed: int = 0) -> dict:
    """Tiny random components for ``family``; pass them to the pipeline class as keyword arguments
    (plus ``safety_checker=None, feature_extractor=None, requires_safety_checker=False`` for SD1/2).
    Every call builds fresh objects (about 0.3 s)."""
    _check(family, in_channels)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    ref = reference_config_dir(family, in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _randomize(UNet2DConditionModel(**_unet_kwargs(family, in_channels)), seed * 10 + 1)

        torch.manual_seed(seed + 1)
        vae_kwargs = dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(16, 32, 32, 32),
            layers_per_block=1,
            norm_num_groups=8,
            latent_channels=4,
            sample_size=256,
        )
        if family == "sdxl":
            vae_kwargs.update(scaling_factor=0.13025, force_upcast=True)
        vae = _randomize(AutoencoderKL(**vae_kwargs), seed * 10 + 2)

        torch.manual_seed(seed + 2)
        if family == "sd21":
            te_config = _text_config(hidden_act="gelu", num_hidden_layers=SD2_TEXT_LAYERS)
        else:
            te_config = _text_config()
        text_encoder = _randomize(CLIPTextModel(te_config), seed * 10 + 3)

        components = {
            "unet": unet,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": _tokenizer(ref / "tokenizer"),
            "scheduler": _scheduler(family, in_channels),
        }
        if family == "sdxl":
            torch.manual_seed(seed + 3)
            te2_config = _text_config(
                hidden_act="gelu",
                hidden_size=SDXL_TEXT2_HIDDEN,
                num_hidden_layers=SDXL_TEXT2_LAYERS,
                projection_dim=SDXL_PROJECTION_DIM,
            )
            components["text_encoder_2"] = _randomize(CLIPTextModelWithProjection(te2_config), seed * 10 + 4)
            components["tokenizer_2"] = _tokenizer(ref / "tokenizer_2")
    return components


def build_pipeline(family: str = "sd15", in_channels: int = 4, seed: int = 0):
    components = build_components(family, in_channels, seed)
    cls = pipeline_class(family, in_channels)
    if family == "sdxl":
        return cls(**components)
    return cls(**components, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_diffusers_folder(path, family: str = "sd15", in_channels: int = 4, seed: int = 0) -> Path:
    """Write a complete diffusers pipeline folder (safetensors weights, no safety checker)."""
    path = Path(path)
    pipe = build_pipeline(family, in_channels, seed)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


# --- single-file (original LDM layout) ---------------------------------------------------------


def _ddpm_buffers(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012) -> dict:
    """The noise-schedule buffers an LDM ``LatentDiffusion`` checkpoint carries at top level."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    buffers = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
    }
    return {k: v.float() for k, v in buffers.items()}


def _position_ids(n=77) -> torch.Tensor:
    return torch.arange(n, dtype=torch.int64)[None]


def ldm_state_dict(components: dict, family: str = "sd15", seed: int = 0) -> dict:
    """The whole pipeline as one state dict in the original CompVis/Stability layout.

    Besides the converted weights it carries what real checkpoints carry and diffusers ignores:
    the DDPM schedule buffers (SD1/SD2), CLIP ``position_ids``, OpenCLIP ``logit_scale``, and for
    SD2 the unused last resblock (24th) and ``text_projection``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    unet, vae = components["unet"], components["vae"]
    sd = {}
    sd.update(ldm_layout.unet_to_ldm(unet.state_dict(), unet.config))
    sd.update(ldm_layout.vae_to_ldm(vae.state_dict(), vae.config))
    te = components["text_encoder"]
    gen = torch.Generator().manual_seed(seed * 10 + 9)
    if family == "sd15":
        sd.update(ldm_layout.clip_to_ldm(te.state_dict(), ldm_layout.SD1_CLIP_PREFIX))
        sd[ldm_layout.SD1_CLIP_PREFIX + "text_model.embeddings.position_ids"] = _position_ids()
        sd.update(_ddpm_buffers())
    elif family == "sd21":
        prefix = ldm_layout.SD2_OPEN_CLIP_PREFIX
        sd.update(ldm_layout.open_clip_to_ldm(te.state_dict(), prefix))
        n = te.config.num_hidden_layers
        width = te.config.hidden_size
        # The final OpenCLIP resblock, unused by SD2 (penultimate features) and skipped by diffusers.
        for key in [k for k in sd if k.startswith(f"{prefix}transformer.resblocks.0.")]:
            extra = key.replace("resblocks.0.", f"resblocks.{n}.")
            sd[extra] = torch.randn(sd[key].shape, generator=gen) * 0.02
        sd[prefix + "text_projection"] = torch.randn(width, width, generator=gen) * 0.02
        sd[prefix + "logit_scale"] = torch.tensor(math.log(1 / 0.07))
        sd.update(_ddpm_buffers())
    else:
        sd.update(ldm_layout.clip_to_ldm(te.state_dict(), ldm_layout.SDXL_CLIP_PREFIX))
        sd[ldm_layout.SDXL_CLIP_PREFIX + "text_model.embeddings.position_ids"] = _position_ids()
        te2 = components["text_encoder_2"]
        sd.update(ldm_layout.open_clip_to_ldm(te2.state_dict(), ldm_layout.SDXL_OPEN_CLIP_PREFIX))
        sd[ldm_layout.SDXL_OPEN_CLIP_PREFIX + "logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return sd


def _write_config_folder(folder: Path, components: dict, family: str, in_channels: int) -> Path:
    """Weightless diffusers config folder mirroring resources/model-configs/<ref>: model_index.json
    (the reference one, with its safety_checker/feature_extractor entries), component configs,
    the reference scheduler config and the reference tokenizer files byte for byte."""
    ref = reference_config_dir(family, in_channels)
    folder.mkdir(parents=True, exist_ok=True)
    index = json.loads((ref / "model_index.json").read_text())
    index["_class_name"] = pipeline_class_name(family, in_channels)
    if family == "sdxl" and in_channels == 9:
        index["requires_aesthetics_score"] = False
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    components["unet"].save_config(folder / "unet")
    components["vae"].save_config(folder / "vae")
    components["text_encoder"].config.save_pretrained(folder / "text_encoder")
    names = ["scheduler", "tokenizer"]
    if family == "sdxl":
        components["text_encoder_2"].config.save_pretrained(folder / "text_encoder_2")
        names.append("tokenizer_2")
    for name in names:
        shutil.copytree(ref / name, folder / name, dirs_exist_ok=True)
    return folder


def _default_stem(family: str, in_channels: int) -> str:
    return f"tiny-{family}" + ("-inpainting" if in_channels == 9 else "")


def save_single_file(
    path, family: str = "sd15", in_channels: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Path, Path]:
    """Write one ``.safetensors`` checkpoint in the LDM layout and its diffusers config folder.

    ``path`` is either the checkpoint file (ending ``.safetensors``; the config folder goes next to
    it as ``<stem>-config``) or a directory (created; files named ``tiny-<family>[-inpainting]``).
    Floating-point tensors are stored as ``dtype``. Returns ``(checkpoint, config_folder)``.
    """
    from safetensors.torch import save_file

    _check(family, in_channels)
    path = Path(path)
    if path.suffix == ".safetensors":
        ckpt = path
    else:
        ckpt = path / f"{_default_stem(family, in_channels)}.safetensors"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    components = build_components(family, in_channels, seed)
    sd = ldm_state_dict(components, family, seed)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    save_file(sd, str(ckpt), metadata={"format": "pt"})
    config_folder = _write_config_folder(ckpt.with_name(ckpt.stem + "-config"), components, family, in_channels)
    return ckpt, config_folder


# --- malicious pickle ----------------------------------------------------------------------------


class _CreateFile:
    """Unpickles to ``open(path, "w")``: creating an (empty) file proves code ran at load time."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_malicious_pickle(path, marker_path) -> Path:
    """A ``.ckpt`` (torch zip format, like real LDM checkpoints) whose pickle calls
    ``open(marker_path, "w")`` when loaded with ``torch.load(weights_only=False)``. It also holds a
    plausible ``state_dict`` so that it looks like a checkpoint. ``torch.load(weights_only=True)``
    refuses it (``UnpicklingError``) before running anything."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "payload": _CreateFile(marker_path),
        "state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)},
    }
    torch.save(payload, path)
    return path
