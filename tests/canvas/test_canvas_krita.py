"""Interoperability with a real client: Krita opens our .ora, and we open what Krita writes.

One headless Krita run converts our file to Krita's own .ora: its mergedimage.png
is Krita's rendering of our layers (checked against our compositing) and its
layers are read back by our reader.  Skipped where Krita is not installed
(`apt-get install krita xvfb`).
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image

from canvas.document import Document
from canvas.geometry import Rect
from canvas.ora import load_ora, save_ora

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("krita") is None or shutil.which("xvfb-run") is None,
                       reason="Krita and xvfb-run are not installed (apt-get install krita xvfb)"),
]


def _premul(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return np.concatenate([a[..., :3] * a[..., 3:] / 255, a[..., 3:]], axis=-1)


def test_krita_opens_our_file_and_we_open_kritas(tmp_path, rng):
    doc = Document(300, 200)
    bg = np.zeros((200, 300, 4), np.uint8)
    bg[..., 0] = np.linspace(0, 255, 300, dtype=np.uint8)
    bg[..., 1] = np.linspace(0, 255, 200, dtype=np.uint8)[:, None]
    bg[..., 2] = 90
    bg[..., 3] = 255
    doc.add_image_layer(bg, 0, 0, "background")
    shapes = [("multiply", 0.8, (40, 30)), ("screen", 1.0, (150, 20)), ("normal", 0.5, (90, 110))]
    for mode, opacity, (x, y) in shapes:
        block = np.zeros((80, 120, 4), np.uint8)
        block[...] = rng.integers(0, 256, 4, dtype=np.uint8)
        block[..., 3] = 255
        block[20:60, 30:90, 3] = 128
        layer = doc.add_image_layer(block, x, y, f"{mode} layer")
        doc.set_layer_properties(layer, blend_mode=mode, opacity=opacity)
    hidden = doc.add_image_layer(np.full((50, 50, 4), 255, np.uint8), 10, 10, "hidden")
    doc.set_layer_properties(hidden, visible=False)
    src = tmp_path / "ours.ora"
    save_ora(doc, src)

    out = tmp_path / "krita.ora"
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", HOME=str(tmp_path))
    proc = subprocess.run(["xvfb-run", "-a", "krita", str(src), "--export", "--export-filename", str(out)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert out.exists(), proc.stderr[-2000:]

    with zipfile.ZipFile(out) as zf:
        krita_render = np.asarray(Image.open(io.BytesIO(zf.read("mergedimage.png"))).convert("RGBA"))
    ours = doc.flatten()
    assert krita_render.shape == ours.shape
    assert np.abs(_premul(krita_render) - _premul(ours)).max() <= 3  # Krita renders our blend modes alike

    back = load_ora(out)
    assert [l.name for l in back.layers] == [l.name for l in doc.layers]
    assert [l.blend_mode for l in back.layers] == [l.blend_mode for l in doc.layers]
    assert [l.visible for l in back.layers] == [l.visible for l in doc.layers]
    for a, b in zip(back.layers, doc.layers):
        assert a.opacity == pytest.approx(b.opacity, abs=1 / 255)
        box = b.pixels.content_bbox()
        assert np.array_equal(a.pixels.read(box), b.pixels.read(box))
    assert np.abs(_premul(back.flatten()) - _premul(ours)).max() <= 2
    assert back.bounds == Rect(0, 0, 300, 200)
