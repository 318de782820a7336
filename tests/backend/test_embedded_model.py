"""The shipped default model: found without --model, loaded by the normal loader, paints offline."""
import json

import numpy as np
import pytest
from PIL import Image

from backend import paths
from backend.models import default_model, resolve

MODEL = paths.EMBEDDED_MODELS / "latent-studio-mini"


def test_it_is_the_default_and_says_it_ignores_prompts():
    assert default_model() == "latent-studio-mini"
    assert resolve("").path == MODEL
    info = json.loads((MODEL / "latent_studio.json").read_text())
    assert info["ignores_prompt"] is True and info["native_resolution"] == 256
    assert info["inpaint_defaults"] == {"fill": "exemplar", "strength": 0.5} and info["colour_guide_cell"] == 4
    assert info["outpaint_defaults"] == {"fill": "exemplar", "strength": 0.5}
    from backend.preview import load_head

    assert load_head(MODEL) is not None  # its previews come from its own preview head
    assert json.loads((MODEL / "training.json").read_text())["unet_steps"] > 0
    card = (MODEL / "README.md").read_text()
    for needed in ("Data and licences", "GPL-2+", "LGPL-3.0", "CC0-1.0", "VAE reconstruction PSNR"):
        assert needed in card
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size < 32 * 2**20


@pytest.mark.slow
def test_cli_inpaints_with_no_model_argument(tmp_path, capsys):
    import main as app_main

    yy, xx = np.mgrid[0:192, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    mask = np.zeros((192, 256), np.uint8)
    mask[64:128, 96:160] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code = app_main.main(["inpaint", "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                          "--out", str(tmp_path / "out.png"), "--steps", "8", "--prompt", "a cat", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ignores the prompt" in captured.err
    out = Image.open(tmp_path / "out.png")
    params = out.text["parameters"]
    assert "Model: latent-studio-mini" in params and "CFG scale: 1," in params
    result = np.asarray(out.convert("RGB")).astype(int)
    hole = result[72:120, 104:152]
    # A trained model fills the hole with something like its surroundings, not noise.
    assert np.abs(hole - img[72:120, 104:152]).mean() < 60
    assert hole.std(axis=(0, 1)).max() < 80
