"""ControlNets from a layer (backend/steering/control.py): tiny random ControlNets (``from_unet`` of the
tiny UNets, every weight perturbed) saved as diffusers folders and single files, loaded through the real
loaders, run by the engine in every operation; the full-size key layouts mapped on the meta device."""
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_steering_control as tsc
from backend.core import DiffusionSettings, JobContext, diffuse_region
from backend.errors import InvalidRequest, ModelError
from backend.events import Failed, Result
from backend.ops.img2img import Img2ImgRequest
from backend.ops.inpaint import InpaintRequest
from backend.ops.outpaint import OutpaintRequest
from backend.ops.upscale import UpscaleRequest, check as upscale_check
from backend.paths import MODEL_CONFIGS
from backend.requests import GenerationRequest
from backend.steering import Control
from backend.steering import control as ctl
from backend.steering.job import prepare as prepare_steering


@pytest.fixture(scope="module")
def tiny_cn(tmp_path_factory):
    """The tiny ControlNets, in every file form (sd15 seeds 0 and 1, sdxl seed 0)."""
    root = tmp_path_factory.mktemp("controlnets")
    return {
        "sd15": tsc.save_controlnet_folder(root / "cn-sd15", "sd15", 0),
        "sd15b": tsc.save_controlnet_folder(root / "cn-sd15-b", "sd15", 1),
        "sd15_ldm": tsc.save_controlnet_single_file(root / "cn-sd15-ldm.safetensors", "sd15", 0, "ldm"),
        "sd15_prefixed": tsc.save_controlnet_single_file(root / "cn-sd15-pre.safetensors", "sd15", 0, "ldm",
                                                         "control_model."),
        "sdxl": tsc.save_controlnet_folder(root / "cn-sdxl", "sdxl", 0),
        "sdxl_file": tsc.save_controlnet_single_file(root / "cn-sdxl.safetensors", "sdxl", 0, "diffusers"),
        "sdxl_ldm": tsc.save_controlnet_single_file(root / "cn-sdxl-ldm.safetensors", "sdxl", 0, "ldm"),
        "root": root,
    }


@pytest.fixture(autouse=True)
def _folders(tmp_path_factory, monkeypatch):
    """The user's folders (models, controlnets, preprocessors) in a temporary place, empty unless a test fills them."""
    base = tmp_path_factory.getbasetemp() / "user"
    (base / "models").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(base / "models"))
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(base / "cache"))
    return base


def scribble(h=64, w=64, offset=0):
    """White lines on black, opaque: a scribble as drawn."""
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 3] = 255
    img[(8 + offset) % h: (8 + offset) % h + 3, :, :3] = 255
    img[:, (20 + offset) % w: (20 + offset) % w + 3, :3] = 255
    img[h // 2:, w // 2:, :3] = 255
    return img


def picture(h=64, w=64, seed=0):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = xx * 255 // (w - 1)
    img[..., 1] = yy * 255 // (h - 1)
    img[..., 2] = np.random.default_rng(seed).integers(60, 200, (h, w))
    img[..., 3] = 255
    return img


def result(engine, recorder, request):
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Result), events[-1]
    return events[-1].images[0]


def failure(engine, recorder, request) -> str:
    events = recorder.wait(engine.submit(request))
    assert isinstance(events[-1], Failed), events[-1]
    return events[-1].message


def cn(paths, key, image, kind, *args, **kw):
    """A Control of the tiny ControlNet ``key``."""
    return Control(str(paths[key]), image, kind, *args, **kw)


def assert_kept(item, img):
    """Outside the job's mask, the result is the image, bit-exact."""
    x, y, w, h = item.rect
    keep = item.mask == 0
    assert keep.any() and np.array_equal(item.image[keep], img[y: y + h, x: x + w][keep])


def img2img(folder, *controls, **kw):
    base = dict(image=picture(), model=str(folder), prompt="a house", steps=4, strength=0.75, seed=3)
    base.update(kw)
    return Img2ImgRequest(controls=tuple(controls), **base)


# --- control images, no model -------------------------------------------------------------------------

