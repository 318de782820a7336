"""The document's live-painting settings (canvas/live.py): checked values, .ora attributes, bad values dropped."""
import pytest

from canvas.document import Document
from canvas.geometry import Rect
from canvas.live import LiveSettings, live_attributes, live_from_attributes


def test_values_are_checked():
    for bad in (dict(strength=0.0), dict(strength=float("nan")), dict(seed=-1), dict(seed=2**32),
                dict(on="yes"), dict(region=Rect(0, 0, 0, 5))):
        with pytest.raises(ValueError):
            LiveSettings(**bad)


def test_attributes_round_trip_and_bad_ones_take_defaults():
    live = LiveSettings(Rect(-4, 8, 100, 60), 0.3, 99, True)
    attrs = live_attributes(live)
    assert live_from_attributes(attrs.get) == live
    assert live_from_attributes({}.get) is None
    attrs.update({"live-strength": "2", "live-seed": "x", "live-h": "0"})
    assert live_from_attributes(attrs.get) == LiveSettings(None, 0.5, 0, True)


def test_a_copy_keeps_the_live_settings():
    doc = Document(32, 32)
    doc.live = LiveSettings(Rect(0, 0, 16, 16))
    assert doc.copy().live == doc.live
