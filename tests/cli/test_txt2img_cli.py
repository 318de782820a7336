"""`main.py txt2img`: a new image of --width × --height, or the size of --image (its --mask region)."""
import numpy as np
import pytest
from PIL import Image

import main as app_main
from scenes import make_scene


def run(capsys, *argv):
    code = app_main.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def pixels(path):
    return np.asarray(Image.open(path).convert("RGBA"))


def params(path):
    return Image.open(path).text["parameters"]


def one_line(code, err, words):
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert words in err, err


@pytest.fixture
def files(tmp_path):
    img, mask = make_scene()  # 128×96
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def test_a_new_image_of_the_size_with_its_parameters_reproduced_from_them(files, capsys, tiny_sd15_folder):
    common = ["--model", tiny_sd15_folder, "--steps", 2, "--seed", 3, "--prompt", "a red barn", "--quiet"]
    code, err = run(capsys, "txt2img", *common, "--width", 96, "--height", 72, "--count", 2, "--out", files / "a.png")
    assert code == 0, err
    first, second = (files / "a-0.png", files / "a-1.png")
    assert Image.open(first).size == (96, 72) and Image.open(second).size == (96, 72)
    assert (pixels(first)[..., 3] == 255).all() and not np.array_equal(pixels(first), pixels(second))
    text = params(second)
    assert text.startswith("a red barn\nSteps: 2, Sampler: DPM++ 2M, CFG scale: 7, Seed: 4, Size: 96x72, ")
    assert "Operation: txt2img" in text
    # Every setting, the size included, from the result: the same pixels.
    code, err = run(capsys, "txt2img", "--model", tiny_sd15_folder, "--settings-from", second, "--out",
                    files / "b.png", "--quiet")
    assert code == 0, err
    assert np.array_equal(pixels(files / "b.png"), pixels(second)) and params(files / "b.png") == text


def test_into_an_images_mask_region_laid_over_the_image(files, capsys, tiny_sd15_folder):
    code, err = run(capsys, "txt2img", "--image", files / "in.png", "--mask", files / "mask.png", "--model",
                    tiny_sd15_folder, "--steps", 2, "--quiet", "--out", files / "m.png")
    assert code == 0, err
    out, original = pixels(files / "m.png"), pixels(files / "in.png")
    mask = np.asarray(Image.open(files / "mask.png").convert("L"))
    assert out.shape == original.shape
    assert np.array_equal(out[mask == 0], original[mask == 0])  # the new pixels lie only where the mask is
    assert (np.abs(out[mask == 255].astype(int) - original[mask == 255]).sum(axis=1) > 0).mean() > 0.9
    ys, xs = np.nonzero(mask)
    assert f"Size: {xs.max() - xs.min() + 1}x{ys.max() - ys.min() + 1}," in params(files / "m.png")
    # Without --mask: the image's whole size, all new pixels.
    code, err = run(capsys, "txt2img", "--image", files / "in.png", "--model", tiny_sd15_folder, "--steps", 2,
                    "--quiet", "--out", files / "w.png")
    assert code == 0, err
    assert Image.open(files / "w.png").size == (128, 96) and "Size: 128x96," in params(files / "w.png")


def test_ora_output_without_an_image_is_a_new_document_with_the_layer(files, capsys, tiny_sd15_folder):
    from canvas.ora import load_ora

    code, err = run(capsys, "txt2img", "--model", tiny_sd15_folder, "--steps", 1, "--width", 64, "--height", 80,
                    "--quiet", "--out", files / "new.ora")
    assert code == 0, err
    doc = load_ora(files / "new.ora")
    assert (doc.width, doc.height) == (64, 80) and len(doc.layers) == 1
    assert "Operation: txt2img" in doc.layers[0].parameters
    assert (doc.flatten()[..., 3] == 255).all()


def test_the_embedded_model_is_refused_in_one_line_saying_which_models_can(files, capsys):
    code, err = run(capsys, "txt2img", "--prompt", "a cat", "--out", files / "x.png")
    one_line(code, err, "latent-studio-mini was trained without captions and ignores the prompt, so it cannot make "
                        "an image from text: choose a Stable Diffusion 1.x, 2.x or SDXL checkpoint or folder")
    assert not (files / "x.png").exists()


@pytest.mark.parametrize("extra, words", [
    (["--width", 0], "--width: 0 is out of range: give a whole number from 64 to 8192"),
    (["--height", 100000], "--height: 100000 is out of range"),
    (["--width", "wide"], "'wide' is not a whole number"),
    (["--height", "nan"], "'nan' is not a whole number"),
    (["--width", 63], "63 is out of range"),
])
def test_bad_sizes_are_refused_in_one_line(files, capsys, extra, words):
    code, err = run(capsys, "txt2img", "--out", files / "x.png", *extra)
    one_line(code, err, words)
    assert not (files / "x.png").exists()


def test_size_flags_with_an_image_and_a_mask_without_one_are_refused(files, capsys):
    code, err = run(capsys, "txt2img", "--image", files / "in.png", "--width", 256, "--out", files / "x.png")
    one_line(code, err, "--width size a new image, but with --image the result takes that image's size")
    code, err = run(capsys, "txt2img", "--mask", files / "mask.png", "--out", files / "x.png")
    one_line(code, err, "--mask needs --image")
    assert not (files / "x.png").exists()