def test_line_drawings_become_white_lines_on_black_whatever_they_were_drawn_as():
    white_on_black = scribble()
    expected = white_on_black[..., :3]
    assert np.array_equal(ctl.lines(white_on_black), expected)
    paper = white_on_black.copy()
    paper[..., :3] = 255 - paper[..., :3]  # dark lines on a light ground: inverted
    assert np.array_equal(ctl.lines(paper), expected)
    for colour in ((200, 30, 30, 255), (0, 0, 0, 255)):  # strokes on a transparent layer: their opacity is the line
        strokes = np.zeros_like(white_on_black)
        strokes[8:11, :] = colour
        out = ctl.lines(Control("cn", strokes, "scribble").image)
        assert (out[8:11] == 255).all() and (out[:8] == 0).all() and (out[11:] == 0).all()


def test_transparent_parts_count_as_black():
    layer = picture()
    layer[:, :32, 3] = 0
    rgb = ctl.over_black(layer)
    assert (rgb[:, :32] == 0).all() and np.array_equal(rgb[:, 32:], layer[:, 32:, :3])


def test_a_region_is_cut_from_the_control_image_and_what_lies_outside_it_is_black():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = 200  # the left half lit
    p = ctl.PreparedControl(Control("cn", scribble(40, 60), "scribble"), "scribble", image)
    # The request's image sits at (100, 50); the region starts 20 px left of it (an outpaint) and is
    # scaled ×2 to the working size.
    kw = ctl.region_kwargs((p,), (100, 50), (80, 50, 40, 40), (80, 80), None, None)
    out = np.asarray(kw["control_image"])
    assert out.shape == (80, 80, 3)
    assert (out[:, :40] == 0).all()  # outside the control image: no control
    assert (out[:, 42:78] == 200).all()  # the image's lit part, scaled
    assert kw["controlnet_conditioning_scale"] == 1.0
    assert kw["control_guidance_start"] == 0.0 and kw["control_guidance_end"] == 1.0


def test_canny_runs_at_the_working_size_and_several_controls_give_lists():
    layer = scribble()
    canny = ctl.PreparedControl(Control("cn", layer, "canny", 0.7, 0.1, 0.9), "canny", ctl.over_black(layer))
    tile = ctl.PreparedControl(Control("cn-tile", None, "tile", 1.5), "tile", None)
    pixels = picture(32, 32, seed=5)
    kw = ctl.region_kwargs((canny, tile), (0, 0), (16, 16, 32, 32), (64, 64), pixels, np.ones((32, 32), np.float32))
    edges, own = (np.asarray(i) for i in kw["control_image"])
    assert set(np.unique(edges)) <= {0, 255} and edges.any() and edges.shape == (64, 64, 3)
    assert np.array_equal(own, np.asarray(Image.fromarray(pixels[..., :3]).resize((64, 64), Image.LANCZOS)))
    assert kw["controlnet_conditioning_scale"] == [0.7, 1.5]
    assert kw["control_guidance_start"] == [0.1, 0.0] and kw["control_guidance_end"] == [0.9, 1.0]


def test_the_inpaint_control_sets_the_masked_pixels_to_minus_one():
    p = ctl.PreparedControl(Control("cn_inpaint", None, "inpaint"), "inpaint", None)
    pixels = picture(32, 32)
    soft = np.zeros((32, 32), np.float32)
    soft[8:24, 8:24] = 1
    image = ctl.region_kwargs((p,), (0, 0), (0, 0, 32, 32), (32, 32), pixels, soft)["control_image"]
    assert isinstance(image, torch.Tensor) and image.shape == (1, 3, 32, 32)
    assert (image[0, :, 8:24, 8:24] == -1).all()
    assert torch.allclose(image[0, :, :8], torch.from_numpy(pixels[:8, :, :3].transpose(2, 0, 1) / 255.0).float())


def test_empty_and_fully_transparent_control_layers_are_refused_with_a_sentence():
    black = np.zeros((64, 64, 4), np.uint8)
    black[..., 3] = 255
    for layer in (black, np.zeros((64, 64, 4), np.uint8)):
        with pytest.raises(InvalidRequest, match=r"^The control 'sketch' is empty: paint the control .*"
                                                 r"or remove the control\.$"):
            Control("cn", layer, "scribble", label="sketch")


