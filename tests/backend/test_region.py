import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.region import blend_mask, composite, feather_mask, grow_mask, prefill, seam_offset, working_size


def naive_dilate(m, r):
    h, w = m.shape
    out = np.zeros_like(m)
    for y in range(h):
        for x in range(w):
            out[y, x] = m[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1].max()
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31))
def test_grow_equals_a_naive_square_dilation(r, h, w, seed):
    m = (np.random.default_rng(seed).random((h, w)) > 0.8).astype(np.uint8) * 255
    assert np.array_equal(grow_mask(m, r), naive_dilate(m, r))


def test_shrink_is_the_dual_of_grow():
    m = np.zeros((40, 40), np.uint8)
    m[10:30, 10:30] = 255
    assert grow_mask(m, -3).astype(bool).sum() == 14 * 14
    assert np.array_equal(grow_mask(m, -3), 255 - grow_mask(255 - m, 3))


def test_feather_has_finite_support_and_keeps_the_core():
    m = np.zeros((80, 80), np.uint8)
    m[30:50, 30:50] = 255
    soft = feather_mask(m, 10)
    assert soft.dtype == np.float32 and soft.min() == 0.0 and soft.max() == 1.0
    assert (soft[:25] == 0).all() and (soft[55:] == 0).all()  # more than 5 px away: exactly zero
    assert (soft[35:45, 35:45] == 1).all()
    assert 0 < soft[30, 40] < 1 and 0 < soft[27, 40] < soft[32, 40] < 1


def test_soft_masks_stay_soft():
    m = np.full((32, 32), 128, np.uint8)
    assert np.allclose(blend_mask(m, 0, 0), 128 / 255)


def test_composite_is_bit_exact_outside_the_mask():
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (50, 60, 4), dtype=np.uint8)
    generated = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    m = np.zeros((50, 60), np.uint8)
    m[10:20, 10:30] = 255
    soft = blend_mask(m, 2, 4)
    out = composite(original, generated, soft)
    outside = soft == 0
    assert outside.sum() > 1000
    assert np.array_equal(out[outside], original[outside])
    inside = soft == 1
    assert (out[inside][:, 3] == 255).all()


def test_composite_matches_the_colour_at_the_seam():
    original = np.zeros((64, 64, 4), np.uint8)
    original[..., :3] = 100
    original[..., 3] = 255
    generated = np.full((64, 64, 3), 120, np.uint8)  # a model that drifted +20 everywhere
    m = np.zeros((64, 64), np.uint8)
    m[20:40, 20:40] = 255
    soft = blend_mask(m, 0, 4)
    assert np.allclose(seam_offset(original[..., :3], generated, soft), -20)
    out = composite(original, generated, soft)
    assert np.abs(out[..., :3].astype(int) - 100).max() <= 1
    raw = composite(original, generated, soft, match_seam=False)
    assert raw[30, 30, 0] == 120


def test_composite_fills_transparent_areas_with_opaque_pixels():
    original = np.zeros((16, 16, 4), np.uint8)  # fully transparent: outpainting
    generated = np.full((16, 16, 3), 200, np.uint8)
    out = composite(original, generated, np.ones((16, 16), np.float32), match_seam=False)
    assert (out == [200, 200, 200, 255]).all()


@given(st.integers(8, 5000), st.integers(8, 5000), st.sampled_from([256, 512, 1024]))
def test_working_size_is_a_multiple_of_8_near_the_native_area(w, h, native):
    ww, wh = working_size(w, h, native)
    assert ww % 8 == 0 and wh % 8 == 0 and ww >= 8 and wh >= 8
    if 1 / 8 < w / h < 8:
        assert 0.75 < (ww * wh) / native**2 < 1.3


def test_prefill_changes_only_the_hole():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    m = np.zeros((40, 40), np.float32)
    m[10:30, 10:30] = 1
    for mode in ("blur", "flat", "noise"):
        out = prefill(rgb, m, mode, seed=3)
        assert np.array_equal(out[m == 0], rgb[m == 0]), mode
        assert not np.array_equal(out[m == 1], rgb[m == 1]), mode
    assert np.array_equal(prefill(rgb, m, "original"), rgb)
    flat = prefill(rgb, m, "flat")
    assert len(np.unique(flat[m == 1].reshape(-1, 3), axis=0)) == 1
    assert np.array_equal(prefill(rgb, m, "noise", seed=3), prefill(rgb, m, "noise", seed=3))


def test_blur_prefill_carries_the_surrounding_colour():
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)
    rgb[:, 20:] = (0, 0, 255)
    m = np.zeros((40, 40), np.float32)
    m[10:30, 5:35] = 1
    out = prefill(rgb, m, "blur")
    assert out[20, 6, 0] > out[20, 6, 2] and out[20, 33, 2] > out[20, 33, 0]


# --- detail transfer -------------------------------------------------------------


def _fine(rng, shape, amount):
    """Pixel-fine texture (grain) of a given strength, zero mean."""
    return rng.normal(0, amount, shape).astype(np.float32)


