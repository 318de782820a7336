"""Outpaint: geometry of passes and masks, the engine end to end on a tiny model, the CLI."""
import numpy as np
import pytest
from PIL import Image

import main as app_main
from backend.errors import InvalidRequest
from backend.events import Preview, Progress, Result, Started
from backend.ops.outpaint import OutpaintRequest, Pass, _region, plan_passes, segments

from conftest import make_scene


def test_request_validation_names_the_field():
    img, _ = make_scene()
    with pytest.raises(InvalidRequest, match="extend at least one side"):
        OutpaintRequest(image=img)
    with pytest.raises(InvalidRequest, match="`overlap`"):
        OutpaintRequest(image=img, left=8, overlap=60)
    with pytest.raises(InvalidRequest, match="`fill`"):
        OutpaintRequest(image=img, left=8, fill="zebra")
    with pytest.raises(InvalidRequest, match="`left`"):
        OutpaintRequest(image=img, left=-4)
    req = OutpaintRequest(image=img, left=100, top=7, origin=(10, 20))
    assert req.result_rect == (-90, 13, 228, 103)


def test_passes_are_at_most_half_the_native_size_and_add_up():
    img, _ = make_scene()
    req = OutpaintRequest(image=img, left=300, bottom=40)
    passes = plan_passes(req, 256)
    assert [p.side for p in passes] == ["left", "left", "left", "bottom"]
    assert sum(p.amount for p in passes if p.side == "left") == 300
    assert max(p.amount for p in passes) <= 128


def test_each_result_records_its_own_seed_and_reproduces_from_it(engine, recorder, tiny_sd15_folder):
    """Bug: the parameters recorded the last region's seed (seed 3 wrote "Seed: 6"); now the regions'
    seeds derive from the variation's, which is what is recorded."""
    img, _ = make_scene()
    base = dict(image=img, model=str(tiny_sd15_folder), right=150, steps=2, overlap=16)  # 2 passes, 2 regions
    many = recorder.wait(engine.submit(OutpaintRequest(seed=3, count=2, **base)))[-1].images
    assert [r.seed for r in many] == [3, 4]
    assert [r.parameters["Seed"] for r in many] == [3, 4]
    one = recorder.wait(engine.submit(OutpaintRequest(seed=4, **base)))[-1].images[0]
    assert np.array_equal(one.image, many[1].image)  # the second variation, from its own seed alone
    assert not np.array_equal(many[0].image, many[1].image)


def test_mask_is_one_on_new_pixels_and_feathers_to_zero_across_the_band():
    box, soft = _region(Pass("right", 20), (0, 0, 100, 50), overlap=16, context=64, shape=None)
    assert box == (36, 0, 120, 50)
    row = soft[0]
    assert (row[-20:] == 1).all()  # the new strip
    band = row[-20 - 16: -20]
    assert (np.diff(band) > 0).all() and band[0] > 0 and band[-1] < 1  # ramps up towards the edge
    assert (row[: -36] == 0).all()  # beyond the band: untouched


def test_outpaint_keeps_the_original_and_grows_the_canvas(engine, recorder, tiny_sd15_folder):
    img, _ = make_scene()
    req = OutpaintRequest(image=img, model=str(tiny_sd15_folder), left=40, bottom=150, steps=2, overlap=16,
                          origin=(5, 5), fill="edge")
    events = recorder.wait(engine.submit(req))
    assert isinstance(events[-1], Result), events[-1]
    started = events[0]
    assert isinstance(started, Started) and started.operation == "outpaint" and started.total == 3 * 2
    stages = {e.stage for e in events if isinstance(e, Progress)}
    assert {"Region 1 of 3", "Region 2 of 3", "Region 3 of 3"} <= stages
    item = events[-1].images[0]
    assert item.rect == (-35, 5, 168, 246) and item.image.shape == (246, 168, 4)
    h, w = img.shape[:2]
    # The original sits at (left, top) = (40, 0); outside the 16 px band along the left and bottom: bit-exact.
    kept = item.image[0: h - 16, 40 + 16: 40 + w]
    assert np.array_equal(kept, img[: h - 16, 16:])
    assert (item.mask[: h - 16, 56:] == 0).all()
    assert (item.mask[:, :40] == 255).all() and (item.mask[h:] == 255).all()
    assert (item.image[..., 3] == 255).all()  # the new area is painted, opaque
    assert not np.array_equal(item.image[:h, 40: 40 + 16], img[:, :16])  # the band was repainted
    assert item.parameters["Operation"] == "outpaint" and item.parameters["Size"] == "168x246"
    x0, y0, rw, rh = item.rect
    for p in (e for e in events if isinstance(e, Preview)):
        px, py, pw, ph = p.rect
        assert x0 <= px and y0 <= py and px + pw <= x0 + rw and py + ph <= y0 + rh


def test_cli_outpaint_writes_the_extended_png(tmp_path, capsys, tiny_sd15_folder):
    img, _ = make_scene()
    Image.fromarray(img).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code = app_main.main(["outpaint", "--image", str(tmp_path / "in.png"), "--out", str(out), "--model",
                          str(tiny_sd15_folder), "--left", "24", "--top", "8", "--steps", "2", "--overlap", "8",
                          "--quiet"])
    assert code == 0, capsys.readouterr().err
    result = Image.open(out)
    assert result.size == (128 + 24, 96 + 8)
    assert "Operation: outpaint" in result.text["parameters"]
    pixels = np.asarray(result.convert("RGBA"))
    assert np.array_equal(pixels[8 + 8:, 24 + 8:], img[8:, 8:])

    code = app_main.main(["outpaint", "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "bad.png"),
                          "--model", str(tiny_sd15_folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "extend at least one side" in err
    assert not (tmp_path / "bad.png").exists()


def test_segments_cover_a_long_side_with_overlaps_of_at_most_native_size():
    assert segments(200, 256) == [(0, 200)]
    spans = segments(600, 256)
    assert spans[0][0] == 0 and spans[-1][1] == 600 and len(spans) == 3
    assert all(e - s <= 256 for s, e in spans)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive spans overlap


def test_a_long_side_is_painted_in_segments(engine, recorder, tiny_sd15_folder):
    img, _ = make_scene(h=600, w=64)
    req = OutpaintRequest(image=img, model=str(tiny_sd15_folder), right=32, steps=2, overlap=16, fill="blur")
    events = recorder.wait(engine.submit(req))
    assert isinstance(events[-1], Result), events[-1]
    assert events[0].total == 3 * 2  # three segments along the 600 px side
    previews = {e.rect for e in events if isinstance(e, Preview)}
    assert len(previews) == 3 and all(r[3] <= 256 for r in previews)
    item = events[-1].images[0]
    assert item.image.shape == (600, 96, 4) and (item.image[..., 3] == 255).all()
    assert np.array_equal(item.image[:, : 64 - 16], img[:, : 64 - 16])  # outside the band: bit-exact
