"""A document's live-painting state: the live region, its strength and seed, and whether live was on.

Plain data (the canvas knows nothing of the engine): the studio's live mode (``studio/live.py``)
reads and writes :attr:`canvas.document.Document.live`; the ``.ora`` files keep it on ``<image>``
in our ``ls:`` namespace (``ls:live-x``, ``ls:live-y``, ``ls:live-w``, ``ls:live-h``,
``ls:live-strength``, ``ls:live-seed``, ``ls:live-on``). :func:`live_from_attributes` reads
them back and drops a value it cannot take (a file never fails to open because of it): a bad
region means no region, a bad strength or seed takes its default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .geometry import MAX_SIDE, Rect

STRENGTH = (0.01, 1.0)
DEFAULT_STRENGTH = 0.5
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class LiveSettings:
    """``region``: the rectangle live regenerates (document coordinates; None: not chosen yet);
    ``strength`` in [0.01, 1]; ``seed``; ``on``: whether live mode was on (saved, not resumed)."""

    region: Rect | None = None
    strength: float = DEFAULT_STRENGTH
    seed: int = 0
    on: bool = False

    def __post_init__(self) -> None:
        if self.region is not None:
            r = Rect(*self.region)
            if r.empty or r.w > MAX_SIDE or r.h > MAX_SIDE:
                raise ValueError(f"a live region must be a non-empty rectangle, got {self.region!r}")
            object.__setattr__(self, "region", r)
        s = self.strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or not STRENGTH[0] <= s <= STRENGTH[1]:
            raise ValueError(f"the live strength must be a number from {STRENGTH[0]} to {STRENGTH[1]}, got {s!r}")
        object.__setattr__(self, "strength", float(s))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"the live seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        if not isinstance(self.on, bool):
            raise ValueError(f"live on must be True or False, got {self.on!r}")


def live_attributes(live: LiveSettings | None) -> dict[str, str]:
    """The ``ls:`` attributes (without the prefix) that record ``live`` on ``<image>``."""
    if live is None:
        return {}
    out = {"live-strength": repr(live.strength), "live-seed": str(live.seed), "live-on": "true" if live.on else "false"}
    if live.region is not None:
        r = live.region
        out.update({"live-x": str(r.x), "live-y": str(r.y), "live-w": str(r.w), "live-h": str(r.h)})
    return out


def live_from_attributes(get) -> LiveSettings | None:
    """``get(name)`` → the attribute's text or None. None when the file records no live state."""
    names = ("live-x", "live-y", "live-w", "live-h", "live-strength", "live-seed", "live-on")
    if all(get(n) is None for n in names):
        return None
    region = None
    box = [_int(get(n)) for n in ("live-x", "live-y", "live-w", "live-h")]
    if None not in box:
        try:
            region = LiveSettings(region=Rect(*box)).region
        except ValueError:
            region = None
    strength = _float(get("live-strength"))
    if strength is None or not STRENGTH[0] <= strength <= STRENGTH[1]:
        strength = DEFAULT_STRENGTH
    seed = _int(get("live-seed"))
    if seed is None or not 0 <= seed <= MAX_SEED:
        seed = 0
    return LiveSettings(region=region, strength=strength, seed=seed, on=get("live-on") == "true")


def _int(text) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _float(text) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
