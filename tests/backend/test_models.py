"""Model references, family detection and loading through the real diffusers loaders."""
import shutil

import numpy as np
import pytest

from backend import paths
from backend.checkpoints import family_from_keys, inspect_checkpoint
from backend.errors import ModelError
from backend.models import ModelManager, preflight, resolve


@pytest.mark.parametrize(
    "fixture,family,channels,config",
    [
        ("tiny_sd15_single_file", "sd15", 4, "sd15"),
        ("tiny_sd15_inpaint_single_file", "sd15", 9, "sd15-inpainting"),
        ("tiny_sd21_single_file", "sd21", 4, "sd21-base"),
        ("tiny_sdxl_single_file", "sdxl", 4, "sdxl-base"),
        ("tiny_sdxl_inpaint_single_file", "sdxl", 9, "sdxl-base"),
    ],
)
def test_family_is_read_from_the_checkpoint_keys(request, fixture, family, channels, config):
    ckpt, _ = request.getfixturevalue(fixture)
    info = inspect_checkpoint(ckpt)
    assert (info.family, info.in_channels) == (family, channels)
    assert info.config_folder == paths.MODEL_CONFIGS / config
    assert (info.config_folder / "model_index.json").is_file()
    assert (info.config_folder / "tokenizer" / "vocab.json").is_file()


def test_files_that_are_not_sd_checkpoints_are_named():
    with pytest.raises(ModelError, match="looks like a VAE"):
        family_from_keys(["encoder.conv_in.weight", "decoder.conv_out.weight"], None)
    with pytest.raises(ModelError, match="8 input channels"):
        family_from_keys(["cond_stage_model.transformer.x"], (320, 8, 3, 3))
    with pytest.raises(ModelError, match="no text encoder"):
        family_from_keys(["model.diffusion_model.input_blocks.0.0.weight"], (320, 4, 3, 3))


def test_references_resolve(tmp_path, monkeypatch, tiny_sd15_folder):
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(tmp_path))
    shutil.copytree(tiny_sd15_folder, tmp_path / "mine")
    (tmp_path / "other.safetensors").write_bytes(b"x")
    assert resolve("mine").kind == "folder" and resolve("mine").name == "mine"
    assert resolve("other").kind == "single_file"
    assert resolve(str(tiny_sd15_folder)).kind == "folder"
    assert resolve("owner/model-name").kind == "hub"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no model_index.json"):
        resolve(str(tmp_path / "empty"))
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a model file"):
        resolve(str(tmp_path / "weights.onnx"))


def test_hub_ids_offline_say_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        preflight("someone/not-downloaded")
    assert "huggingface-cli download someone/not-downloaded" in str(err.value)
    with pytest.raises(ModelError, match="huggingface-cli download"):
        ModelManager(device="cpu").get("someone/not-downloaded")


def test_pickles_load_only_when_allowed_and_only_weights(tmp_path, monkeypatch, tiny_sd15_single_file):
    """An honest .ckpt (tensors only) loads with the opt-in, converted once to safetensors."""
    import torch
    from safetensors.torch import load_file

    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path / "cache"))
    ckpt, config = tiny_sd15_single_file
    honest = tmp_path / "honest.ckpt"
    torch.save({"state_dict": load_file(str(ckpt))}, honest)
    shutil.copytree(config, tmp_path / "honest.config")
    with pytest.raises(ModelError, match="pickle file"):
        preflight(str(honest))
    model = ModelManager(device="cpu").get(str(honest), allow_pickle=True)
    assert model.family == "sd15" and not model.is_inpainting
    assert list((tmp_path / "cache" / "converted").glob("honest-*.safetensors"))


