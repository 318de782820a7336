"""The tiny-model fixtures load through the real diffusers loaders, and the LDM layout is exact."""

import filecmp
import functools
import json
import pickle
import socket

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import ldm_layout  # noqa: E402
import tiny_models  # noqa: E402

CASES = [("sd15", 4), ("sd15", 9), ("sd21", 4), ("sdxl", 4), ("sdxl", 9)]
CASE_IDS = [f"{f}-{c}ch" for f, c in CASES]
SD12_KWARGS = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _kwargs(family):
    """What an SD1/SD2 pipeline needs in addition: no safety checker (the reference model_index
    names one, and a feature extractor, that the config folder does not hold)."""
    return {} if family == "sdxl" else dict(SD12_KWARGS)


@functools.lru_cache(maxsize=None)
def _expected(family, in_channels):
    """The seed-0 components, built once per module: read them, do not modify them."""
    return tiny_models.build_components(family, in_channels, seed=0)


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def _images(size=64):
    from PIL import Image

    image = Image.new("RGB", (size, size), (200, 120, 40))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return image, mask


def _run(pipe, kind, size=64):
    """Two denoising steps on CPU; returns the float images (N, H, W, 3)."""
    pipe.set_progress_bar_config(disable=True)
    args = dict(
        prompt="a red fox in the snow",
        num_inference_steps=2,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    )
    image, mask = _images(size)
    if kind == "txt2img":
        args.update(height=size, width=size)
    elif kind == "img2img":
        args.update(image=image, strength=0.75)
    else:
        args.update(image=image, mask_image=mask, height=size, width=size, strength=1.0)
    with torch.no_grad():
        out = pipe(**args).images
    assert out.shape == (1, size, size, 3)
    assert torch.isfinite(torch.from_numpy(out)).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    return out


def _assert_same_weights(expected: dict, pipe):
    """Every torch component of ``pipe`` has exactly the state dict of ``expected``'s."""
    checked = 0
    for name, module in expected.items():
        if not isinstance(module, torch.nn.Module):
            continue
        want, got = module.state_dict(), getattr(pipe, name).state_dict()
        assert want.keys() == got.keys(), name
        for key in want:
            assert want[key].dtype == got[key].dtype, f"{name}.{key}"
            assert torch.equal(want[key], got[key]), f"{name}.{key} differs"
        checked += len(want)
    assert checked > 0


# --- (a) diffusers folders -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture, family, in_channels, kind",
    [
        ("tiny_sd15_folder", "sd15", 4, "txt2img"),
        ("tiny_sd15_inpaint_folder", "sd15", 9, "inpaint"),
        ("tiny_sd21_folder", "sd21", 4, "txt2img"),
        ("tiny_sdxl_folder", "sdxl", 4, "txt2img"),
    ],
)
def test_diffusers_folder_loads_with_its_pipeline_class_and_generates(request, fixture, family, in_channels, kind):
    folder = request.getfixturevalue(fixture)
    cls = tiny_models.pipeline_class(family, in_channels)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == cls.__name__
    extra = {} if family == "sdxl" else {"safety_checker": None}
    pipe = cls.from_pretrained(folder, local_files_only=True, **extra)
    assert type(pipe) is cls
    assert pipe.unet.config.in_channels == in_channels
    assert pipe.vae_scale_factor == 8
    _assert_same_weights(_expected(family, in_channels), pipe)
    _run(pipe, kind)


@pytest.mark.parametrize(
    "fixture, auto, expected, kind",
    [
        ("tiny_sd15_folder", "AutoPipelineForInpainting", "StableDiffusionInpaintPipeline", "inpaint"),
        ("tiny_sd15_inpaint_folder", "AutoPipelineForInpainting", "StableDiffusionInpaintPipeline", "inpaint"),
        ("tiny_sd15_folder", "AutoPipelineForImage2Image", "StableDiffusionImg2ImgPipeline", "img2img"),
        ("tiny_sdxl_folder", "AutoPipelineForInpainting", "StableDiffusionXLInpaintPipeline", "inpaint"),
    ],
)
def test_auto_pipelines_load_the_folders(request, fixture, auto, expected, kind):
    """A 4-channel folder gives the inpaint pipeline too (latent-blend inpainting)."""
    folder = request.getfixturevalue(fixture)
    pipe = getattr(diffusers, auto).from_pretrained(folder, local_files_only=True)
    assert type(pipe).__name__ == expected
    _run(pipe, kind)


