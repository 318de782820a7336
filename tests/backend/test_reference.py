"""Reference images through an IP-Adapter, end to end through the engine on tiny random models: tiny
IP-Adapters in the releases' file layout and a tiny CLIP vision encoder folder, loaded by diffusers'
``load_ip_adapter`` and transformers' ``from_pretrained`` (tests/tiny_steering_reference.py)."""
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from backend import Img2ImgRequest, InpaintRequest
from backend.events import Failed, Result
from backend.steering import Reference

import tiny_steering_reference as tiny
from conftest import make_scene


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_cache):
    """Adapters and encoders laid out as the releases lay them out."""
    root = tmp_path_factory.mktemp("ip-adapters")
    sd15 = tiny.unet_of(tiny_model_cache.folder("sd15", 4))
    sdxl = tiny.unet_of(tiny_model_cache.folder("sdxl", 4))
    out = SimpleNamespace(root=root)
    out.sd15 = tiny.save_adapter(root / "models" / "tiny-sd15.safetensors", sd15, seed=1)
    out.plus = tiny.save_adapter(root / "models" / "tiny-sd15-plus.safetensors", sd15, "plus", seed=2)
    out.encoder = tiny.save_image_encoder(root / "models" / "image_encoder", seed=3)
    out.sdxl = tiny.save_adapter(root / "sdxl_models" / "tiny-sdxl.safetensors", sdxl, seed=4)
    shutil.copytree(out.encoder, root / "sdxl_models" / "image_encoder")
    out.pickle = tiny.save_adapter(root / "pickled" / "tiny-sd15.bin", sd15, seed=1)  # the same weights as .sd15
    shutil.copytree(out.encoder, root / "pickled" / "image_encoder")
    out.lonely = shutil.copy(out.sd15, root / "lonely.safetensors")
    out.folder = root / "as-folder" / "tiny-sd15"
    out.folder.mkdir(parents=True)
    shutil.copy(out.sd15, out.folder / "ip_adapter.safetensors")
    shutil.copytree(out.encoder, out.folder / "image_encoder")
    out.narrow = tiny.save_image_encoder(root / "narrow_encoder", seed=3, projection_dim=16)
    return out


def picture(seed, h=40, w=56):
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 4), np.uint8)
    img[..., :3] = rng.integers(0, 256, (h, w, 3))
    img[..., 3] = 255
    return img


RED_CIRCLES, BLUE_NOISE = picture(11), picture(12)


def ref(image=RED_CIRCLES, weight=1.0, mode="full", label="a"):
    return Reference(image, weight, mode, label)


def img2img(model, **kw):
    img, _ = make_scene()
    args = dict(image=img, model=str(model), steps=4, strength=0.75, guidance=5.0, seed=5)
    args.update(kw)
    return Img2ImgRequest(**args)


def inpaint(model, **kw):
    img, mask = make_scene()
    args = dict(model=str(model), steps=3, guidance=5.0, fill="blur", feather=4, grow=2, padding=8, seed=5)
    args.update(kw)
    return InpaintRequest.from_document(img, mask, **args)


def run(engine, recorder, request):
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), getattr(events[-1], "message", events[-1])
    return events[-1].images


def image(engine, recorder, request):
    return run(engine, recorder, request)[0].image


def failure(engine, recorder, request) -> str:
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Failed), events[-1]
    return events[-1].message


@pytest.fixture(scope="module")
def sd15_base(engine, recorder, tiny_sd15_folder):
    """The tiny SD 1.5 model's img2img without references (what weight 0 and unloading must give)."""
    return image(engine, recorder, img2img(tiny_sd15_folder))