def test_a_control_image_of_another_size_is_scaled_to_the_request():
    request = img2img("m", Control("cn", scribble(32, 48), "scribble", label="lines"))
    control = request.controls[0]
    assert control.image.shape == (64, 64, 4) and control.scaled_from == (48, 32)


# --- files: found, checked, refused -------------------------------------------------------------------

def test_single_files_in_both_layouts_and_folders_resolve_to_their_config(tiny_cn):
    for key in ("sd15", "sd15_ldm", "sd15_prefixed"):
        source = ctl.resolve(str(tiny_cn[key]))
        assert source.config["cross_attention_dim"] == 32 and source.config.get("addition_embed_type") is None
    for key in ("sdxl", "sdxl_file", "sdxl_ldm"):
        assert ctl.resolve(str(tiny_cn[key])).family == "SDXL"


def test_a_name_is_looked_up_in_the_controlnets_folder(tiny_cn, _folders):
    folder = _folders / "controlnets"
    folder.mkdir(exist_ok=True)
    target = folder / "my-scribble.safetensors"
    target.write_bytes(tiny_cn["sd15_ldm"].read_bytes())
    (folder / "my-scribble.config").mkdir(exist_ok=True)
    (folder / "my-scribble.config" / "config.json").write_bytes(
        (tiny_cn["sd15_ldm"].with_name("cn-sd15-ldm.config") / "config.json").read_bytes())
    assert ctl.resolve("my-scribble").path == target
    with pytest.raises(ModelError, match=r"^The ControlNet 'nothing-here' was not found: .* or put it in "
                                         r".*controlnets\.$"):
        ctl.resolve("nothing-here")


def test_pickles_are_refused_unless_allowed_and_then_read_as_weights_only(tiny_cn, tmp_path, malicious_pickle):
    from safetensors.torch import load_file

    pth = tmp_path / "cn-sd15.pth"
    torch.save(load_file(str(tiny_cn["sd15_ldm"])), pth)
    (tmp_path / "cn-sd15.config").mkdir()
    (tmp_path / "cn-sd15.config" / "config.json").write_text(
        (tiny_cn["sd15_ldm"].with_name("cn-sd15-ldm.config") / "config.json").read_text())
    with pytest.raises(ModelError, match=r"^The ControlNet cn-sd15\.pth is a pickle file, which can run code .*"
                                         r"\(--allow-pickle\)\.$"):
        ctl.resolve(str(pth))
    assert ctl.resolve(str(pth), allow_pickle=True).config["cross_attention_dim"] == 32
    bad, marker = malicious_pickle
    with pytest.raises(ModelError, match="holds more than weights"):
        ctl.resolve(str(bad), allow_pickle=True)
    assert not marker.exists()


def test_truncated_files_and_files_with_missing_or_unknown_keys_are_one_sentence_naming_the_file(tiny_cn, tmp_path):
    from safetensors.torch import load_file, save_file

    data = tiny_cn["sd15_ldm"].read_bytes()
    short = tmp_path / "short.safetensors"
    short.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelError, match=r"^short\.safetensors could not be read as a \.safetensors file \(it ends "
                                         r"1,000 bytes short of its last tensor\): .*"):
        ctl.resolve(str(short))
    sidecar = tiny_cn["sd15_ldm"].with_name("cn-sd15-ldm.config")
    state = load_file(str(tiny_cn["sd15_ldm"]))
    for name, change in (("lacking", lambda s: s.pop("zero_convs.3.0.weight")),
                         ("extra", lambda s: s.__setitem__("zero_convs.99.0.weight", torch.zeros(1))),
                         ("resized", lambda s: s.__setitem__("middle_block_out.0.weight", torch.zeros(8, 8, 1, 1)))):
        changed = dict(state)
        change(changed)
        path = tmp_path / f"{name}.safetensors"
        save_file(changed, str(path))
        (tmp_path / f"{name}.config").mkdir()
        (tmp_path / f"{name}.config" / "config.json").write_text((sidecar / "config.json").read_text())
        with pytest.raises(ModelError) as info:
            ctl.resolve(str(path))
        text = str(info.value)
        assert text.startswith(f"{name}.safetensors ") and text.endswith(".") and text.count(". ") == 0, text
        assert {"lacking": "lacks 1 of the", "extra": "weights that an SD 1.x/2.x-style (cross-attention width 32) "
                "ControlNet does not have (`zero_convs.99.0.weight`…)",
                "resized": "has `controlnet_mid_block.weight` of shape [8, 8, 1, 1]"}[name] in text


