"""LoRAs (backend.steering.lora) on the tiny random models, through the engine and diffusers' real loaders:
kohya and diffusers layouts for SD 1.5 and SDXL, weights, switching between jobs without reloading, and one
sentence for every file that cannot be used. The full-size layouts are checked on the meta device."""
import json
import shutil

import numpy as np
import pytest

from backend import Img2ImgRequest
from backend.errors import ModelError
from backend.events import Failed, Result
from backend.ops.base import check_model
from backend.steering import LoraRef, lora

import tiny_models
import tiny_steering_lora as tl
from conftest import make_scene


@pytest.fixture(scope="module")
def user_folders(tmp_path_factory):
    """A user model folder whose loras/ and embeddings/ folders sit beside it (as steering_dir finds them)."""
    root = tmp_path_factory.mktemp("user")
    (root / "models").mkdir()
    (root / "loras").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENT_STUDIO_MODELS", str(root / "models"))
        yield root


@pytest.fixture(scope="module")
def sd15_loras(user_folders):
    """Random LoRAs for the tiny SD 1.5 model, saved in loras/: kohya (UNet + text encoder), diffusers (same
    layers, other weights), a UNet-only and a text-encoder-only one."""
    comps = tiny_models.build_components("sd15", 4, seed=0)
    folder = user_folders / "loras"
    return {
        "kohya": tl.save_lora(folder / "style-kohya.safetensors", tl.lora_state_dict(comps, "kohya", seed=1)),
        "diffusers": tl.save_lora(folder / "style-diffusers.safetensors",
                                  tl.lora_state_dict(comps, "diffusers", seed=2)),
        "unet": tl.save_lora(folder / "unet-only.safetensors", tl.lora_state_dict(comps, "kohya", seed=3, text=False)),
        "text": tl.save_lora(folder / "text-only.safetensors",
                             tl.lora_state_dict(comps, "diffusers", seed=4, unet=False, scale=2.0)),
    }


@pytest.fixture(scope="module")
def sdxl_loras(user_folders):
    comps = tiny_models.build_components("sdxl", 4, seed=0)
    folder = user_folders / "loras"
    return {
        "kohya": tl.save_lora(folder / "xl-kohya.safetensors", tl.lora_state_dict(comps, "kohya", seed=5)),
        "diffusers": tl.save_lora(folder / "xl-diffusers.safetensors", tl.lora_state_dict(comps, "diffusers", seed=6)),
    }


def job(model, loras=(), **kw):
    img, _ = make_scene()
    args = dict(image=img, model=str(model), steps=2, strength=0.75, guidance=5.0, seed=3, prompt="a red boat",
                loras=tuple(loras))
    args.update(kw)
    return Img2ImgRequest(**args)


def run(engine, recorder, request):
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), events[-1]
    return events[-1].images[0].image


@pytest.fixture
def base_loads(monkeypatch):
    """Counts the base model loads (backend.models._load_pipeline calls)."""
    import backend.models as models

    calls = []
    real = models._load_pipeline

    def counting(*args, **kw):
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(models, "_load_pipeline", counting)
    return calls


def test_sd15_weights_layouts_and_switching_without_reloading(engine, recorder, tiny_sd15_folder, sd15_loras,
                                                              base_loads):
    base = run(engine, recorder, job(tiny_sd15_folder))
    model = engine._models.get(str(tiny_sd15_folder))
    loads = len(base_loads)
    assert loads <= 1
    full = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya", 1.0)]))
    assert np.abs(full.astype(int) - base.astype(int)).mean() > 1.0
    zero = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya", 0.0)]))
    assert np.array_equal(zero, base)
    half = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya.safetensors", 0.5)]))
    assert not np.array_equal(half, base) and not np.array_equal(half, full)
    # Half the LoRA moves the image less far from the base than all of it.
    d = lambda a, b: np.abs(a.astype(int) - b.astype(int)).mean()  # noqa: E731
    assert 0 < d(half, base) < d(full, base)
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder)), base)  # removed: the base exactly

    by_path = run(engine, recorder, job(tiny_sd15_folder, [LoraRef(str(sd15_loras["diffusers"]), 1.0)]))
    assert not np.array_equal(by_path, base) and not np.array_equal(by_path, full)
    both = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya", 1.0), LoraRef("style-diffusers", 1.0)]))
    assert not np.array_equal(both, full) and not np.array_equal(both, by_path)
    # Back to one of them: exactly what it gave before (weights are set, not accumulated).
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya", 1.0)])), full)
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder)), base)

    # The base model was loaded (at most) once, before any LoRA, and never again; each LoRA file read once.
    assert len(base_loads) == loads and engine._models.get(str(tiny_sd15_folder)) is model
    assert model.lora_loads == 2


