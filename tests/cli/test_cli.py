"""The headless CLI: outputs, determinism, and one clear line for every bad input."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import main as app_main
from scenes import make_scene

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    img, mask = make_scene()
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def run_cli(*args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_inpaint_writes_pngs_with_parameters_and_is_reproducible(files, tiny_sd15_folder):
    common = ["--image", files / "in.png", "--mask", files / "mask.png", "--model", tiny_sd15_folder,
              "--steps", 3, "--seed", 11, "--prompt", "a lake", "--negative", "blur", "--quiet"]
    done = run_cli("inpaint", *common, "--out", files / "a.png", "--count", 2)
    assert done.returncode == 0, done.stderr
    again = run_cli("inpaint", *common, "--out", files / "b.png")
    assert again.returncode == 0, again.stderr
    first, second, single = (Image.open(files / n) for n in ("a-0.png", "a-1.png", "b.png"))
    params = first.text["parameters"]
    assert params.startswith("a lake\nNegative prompt: blur\nSteps: 3, Sampler: DPM++ 2M, CFG scale: 7, Seed: 11,")
    assert "Seed: 12," in second.text["parameters"]
    # Every setting that changed the pixels, to re-run it from the file (`--settings-from`).
    for part in ("Model: sd15-4ch-diffusers", "Denoising strength: 1", "Grow: 8", "Feather: 8", "Fill: original",
                 "Padding: 48", "Detail transfer: True", "Operation: inpaint"):
        assert part in params, part
    assert np.array_equal(np.asarray(first), np.asarray(single))  # same inputs and seed, same pixels
    original = np.asarray(Image.open(files / "in.png").convert("RGB"))
    assert first.size == (128, 96)
    assert np.array_equal(np.asarray(first.convert("RGB"))[:10], original[:10])  # far from the mask: untouched


def test_img2img(files, tiny_sd15_folder):
    done = run_cli("img2img", "--image", files / "in.png", "--out", files / "v.png", "--model", tiny_sd15_folder,
                   "--steps", 4, "--strength", 0.5, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "Denoising strength: 0.5" in Image.open(files / "v.png").text["parameters"]


def bad(capsys, *argv):
    code = app_main.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_clear_line(code, err, words):
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("error: ") and words in err, err


def test_bad_inputs_give_one_line_and_write_nothing(files, capsys, tmp_path, tiny_sd15_folder, malicious_pickle):
    out = files / "out.png"
    base = ["inpaint", "--out", out, "--model", tiny_sd15_folder]
    cases = [
        (["--image", files / "missing.png", "--mask", files / "mask.png"], "does not exist"),
        (["--image", files / "in.gif", "--mask", files / "mask.png"], "not a PNG, JPEG, WebP"),
        (["--image", files / "broken.png", "--mask", files / "mask.png"], "it is damaged"),
        (["--image", files / "in.png", "--mask", files / "small.png"], "must be the size of the image"),
        (["--image", files / "in.png", "--mask", files / "empty.png"], "`mask` is empty"),
        (["--image", files / "in.png", "--mask", files / "mask.png", "--steps", 0], "--steps: 0 is out of range"),
    ]
    (files / "in.gif").write_bytes(b"GIF89a")
    (files / "broken.png").write_bytes((files / "in.png").read_bytes()[:300])  # a truncated PNG
    Image.new("L", (10, 10)).save(files / "small.png")
    Image.new("L", (128, 96)).save(files / "empty.png")
    for extra, words in cases:
        assert_one_clear_line(*bad(capsys, *base, *extra), words)
    good = ["--image", files / "in.png", "--mask", files / "mask.png", "--out", out]
    assert_one_clear_line(*bad(capsys, "inpaint", *good, "--model", tmp_path / "nothing"), "was not found")
    assert_one_clear_line(*bad(capsys, "inpaint", *good, "--model", "someone/some-model"), "not downloaded")
    pickle_path, marker = malicious_pickle
    assert_one_clear_line(*bad(capsys, "inpaint", *good, "--model", pickle_path), "pickle file")
    assert not marker.exists()
    text_file = tmp_path / "notes.safetensors"
    text_file.write_text("hello")
    assert_one_clear_line(*bad(capsys, "inpaint", *good, "--model", text_file), "could not be read")
    assert_one_clear_line(*bad(capsys, "inpaint", *good[:-1], files / "out.jpg", "--model", tiny_sd15_folder),
                          "must end in .png or .ora")
    assert not any(p.name.startswith("out") for p in files.iterdir())


def test_models_lists_user_folders_and_files(tmp_path, capsys, monkeypatch, tiny_sd15_folder):
    monkeypatch.setenv("LATENT_STUDIO_MODELS", str(tmp_path))
    shutil.copytree(tiny_sd15_folder, tmp_path / "my-folder-model")
    (tmp_path / "my-checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "old.ckpt").write_bytes(b"")
    assert app_main.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "my-folder-model" in out and "my-checkpoint" in out and "needs --allow-pickle" in out


def test_ora_in_and_out_keeps_layers_and_the_origin(files, capsys, tiny_sd15_folder):
    """An .ora whose canvas was grown (origin not at 0, 0) gets the result layer at the right place."""
    from canvas.document import Document
    from canvas.image_io import load_image
    from canvas.ora import load_ora, save_ora

    img, mask = make_scene()
    doc = Document(128, 96, x=-30, y=-20)
    doc.add_image_layer(img, -30, -20, name="photo")
    save_ora(doc, files / "in.ora")
    Image.fromarray(mask).save(files / "mask.png")
    code = app_main.main([str(a) for a in (
        "inpaint", "--image", files / "in.ora", "--mask", files / "mask.png", "--out", files / "out.ora",
        "--model", tiny_sd15_folder, "--steps", 2, "--prompt", "a boat", "--quiet")])
    assert code == 0, capsys.readouterr().err
    out = load_ora(files / "out.ora")
    assert [l.name for l in out.layers] == ["photo", "Inpaint: a boat"]
    assert out.bounds == doc.bounds
    box = out.layers[1].pixels.content_bbox()
    ys, xs = np.nonzero(mask)
    assert box.x <= xs.min() - 30 and box.right >= xs.max() - 30 + 1  # placed in document coordinates
    assert "Seed: 0" in out.layers[1].parameters
    flat_in, flat_out = load_image(files / "in.ora").flatten(), out.flatten()
    assert np.array_equal(flat_in[:10], flat_out[:10])


def test_inpaint_takes_the_models_recommended_settings_unless_given(files, capsys, tmp_path, tiny_sd15_folder):
    import json

    model = tmp_path / "tiny-model"
    shutil.copytree(tiny_sd15_folder, model)
    (model / "latent_studio.json").write_text(json.dumps({"inpaint_defaults": {"fill": "blur", "strength": 0.5}}))
    common = ["inpaint", "--image", files / "in.png", "--mask", files / "mask.png", "--model", model, "--steps", 4]
    code = app_main.main([str(a) for a in (*common, "--out", files / "rec.png")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "recommends --strength 0.5 --fill blur for inpaint" in err
    assert "Denoising strength: 0.5" in Image.open(files / "rec.png").text["parameters"]
    code = app_main.main([str(a) for a in (*common, "--strength", 1, "--fill", "original", "--out", files / "own.png")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note:" not in err
    params = Image.open(files / "own.png").text["parameters"]
    assert "Denoising strength: 1," in params and "Fill: original" in params


def test_no_detail_turns_the_models_detail_transfer_off(files, capsys, tmp_path, tiny_sd15_folder, monkeypatch):
    import json

    from backend import core

    calls = []
    real = core.transfer_detail
    monkeypatch.setattr(core, "transfer_detail", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model = tmp_path / "tiny-model"
    shutil.copytree(tiny_sd15_folder, model)
    (model / "latent_studio.json").write_text(json.dumps({"restore_detail": True}))
    common = ["inpaint", "--image", files / "in.png", "--mask", files / "mask.png", "--model", model, "--steps", 2]
    assert app_main.main([str(a) for a in (*common, "--out", files / "a.png")]) == 0, capsys.readouterr().err
    assert calls
    calls.clear()
    assert app_main.main([str(a) for a in (*common, "--no-detail", "--out", files / "b.png")]) == 0
    assert not calls