def test_a_file_that_is_no_controlnet_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(ModelError, match=r"^lora\.safetensors is not a ControlNet \(it has no control-image input"):
        ctl.resolve(str(path))
    folder = tmp_path / "not-a-controlnet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "os.system"}))
    with pytest.raises(ModelError, match=r"^not-a-controlnet/config\.json names the class 'os\.system', not "
                                         r"ControlNetModel, so it is refused: .*\.$"):
        ctl.resolve(str(folder))


def test_the_check_before_the_job_imports_no_torch_and_refuses_another_family(tiny_cn, tiny_sd15_folder):
    """``engine.check`` runs on the caller's thread (the GUI's): it must not import torch."""
    import subprocess
    import sys

    from backend.paths import ROOT

    code = (
        "import sys, numpy as np\n"
        "from backend.ops.img2img import Img2ImgRequest\n"
        "from backend.steering import Control, control\n"
        "from backend.errors import ModelError\n"
        "img = np.zeros((64, 64, 4), np.uint8); img[..., 3] = 255; img[8:12, :, :3] = 255\n"
        f"def request(net): return Img2ImgRequest(image=img, model={str(tiny_sd15_folder)!r}, "
        "controls=(Control(net, img, 'scribble'),))\n"
        f"assert control.check(request({str(tiny_cn['sd15_ldm'])!r}))[0].config['cross_attention_dim'] == 32\n"
        f"bad = request({str(tiny_cn['sdxl'])!r})\n"
        "try:\n    control.check(bad)\nexcept ModelError as e:\n    print(e)\n"
        "print('torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    refusal, modules = out.stdout.strip().splitlines()
    assert refusal.startswith("The ControlNet cn-sdxl is made for SDXL models, but the model sd15-4ch-diffusers is an")
    assert modules == "False False"


# --- full-size layouts (shapes only, nothing allocated) ----------------------------------------------

# Shapes of the real files: lllyasviel's ControlNet v1.1 for SD 1.5 (control_v11p_sd15_*), thibaud's SD 2.1
# ones, and diffusers/controlnet-canny-sdxl-1.0.
REAL_SHAPES = {
    "controlnet-sd15": {"input_hint_block.0.weight": [16, 3, 3, 3], "input_hint_block.14.weight": [320, 256, 3, 3],
                        "zero_convs.11.0.weight": [1280, 1280, 1, 1], "middle_block_out.0.weight": [1280, 1280, 1, 1],
                        "time_embed.0.weight": [1280, 320], "input_blocks.1.1.proj_in.weight": [320, 320, 1, 1],
                        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768]},
    "controlnet-sd21": {"input_blocks.1.1.proj_in.weight": [320, 320],
                        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024]},
    "controlnet-sdxl": {"controlnet_cond_embedding.conv_in.weight": [16, 3, 3, 3],
                        "add_embedding.linear_1.weight": [1280, 2816],
                        "controlnet_down_blocks.8.weight": [1280, 1280, 1, 1],
                        "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight": [1280, 2048]},
}


