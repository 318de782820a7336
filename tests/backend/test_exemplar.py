"""The exemplar fill: a hole continued from the image's own patches (OpenCV contrib's shift-map)."""
import numpy as np
import pytest

from backend.exemplar import MAX_SIDE, NoExemplarSource, exemplar_fill
from backend.region import prefill


def stripes(h=96, w=128, period=12):
    xx = np.arange(w)[None, :].repeat(h, 0)
    on = (xx // (period // 2)) % 2 == 0
    img = np.empty((h, w, 3), np.uint8)
    img[on] = (200, 40, 40)
    img[~on] = (30, 60, 160)
    return img


def test_a_structured_hole_is_continued_not_blurred():
    img = stripes()
    hole = np.zeros(img.shape[:2], bool)
    hole[30:70, 40:90] = True
    filled = exemplar_fill(img, hole)
    blurred = prefill(img, hole.astype(np.float32), "blur")
    err = lambda a: np.abs(a[hole].astype(int) - img[hole]).mean()  # noqa: E731
    assert err(filled) < 0.25 * err(blurred)  # the stripes carry on across the hole
    assert np.array_equal(filled[~hole], img[~hole])  # nothing outside the hole changes
    # Only colours of the picture: no blend of the two stripe colours anywhere.
    colours = {tuple(c) for c in filled[hole].reshape(-1, 3)}
    assert colours <= {(200, 40, 40), (30, 60, 160)} or len(colours) < 12


def test_nothing_to_copy_from_is_said_and_the_blur_takes_over():
    img = stripes(64, 64)
    hole = np.ones((64, 64), bool)
    hole[:2, :2] = False
    with pytest.raises(NoExemplarSource):
        exemplar_fill(img, hole)
    out = prefill(img, hole.astype(np.float32), "exemplar")  # falls back to the blur fill
    assert out.shape == img.shape and np.array_equal(out, prefill(img, hole.astype(np.float32), "blur"))


def test_a_large_region_is_searched_scaled_down_and_filled_at_full_size():
    img = stripes(600, 900, period=48)
    hole = np.zeros(img.shape[:2], bool)
    hole[200:400, 300:600] = True
    filled = exemplar_fill(img, hole, max_side=MAX_SIDE)
    assert filled.shape == img.shape and np.array_equal(filled[~hole], img[~hole])
    blurred = prefill(img, hole.astype(np.float32), "blur")
    err = lambda a: np.abs(a[hole].astype(int) - img[hole]).mean()  # noqa: E731
    assert err(filled) < 0.6 * err(blurred)


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_outpaint_strips_are_continued_outwards(side):
    from backend.ops.outpaint import Pass, _exemplar_outwards

    img = stripes(96, 96, period=12)
    if side in ("top", "bottom"):
        img = img.transpose(1, 0, 2).copy()
    hole = np.zeros(img.shape[:2], bool)
    e = 24
    sl = {"left": np.s_[:, :e], "right": np.s_[:, -e:], "top": np.s_[:e], "bottom": np.s_[-e:]}[side]
    hole[sl] = True
    out = _exemplar_outwards(img.copy(), hole, Pass(side, e))
    assert np.array_equal(out[~hole], img[~hole])
    assert not (out[hole] == 0).all(axis=-1).any()  # no unfilled (black or blue) pixels
    blurred = prefill(img, hole.astype(np.float32), "blur")
    err = lambda a: np.abs(a[hole].astype(int) - img[hole]).mean()  # noqa: E731
    assert err(out) < err(blurred)


def test_an_opencv_without_contrib_is_named_and_the_blur_takes_over(monkeypatch):
    """opencv-python installed over the contrib build hides cv2.xphoto: one sentence, no traceback."""
    import cv2

    from backend import exemplar

    monkeypatch.delattr(cv2, "xphoto")
    assert exemplar.unavailable() == exemplar.NO_CONTRIB
    img = stripes()
    hole = np.zeros(img.shape[:2], bool)
    hole[30:70, 40:90] = True
    with pytest.raises(NoExemplarSource, match="opencv-contrib-python-headless"):
        exemplar_fill(img, hole)
    out = prefill(img, hole.astype(np.float32), "exemplar")
    assert np.array_equal(out, prefill(img, hole.astype(np.float32), "blur"))