# --- (b) single-file checkpoints in the original layout --------------------------------------


@pytest.mark.parametrize("family, in_channels", CASES, ids=CASE_IDS)
def test_single_file_loads_through_from_single_file_exactly(tiny_model_cache, family, in_channels):
    ckpt, config = tiny_model_cache.single_file(family, in_channels)
    assert ckpt.suffix == ".safetensors" and not any(config.rglob("*.safetensors"))
    cls = tiny_models.pipeline_class(family, in_channels)
    pipe = cls.from_single_file(str(ckpt), config=str(config), local_files_only=True, **_kwargs(family))
    assert type(pipe) is cls
    expected = _expected(family, in_channels)
    _assert_same_weights(expected, pipe)
    assert type(pipe.scheduler) is type(expected["scheduler"])
    assert pipe.tokenizer("a fox").input_ids == expected["tokenizer"]("a fox").input_ids


def test_single_file_pipeline_generates(tiny_sd15_inpaint_single_file, tiny_sdxl_single_file):
    ckpt, config = tiny_sd15_inpaint_single_file
    pipe = diffusers.StableDiffusionInpaintPipeline.from_single_file(
        str(ckpt), config=str(config), local_files_only=True, **SD12_KWARGS
    )
    _run(pipe, "inpaint")
    ckpt, config = tiny_sdxl_single_file
    pipe = diffusers.StableDiffusionXLPipeline.from_single_file(str(ckpt), config=str(config), local_files_only=True)
    _run(pipe, "txt2img")


def test_single_file_in_half_precision(tmp_path):
    ckpt, config = tiny_models.save_single_file(tmp_path, "sd15", 4, seed=3, dtype=torch.float16)
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        assert f.get_tensor("model.diffusion_model.input_blocks.0.0.weight").dtype == torch.float16
        assert f.get_tensor("cond_stage_model.transformer.text_model.embeddings.position_ids").dtype == torch.int64
    pipe = diffusers.StableDiffusionPipeline.from_single_file(
        str(ckpt), config=str(config), local_files_only=True, torch_dtype=torch.float16, **SD12_KWARGS
    )
    expected = {k: v.to(torch.float16) if isinstance(v, torch.nn.Module) else v
                for k, v in tiny_models.build_components("sd15", 4, seed=3).items()}
    _assert_same_weights(expected, pipe)


def test_seed_changes_the_weights_and_is_deterministic():
    a = _expected("sd15", 4)["unet"].state_dict()
    b = tiny_models.build_components("sd15", 4, seed=0)["unet"].state_dict()
    c = tiny_models.build_components("sd15", 4, seed=1)["unet"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)


def test_every_tensor_is_distinct_so_a_misplaced_key_cannot_round_trip():
    components = _expected("sdxl", 9)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        by_shape = {}
        for key, value in components[name].state_dict().items():
            by_shape.setdefault((tuple(value.shape), value.dtype), []).append((key, value))
        for group in by_shape.values():
            for i, (k1, v1) in enumerate(group):
                for k2, v2 in group[i + 1:]:
                    assert not torch.equal(v1, v2), f"{name}: {k1} == {k2}"