@pytest.mark.parametrize("config,layout,prefix", [
    ("controlnet-sd15", "ldm", ""), ("controlnet-sd15", "ldm", "control_model."), ("controlnet-sd21", "ldm", ""),
    ("controlnet-sdxl", "diffusers", ""), ("controlnet-sdxl", "ldm", ""),
])
def test_full_size_files_map_onto_the_shipped_configs(tmp_path, config, layout, prefix):
    shapes = tsc.full_size_shapes(MODEL_CONFIGS / config, layout, prefix)
    for key, shape in REAL_SHAPES[config].items():
        if layout == "diffusers" or not key.startswith(("controlnet_", "add_", "down_")):
            assert shapes[prefix + key] == shape, key
    assert len(shapes) == {"controlnet-sdxl": 844}.get(config, 340)
    path = tsc.write_header_only(tmp_path / "full.safetensors", shapes)
    source = ctl.resolve(str(path))  # every key mapped by diffusers' converter, with its shape
    assert source.config_folder == MODEL_CONFIGS / config and source.kind == "single_file"
    base = "sdxl-base" if config == "controlnet-sdxl" else "sd15" if config == "controlnet-sd15" else "sd21-base"
    unet = json.loads((MODEL_CONFIGS / base / "unet" / "config.json").read_text())
    ctl.check_family(source, unet, base)
    other = "sd15" if base == "sdxl-base" else "sdxl-base"
    other = json.loads((MODEL_CONFIGS / other / "unet" / "config.json").read_text())
    with pytest.raises(ModelError, match=r"^The ControlNet full is made for SD(XL| [12]\.x) models, but the model m is "
                                         r"an "
                                         r"SD(XL| 1\.x) model: choose a ControlNet made for SD(XL| 1\.x) models\.$"):
        ctl.check_family(source, other, "m")


def test_the_shipped_configs_are_from_unet_of_the_shipped_unets():
    from diffusers import ControlNetModel, UNet2DConditionModel

    pairs = (("controlnet-sd15", "sd15"), ("controlnet-sd21", "sd21-base"), ("controlnet-sdxl", "sdxl-base"))
    counts = {}
    for config, base in pairs:
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(MODEL_CONFIGS / base / "unet"))
            derived = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        shipped = json.loads((MODEL_CONFIGS / config / "config.json").read_text())
        assert {k: v for k, v in shipped.items() if not k.startswith("_")} == {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in derived.config.items() if not k.startswith("_")}
        assert ctl._check_config(shipped, config) is shipped  # a ControlNetModel, as the loader asks
        counts[config] = sum(v.numel() for v in derived.state_dict().values())
    # The published ones': control_v11p_sd15_canny, controlnet-canny-sdxl-1.0.
    assert counts["controlnet-sd15"] == 361_279_120 and counts["controlnet-sdxl"] == 1_251_014_160


# --- the engine: effects --------------------------------------------------------------------------------

def test_a_control_changes_the_result_strength_0_and_an_empty_range_do_not(engine, recorder, tiny_sd15_folder, tiny_cn):
    plain = result(engine, recorder, img2img(tiny_sd15_folder)).image
    on = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(), "scribble"))).image
    zero = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(), "scribble", 0.0)))
    # 3 steps (4 at strength 0.75): a control for 0.9-1 acts on none of them (diffusers keeps a ControlNet at
    # step i when start <= i/n and (i+1)/n <= end).
    none = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(), "scribble",
                                                                       1.0, 0.9, 1.0))).image
    late = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(), "scribble",
                                                                       1.0, 0.3, 1.0))).image
    other = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(offset=20),
                                                                        "scribble"))).image
    assert np.abs(on.astype(int) - plain).mean() > 1
    assert np.array_equal(zero.image, plain) and np.array_equal(none, plain)  # bit-exact
    assert not np.array_equal(late, plain) and not np.array_equal(late, on)
    assert np.abs(other.astype(int) - on).mean() > 0.1  # the control image itself steers (measured 0.23)
    recorded = zero.parameters["ControlNet 0"]
    assert recorded.startswith("Module: scribble, Model: ") and "Weight: 0," in recorded


def test_a_single_file_in_the_original_layout_gives_what_its_diffusers_folder_gives(engine, recorder, tiny_sd15_folder,
                                                                                 tiny_cn):
    images = [result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, k, scribble(), "scribble"))).image
              for k in ("sd15", "sd15_ldm", "sd15_prefixed")]
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])


