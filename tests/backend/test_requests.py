import numpy as np
import pytest

from backend.errors import InvalidRequest
from backend import Img2ImgRequest, InpaintRequest
from backend.requests import mask_bbox


def image(h=64, w=64):
    return np.zeros((h, w, 4), np.uint8)


def mask(h=64, w=64):
    m = np.zeros((h, w), np.uint8)
    m[20:30, 20:30] = 255
    return m


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("steps", 0, "`steps` must be between 1 and 500"),
        ("steps", 2.5, "`steps` must be a whole number"),
        ("guidance", -1.0, "`guidance` must be between 0.0 and 50.0"),
        ("strength", 0.0, "`strength` must be above 0"),
        ("strength", 1.5, "`strength` must be between"),
        ("seed", -3, "`seed` must be between 0 and"),
        ("count", 0, "`count` must be between 1 and 64"),
        ("sampler", "warp", "`sampler` 'warp' is unknown: choose one of"),
        ("grow", 1000, "`grow` must be between"),
        ("feather", -2, "`feather` must be between 0 and 256"),
        ("fill", "paint", "`fill` 'paint' is unknown"),
        ("prompt", None, "`prompt` must be text"),
        ("restore_detail", "yes", "`restore_detail` must be true or false"),
    ],
)
def test_bad_fields_are_named_with_the_fix(field, value, words):
    with pytest.raises(InvalidRequest) as err:
        InpaintRequest(image=image(), mask=mask(), **{field: value})
    assert words in str(err.value)
    assert str(err.value).endswith(".")


def test_mask_must_match_the_image_and_not_be_empty():
    with pytest.raises(InvalidRequest, match="must be the size of the image"):
        InpaintRequest(image=image(), mask=mask(32, 64))
    with pytest.raises(InvalidRequest, match="`mask` is empty"):
        InpaintRequest(image=image(), mask=np.zeros((64, 64), np.uint8))
    with pytest.raises(InvalidRequest, match="`mask` is missing"):
        InpaintRequest(image=image())


def test_pixels_must_be_uint8_images():
    with pytest.raises(InvalidRequest, match="uint8"):
        Img2ImgRequest(image=np.zeros((64, 64, 4), np.float32))
    with pytest.raises(InvalidRequest, match="shape"):
        Img2ImgRequest(image=np.zeros((64, 64), np.uint8))
    with pytest.raises(InvalidRequest, match="at least 8×8"):
        Img2ImgRequest(image=np.zeros((4, 64, 3), np.uint8))


def test_steps_times_strength_must_leave_a_step():
    with pytest.raises(InvalidRequest, match="leaves no denoising step"):
        Img2ImgRequest(image=image(), steps=2, strength=0.2)


def test_requests_are_frozen_snapshots():
    src = image()
    m = mask()
    req = InpaintRequest(image=src, mask=m)
    src[:] = 77
    m[:] = 0
    assert req.image.max() == 0 and req.mask.max() == 255  # copies, not views
    with pytest.raises(AttributeError):
        req.steps = 3
    with pytest.raises(ValueError):
        req.image[0, 0, 0] = 1  # read-only pixels


def test_rgb_images_get_an_opaque_alpha():
    req = Img2ImgRequest(image=np.zeros((16, 16, 3), np.uint8))
    assert req.image.shape == (16, 16, 4) and (req.image[..., 3] == 255).all()


def test_from_document_copies_only_the_needed_region():
    doc = np.zeros((4000, 5000, 4), np.uint8)
    m = np.zeros((4000, 5000), np.uint8)
    m[1000:1100, 2000:2050] = 255
    req = InpaintRequest.from_document(doc, m, origin=(-10, 5), grow=4, feather=6, padding=20)
    margin = 4 + 6 + 20
    assert req.image.shape[:2] == (100 + 2 * margin, 50 + 2 * margin)
    assert req.origin == (-10 + 2000 - margin, 5 + 1000 - margin)
    assert req.mask.sum() == m.sum()


def test_from_document_clamps_at_the_edges():
    m = np.zeros((64, 64), np.uint8)
    m[0:4, 60:64] = 255
    req = InpaintRequest.from_document(image(), m, padding=8, grow=0, feather=0)
    assert req.origin == (52, 0) and req.image.shape[:2] == (12, 12)


def test_seeds_and_summary():
    req = Img2ImgRequest(image=image(), seed=41, count=3)
    assert list(req.seeds) == [41, 42, 43]
    assert req.summary()["seed"] == 41 and "image" not in req.summary()


def test_mask_bbox():
    assert mask_bbox(np.zeros((5, 5), np.uint8)) is None
    assert mask_bbox(mask()) == (20, 20, 30, 30)