def test_unet_and_text_encoder_layers_each_change_the_result(engine, recorder, tiny_sd15_folder, sd15_loras):
    base = run(engine, recorder, job(tiny_sd15_folder))
    unet = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("unet-only")]))
    text = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("text-only")]))
    assert not np.array_equal(unet, base) and not np.array_equal(text, base) and not np.array_equal(unet, text)
    model = engine._models.get(str(tiny_sd15_folder))
    pipe = model.inpaint
    assert lora.injected_layers(pipe, model.lora_state.adapters[lora.file_key(sd15_loras["text"])]) == 12
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder)), base)


def test_two_queued_jobs_with_different_loras_each_get_their_own(engine, recorder, tiny_sd15_folder, sd15_loras):
    a_alone = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya", 0.8)]))
    b_alone = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-diffusers", -0.7)]))
    base_alone = run(engine, recorder, job(tiny_sd15_folder))
    ids = [engine.submit(job(tiny_sd15_folder, [LoraRef("style-kohya", 0.8)])),
           engine.submit(job(tiny_sd15_folder, [LoraRef("style-diffusers", -0.7)])),
           engine.submit(job(tiny_sd15_folder)),
           engine.submit(job(tiny_sd15_folder, [LoraRef("style-kohya", 0.8)]))]
    got = [recorder.wait(i)[-1].images[0].image for i in ids]
    assert np.array_equal(got[0], a_alone) and np.array_equal(got[1], b_alone)
    assert np.array_equal(got[2], base_alone) and np.array_equal(got[3], a_alone)
    assert not np.array_equal(a_alone, b_alone)


