"""Tiny random upscaler models for tests, saved in the formats the real loaders read.

* ``save_esrgan(path, scale, suffix)``: a spandrel ESRGAN (8 filters, 1 RRDB block) as
  ``.safetensors`` or as a ``.pth`` state dict (tensors only, loadable with ``weights_only=True``).
* ``save_sd_x4_upscaler(path)``: a diffusers ``StableDiffusionUpscalePipeline`` folder (VAE ×4,
  7-channel UNet with class-embedded noise level, the real CLIP tokenizer).
* ``save_ldm_sr(path)``: a diffusers ``LDMSuperResolutionPipeline`` folder (VQ-VAE ×4, 6-channel UNet).
* ``save_vae(path)``: a lone AutoencoderKL state dict (``encoder.*``/``decoder.*``) as ``.safetensors``.
"""
from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "resources" / "model-configs" / "sd15" / "tokenizer"


def save_esrgan(path: Path, scale: int = 4, suffix: str = ".safetensors", seed: int = 0) -> Path:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    model = ESRGAN(num_filters=8, num_blocks=1, scale=scale)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = Path(path).with_suffix(suffix)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, str(path))
    return path


def save_sd_x4_upscaler(path: Path, seed: int = 0) -> Path:
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 16, 32), layers_per_block=1, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, False),
        num_class_embeds=100, norm_num_groups=8,
    )
    vae = AutoencoderKL(block_out_channels=[8, 8, 16], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        norm_num_groups=8, layers_per_block=1, scaling_factor=0.08333)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, vocab_size=49408, projection_dim=32))
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(TOKENIZER), unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def save_ldm_sr(path: Path, seed: int = 0) -> Path:
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=6,
                       out_channels=3, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    vq = VQModel(block_out_channels=[8, 8, 16], in_channels=3, out_channels=3, latent_channels=3,
                 down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                 norm_num_groups=8, layers_per_block=1, num_vq_embeddings=32)
    pipe = LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler())
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def save_vae(path: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[8, 16], norm_num_groups=8, layers_per_block=1,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(path))
    return Path(path)
