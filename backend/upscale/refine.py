"""Diffusion refine ("SD upscale"): an img2img pass at low strength per tile of the upscaled image.

Each tile goes through the shared region core (:func:`backend.core.diffuse_region`, full region,
at the model's native size), then its colour is fixed against the unrefined tile
(:mod:`.colour`) and the tiles are feathered together in pixels.
"""
from __future__ import annotations

import numpy as np

from ..core import DiffusionSettings, diffuse_region
from ..events import Preview
from .colour import colour_fix
from .tiling import BandWriter, TilePlan, make_plan


def refine_overlap(tile: int, strength: float) -> int:
    """More overlap for stronger refines (tiles then differ more): tile/8 … tile/4, at least 64 px."""
    o = tile * (0.125 + 0.125 * strength)
    return max(64, int(round(o / 8)) * 8)


def plan_refine(width: int, height: int, tile: int, strength: float) -> TilePlan:
    return make_plan(width, height, tile, refine_overlap(tile, strength))


def refine(ctx, model, base: np.ndarray, plan: TilePlan, settings: DiffusionSettings, origin, *,
           stage_prefix: str = "", hold_radius: int | None = None) -> tuple[np.ndarray, dict]:
    """Refined copy of ``base`` (RGBA uint8, output resolution); ``origin``: its top-left in document coordinates.

    Each tile's low frequencies (a blur of ``hold_radius`` px; default: a 32nd of the tile) are held
    to ``base``'s, so tiles that drift differently leave no seam; 0 holds nothing (one tile alone)."""
    out = np.empty_like(base)
    writer = BandWriter(plan, out[..., :3])
    params: dict = {}
    tiles = plan.tiles
    for tile in tiles:
        ctx.check_cancel()
        stage = f"{stage_prefix}Tile {tile.index + 1} of {len(tiles)}" if len(tiles) > 1 else stage_prefix.rstrip(", ")
        pixels = base[tile.y0: tile.y1, tile.x0: tile.x1]
        rect = (origin[0] + tile.x0, origin[1] + tile.y0, tile.width, tile.height)
        soft = np.ones(pixels.shape[:2], np.float32)
        generated, params = diffuse_region(ctx, model, pixels, soft, rect, settings, stage=stage, full_region=True)
        fixed = colour_fix(generated, pixels, hold_radius) if hold_radius != 0 else generated[..., :3].astype(np.float32)
        writer.add(tile, fixed)
        if tile.x1 == plan.width:
            writer.finish_row(tile.row)
        preview = np.empty(pixels.shape, np.uint8)
        preview[..., :3] = np.clip(fixed + 0.5, 0, 255).astype(np.uint8)
        preview[..., 3] = 255
        ctx.emit(Preview(ctx.job_id, preview, rect, ctx.step, ctx.total))
    out[..., 3] = base[..., 3]
    return out, params