@pytest.fixture
def loads(monkeypatch):
    """Counts diffusers' load_ip_adapter calls (on the engine's thread too)."""
    from diffusers.loaders.ip_adapter import IPAdapterMixin

    calls = []
    original = IPAdapterMixin.load_ip_adapter

    def counting(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("pretrained_model_name_or_path_or_dict"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IPAdapterMixin, "load_ip_adapter", counting)
    return calls


def assert_unloaded(model):
    assert model.ip_adapter_state is None
    assert model.inpaint.unet.encoder_hid_proj is None
    for pipe in model.pipelines():
        assert pipe.image_encoder is None and pipe.feature_extractor is None


def test_a_reference_steers_img2img_and_weight_zero_or_no_reference_is_the_base(engine, recorder, files,
                                                                                 tiny_sd15_folder):
    model_path = tiny_sd15_folder
    base = image(engine, recorder, img2img(model_path))
    with_a = run(engine, recorder, img2img(model_path, references=[ref()], ip_adapter=str(files.sd15)))[0]
    with_b = image(engine, recorder, img2img(model_path, references=[ref(BLUE_NOISE)], ip_adapter=str(files.sd15)))
    zero = image(engine, recorder, img2img(model_path, references=[ref(weight=0.0)], ip_adapter=str(files.sd15)))
    after = image(engine, recorder, img2img(model_path))
    assert np.abs(with_a.image.astype(int) - base).max() > 8
    assert np.abs(with_b.astype(int) - with_a.image).max() > 8  # another picture, another result
    assert np.array_equal(zero, base)  # at weight 0 diffusers' processors skip the adapter: bit-exact
    assert np.array_equal(after, base)  # the next job without references: adapter unloaded, base bit-exact
    assert_unloaded(engine._models.get(str(model_path)))
    assert with_a.parameters["IP-Adapter"] == str(files.sd15)
    assert "Weight: 1" in with_a.parameters["Reference 0"]


def test_the_adapter_stays_loaded_and_the_images_are_encoded_once_per_job(engine, recorder, files, tiny_sd15_folder,
                                                                          loads):
    image(engine, recorder, img2img(tiny_sd15_folder))  # whatever an earlier test left: unloaded now
    run(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    model = engine._models.get(str(tiny_sd15_folder))
    encoder = model.ip_adapter_state.image_encoder
    encoded = []
    hook = encoder.register_forward_pre_hook(lambda *_: encoded.append(1))
    try:
        two = run(engine, recorder, img2img(tiny_sd15_folder, references=[ref(BLUE_NOISE, 0.7)], count=2,
                                            ip_adapter=str(files.sd15)))
    finally:
        hook.remove()
    assert len(loads) == 1  # the second job set a weight and encoded its image, nothing reloaded
    assert model.ip_adapter_state.image_encoder is encoder
    assert len(encoded) == 1  # two variations, one encoding (the plain adapter's negative is zeros)
    assert not np.array_equal(two[0].image, two[1].image)
    image(engine, recorder, img2img(tiny_sd15_folder))
    assert_unloaded(model)
    run(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    assert len(loads) == 2  # after a job without references it is loaded again


def test_inpaint_on_a_nine_channel_model(engine, recorder, files, tiny_sd15_inpaint_folder):
    base = image(engine, recorder, inpaint(tiny_sd15_inpaint_folder))
    steered = image(engine, recorder, inpaint(tiny_sd15_inpaint_folder, references=[ref()], ip_adapter=str(files.sd15)))
    zero = image(engine, recorder, inpaint(tiny_sd15_inpaint_folder, references=[ref(weight=0.0)],
                                           ip_adapter=str(files.sd15)))
    after = image(engine, recorder, inpaint(tiny_sd15_inpaint_folder))
    assert np.abs(steered.astype(int) - base).max() > 8
    assert np.array_equal(zero, base) and np.array_equal(after, base)
    assert np.array_equal(steered[..., 3], base[..., 3])


def test_plus_adapter_takes_the_encoders_hidden_states(engine, recorder, files, tiny_sd15_folder):
    base = image(engine, recorder, img2img(tiny_sd15_folder))
    plus = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.plus)))
    plain = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    zero = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref(weight=0.0)], ip_adapter=str(files.plus)))
    assert np.abs(plus.astype(int) - base).max() > 8 and np.abs(plus.astype(int) - plain).max() > 8
    assert np.array_equal(zero, base)


def test_without_guidance_the_embeddings_have_no_negative_half(engine, recorder, files, tiny_sd15_folder):
    """At guidance 1 the pipelines run no classifier-free guidance, so the job's precomputed embeddings
    must not carry the negative half (diffusers would split them and the batch would not fit)."""
    base = image(engine, recorder, img2img(tiny_sd15_folder, guidance=1.0))
    steered = image(engine, recorder, img2img(tiny_sd15_folder, guidance=1.0, references=[ref()],
                                              ip_adapter=str(files.sd15)))
    assert np.abs(steered.astype(int) - base).max() > 8


