"""The model-loading policy: every model_index.json is checked against an allow-list before diffusers
imports anything it names, pickled weights in folders are refused unless allowed (then opened with
weights_only), and a malformed config is one sentence."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend import modelconfig
from backend.errors import ModelError
from backend.modelconfig import ALLOWED_CLASSES, LEGACY_CLASSES, REQUIRED, SD_PIPELINES, UPSCALE_PIPELINES
from backend.modelconfig import check_folder, read_index

ROOT = Path(__file__).resolve().parents[2]
SD15_CONFIG = ROOT / "resources" / "model-configs" / "sd15"
EMBEDDED = ROOT / "resources" / "models" / "latent-studio-mini"


def one_sentence(info) -> str:
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(".") and ": " in msg, msg
    return msg


def config_copy(path: Path, **index_changes) -> Path:
    """The shipped SD 1.5 config folder with placeholder .safetensors weights, its index changed."""
    shutil.copytree(SD15_CONFIG, path)
    for part in ("unet", "vae", "text_encoder"):
        (path / part / "weights.safetensors").write_bytes(b"placeholder")
    index = json.loads((path / "model_index.json").read_text())
    index.update(index_changes)
    (path / "model_index.json").write_text(json.dumps(index))
    return path


def test_the_allow_list_names_real_classes_and_what_each_pipeline_needs():
    import inspect

    import diffusers
    import transformers
    from diffusers.pipelines import stable_diffusion

    libraries = {"diffusers": diffusers, "transformers": transformers, "stable_diffusion": stable_diffusion}
    assert set(ALLOWED_CLASSES) == set(libraries)
    for library, names in ALLOWED_CLASSES.items():
        for name in names - LEGACY_CLASSES:
            assert isinstance(getattr(libraries[library], name, None), type), f"{library}.{name} does not exist"
    for name in modelconfig.SCHEDULERS:  # a scheduler, or diffusers' stand-in when its extra is missing (torchsde)
        cls = getattr(diffusers, name)
        assert issubclass(cls, diffusers.SchedulerMixin) or type(cls).__name__ == "DummyObject", name
    for pipeline in SD_PIPELINES | UPSCALE_PIPELINES:
        parameters = inspect.signature(getattr(diffusers, pipeline).__init__).parameters
        assert set(REQUIRED[pipeline]) <= set(parameters), pipeline


def test_shipped_and_saved_folders_pass(tiny_sd15_folder):
    """The embedded model, the shipped configs and a folder saved by diffusers itself are all allowed."""
    assert read_index(EMBEDDED)["_class_name"] == "StableDiffusionInpaintPipeline"
    check_folder(EMBEDDED, allow_pickle=False)
    for config in (ROOT / "resources" / "model-configs").iterdir():
        if config.is_dir() and not config.name.startswith("controlnet-"):  # those: tests/backend/test_control.py
            check_folder(config, allow_pickle=False, weights=False)
    check_folder(tiny_sd15_folder, allow_pickle=False)


def test_upscaler_folders_saved_by_diffusers_pass(tmp_path):
    import tiny_upscalers

    for folder in (tiny_upscalers.save_sd_x4_upscaler(tmp_path / "x4"), tiny_upscalers.save_ldm_sr(tmp_path / "ldm")):
        check_folder(folder, allow_pickle=False, pipelines=UPSCALE_PIPELINES)
        with pytest.raises(ModelError, match="is an upscaler .* not a Stable Diffusion model"):
            read_index(folder)


@pytest.mark.parametrize("name,text,words", [
    ("invalid JSON", '{"_class_name": "StableDiffusionPipeline",', "m/model_index.json is not valid JSON"),
    ("a list", "[1, 2]", "m/model_index.json holds a JSON list, not an object"),
    ("a string", '"StableDiffusionPipeline"', "holds a JSON string"),
    ("not UTF-8", b'{"_class_name": "\xff"}', "is not valid JSON"),
    ("nested beyond reason", "[" * 200_000 + "]" * 200_000, "is not valid JSON"),
    ("no pipeline", '{"unet": ["diffusers", "UNet2DConditionModel"]}', "names no pipeline"),
    ("another pipeline", '{"_class_name": "FluxPipeline"}', "names the pipeline FluxPipeline, which Latent Studio "
                                                             "does not load"),
    ("a hostile class", {"unet": ["this", "X"]}, "asks for the component `unet` to be loaded by this.X"),
    ("a hostile class in diffusers", {"unet": ["diffusers", "DiffusionPipeline"]}, "by diffusers.DiffusionPipeline"),
    ("a module path", {"vae": ["os.path", "join"]}, "by os.path.join"),
    ("a three-part value", {"vae": ["diffusers", "AutoencoderKL", "x"]}, "neither a [library, class] pair"),
    ("a key with a newline", {"un\net": ["os", "system"]}, "the component `'un\\net'`"),
    ("a missing component", {"unet": [None, None]}, "lacks the component `unet` that a StableDiffusionPipeline "
                                                    "needs"),
])
def test_malformed_and_hostile_indexes_are_one_sentence(tmp_path, name, text, words):
    folder = config_copy(tmp_path / "m")
    index = folder / "model_index.json"
    if isinstance(text, dict):
        index.write_text(json.dumps({**json.loads(index.read_text()), **text}))
    elif isinstance(text, bytes):
        index.write_bytes(text)
    else:
        index.write_text(text)
    with pytest.raises(ModelError) as info:
        check_folder(folder, allow_pickle=True)
    assert words in one_sentence(info)


def test_configs_and_component_folders_are_checked_too(tmp_path):
    folder = config_copy(tmp_path / "m")
    (folder / "unet" / "config.json").write_text("{oops")
    with pytest.raises(ModelError) as info:
        check_folder(folder, allow_pickle=False)
    assert "unet/config.json is not valid JSON" in one_sentence(info)
    (folder / "unet" / "config.json").write_bytes(b" " * (modelconfig.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ModelError) as info:
        check_folder(folder, allow_pickle=False)
    assert "more than a model's configuration file can be" in one_sentence(info)
    shutil.rmtree(folder / "unet")
    with pytest.raises(ModelError) as info:
        check_folder(folder, allow_pickle=False)
    assert "has no `unet` folder" in one_sentence(info)
    empty = config_copy(tmp_path / "e")
    (empty / "vae" / "weights.safetensors").unlink()
    with pytest.raises(ModelError) as info:
        check_folder(empty, allow_pickle=False)
    assert "vae holds no weights" in one_sentence(info)
    check_folder(empty, allow_pickle=False, weights=False)  # a config folder beside a single file needs none


PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from backend.errors import ModelError
from backend.models import ModelManager, preflight
from backend.upscale.esrgan import UpscalerSource, resolve_upscaler
from backend.upscale.ldsr import load_pipeline

d = Path(sys.argv[1])
errors = []
attempts = [
    lambda: preflight(str(d / "hostile")),
    lambda: preflight(str(d / "sidecar.safetensors")),
    lambda: ModelManager(device="cpu").get(str(d / "hostile")),
    lambda: ModelManager(device="cpu").get(str(d / "sidecar.safetensors")),
    lambda: resolve_upscaler(str(d / "hostile-upscaler")),
    lambda: load_pipeline(UpscalerSource("sd_x4", str(d / "hostile-upscaler"), "u"), "cpu", None),
]
for attempt in attempts:
    try:
        attempt()
    except ModelError as exc:
        errors.append(str(exc))
print(json.dumps({"this": "this" in sys.modules, "errors": errors}))
"""