def test_two_controls_at_once(engine, recorder, tiny_sd15_folder, tiny_cn):
    a = cn(tiny_cn, "sd15", scribble(), "scribble")
    b = cn(tiny_cn, "sd15b", picture(seed=4), "canny", 0.8)
    one = result(engine, recorder, img2img(tiny_sd15_folder, a)).image
    two = result(engine, recorder, img2img(tiny_sd15_folder, b)).image
    both = result(engine, recorder, img2img(tiny_sd15_folder, a, b))
    assert not np.array_equal(both.image, one) and not np.array_equal(both.image, two)
    assert {"ControlNet 0", "ControlNet 1"} <= set(both.parameters)
    silent = result(engine, recorder, img2img(tiny_sd15_folder, a, cn(tiny_cn, "sd15b", picture(seed=4), "canny", 0.0)))
    assert np.array_equal(silent.image, one)  # a second control at strength 0 adds nothing


def test_a_scaled_control_image_is_noted(engine, recorder, tiny_sd15_folder, tiny_cn):
    item = result(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", scribble(32, 48), "scribble",
                                                                       label="lines")))
    assert ("The control image 'lines' was 48×32; it was scaled to 64×64, the size of the image it steers."
            in item.notes)


def test_inpaint_and_outpaint_follow_the_control(engine, recorder, tiny_sd15_folder, tiny_cn):
    img = picture()
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    base = dict(image=img, mask=mask, model=str(tiny_sd15_folder), steps=3, seed=2, padding=8)
    plain = result(engine, recorder, InpaintRequest(**base))
    steered = result(engine, recorder, InpaintRequest(controls=(cn(tiny_cn, "sd15", scribble(), "scribble"),),
                                                      **base))
    assert not np.array_equal(plain.image, steered.image)
    assert_kept(steered, img)
    out = dict(image=img, model=str(tiny_sd15_folder), right=32, steps=3, seed=2, overlap=8)
    plain = result(engine, recorder, OutpaintRequest(**out)).image
    steered = result(engine, recorder, OutpaintRequest(controls=(cn(tiny_cn, "sd15", scribble(), "scribble"),),
                                                       **out)).image
    assert not np.array_equal(plain, steered) and np.array_equal(steered[:, :48], img[:, :48])


def test_another_family_is_refused_naming_both(engine, recorder, tiny_sd15_folder, tiny_cn):
    message = failure(engine, recorder, img2img(tiny_sd15_folder, cn(tiny_cn, "sdxl", scribble(), "scribble")))
    assert message == (f"The ControlNet cn-sdxl is made for SDXL models, but the model {tiny_sd15_folder.name} is an "
                       "SD 1.x/2.x-style (cross-attention width 32) model: choose a ControlNet made for "
                       "SD 1.x/2.x-style "
                       "(cross-attention width 32) models.")


def test_upscale_refine_with_a_tile_control_and_other_kinds_refused(engine, recorder, tiny_sd15_folder, tiny_cn):
    img = picture(24, 32, seed=1)
    base = dict(image=img, upscaler="lanczos", scale=4, refine=True, strength=0.5, steps=4, seed=1,
                model=str(tiny_sd15_folder))
    plain = result(engine, recorder, UpscaleRequest(**base)).image
    tile = UpscaleRequest(controls=(cn(tiny_cn, "sd15", None, "tile"),), **base)
    upscale_check(tile)
    steered = result(engine, recorder, tile).image
    assert steered.shape == plain.shape == (96, 128, 4) and not np.array_equal(plain, steered)
    with pytest.raises(InvalidRequest, match=r"^The control 'cn-sd15' is a scribble control, but an upscale's refine "
                                             r"takes tile controls only .*: use a tile ControlNet, or remove it\.$"):
        upscale_check(UpscaleRequest(controls=(cn(tiny_cn, "sd15", scribble(24, 32), "scribble"),), **base))
    with pytest.raises(InvalidRequest, match=r"^Controls steer the refine pass of an upscale: turn refine on"):
        upscale_check(UpscaleRequest(controls=(cn(tiny_cn, "sd15", None, "tile"),), **dict(base, refine=False)))


# --- loading once, shared ---------------------------------------------------------------------------------

class _Ctx:
    def __init__(self):
        self.stages = []

    def stage(self, text):
        self.stages.append(text)

    def check_cancel(self):
        pass