def test_a_pickled_lora_loads_only_when_allowed_and_gives_the_same_result(engine, recorder, tiny_sd15_folder,
                                                                          sd15_loras, user_folders, tmp_path):
    import torch
    from safetensors.torch import load_file

    pt = tmp_path / "pickled.pt"
    torch.save(load_file(str(sd15_loras["kohya"])), pt)
    with pytest.raises(ModelError, match=r"^The LoRA pickled\.pt is a pickle file.*--allow-pickle\)\.$"):
        check_model(job(tiny_sd15_folder, [LoraRef(str(pt))]))
    events = recorder.wait(engine.submit(job(tiny_sd15_folder, [LoraRef(str(pt))])))
    assert isinstance(events[-1], Failed) and "pickle" in events[-1].message
    check_model(job(tiny_sd15_folder, [LoraRef(str(pt))], allow_pickle=True))
    from_pickle = run(engine, recorder, job(tiny_sd15_folder, [LoraRef(str(pt))], allow_pickle=True))
    assert np.array_equal(from_pickle, run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya")])))


def test_sdxl_kohya_and_diffusers_layouts(engine, recorder, tiny_sdxl_folder, sdxl_loras):
    base = run(engine, recorder, job(tiny_sdxl_folder))
    kohya = run(engine, recorder, job(tiny_sdxl_folder, [LoraRef("xl-kohya")]))
    diff = run(engine, recorder, job(tiny_sdxl_folder, [LoraRef("xl-diffusers", 0.7)]))
    assert not np.array_equal(kohya, base) and not np.array_equal(diff, base) and not np.array_equal(kohya, diff)
    assert np.array_equal(run(engine, recorder, job(tiny_sdxl_folder, [LoraRef("xl-kohya", 0.0)])), base)
    assert np.array_equal(run(engine, recorder, job(tiny_sdxl_folder)), base)
    model = engine._models.get(str(tiny_sdxl_folder))
    pipe = model.inpaint
    # Every layer of both files went in: UNet (sgm names remapped), CLIP-L and OpenCLIP-bigG.
    for key, path in sdxl_loras.items():
        layers = sum(1 for k in tl.load_keys(path) if k.endswith(("lora_down.weight", "lora_A.weight")))
        assert lora.injected_layers(pipe, model.lora_state.adapters[lora.file_key(path)]) == layers
    assert model.lora_loads == 2


# --- refusals: one sentence naming the file, before the job (check) and in it (apply) -----------------------

def test_a_lora_for_another_family_is_refused_naming_both(engine, recorder, tiny_sd15_folder, tiny_sdxl_folder,
                                                          sd15_loras, sdxl_loras):
    with pytest.raises(ModelError) as err:
        check_model(job(tiny_sd15_folder, [LoraRef("xl-kohya")]))
    assert str(err.value) == (f"xl-kohya.safetensors is a LoRA for SDXL, but the model {tiny_sd15_folder.name} is "
                              "SD 1.x/2.x: choose a LoRA made for SD 1.x/2.x.")
    with pytest.raises(ModelError, match=r"^style-kohya\.safetensors is a LoRA for SD 1\.x/2\.x, but the model .* is "
                                         r"SDXL: choose a LoRA made for SDXL\.$"):
        check_model(job(tiny_sdxl_folder, [LoraRef("style-kohya")]))
    with pytest.raises(ModelError, match="style-diffusers.safetensors is a LoRA for a model with 32-wide"):
        check_model(job(tiny_sdxl_folder, [LoraRef("style-diffusers")]))
    # The job says the same, with the model as it was.
    events = recorder.wait(engine.submit(job(tiny_sd15_folder, [LoraRef("xl-diffusers")])))
    assert isinstance(events[-1], Failed) and "is a LoRA for SDXL" in events[-1].message


def _header_only_lora(path, shapes):
    """A LoRA file with these tensor names and shapes (zeros: only its header matters)."""
    import torch

    return tl.save_lora(path, {k: torch.zeros(s) for k, s in shapes.items()})


@pytest.mark.parametrize("width, text, model, family", [
    (2048, 768, "sd15", "SDXL"), (1024, 1024, "sd15", "SD 2.x"), (768, 768, "sd21-base", "SD 1.x"),
    (768, 768, "sdxl-base", "SD 1.x")])
def test_full_size_families_are_told_apart_from_the_header(tmp_path, width, text, model, family):
    path = _header_only_lora(tmp_path / "other.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, width),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, text),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": (text, 4)})
    from backend.models import ModelSource
    from backend.paths import MODEL_CONFIGS

    shape = lora.source_shape(ModelSource("folder", str(MODEL_CONFIGS / model), model))
    info = lora.inspect(path, lora.tensor_table(path))
    assert info.family == family
    theirs = {"sd15": "SD 1.x", "sd21-base": "SD 2.x", "sdxl-base": "SDXL"}[model]
    with pytest.raises(ModelError, match=rf"^other\.safetensors is a LoRA for {family}, but the model {model} is "
                                         rf"{theirs}: choose a LoRA made for {theirs}\.$"):
        lora.check_fits(info, shape)


