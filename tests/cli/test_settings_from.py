"""A result is reproducible from its own parameters: `--settings-from RESULT.png` gives the same pixels."""
import shutil

import numpy as np
import pytest
from PIL import Image

import main as app_main
from scenes import make_scene

pytestmark = pytest.mark.slow


@pytest.fixture
def files(tmp_path, monkeypatch, tiny_sd15_inpaint_folder):
    img, mask = make_scene()
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    # A model found by its name in the user's model folder: the name recorded in the parameters finds it again.
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(tmp_path / "models"))
    shutil.copytree(tiny_sd15_inpaint_folder, tmp_path / "models" / "tiny-inpaint")
    return tmp_path


def run(*argv):
    return app_main.main([str(a) for a in argv])


def pixels(path):
    return np.asarray(Image.open(path).convert("RGBA"))


def params(path):
    return Image.open(path).text["parameters"]


CASES = {
    "inpaint": (["--mask", "mask.png", "--grow", 12, "--feather", 5, "--padding", 20, "--fill", "blur",
                 "--strength", 0.9, "--no-detail"], "Grow: 12"),
    "img2img": (["--strength", 0.45], "Denoising strength: 0.45"),
    "outpaint": (["--right", 40, "--top", 16, "--overlap", 12, "--fill", "edge", "--strength", 0.95],
                 "Extend right: 40"),
}


@pytest.mark.parametrize("operation", list(CASES))
def test_settings_from_reproduces_a_result_bit_exact(files, capsys, operation):
    extra, recorded = CASES[operation]
    extra = [files / a if isinstance(a, str) and a.endswith(".png") else a for a in extra]
    first = ["--image", files / "in.png", "--model", "tiny-inpaint", "--steps", 3, "--seed", 7, "--count", 2,
             "--sampler", "euler_a", "--guidance", 5.5, "--prompt", "a lake at dusk", "--negative", "blur, fog"]
    assert run(operation, *first, *extra, "--out", files / "a.png", "--quiet") == 0, capsys.readouterr().err
    second_result = files / "a-1.png"  # the second variation, seed 8
    text = params(second_result)
    assert "Seed: 8," in text and recorded in text and f"Operation: {operation}" in text
    # Only the inputs: every setting (the model's name, the variation's seed, the sides) comes from the result.
    again = ["--image", files / "in.png", *(["--mask", files / "mask.png"] if operation == "inpaint" else [])]
    assert run(operation, *again, "--settings-from", second_result, "--out", files / "b.png", "--quiet") == 0, \
        capsys.readouterr().err
    assert np.array_equal(pixels(files / "b.png"), pixels(second_result))
    assert params(files / "b.png") == text
    # A flag given as well wins over the recorded value.
    assert run(operation, *again, "--settings-from", second_result, "--seed", 9, "--out", files / "c.png",
               "--quiet") == 0
    assert "Seed: 9," in params(files / "c.png") and not np.array_equal(pixels(files / "c.png"), pixels(second_result))


def test_settings_from_a_foreign_or_plain_image_is_one_sentence(files, capsys):
    assert run("img2img", "--image", files / "in.png", "--model", "tiny-inpaint", "--steps", 2,
               "--out", files / "v.png", "--quiet") == 0
    base = ["inpaint", "--image", files / "in.png", "--mask", files / "mask.png", "--out", files / "x.png"]
    for source, words in ((files / "v.png", "was made by img2img, not inpaint"),
                          (files / "in.png", "has no generation parameters"),
                          (files / "missing.png", "does not exist")):
        code = run(*base, "--settings-from", source)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and words in err and "\n" not in err, err
    Image.open(files / "in.png").save(files / "foreign.png", pnginfo=_info("a cat\nSteps: 20, Sampler: Euler a"))
    code = run(*base, "--settings-from", files / "foreign.png")
    err = capsys.readouterr().err
    assert code == 2 and "no Latent Studio parameters" in err
    assert not (files / "x.png").exists()


def _info(text):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    return info