def test_controlnets_are_loaded_once_per_model_and_the_same_set_is_the_same_object(tiny_sd15_folder, tiny_cn, tmp_path):
    from diffusers import MultiControlNetModel

    from backend.models import ModelManager

    model = ModelManager(device="cpu").get(str(tiny_sd15_folder))
    a = cn(tiny_cn, "sd15", scribble(), "scribble")
    b = cn(tiny_cn, "sd15b", scribble(), "canny")
    request = img2img(tiny_sd15_folder, a, b)
    _, first, _ = ctl.prepare(_Ctx(), model, request)
    _, again, _ = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, a, b, prompt="else"))
    assert isinstance(first, MultiControlNetModel) and again is first
    assert model.pipeline("img2img", again) is model.pipeline("img2img", first)  # the variant stays made
    _, alone, _ = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, a))
    assert alone is first.nets[0]  # not reloaded for another set
    assert next(alone.parameters()).dtype == model.dtype and next(alone.parameters()).device.type == "cpu"
    # A ControlNet file changed on disk is loaded again.
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_cn["sd15"].iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    _, c1, _ = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, Control(str(copy), scribble(), "scribble")))
    import os

    stat = (copy / "diffusion_pytorch_model.safetensors").stat()
    os.utime(copy / "diffusion_pytorch_model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _, c2, _ = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, Control(str(copy), scribble(), "scribble")))
    assert c2 is not c1
    nets = model.controlnets["nets"]
    assert len(nets) == 4 == ctl.KEEP
    ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15_ldm", scribble(), "scribble")))
    assert len(nets) == ctl.KEEP and ctl.resolve(str(tiny_cn["sd15b"])).key not in nets  # used longest ago: let go
    assert not model.controlnets["sets"]  # the set of two went with it


# --- preprocessors ----------------------------------------------------------------------------------------

def test_depth_uses_the_users_depth_model_else_the_layer_as_it_is_with_a_note(tiny_sd15_folder, tiny_cn, _folders):
    from backend.models import ModelManager

    model = ModelManager(device="cpu").get(str(tiny_sd15_folder))
    photo = picture(48, 64, seed=7)
    request = img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", photo, "depth", label="photo"), image=picture(48, 64))
    folder = ctl.depth_folder()
    assert not folder.exists()
    prepared, _, notes = ctl.prepare(_Ctx(), model, request)
    assert np.array_equal(prepared[0].image, photo[..., :3])
    assert notes == [f"The control layer 'photo' is used as a depth map as it is: no depth preprocessor is installed "
                     f"(a transformers depth-estimation model in {folder} makes one from a photo)."]
    depths = []
    for kind in ("dpt", "depth_anything"):
        tsc.save_depth_estimator(folder, seed=0, kind=kind)
        prepared, _, notes = ctl.prepare(_Ctx(), model, request)  # the model changed on disk: loaded again
        depth = prepared[0].image
        depths.append(depth)
        assert notes == [] and depth.shape == (48, 64, 3)
        assert (depth[..., 0] == depth[..., 1]).all() and depth.min() == 0 and depth.max() == 255  # grey, full range
        assert not np.array_equal(depth, photo[..., :3])
        grey = np.repeat(photo[..., :1], 3, axis=2)
        already = np.concatenate([grey, photo[..., 3:]], axis=2)  # a grey layer is a depth map already
        kept, _, _ = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, cn(tiny_cn, "sd15", already, "depth"),
                                                         image=picture(48, 64)))
        assert np.array_equal(kept[0].image, grey)
        import shutil

        shutil.rmtree(folder)
    assert not np.array_equal(*depths)  # each model's own estimate
    pose = cn(tiny_cn, "sd15", photo, "pose", label="skeleton")
    _, _, notes = ctl.prepare(_Ctx(), model, img2img(tiny_sd15_folder, pose, image=picture(48, 64)))
    assert notes == ["The control layer 'skeleton' is used as a pose image as it is: Latent Studio has no pose "
                     "preprocessor, so it should hold the control image itself."]


# --- SDXL, 9-channel inpainting, text-to-image through the core ---------------------------------------------