def test_missing_truncated_not_a_lora_and_lycoris_files_are_refused(tiny_sd15_folder, sd15_loras, user_folders,
                                                                   tmp_path):
    folder = user_folders / "loras"
    with pytest.raises(ModelError) as err:
        check_model(job(tiny_sd15_folder, [LoraRef("no-such-lora")]))
    assert str(err.value) == (f"The LoRA 'no-such-lora' was not found: give the path of its .safetensors file, or "
                              f"put it into {folder}.")

    data = sd15_loras["kohya"].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"^cut\.safetensors could not be read as a \.safetensors file \(it ends "
                                         r"[\d,]+ bytes short of its last tensor\): it may be truncated"):
        check_model(job(tiny_sd15_folder, [LoraRef(str(cut))]))

    import torch

    other = tl.save_lora(tmp_path / "vae.safetensors", {"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)})
    with pytest.raises(ModelError, match=r"^vae\.safetensors has tensors that are not a LoRA's \(e\.g\. "
                                         r"'decoder\.conv_in\.weight'\): choose a LoRA in the kohya"):
        check_model(job(tiny_sd15_folder, [LoraRef(str(other))]))

    loha = _header_only_lora(tmp_path / "loha.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": (32, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": (4, 32)})
    with pytest.raises(ModelError, match=r"^loha\.safetensors is a LyCORIS file .*: use a plain LoRA\.$"):
        check_model(job(tiny_sd15_folder, [LoraRef(str(loha))]))

    half = _header_only_lora(tmp_path / "half.safetensors", {
        "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": (4, 32)})
    with pytest.raises(ModelError, match=r"^half\.safetensors is not a complete LoRA \('unet\.down_blocks\.0\."
                                         r"attentions\.0\.proj_in\.' has only one of its two matrices\)"):
        check_model(job(tiny_sd15_folder, [LoraRef(str(half))]))


def test_a_lora_whose_layers_the_model_lacks_is_refused_in_the_job(engine, recorder, tiny_sd15_folder, sd15_loras,
                                                                   tmp_path):
    """Right widths, wrong places (an SDXL-style sgm name on an SD model): diffusers would skip the layer."""
    from safetensors.torch import load_file

    before = run(engine, recorder, job(tiny_sd15_folder, seed=9))
    sd = load_file(str(sd15_loras["unet"]))
    sd = {k.replace("lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_input_blocks_9_1_proj_in"): v
          for k, v in sd.items()}
    odd = tl.save_lora(tmp_path / "odd.safetensors", sd)
    check_model(job(tiny_sd15_folder, [LoraRef(str(odd))]))  # the header cannot tell
    events = recorder.wait(engine.submit(job(tiny_sd15_folder, [LoraRef(str(odd))])))
    assert isinstance(events[-1], Failed)
    assert events[-1].message.startswith("odd.safetensors changes 1 of its ")
    assert "layers in places the model" in events[-1].message
    # Nothing of it stays: the next job is the base model's.
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, seed=9)), before)
    model = engine._models.get(str(tiny_sd15_folder))
    assert lora.file_key(odd) not in model.lora_state.adapters
    assert lora.adapter_name(lora.file_key(odd)) not in model.inpaint.get_list_adapters().get("unet", [])

    # A job that loaded one LoRA and then failed on the next leaves nothing active that the next job did not ask for.
    kohya = run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya")], seed=9))
    fresh = tmp_path / "fresh.safetensors"
    shutil.copy(sd15_loras["diffusers"], fresh)
    events = recorder.wait(engine.submit(job(tiny_sd15_folder, [LoraRef(str(fresh)), LoraRef(str(odd))], seed=9)))
    assert isinstance(events[-1], Failed) and events[-1].message.startswith("odd.safetensors changes")
    assert lora.file_key(fresh) in model.lora_state.adapters  # loaded before the failure, and kept
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, [LoraRef("style-kohya")], seed=9)), kohya)


# --- full-size layouts (shapes only, on the meta device) --------------------------------------------------

def _meta_models(config_name):
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from backend.paths import MODEL_CONFIGS

    folder = MODEL_CONFIGS / config_name
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))
        texts = {"text_encoder": CLIPTextModel(CLIPTextConfig.from_json_file(folder / "text_encoder" / "config.json"))}
        if (folder / "text_encoder_2").is_dir():
            texts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_json_file(folder / "text_encoder_2" / "config.json"))
    return folder, unet, texts


def _kohya_full_size(unet, texts, family, rank=8):
    """The kohya-ss key layout of a full LoRA for these models (meta tensors; real alphas)."""
    import torch

    sd = {}
    shapes = tl.lora_module_shapes(unet, tl.UNET_TARGETS)
    # kohya-ss also trains the resnets' convolutions (LoCon-style "conv_dim") and time embeddings.
    shapes.update(tl.lora_module_shapes(unet, ("conv1", "conv2", "time_emb_proj")))
    names = tl.kohya_names([n for n in shapes], unet.config, family)
    prefixes = {"text_encoder": "lora_te1_" if family == "sdxl" else "lora_te_", "text_encoder_2": "lora_te2_"}

    def add(name, shape):
        down = (rank, shape[1], *shape[2:]) if len(shape) == 4 else (rank, shape[1])
        up = (shape[0], rank, 1, 1) if len(shape) == 4 else (shape[0], rank)
        sd[f"{name}.lora_down.weight"] = torch.empty(down, device="meta")
        sd[f"{name}.lora_up.weight"] = torch.empty(up, device="meta")
        sd[f"{name}.alpha"] = torch.tensor(float(rank))

    for module, shape in shapes.items():
        add(names[module], shape)
    for component, model in texts.items():
        for module, shape in tl.lora_module_shapes(model, tl.TEXT_TARGETS).items():
            add(prefixes[component] + tl.kohya_text_name(module), shape)
    return sd, shapes