def test_several_references_each_keep_their_own_weight(engine, recorder, files, tiny_sd15_folder):
    adapter = str(files.sd15)
    a_alone = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=adapter))
    b_alone = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref(BLUE_NOISE, label="b")],
                                              ip_adapter=adapter))
    a_and_nothing = image(engine, recorder, img2img(tiny_sd15_folder, ip_adapter=adapter,
                                                    references=[ref(), ref(BLUE_NOISE, 0.0, label="b")]))
    both = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref(), ref(BLUE_NOISE, label="b")],
                                           ip_adapter=adapter))
    # (1, 0) is the first alone: each image attends on its own and adds its weighted share. Not bit-exact:
    # diffusers interpolates the all-ones mask to each layer's size (1 ± 1e-7).
    assert np.abs(a_and_nothing.astype(int) - a_alone).max() <= 1
    assert np.abs(both.astype(int) - a_alone).max() > 8 and np.abs(both.astype(int) - b_alone).max() > 8


def test_style_and_composition_on_sdxl_and_their_fallback(engine, recorder, files, tiny_sd15_folder, tiny_sdxl_folder):
    adapter = str(files.sdxl)
    base = image(engine, recorder, img2img(tiny_sdxl_folder))
    full = image(engine, recorder, img2img(tiny_sdxl_folder, references=[ref()], ip_adapter=adapter))
    style = run(engine, recorder, img2img(tiny_sdxl_folder, references=[ref(mode="style")], ip_adapter=adapter))[0]
    # The tiny SDXL UNet has two down blocks: no third one for composition, which is then used in full.
    comp = run(engine, recorder, img2img(tiny_sdxl_folder, references=[ref(mode="composition")], ip_adapter=adapter))[0]
    assert np.abs(full.astype(int) - base).max() > 8
    assert np.abs(style.image.astype(int) - base).max() > 2 and np.abs(style.image.astype(int) - full).max() > 2
    assert style.notes == ()
    assert np.array_equal(comp.image, full)
    assert comp.notes == ("Reference a: the composition mode was used as full, as this model's UNet has no such "
                          "block.",)
    sd15_full = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    sd15_style = run(engine, recorder, img2img(tiny_sd15_folder, references=[ref(mode="style")],
                                               ip_adapter=str(files.sd15)))[0]
    assert np.array_equal(sd15_style.image, sd15_full)
    assert sd15_style.notes == ("Reference a: the style mode was used as full, as it needs an SDXL model "
                                "(InstantStyle's blocks).",)


def test_an_adapter_by_name_or_as_a_folder(engine, recorder, files, tiny_sd15_folder, monkeypatch, tmp_path):
    by_path = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(files.root / "models-root" / "models"))
    named = files.root / "models-root" / "ip-adapters"
    if not named.exists():
        named.mkdir(parents=True)
        shutil.copy(files.sd15, named / "tiny-sd15.safetensors")
        shutil.copytree(files.encoder, named / "image_encoder")
    by_name = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter="tiny-sd15"))
    by_folder = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.folder)))
    explicit = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.lonely),
                                               image_encoder=str(files.encoder)))
    assert np.array_equal(by_name, by_path) and np.array_equal(by_folder, by_path)
    assert np.array_equal(explicit, by_path)


def test_a_pickled_adapter_is_refused_unless_allowed_then_read_as_weights(engine, recorder, files, tiny_sd15_folder):
    message = failure(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.pickle)))
    assert message.startswith("tiny-sd15.bin is a pickle file") and "--allow-pickle" in message
    safe = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    pickled = image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.pickle),
                                              allow_pickle=True))
    assert np.array_equal(pickled, safe)  # the same weights, read with weights_only=True


def _truncated(files, tmp_path):
    data = files.sd15.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    shutil.copytree(files.encoder, tmp_path / "image_encoder")
    return path


