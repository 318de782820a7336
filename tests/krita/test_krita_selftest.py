"""End to end inside Debian's Krita: `main.py krita-selftest` inpaints the middle of the bundled photo
through the plugin in Krita's process and saves an .ora; the .ora holds one new layer, the picture changed
inside the selection and is bit-identical outside the job's mask — and equal to what `main.py inpaint` makes
of the same image, mask and seed."""
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "krita_plugin" / "selftest" / "coffee-256x192.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("kritarunner") is None or shutil.which("xvfb-run") is None,
                       reason="needs Krita and xvfb-run: sudo apt-get install krita xvfb"),
]


def test_krita_inpaints_the_selection_through_the_plugin_and_saves_an_ora(tmp_path):
    out = tmp_path / "selftest.ora"
    done = subprocess.run([sys.executable, "main.py", "krita-selftest", "--out", str(out), "--steps", "4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in Krita's process" in done.stdout
    with zipfile.ZipFile(out) as z:
        stack = ElementTree.fromstring(z.read("stack.xml"))
        merged = np.asarray(Image.open(io.BytesIO(z.read("mergedimage.png"))).convert("RGBA"))
    layers = [layer.get("name") for layer in stack.iter("layer")]
    assert layers == ["Inpaint · seed 0", "Background"]

    source = np.asarray(Image.open(PHOTO).convert("RGBA"))
    h, w = source.shape[:2]
    x, y, sw, sh = w // 3, h // 3, w // 3, h // 3  # the selection the self-test makes
    selection = np.zeros((h, w), bool)
    selection[y:y + sh, x:x + sw] = True
    reach = 16  # the default grow (8) and feather (8): how far past the selection a job may paint
    job_area = np.zeros((h, w), bool)
    job_area[y - reach:y + sh + reach, x - reach:x + sw + reach] = True
    changed = np.any(merged != source, axis=-1)
    assert changed[selection].mean() > 0.9
    assert not changed[~job_area].any()  # bit-identical outside

    mask = np.where(selection, 255, 0).astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "mask.png")
    cli = subprocess.run([sys.executable, "main.py", "inpaint", "--image", str(PHOTO), "--mask", str(tmp_path / "mask.png"),
                          "--steps", "4", "--seed", "0", "--out", str(tmp_path / "cli.png"), "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png").convert("RGBA")), merged)


def test_krita_outpaints_a_canvas_extended_on_the_left_and_keeps_the_photo_where_it_was(tmp_path):
    out = tmp_path / "outpaint.ora"
    done = subprocess.run([sys.executable, "main.py", "krita-selftest", "--operation", "outpaint", "--out", str(out),
                           "--steps", "4"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(out) as z:
        layers = [layer.get("name") for layer in ElementTree.fromstring(z.read("stack.xml")).iter("layer")]
        merged = np.asarray(Image.open(io.BytesIO(z.read("mergedimage.png"))).convert("RGBA"))
    source = np.asarray(Image.open(PHOTO).convert("RGBA"))
    extend = source.shape[1] // 8  # the self-test's extension: an eighth of the width, on the left
    assert layers == ["Outpaint · seed 0", "Background"] and merged.shape == (192, 256 + extend, 4)
    assert (merged[:, :extend, 3] == 255).all()  # the new strip is painted
    overlap = 48  # outpaint's default band of the old image blended into the new
    assert np.array_equal(merged[:, extend + overlap:], source[:, overlap:])