@pytest.mark.parametrize("fixture", ["tiny_sd21_single_file", "tiny_sdxl_inpaint_single_file"])
def test_other_families_load_and_inpaint(request, fixture, tmp_path):
    import threading

    from backend.core import JobContext
    from backend.ops.inpaint import run as run_inpaint
    from backend.ops.inpaint import InpaintRequest

    ckpt, config = request.getfixturevalue(fixture)
    local = tmp_path / "model.safetensors"
    shutil.copy(ckpt, local)
    shutil.copytree(config, tmp_path / "model.config")
    manager = ModelManager(device="cpu")
    events = []
    ctx = JobContext(1, events.append, threading.Event(), manager, 0.0, None, 2)
    img = np.full((64, 64, 4), 120, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    results = run_inpaint(ctx, InpaintRequest(image=img, mask=mask, model=str(local), steps=2, padding=0))
    assert results[0].rect == (4, 4, 56, 56) and results[0].image.shape == (56, 56, 4)
    assert manager.get(str(local)).family == ("sdxl" if "sdxl" in fixture else "sd21")


def test_tiny_autoencoder_previews(tmp_path, tiny_sd15_folder):
    import threading

    import torch
    from diffusers import AutoencoderTiny

    from backend.core import JobContext
    from backend.events import Preview
    from backend.ops.inpaint import run as run_inpaint
    from backend.ops.inpaint import InpaintRequest

    torch.manual_seed(0)
    taesd = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    events = []
    ctx = JobContext(1, events.append, threading.Event(), ModelManager(device="cpu"), 0.0, taesd, 3)
    img = np.full((64, 64, 4), 90, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 20:40] = 255
    run_inpaint(ctx, InpaintRequest(image=img, mask=mask, model=str(tiny_sd15_folder), steps=3))
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 3 and previews[0].image.shape[2] == 4


class _Config(dict):
    __getattr__ = dict.__getitem__


def _linear_vae():
    """A stand-in VAE whose latents are a known linear function of each 8×8 block's colour."""
    from types import SimpleNamespace

    import torch

    class LinearVAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = _Config(scaling_factor=0.5, latent_channels=4)
            self.proj = torch.nn.Conv2d(3, 4, 1)
            with torch.no_grad():
                self.proj.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, -1], [1, 1, 1]])[..., None, None])
                self.proj.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))

        def encode(self, x):
            z = self.proj(torch.nn.functional.avg_pool2d((x + 1) / 2, 8))
            return SimpleNamespace(latent_dist=SimpleNamespace(mean=z))

    return LinearVAE()


def test_linear_preview_map_recovers_block_colours(tmp_path, monkeypatch):
    import torch

    from backend.preview import LatentPreviewer, _synthetic_images

    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path))
    LatentPreviewer._memory.clear()
    vae = _linear_vae()
    previewer = LatentPreviewer(vae)
    assert previewer.matrix.shape == (5, 3)
    assert list((tmp_path / "previews").glob("*.npy"))  # fitted once, cached on disk
    LatentPreviewer._memory.clear()
    assert np.allclose(LatentPreviewer(vae).matrix, previewer.matrix)  # read back from the cache
    images = _synthetic_images(4, 64, seed=9)  # not the images it was fitted on
    with torch.no_grad():
        z = vae.encode(torch.from_numpy(images * 2 - 1)).latent_dist.mean * vae.config.scaling_factor
    for k in range(4):
        rgb = previewer.to_rgb(z[k:k + 1]).astype(np.float32) / 255
        target = images[k].reshape(3, 8, 8, 8, 8).mean(axis=(2, 4)).transpose(1, 2, 0)
        assert np.abs(rgb - target).max() <= 1.5 / 255


def test_an_unreachable_hub_counts_as_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.no-such-host.invalid")
    with pytest.raises(ModelError, match="cannot be reached"):
        preflight("someone/not-downloaded-either")


def test_models_recommend_inpaint_settings_and_bad_hints_are_ignored(tmp_path, tiny_sd15_folder):
    import json

    from backend.models import GENERIC_INPAINT_DEFAULTS, inpaint_defaults, read_info

    folder = tmp_path / "m"
    shutil.copytree(tiny_sd15_folder, folder)
    source = resolve(str(folder))
    assert read_info(source) == {}
    assert inpaint_defaults({}) == GENERIC_INPAINT_DEFAULTS == (("fill", "original"), ("strength", 1.0))
    (folder / "latent_studio.json").write_text(json.dumps({"inpaint_defaults": {"fill": "blur", "strength": 0.7}}))
    assert dict(inpaint_defaults(read_info(source))) == {"fill": "blur", "strength": 0.7}
    # Unknown or out-of-range values fall back to the generic ones, one by one.
    assert dict(inpaint_defaults({"inpaint_defaults": {"fill": "lava", "strength": 0.7}})) == {
        "fill": "original", "strength": 0.7}
    assert dict(inpaint_defaults({"inpaint_defaults": {"fill": "flat", "strength": 0}})) == {
        "fill": "flat", "strength": 1.0}
    assert inpaint_defaults({"inpaint_defaults": "blur"}) == GENERIC_INPAINT_DEFAULTS
    (folder / "latent_studio.json").write_text("{not json")
    assert read_info(source) == {}
    (folder / "latent_studio.json").write_text("[1, 2]")
    assert read_info(source) == {}