def _with_keys(extra):
    def make(files, tmp_path):
        from safetensors.torch import load_file, save_file

        state = load_file(str(files.sd15))
        state.update(extra())
        path = tmp_path / "odd.safetensors"
        save_file(state, str(path))
        shutil.copytree(files.encoder, tmp_path / "image_encoder")
        return path
    return make


def _zeros(*shape):
    import torch

    return torch.zeros(*shape)


REFUSALS = {
    "missing encoder": (lambda files, tmp_path: files.lonely, {},
                        "No image encoder was found for the IP-Adapter lonely.safetensors (looked for image_encoder/ "
                        "in "),
    "encoder not found": (lambda files, tmp_path: files.lonely, {"image_encoder": "no-such-encoder"},
                          "The image encoder 'no-such-encoder' was not found: give the folder of a CLIP vision "
                          "encoder"),
    "truncated": (_truncated, {}, "cut.safetensors could not be read as a .safetensors file (it ends "),
    "other family": (lambda files, tmp_path: files.sdxl, {},
                     "tiny-sdxl.safetensors is an IP-Adapter for another model family (cross-attention "
                     "width 96), but the model sd15-4ch-diffusers is SD 1.x/2.x (width 32): choose an IP-Adapter made "
                     "for SD 1.x/2.x."),
    "unknown keys": (_with_keys(lambda: {"lora_unet.down.weight": _zeros(2, 2)}), {},
                     "odd.safetensors has weights an IP-Adapter does not have (lora_unet.down.weight…)"),
    "unknown attention key": (_with_keys(lambda: {"ip_adapter.1.to_q_ip.weight": _zeros(2, 2)}), {},
                              "odd.safetensors has weights an IP-Adapter does not have "
                              "(ip_adapter.1.to_q_ip.weight…)"),
    "encoder of another width": (lambda files, tmp_path: files.lonely, {"image_encoder": "NARROW"},
                                 "The image encoder narrow_encoder gives 16-wide image features but the IP-Adapter "
                                 "lonely.safetensors takes 32"),
    "not an adapter": (lambda files, tmp_path: _not_an_adapter(files, tmp_path), {},
                       "plain.safetensors is not an IP-Adapter: it has no image_proj and ip_adapter weights"),
}


def _not_an_adapter(files, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"lora_unet_down.weight": _zeros(2, 2)}, str(path))
    return path


@pytest.mark.parametrize("case", list(REFUSALS))
def test_files_that_cannot_be_used_are_refused_with_one_sentence(engine, recorder, files, tiny_sd15_folder, tmp_path,
                                                                  sd15_base, case):
    make, extra, expected = REFUSALS[case]
    adapter = make(files, tmp_path)
    if extra.get("image_encoder") == "NARROW":
        extra = {"image_encoder": str(files.narrow)}
    message = failure(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(adapter), **extra))
    assert message.startswith(expected), message
    assert message.count(". ") == 0 and message.endswith(".")
    # The model is left as it was: the next job without references gives the base image.
    assert np.array_equal(image(engine, recorder, img2img(tiny_sd15_folder)), sd15_base)
    assert_unloaded(engine._models.get(str(tiny_sd15_folder)))


def test_pipelines_made_before_or_after_get_the_encoder(engine, recorder, files, tiny_sd15_folder):
    """The image encoder is on every pipeline the model has made, ControlNet variants included, whether
    made before the reference job or after it (from_pipe copies the inpaint pipeline's)."""
    import torch
    from diffusers import ControlNetModel

    from backend.steering import reference

    image(engine, recorder, img2img(tiny_sd15_folder))
    model = engine._models.get(str(tiny_sd15_folder))
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(model.inpaint.unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    before = model.pipeline("img2img", net)
    image(engine, recorder, img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))
    state = model.ip_adapter_state
    after = model.pipeline("txt2img", net)
    for pipe in (before, after, model.img2img, model.inpaint):
        assert pipe.image_encoder is state.image_encoder and pipe.feature_extractor is state.feature_extractor

    # The ControlNet pipeline runs with the job's embeddings (called here on the test thread while the
    # engine is idle): a reference changes its result, weight 0 gives its result without the adapter.
    ctx = SimpleNamespace(check_cancel=lambda: None, stage=lambda text: None)
    control = make_scene()[0][..., :3]

    def call(weight):
        request = img2img(tiny_sd15_folder, references=[ref(weight=weight)], ip_adapter=str(files.sd15))
        prepared = reference.prepare(ctx, model, request)
        from PIL import Image

        init = Image.fromarray(make_scene()[0][..., :3])
        return before(prompt="", image=init, control_image=Image.fromarray(control), strength=0.75,
                      num_inference_steps=4, guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
                      output_type="np", **prepared.kwargs((128, 96))).images[0]

    assert np.abs(call(1.0) - call(0.0)).max() > 0.02
    image(engine, recorder, img2img(tiny_sd15_folder))
    assert before.image_encoder is None and after.image_encoder is None


