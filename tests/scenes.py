"""Test pictures shared by the backend and CLI tests."""
import numpy as np


def make_scene(h=96, w=128, seed=0):
    """A smooth gradient picture with a little texture, and a mask over its middle."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 4), np.uint8)
    img[..., 0] = (xx * 255 // (w - 1))
    img[..., 1] = (yy * 255 // (h - 1))
    img[..., 2] = 128 + rng.integers(-20, 20, (h, w))
    img[..., 3] = 255
    mask = np.zeros((h, w), np.uint8)
    mask[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = 255
    return img, mask