def _txt2img(model, request, seed=5):
    ctx = JobContext(1, lambda e: None, threading.Event(), None, preview_interval=0.0)
    ctx.steering = prepare_steering(ctx, model, request)
    h, w = request.image.shape[:2]
    settings = DiffusionSettings(prompt="a house", negative_prompt="", steps=3, guidance=7.0, strength=1.0,
                                 sampler="euler", seed=seed, text_only=True)
    image, _ = diffuse_region(ctx, model, request.image, np.ones((h, w), np.float32), (0, 0, w, h), settings,
                              full_region=True)
    return image


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_text_to_image_runs_the_controlnet_pipeline(tiny_model_cache, tiny_cn, family):
    from backend.models import ModelManager

    model = ModelManager(device="cpu").get(str(tiny_model_cache.folder(family, 4)))
    canvas = np.zeros((64, 64, 4), np.uint8)
    net = str(tiny_cn["sd15" if family == "sd15" else "sdxl_file"])
    plain = _txt2img(model, GenerationRequest(image=canvas))
    on = _txt2img(model, GenerationRequest(image=canvas, controls=(Control(net, scribble(), "scribble"),)))
    off = _txt2img(model, GenerationRequest(image=canvas, controls=(Control(net, scribble(), "scribble", 0.0),)))
    name = type(model.pipeline("txt2img", ctl.controlnet_for(model, [ctl.resolve(net)]))).__name__
    assert name == ("StableDiffusionControlNetPipeline" if family == "sd15" else "StableDiffusionXLControlNetPipeline")
    assert np.abs(on.astype(int) - plain).mean() > 1 and np.array_equal(off, plain)


def test_the_text_to_image_operation_follows_a_control(engine, recorder, tiny_sd15_folder, tiny_cn):
    from backend.ops.txt2img import Txt2ImgRequest

    base = dict(model=str(tiny_sd15_folder), prompt="a house", steps=3, seed=4)
    plain = result(engine, recorder, Txt2ImgRequest.covering(64, 64, **base)).image
    on = result(engine, recorder, Txt2ImgRequest.covering(
        64, 64, controls=(cn(tiny_cn, "sd15", scribble(), "scribble"),), **base)).image
    off = result(engine, recorder, Txt2ImgRequest.covering(
        64, 64, controls=(cn(tiny_cn, "sd15", scribble(), "scribble", 0.0),), **base)).image
    assert np.abs(on.astype(int) - plain).mean() > 1 and np.array_equal(off, plain)


def test_sdxl_inpaint_with_controls_from_both_file_layouts(engine, recorder, tiny_sdxl_folder, tiny_cn):
    img = picture()
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    base = dict(image=img, mask=mask, model=str(tiny_sdxl_folder), steps=3, seed=2, padding=8)
    plain = result(engine, recorder, InpaintRequest(**base)).image
    images = [result(engine, recorder, InpaintRequest(controls=(Control(str(tiny_cn[k]), scribble(), "scribble"),),
                                                      **base)).image for k in ("sdxl", "sdxl_ldm")]
    zero = result(engine, recorder, InpaintRequest(controls=(cn(tiny_cn, "sdxl", scribble(), "scribble", 0.0),),
                                                   **base)).image
    assert not np.array_equal(images[0], plain) and np.array_equal(images[0], images[1])
    assert np.array_equal(zero, plain)


def test_a_9_channel_inpainting_model_takes_an_inpaint_control_and_text_to_image(engine, recorder,
                                                                                 tiny_sd15_inpaint_folder, tiny_cn):
    img = picture()
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    base = dict(image=img, mask=mask, model=str(tiny_sd15_inpaint_folder), steps=3, seed=2, padding=8)
    plain = result(engine, recorder, InpaintRequest(**base))
    steered = result(engine, recorder, InpaintRequest(controls=(cn(tiny_cn, "sd15", None, "inpaint"),), **base))
    assert not np.array_equal(plain.image, steered.image)
    assert_kept(steered, img)
    from backend.models import ModelManager

    model = ModelManager(device="cpu").get(str(tiny_sd15_inpaint_folder))
    canvas = np.zeros((64, 64, 4), np.uint8)
    on = _txt2img(model, GenerationRequest(image=canvas, controls=(cn(tiny_cn, "sd15", scribble(), "scribble"),)))
    assert not np.array_equal(on, _txt2img(model, GenerationRequest(image=canvas)))