# --- the checks and the InstantStyle blocks on the real (full-size) configs, shapes only --------------------------


@pytest.fixture(scope="module")
def real_unets():
    """SD 1.5, SD 2.1 and SDXL UNets from the shipped configs, on the meta device (no weights)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from backend.modelconfig import read_config
    from backend.paths import MODEL_CONFIGS

    out = {}
    for name in ("sd15", "sd21-base", "sdxl-base"):
        with init_empty_weights():
            out[name] = UNet2DConditionModel.from_config(read_config(MODEL_CONFIGS / name / "unet" / "config.json"))
    return out


# The attention weights of the releases (h94/IP-Adapter), by key id: ip-adapter_sd15.safetensors has
# these 16, whose to_k_ip is (hidden, 768); ip-adapter_sdxl has 70 of width 2048.
SD15_LAYERS = {1: 320, 3: 320, 5: 640, 7: 640, 9: 1280, 11: 1280, 13: 1280, 15: 1280, 17: 1280, 19: 640, 21: 640,
               23: 640, 25: 320, 27: 320, 29: 320, 31: 1280}


def release_shapes(layers: dict, cross: int, clip: int) -> dict:
    shapes = {f"ip_adapter.{i}.to_{kv}_ip.weight": (h, cross) for i, h in layers.items() for kv in "kv"}
    shapes.update({"image_proj.proj.weight": (4 * cross, clip), "image_proj.proj.bias": (4 * cross,),
                   "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)})
    return shapes


def test_the_layer_numbering_and_family_checks_on_the_real_configs(real_unets):
    from backend.errors import ModelError
    from backend.steering.reference import adapter_kind, check_fits, cross_attention_layers

    assert cross_attention_layers(real_unets["sd15"]) == SD15_LAYERS
    sdxl_layers = cross_attention_layers(real_unets["sdxl-base"])
    assert sorted(sdxl_layers) == list(range(1, 140, 2))
    assert sorted(set(sdxl_layers.values())) == [640, 1280]
    sd15 = release_shapes(SD15_LAYERS, 768, 1024)  # ip-adapter_sd15 with the ViT-H encoder
    sdxl = release_shapes(sdxl_layers, 2048, 1280)  # ip-adapter_sdxl with ViT-bigG
    assert adapter_kind("ip-adapter_sd15.safetensors", sd15) == "base"
    check_fits("ip-adapter_sd15.safetensors", sd15, real_unets["sd15"], "v1-5", "sd15")
    check_fits("ip-adapter_sdxl.safetensors", sdxl, real_unets["sdxl-base"], "sdxl-base", "sdxl")
    with pytest.raises(ModelError) as err:
        check_fits("ip-adapter_sdxl.safetensors", sdxl, real_unets["sd15"], "v1-5", "sd15")
    assert str(err.value) == ("ip-adapter_sdxl.safetensors is an IP-Adapter for SDXL (cross-attention width 2048), but "
                              "the model v1-5 is SD 1.x (width 768): choose an IP-Adapter made for SD 1.x.")
    with pytest.raises(ModelError) as err:
        check_fits("ip-adapter_sd15.safetensors", sd15, real_unets["sd21-base"], "v2-1", "sd15")
    assert str(err.value).startswith("ip-adapter_sd15.safetensors is an IP-Adapter for SD 1.x (cross-attention width "
                                     "768), but the model v2-1 is SD 2.x (width 1024)")
    fewer = {k: v for k, v in sd15.items() if not k.startswith("ip_adapter.31.")}
    with pytest.raises(ModelError, match=r"^ip-adapter_sd15.safetensors does not fit the UNet of v1-5: it has weights "
                                         r"for 15 cross-attention layers where this model has 16"):
        check_fits("ip-adapter_sd15.safetensors", fewer, real_unets["sd15"], "v1-5", "sd15")


def test_adapter_kinds_and_what_is_refused_from_the_header_alone():
    from backend.errors import ModelError
    from backend.steering.reference import adapter_kind

    plus = {f"ip_adapter.{i}.to_{kv}_ip.weight": (h, 768) for i, h in SD15_LAYERS.items() for kv in "kv"}
    plus.update({"image_proj.latents": (1, 16, 768), "image_proj.proj_in.weight": (768, 1280),
                 "image_proj.proj_in.bias": (768,), "image_proj.proj_out.weight": (768, 768),
                 "image_proj.proj_out.bias": (768,), "image_proj.norm_out.weight": (768,),
                 "image_proj.norm_out.bias": (768,)})
    for i in range(4):
        for key, shape in (("0.norm1.weight", (768,)), ("0.norm1.bias", (768,)), ("0.norm2.weight", (768,)),
                           ("0.norm2.bias", (768,)), ("0.to_q.weight", (768, 768)), ("0.to_kv.weight", (1536, 768)),
                           ("0.to_out.weight", (768, 768)), ("1.0.weight", (768,)), ("1.0.bias", (768,)),
                           ("1.1.weight", (3072, 768)), ("1.3.weight", (768, 3072))):
            plus[f"image_proj.layers.{i}.{key}"] = shape
    assert adapter_kind("ip-adapter-plus_sd15.safetensors", plus) == "plus"
    faceid = {k: v for k, v in plus.items() if k.startswith("ip_adapter.")}
    faceid.update({"image_proj.proj.0.weight": (1024, 512), "image_proj.proj.0.bias": (1024,),
                   "image_proj.proj.2.weight": (3072, 1024), "image_proj.proj.2.bias": (3072,),
                   "image_proj.norm.weight": (768,), "image_proj.norm.bias": (768,)})
    with pytest.raises(ModelError, match="^ip-adapter-faceid_sd15.safetensors is a FaceID IP-Adapter, which needs face "
                                         "embeddings"):
        adapter_kind("ip-adapter-faceid_sd15.safetensors", faceid)
    mixed = dict(plus, **{"image_proj.proj_out.weight": (1024, 768)})
    with pytest.raises(ModelError, match=r"^x.safetensors's image projection gives 1024-wide tokens but its attention "
                                         r"weights take 768: the file is damaged or mixed"):
        adapter_kind("x.safetensors", mixed)
    odd = dict(plus, **{"image_proj.latents": (16, 768)})
    with pytest.raises(ModelError, match=r"^x.safetensors has a malformed weight \(image_proj.latents has shape "):
        adapter_kind("x.safetensors", odd)


def _expanded(unet, config):
    """What diffusers makes of a scale config: {attention layer: scale or per-image scales}."""
    from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales

    scales = _maybe_expand_lora_scales(unet, [config], default_scale=0.0)[0]
    return scales if isinstance(scales, dict) else {"all": scales}


def test_style_and_composition_are_instantstyles_blocks_on_sdxl(real_unets):
    from backend.steering.reference import scale_config

    sdxl, sd15 = real_unets["sdxl-base"], real_unets["sd15"]
    style, notes = scale_config(sdxl, "sdxl", [ref(weight=0.8, mode="style")])
    assert style == {"up": {"block_0": [0.0, 0.8, 0.0]}} and notes == []
    assert {k: v for k, v in _expanded(sdxl, style).items() if v} == {"up_blocks.0.attentions.1": 0.8}
    composition, _ = scale_config(sdxl, "sdxl", [ref(weight=0.6, mode="composition")])
    assert composition == {"down": {"block_2": [0.0, 0.6]}}
    assert scale_config(sdxl, "sdxl", [ref(weight=0.5)]) == (0.5, [])
    # Two references: per-layer lists, one scale per image (style from the first, composition from the second).
    two, _ = scale_config(sdxl, "sdxl", [ref(weight=0.8, mode="style"), ref(weight=0.6, mode="composition")])
    expanded = _expanded(sdxl, two)
    assert {k: v for k, v in expanded.items() if any(v)} == {"up_blocks.0.attentions.1": [0.8, 0.0],
                                                             "down_blocks.2.attentions.1": [0.0, 0.6]}
    assert len(expanded) == 11  # every SDXL attention block: 2 + 2 down, 3 + 3 up, 1 mid
    full_and_style, _ = scale_config(sdxl, "sdxl", [ref(weight=1.0), ref(weight=0.5, mode="style")])
    expanded = _expanded(sdxl, full_and_style)
    assert expanded.pop("up_blocks.0.attentions.1") == [1.0, 0.5]
    assert all(v == [1.0, 0.0] for v in expanded.values())
    # SD 1.5: the modes are SDXL's blocks; the reference is used in full and a note says so.
    assert scale_config(sd15, "sd15", [ref(weight=0.7, mode="style", label="sky")]) == (
        0.7, ["Reference sky: the style mode was used as full, as it needs an SDXL model (InstantStyle's blocks)."])


def test_a_reference_is_cropped_to_its_opaque_part_over_the_encoders_mean_colour():
    from backend.steering.reference import reference_image

    pixels = np.zeros((20, 30, 4), np.uint8)
    pixels[5:15, 10:20] = (200, 10, 30, 255)
    pixels[5:15, 13:15, 3] = 0  # a transparent strip inside the box
    pixels[8, 16, 3] = 128  # half covered: half the colour, half the fill
    out = np.asarray(reference_image(pixels, (122, 116, 104))).astype(int)
    assert out.shape == (10, 10, 3)
    assert (out[:, 3:5] == (122, 116, 104)).all()
    assert (out[:, :3] == (200, 10, 30)).all() and (out[[0, 1, 2, 4, 5], 5:] == (200, 10, 30)).all()
    assert np.abs(out[3, 6] - (161, 63, 67)).max() <= 1


def test_the_several_references_mask_covers_every_token_of_a_long_region():
    """Diffusers resizes an IP-Adapter mask by guessing each layer's grid from the mask's aspect ratio;
    for a 136×496 region the region's own ratio misses at the deeper layers (tokens left without the
    references, and a warning), the shape the engine sends hits at every layer."""
    import warnings

    import torch
    from diffusers.image_processor import IPAdapterMaskProcessor

    from backend.steering.reference import PreparedReference

    counts = [62 * 17, 31 * 9, 16 * 5, 8 * 3]  # the SD UNet's four resolutions for 496×136 px
    with pytest.warns(UserWarning, match="aspect ratio of the mask"):
        IPAdapterMaskProcessor.downsample(torch.ones(1, 62, 17), 1, counts[2], 1)
    prepared = PreparedReference(embeds=[torch.zeros(2, 2, 8)], count=2, levels=4, latent_scale=8)
    mask = prepared.kwargs((136, 496))["cross_attention_kwargs"]["ip_adapter_masks"][0]
    assert mask.shape[:2] == (1, 2) and bool((mask == 1).all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in counts:
            assert IPAdapterMaskProcessor.downsample(mask[:, 0], 1, n, 1).shape[1] == n
    assert "cross_attention_kwargs" not in PreparedReference(embeds=[], count=1).kwargs((136, 496))


def test_the_check_before_the_job_refuses_bad_adapters_and_another_family(files, tiny_sd15_folder, tmp_path):
    """What the CLI runs before any job (exit 2): the adapter's files, and its family against the model's config."""
    from backend.errors import ModelError
    from backend.ops.base import check_model

    check_model(img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sd15)))  # fits: no error
    with pytest.raises(ModelError, match=r"tiny-sdxl.safetensors is an IP-Adapter for .* \(cross-attention width 96\), "
                                         r"but the model sd15-4ch-diffusers is SD 1.x/2.x \(width 32\): choose an "
                                         r"IP-Adapter made for SD 1.x/2.x\.$"):
        check_model(img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.sdxl)))
    with pytest.raises(ModelError, match="pickle"):
        check_model(img2img(tiny_sd15_folder, references=[ref()], ip_adapter=str(files.pickle)))