@pytest.mark.slow  # builds the full-size models on the meta device (diffusers imports take most of it)
@pytest.mark.parametrize("config_name, family", [("sd15", "sd15"), ("sdxl-base", "sdxl")])
def test_real_kohya_layouts_map_onto_the_real_models(config_name, family, tmp_path):
    """diffusers' conversion of kohya-ss keys (SD 1.5: diffusers names; SDXL: sgm names, te1/te2) gives layers
    that exist in the full-size model, with the shapes of its weights; the header check accepts the file."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, \
        convert_unet_state_dict_to_peft

    from backend.models import ModelSource

    folder, unet, texts = _meta_models(config_name)
    sd, unet_shapes = _kohya_full_size(unet, texts, family)
    table = {k: list(v.shape) for k, v in sd.items()}
    if family == "sdxl":
        converted, alphas = StableDiffusionXLPipeline.lora_state_dict(dict(sd), unet_config=unet.config)
    else:
        converted, alphas = StableDiffusionPipeline.lora_state_dict(dict(sd))
    assert len(alphas) == len(table) // 3

    modules = {"unet": dict(unet.named_modules())}
    modules.update({c: dict(m.named_modules()) for c, m in texts.items()})
    found = 0
    for component in modules:
        part = {k.removeprefix(component + "."): v for k, v in converted.items() if k.startswith(component + ".")}
        if component == "unet":
            part = convert_unet_state_dict_to_peft(part)
        else:
            part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
            if not hasattr(texts[component], "text_model"):  # as diffusers does: transformers 5 flattened CLIPTextModel
                part = {k.removeprefix("text_model."): v for k, v in part.items()}
        for key, value in part.items():
            module_name, _, which = key.rpartition(".lora_")
            layer = modules[component].get(module_name)
            assert layer is not None, f"{component}: {key} names no layer of the model"
            weight = tuple(layer.weight.shape)
            if which == "A.weight":
                assert tuple(value.shape[1:]) == weight[1:], key
                found += 1
            else:
                assert value.shape[0] == weight[0], key
    assert found == len(table) // 3 and found > 100

    info = lora.inspect(tmp_path / "real.safetensors", table)
    assert info.layout == "kohya" and info.layers == found
    lora.check_fits(info, lora.source_shape(ModelSource("folder", str(folder), config_name)))
    other = {"sd15": "sdxl-base", "sdxl-base": "sd15"}[config_name]
    theirs = "SDXL" if family == "sdxl" else "SD 1.x"
    with pytest.raises(ModelError, match=rf"^real\.safetensors is a LoRA for {theirs}"):
        lora.check_fits(info, lora.source_shape(ModelSource("folder", str(folder.parent / other), other)))


def test_checks_need_no_torch_for_safetensors(tiny_sd15_folder, sd15_loras):
    import subprocess
    import sys

    code = ("import sys, os; os.environ['LATENT_STUDIO_MODELS'] = sys.argv[2]\n"
            "from backend.steering import lora\n"
            "from backend.models import resolve\n"
            "from backend import Img2ImgRequest\n"
            "from backend.steering import LoraRef\n"
            "import numpy as np\n"
            "r = Img2ImgRequest(image=np.zeros((8, 8, 4), np.uint8), model=sys.argv[1],\n"
            "                   loras=(LoraRef('style-kohya'),))\n"
            "lora.check(r, resolve(sys.argv[1]))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    from backend.paths import ROOT

    out = subprocess.run([sys.executable, "-c", code, str(tiny_sd15_folder), str(sd15_loras["kohya"].parent.parent /
                                                                                   "models")],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_at_most_keep_adapters_stay_loaded(engine, recorder, tiny_sd15_folder, sd15_loras, tmp_path, monkeypatch):
    """Beyond lora.KEEP, the least recently used LoRA is deleted from the model; used again, it is read again
    and gives what it gave."""
    monkeypatch.setattr(lora, "KEEP", 2)
    copies = []
    for i in range(3):
        copies.append(tmp_path / f"copy{i}.safetensors")
        shutil.copy(sd15_loras["unet"], copies[-1])
    first = run(engine, recorder, job(tiny_sd15_folder, [LoraRef(str(copies[0]))]))
    model = engine._models.get(str(tiny_sd15_folder))
    loads = model.lora_loads
    for path in copies[1:]:
        assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, [LoraRef(str(path))])), first)
    assert len(model.lora_state.adapters) == 2 and len(model.inpaint.get_list_adapters()["unet"]) == 2
    assert lora.file_key(copies[0]) not in model.lora_state.adapters  # the least recently used went
    assert np.array_equal(run(engine, recorder, job(tiny_sd15_folder, [LoraRef(str(copies[0]))])), first)
    assert model.lora_loads == loads + 3