def _energy(rgb):
    from backend.region import _high_pass

    return float((_high_pass(rgb) ** 2).mean())


def _rgba(rgb, alpha=255):
    return np.dstack([np.clip(rgb, 0, 255).round().astype(np.uint8), np.full(rgb.shape[:2], alpha, np.uint8)])


def test_detail_transfer_gives_a_smooth_fill_the_surroundings_grain_and_keeps_its_colour():
    from backend.region import _binomial, transfer_detail

    rng = np.random.default_rng(0)
    original = _rgba(np.full((96, 96, 3), 120, np.float32) + _fine(rng, (96, 96, 3), 18))
    # What a blurry autoencoder gives back: the original without its grain, and a smooth fill.
    generated = _binomial(original[..., :3])
    soft = np.zeros((96, 96), np.float32)
    soft[32:64, 32:64] = 1
    generated[32:64, 32:64] = (60, 90, 150)
    out = transfer_detail(original, generated, soft, seed=1)
    hole = out[32:64, 32:64]
    assert 0.5 * _energy(original[32:64, 32:64, :3]) < _energy(hole) < 1.5 * _energy(original[32:64, 32:64, :3])
    assert np.abs(hole.reshape(-1, 3).mean(0) - (60, 90, 150)).max() < 3  # the colour stays the model's
    assert np.array_equal(out[soft == 0], generated[soft == 0])  # only the masked area changes
    assert np.array_equal(out, transfer_detail(original, generated, soft, seed=1))  # deterministic
    assert not np.array_equal(out, transfer_detail(original, generated, soft, seed=2))


def test_detail_transfer_adds_nothing_where_the_generation_is_as_detailed_as_the_original():
    from backend.region import transfer_detail

    rng = np.random.default_rng(1)
    rgb = np.full((64, 64, 3), 100, np.float32) + _fine(rng, (64, 64, 3), 15)
    original = _rgba(rgb)
    soft = np.zeros((64, 64), np.float32)
    soft[20:44, 20:44] = 1
    generated = original[..., :3].astype(np.float32)  # a perfect reconstruction around the hole
    assert np.array_equal(transfer_detail(original, generated, soft), generated)


def test_detail_transfer_takes_each_patch_from_surroundings_of_its_colour():
    from backend.region import _binomial, transfer_detail

    rng = np.random.default_rng(2)
    # Left: smooth red (a cup); right: grainy blue (gravel). The hole straddles both.
    rgb = np.zeros((96, 128, 3), np.float32)
    rgb[:, :64] = (200, 30, 30)
    rgb[:, 64:] = (40, 60, 160)
    rgb[:, 64:] += _fine(rng, (96, 64, 3), 20)
    original = _rgba(rgb)
    generated = _binomial(original[..., :3])
    soft = np.zeros((96, 128), np.float32)
    soft[24:72, 32:96] = 1
    generated[24:72, 32:64] = (200, 30, 30)
    generated[24:72, 64:96] = (40, 60, 160)
    out = transfer_detail(original, generated, soft, seed=0)
    red, blue = _energy(out[28:68, 36:58]), _energy(out[28:68, 70:92])
    assert blue > 10 * red, (red, blue)


def test_detail_transfer_does_not_take_detail_from_transparent_pixels():
    from backend.region import transfer_detail

    rng = np.random.default_rng(3)
    original = _rgba(np.full((64, 64, 3), 128, np.float32) + _fine(rng, (64, 64, 3), 30), alpha=0)
    soft = np.zeros((64, 64), np.float32)
    soft[16:48, 16:48] = 1
    generated = np.full((64, 64, 3), 128, np.float32)
    assert np.array_equal(transfer_detail(original, generated, soft), generated)


def test_overlap_add_matches_one_patch_at_a_time_also_over_the_edges():
    from backend.region import _overlap_add

    rng = np.random.default_rng(4)
    src = rng.normal(size=(40, 50, 3)).astype(np.float32)
    h, w, patch, half = 30, 37, 8, 4
    gy, gx = np.meshgrid(np.arange(-half, h, half), np.arange(-half, w, half), indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    sy, sx = rng.integers(0, 40 - patch, len(gy)), rng.integers(0, 50 - patch, len(gy))
    win = np.outer(np.hanning(patch + 2)[1:-1], np.hanning(patch + 2)[1:-1])
    acc, wsum = np.zeros((h, w, 3)), np.zeros((h, w))
    for y, x, a, b in zip(gy, gx, sy, sx):  # the plain reference: each patch clipped to the canvas
        for dy in range(patch):
            for dx in range(patch):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    acc[y + dy, x + dx] += src[a + dy, b + dx] * win[dy, dx]
                    wsum[y + dy, x + dx] += win[dy, dx] ** 2
    want = acc / np.sqrt(np.maximum(wsum, 1e-6))[..., None]
    np.testing.assert_allclose(_overlap_add(src, sy, sx, gy, gx, patch, (h, w)), want, atol=1e-5)