def test_the_round_trip_check_catches_a_swapped_tensor(tiny_sd15_single_file):
    _, config = tiny_sd15_single_file
    components = _expected("sd15", 4)
    sd = tiny_models.ldm_state_dict(components, "sd15")
    a = "model.diffusion_model.input_blocks.1.0.in_layers.0.weight"
    b = "model.diffusion_model.input_blocks.1.0.out_layers.0.weight"
    assert sd[a].shape == sd[b].shape
    sd[a], sd[b] = sd[b], sd[a]
    unet = diffusers.UNet2DConditionModel.from_single_file(
        sd, config=str(config), subfolder="unet", local_files_only=True
    )
    want, got = components["unet"].state_dict(), unet.state_dict()
    differing = sorted(k for k in want if not torch.equal(want[k], got[k]))
    assert differing == ["down_blocks.0.resnets.0.norm1.weight", "down_blocks.0.resnets.0.norm2.weight"]


def test_inverse_conversion_refuses_unknown_keys():
    with pytest.raises(KeyError):
        ldm_layout.unet_to_ldm({"surprise.weight": torch.zeros(1)}, {"layers_per_block": 2})
    with pytest.raises(KeyError):
        ldm_layout.vae_to_ldm({"encoder.surprise.weight": torch.zeros(1)}, {"up_block_types": ["x"] * 4})
    with pytest.raises(KeyError):
        ldm_layout.open_clip_to_ldm({"text_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(1)}, "p.")


@pytest.mark.parametrize("family, in_channels", CASES, ids=CASE_IDS)
def test_checkpoint_uses_the_original_key_layout(tiny_model_cache, family, in_channels):
    from safetensors import safe_open

    ckpt, _ = tiny_model_cache.single_file(family, in_channels)
    with safe_open(str(ckpt), "pt") as f:
        keys = set(f.keys())
        shape = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    assert shape["model.diffusion_model.input_blocks.0.0.weight"] == (32, in_channels, 3, 3)
    assert "model.diffusion_model.out.2.weight" in keys
    assert "model.diffusion_model.middle_block.1.proj_in.weight" in keys
    assert "model.diffusion_model.input_blocks.1.0.skip_connection.weight" not in keys  # 32 -> 32
    assert "model.diffusion_model.input_blocks.4.0.skip_connection.weight" in keys  # 32 -> 64
    # VAE: mid attention q/k/v/proj_out are 1x1 convolutions; decoder up blocks numbered in reverse
    assert shape["first_stage_model.encoder.mid.attn_1.q.weight"] == (32, 32, 1, 1)
    assert shape["first_stage_model.decoder.mid.attn_1.proj_out.weight"] == (32, 32, 1, 1)
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in keys
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in keys
    assert shape["first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"] == (16, 32, 1, 1)
    assert not any(k.startswith(("unet.", "vae.", "text_encoder")) for k in keys)
    if family == "sd15":
        assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in keys
        assert "model.diffusion_model.input_blocks.1.1.proj_in.weight" in keys
        assert shape["model.diffusion_model.input_blocks.1.1.proj_in.weight"] == (32, 32, 1, 1)  # conv
        assert "alphas_cumprod" in keys
        assert not any(k.startswith("conditioner.") for k in keys)
    elif family == "sd21":
        prefix = "cond_stage_model.model."
        assert shape[prefix + "token_embedding.weight"] == (49408, 32)
        assert shape[prefix + "positional_embedding"] == (77, 32)
        assert shape[prefix + "transformer.resblocks.0.attn.in_proj_weight"] == (96, 32)
        assert shape[prefix + "transformer.resblocks.23.attn.in_proj_bias"] == (96,)  # unused last layer
        assert prefix + "transformer.resblocks.24.ln_1.weight" not in keys
        assert {prefix + "ln_final.weight", prefix + "text_projection", prefix + "logit_scale"} <= keys
        assert shape["model.diffusion_model.input_blocks.1.1.proj_in.weight"] == (32, 32)  # linear
        assert not any(k.startswith("cond_stage_model.transformer.") for k in keys)
    else:
        assert "conditioner.embedders.0.transformer.text_model.encoder.layers.1.mlp.fc2.weight" in keys
        prefix = "conditioner.embedders.1.model."
        assert shape[prefix + "text_projection"] == (64, 32)  # (width, embed_dim): transposed
        assert shape[prefix + "transformer.resblocks.9.attn.in_proj_weight"] == (192, 64)
        assert shape["model.diffusion_model.label_emb.0.0.weight"] == (128, 80)
        assert not any(k.startswith("cond_stage_model.") for k in keys)


def test_open_clip_in_proj_is_q_k_v_concatenated():
    te = _expected("sd21", 4)["text_encoder"]
    sd = ldm_layout.open_clip_to_ldm(te.state_dict(), "m.")
    layer = te.state_dict()
    w = sd["m.transformer.resblocks.3.attn.in_proj_weight"]
    assert torch.equal(w[:32], layer["encoder.layers.3.self_attn.q_proj.weight"])
    assert torch.equal(w[32:64], layer["encoder.layers.3.self_attn.k_proj.weight"])
    assert torch.equal(w[64:], layer["encoder.layers.3.self_attn.v_proj.weight"])


def test_diffusers_recognises_the_families_it_can(tiny_model_cache):
    """diffusers' own detection (used when no config is given) keys on full-size shapes: it names
    SD1, SD1-inpainting, SDXL and SDXL-inpainting right, but calls the tiny SD2 'v1' (it requires a
    1024-wide cross-attention)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

    expected = {("sd15", 4): "v1", ("sd15", 9): "inpainting", ("sd21", 4): "v1",
                ("sdxl", 4): "xl_base", ("sdxl", 9): "xl_inpaint"}
    for (family, channels), model_type in expected.items():
        ckpt, _ = tiny_model_cache.single_file(family, channels)
        assert infer_diffusers_model_type(load_single_file_checkpoint(str(ckpt))) == model_type


def test_config_folder_mirrors_the_shipped_reference(tiny_model_cache):
    for family, channels in CASES:
        _, config = tiny_model_cache.single_file(family, channels)
        ref = tiny_models.reference_config_dir(family, channels)
        index, ref_index = (json.loads((d / "model_index.json").read_text()) for d in (config, ref))
        assert index["_class_name"] == tiny_models.pipeline_class_name(family, channels)
        assert {k: v for k, v in index.items() if not k.startswith("_")}.items() >= {
            k: v for k, v in ref_index.items() if not k.startswith("_") and k != "requires_aesthetics_score"
        }.items()
        for sub in [d for d in ref.iterdir() if d.name.startswith(("tokenizer", "scheduler"))]:
            names = sorted(p.name for p in sub.iterdir())
            match, mismatch, errors = filecmp.cmpfiles(sub, config / sub.name, names, shallow=False)
            assert not mismatch and not errors, (family, sub.name)
        unet = json.loads((config / "unet" / "config.json").read_text())
        assert unet["in_channels"] == channels


# --- loading an inpainting checkpoint with a base (4-channel) config folder --------------------


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_inpainting_checkpoint_with_a_base_config_folder(tiny_model_cache, family):
    """diffusers does not infer in_channels from the checkpoint when config= is given."""
    ckpt9, _ = tiny_model_cache.single_file(family, 9)
    _, config4 = tiny_model_cache.single_file(family, 4)
    cls = tiny_models.pipeline_class(family, 9)
    expected = _expected(family, 9)
    common = dict(config=str(config4), local_files_only=True, **_kwargs(family))

    # RuntimeError from load_state_dict without accelerate, ValueError from diffusers with it.
    with pytest.raises((RuntimeError, ValueError), match=r"(?<!encoder\.)conv_in\.weight"):
        cls.from_single_file(str(ckpt9), **common)
    # in_channels is forwarded to every diffusers sub-model: it breaks the VAE.
    with pytest.raises((RuntimeError, ValueError), match=r"encoder\.conv_in\.weight"):
        cls.from_single_file(str(ckpt9), in_channels=9, **common)

    # Works: load the UNet first with the override, then hand it to the pipeline.
    unet = diffusers.UNet2DConditionModel.from_single_file(
        str(ckpt9), config=str(config4), subfolder="unet", in_channels=9, local_files_only=True
    )
    pipe = cls.from_single_file(str(ckpt9), unet=unet, **common)
    assert pipe.unet.config.in_channels == 9
    _assert_same_weights(expected, pipe)

    # Works too: the legacy kwarg num_in_channels is mapped to in_channels for the UNet only.
    pipe = cls.from_single_file(str(ckpt9), num_in_channels=9, **common)
    assert pipe.unet.config.in_channels == 9 and pipe.vae.config.in_channels == 3
    _assert_same_weights(expected, pipe)


# --- offline behaviour -----------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(name):
        def fn(*args, **kwargs):
            attempts.append((name, args[:2]))
            raise OSError(f"test: network access attempted ({name})")

        return fn

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    return attempts


def test_offline_loads_do_not_touch_the_network(no_network, tiny_sdxl_inpaint_single_file, tiny_sd21_single_file,
                                                tiny_sd15_inpaint_folder):
    ckpt, config = tiny_sdxl_inpaint_single_file
    diffusers.StableDiffusionXLInpaintPipeline.from_single_file(str(ckpt), config=str(config), local_files_only=True)
    ckpt, config = tiny_sd21_single_file
    diffusers.StableDiffusionPipeline.from_single_file(
        str(ckpt), config=str(config), local_files_only=True, **SD12_KWARGS
    )
    diffusers.AutoPipelineForInpainting.from_pretrained(tiny_sd15_inpaint_folder, local_files_only=True)
    assert no_network == []
    # The guard works (so the assertion above can fail):
    with pytest.raises(OSError):
        socket.create_connection(("huggingface.co", 443))
    assert len(no_network) == 1


def test_from_single_file_without_config_wants_the_hub(no_network, tiny_sd15_single_file):
    """Without config=, diffusers overrides local_files_only=True and tries to download the config
    folder; HF_HUB_OFFLINE=1 (set in conftest) turns that into an immediate error, no connection."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    ckpt, _ = tiny_sd15_single_file
    with pytest.raises(LocalEntryNotFoundError):
        diffusers.StableDiffusionPipeline.from_single_file(str(ckpt), local_files_only=True, **SD12_KWARGS)
    assert no_network == []


@pytest.mark.parametrize("family, error", [("sd15", OSError), ("sd21", AttributeError)])
def test_reference_model_index_needs_feature_extractor_none(tiny_model_cache, family, error):
    """The shipped model_index.json files (copied into the config folders) name a feature extractor
    whose files are not there: sd15 -> CLIPImageProcessor (OSError offline), sd21-base ->
    CLIPFeatureExtractor (gone from transformers 5: AttributeError). Pass feature_extractor=None;
    the safety checker is skipped by from_single_file anyway."""
    ckpt, config = tiny_model_cache.single_file(family, 4)
    common = dict(config=str(config), local_files_only=True)
    with pytest.raises(error):
        diffusers.StableDiffusionPipeline.from_single_file(str(ckpt), safety_checker=None, **common)
    pipe = diffusers.StableDiffusionPipeline.from_single_file(str(ckpt), feature_extractor=None, **common)
    assert pipe.safety_checker is None and pipe.feature_extractor is None


# --- (c) malicious pickle --------------------------------------------------------------------


def test_malicious_pickle_is_refused_by_weights_only_load(malicious_pickle):
    path, marker = malicious_pickle
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_malicious_pickle_is_refused_by_diffusers_single_file_loader(malicious_pickle, tiny_sd15_single_file):
    path, marker = malicious_pickle
    _, config = tiny_sd15_single_file
    with pytest.raises(OSError):
        diffusers.StableDiffusionPipeline.from_single_file(
            str(path), config=str(config), local_files_only=True, **SD12_KWARGS
        )
    assert not marker.exists()


def test_malicious_pickle_really_runs_code_when_unrestricted(malicious_pickle):
    """Positive control: the payload does run under an unrestricted load (harmless: an empty file)."""
    path, marker = malicious_pickle
    loaded = torch.load(path, weights_only=False)
    loaded["payload"].close()
    assert marker.exists() and marker.stat().st_size == 0
