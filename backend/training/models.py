"""Architectures of the embedded model: diffusers configs, presets and builders.

Everything here is a plain diffusers class so the shipped folder loads with the real loaders.
Presets: ``mini`` is the shipped model, ``tiny`` is for tests (seconds on two cores).
"""
from __future__ import annotations

# Latent-space geometry shared by every preset: 8x downsampling, 4 latent channels.
LATENT_CHANNELS = 4
DOWNSAMPLE = 8
NULL_TEXT_DIM = 8  # hidden size of the stub text encoder (see package.py)

VAE_PRESETS: dict[str, dict] = {
    "mini": dict(block_out_channels=(64, 96, 128, 128), layers_per_block=2, norm_num_groups=32),
    "tiny": dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8),
}

UNET_PRESETS: dict[str, dict] = {
    "mini": dict(
        block_out_channels=(64, 128, 128),
        layers_per_block=1,
        attention_head_dim=8,
        cross_attention_dim=64,
        norm_num_groups=32,
    ),
    "tiny": dict(
        block_out_channels=(16, 32),
        layers_per_block=1,
        attention_head_dim=2,
        cross_attention_dim=8,
        norm_num_groups=8,
    ),
}


def vae_config(preset: str = "mini", sample_size: int = 256) -> dict:
    p = VAE_PRESETS[preset]
    n = len(p["block_out_channels"])
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=list(p["block_out_channels"]),
        layers_per_block=p["layers_per_block"],
        act_fn="silu",
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=p["norm_num_groups"],
        sample_size=sample_size,
        scaling_factor=1.0,  # set from the latent std after training
    )


def unet_config(preset: str = "mini", sample_size: int = 32, encoder_hid_dim: int | None = None) -> dict:
    """The denoiser: 9 input channels (noisy latent 4 + mask 1 + masked-image latent 4).

    Training feeds the learned null context straight in (``encoder_hid_dim=None``); the shipped
    model gets a ``text_proj`` from the stub text encoder whose output it ignores (package.py).
    """
    p = UNET_PRESETS[preset]
    n = len(p["block_out_channels"])
    down = ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (n - 1)
    up = ["CrossAttnUpBlock2D"] * (n - 1) + ["UpBlock2D"]
    cfg = dict(
        sample_size=sample_size,
        in_channels=2 * LATENT_CHANNELS + 1,
        out_channels=LATENT_CHANNELS,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=list(p["block_out_channels"]),
        layers_per_block=p["layers_per_block"],
        attention_head_dim=p["attention_head_dim"],
        cross_attention_dim=p["cross_attention_dim"],
        norm_num_groups=p["norm_num_groups"],
        flip_sin_to_cos=True,
        freq_shift=0,
        act_fn="silu",
    )
    if encoder_hid_dim is not None:
        cfg.update(encoder_hid_dim=encoder_hid_dim, encoder_hid_dim_type="text_proj")
    return cfg


# Same noise schedule as Stable Diffusion (scaled_linear, 1000 steps, epsilon).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)


def build_vae(preset: str = "mini", sample_size: int = 256):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config(preset, sample_size))


def build_unet(preset: str = "mini", sample_size: int = 32, encoder_hid_dim: int | None = None):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(preset, sample_size, encoder_hid_dim))


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