def test_a_hostile_index_imports_nothing(tmp_path):
    """A component ``["this", "X"]`` (a folder, a NAME.config/ beside a single file, an upscaler folder) is
    refused before diffusers imports the module it names: `this` prints the Zen of Python on import."""
    import numpy as np
    from safetensors.numpy import save_file

    config_copy(tmp_path / "hostile", unet=["this", "X"])
    keys = ("model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight",
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
    save_file({k: np.zeros((320, 4, 3, 3) if "input_blocks" in k else (2, 2), np.float32) for k in keys},
              str(tmp_path / "sidecar.safetensors"))
    config_copy(tmp_path / "sidecar.config", text_encoder=["this", "X"])  # the first diffusers would import
    upscaler = config_copy(tmp_path / "hostile-upscaler", _class_name="StableDiffusionUpscalePipeline",
                           low_res_scheduler=["diffusers", "DDPMScheduler"], text_encoder=["this", "X"])
    (upscaler / "low_res_scheduler").mkdir()
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(ROOT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["this"] and "Zen of Python" not in done.stdout
    assert len(result["errors"]) == 6, result
    assert all("loaded by this.X" in e and "\n" not in e for e in result["errors"]), result


@pytest.fixture
def bin_folder(tmp_path, tiny_sd15_folder):
    """A real tiny model whose UNet weights are a pickle (``diffusion_pytorch_model.bin``)."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "with-bin"
    shutil.copytree(tiny_sd15_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(str(weights)), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    return folder


def test_a_bin_in_a_folder_loads_only_when_allowed_and_only_as_weights(bin_folder, monkeypatch):
    import torch

    from backend.models import ModelManager, preflight

    for attempt in (lambda: preflight(str(bin_folder)), lambda: ModelManager(device="cpu").get(str(bin_folder))):
        with pytest.raises(ModelError) as info:
            attempt()
        assert "unet/diffusion_pytorch_model.bin is a pickle file" in one_sentence(info)
    calls = []
    real = torch.load

    def spy(f, *args, **kwargs):
        calls.append((str(f), kwargs.get("weights_only")))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    preflight(str(bin_folder), allow_pickle=True)
    model = ModelManager(device="cpu").get(str(bin_folder), allow_pickle=True)
    assert model.unet_in_channels == 4
    opened = [w for f, w in calls if f.endswith("diffusion_pytorch_model.bin")]
    assert len(opened) >= 2 and all(w is True for w in opened), calls  # our check, then diffusers' load


def test_a_bin_with_code_is_refused_even_when_allowed(bin_folder, malicious_pickle):
    from backend.models import ModelManager, preflight

    pickle_path, marker = malicious_pickle
    shutil.copy(pickle_path, bin_folder / "unet" / "diffusion_pytorch_model.bin")
    for attempt in (lambda: preflight(str(bin_folder), allow_pickle=True),
                    lambda: ModelManager(device="cpu").get(str(bin_folder), allow_pickle=True)):
        with pytest.raises(ModelError) as info:
            attempt()
        assert "diffusion_pytorch_model.bin holds more than weights" in one_sentence(info)
    assert not marker.exists()
