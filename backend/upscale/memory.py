"""How much memory a tiled job needs, and the tile size, VAE tiling and device that make it fit.

The estimate is weights + the activations of one tile + what the output needs (the uint8 result
and one tile row of float blending buffer), against what the device has free:
``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` from ``/proc/meminfo`` on the CPU. The
activation models are deliberately simple and on the safe side (measured peaks on the CPU for
ESRGAN; the usual SD numbers for UNet/VAE); the chosen plan is reported to the user as a stage
message, e.g. "Tiles of 256 px on cpu (est. 0.9 of 11.2 GB)".
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidRequest
from .. import memory as _device
from ..memory import GB, host_available_bytes  # noqa: F401  (the device measures, shared with memory_plan)

TILE_SIDES = (1024, 768, 512, 384, 256, 192, 128, 96, 64)
CPU_ACTIVATION_CAP = 1.5 * GB  # bigger tiles are no faster on a CPU; keep room for everything else
SAFETY = 0.7  # use at most this part of what is free


def available_bytes(device) -> int:
    """Free memory on ``device``: the GPU's, else this module's ``host_available_bytes`` (which tests replace)."""
    kind = getattr(device, "type", str(device)).split(":")[0]
    return _device.available_bytes(device) if kind == "cuda" else host_available_bytes()


def output_bytes(width: int, height: int, scale: int) -> int:
    """The result image (uint8 RGBA) and its alpha upscale."""
    return width * height * scale * scale * 5


def band_bytes(width: int, scale: int, tile: int, overlap: int) -> int:
    """One tile row of float RGB blending buffer at the output size."""
    return width * scale * (tile + overlap) * scale * 3 * 4


def esrgan_activation_bytes(width: int, height: int, scale: int, filters: int, element: int, transformer: bool) -> int:
    """Peak activations of one tile of a feed-forward SR net.

    The peak is the last convolutions at the output resolution (about 3 maps of ``filters``
    channels alive) plus the trunk at the input resolution (the dense blocks' concatenations, about
    8 maps). Attention models (SwinIR, HAT, DAT…) keep several times more per pixel.
    """
    per_pixel = 3 * filters * scale * scale + 8 * filters
    factor = 4 if transformer else 1
    return int(width * height * per_pixel * element * factor)


def unet_activation_bytes(side: int, element: int) -> int:
    """A UNet step plus the VAE at ``side`` output pixels (SD 1.5 at 512², fp16 ≈ 2.5 GB)."""
    return int(2.5 * GB * (side / 512) ** 2 * element / 2)


@dataclass(frozen=True)
class MemoryPlan:
    device: str
    tile: int
    vae_tiling: bool
    estimate: int
    available: int

    def describe(self, what: str = "Tiles") -> str:
        vae = ", VAE tiling" if self.vae_tiling else ""
        return (f"{what} of {self.tile} px on {self.device}{vae} "
                f"(est. {self.estimate / GB:.1f} of {self.available / GB:.1f} GB free)")


def _too_large(width, height, scale, need, have) -> InvalidRequest:
    return InvalidRequest(
        f"Upscaling {width}×{height} by {scale} needs about {need / GB:.1f} GB for the result alone but only "
        f"{have / GB:.1f} GB is free: upscale a part of the image, choose a smaller scale, or close other programs."
    )


def check_output_fits(width: int, height: int, scale: int) -> None:
    """Refuses a job whose output buffer cannot fit in host memory, before anything loads."""
    need = output_bytes(width, height, scale)
    have = host_available_bytes()
    if need > SAFETY * have:
        raise _too_large(width, height, scale, need, have)


def plan_feedforward(width, height, scale, *, device, weights: int, filters: int = 64, element: int = 4,
                     transformer: bool = False, tile: int = 0, overlap: int = 16) -> MemoryPlan:
    """Tile size and device for a spandrel model; falls back to the CPU when a GPU is too small."""
    host = host_available_bytes()
    out = output_bytes(width, height, scale)
    if out > SAFETY * host:
        raise _too_large(width, height, scale, out, host)
    kind = getattr(device, "type", str(device)).split(":")[0]
    side = max(width, height)
    if tile:
        candidates = [tile]
    else:
        candidates = ([side] if side <= TILE_SIDES[0] else []) + [t for t in TILE_SIDES if t < side] or [side]
    for dev in ([kind, "cpu"] if kind != "cpu" else ["cpu"]):
        have = available_bytes(device) if dev == kind else host
        for t in candidates:
            tw, th = min(t, width), min(t, height)
            act = esrgan_activation_bytes(tw, th, scale, filters, element if dev != "cpu" else 4, transformer)
            band = band_bytes(width, scale, th, overlap)
            if dev == "cpu":
                need = weights + act + out + band
                fits = need <= SAFETY * have and (bool(tile) or act <= CPU_ACTIVATION_CAP)
            else:
                need = weights + act
                fits = need <= SAFETY * have and out + band <= SAFETY * host
            if fits:
                return MemoryPlan(dev, min(t, side), False, need, have)
    if tile:
        raise InvalidRequest(
            f"Tiles of {tile} px do not fit in the memory free: choose a smaller --tile, or 0 to choose automatically."
        )
    raise _too_large(width, height, scale, out + weights, host)


def plan_diffusion(width, height, scale, *, device, weights: int, native: int, element: int,
                   tile: int = 0) -> MemoryPlan:
    """Tile side (in the diffusion model's output pixels), VAE tiling and device for diffusion tiles."""
    host = host_available_bytes()
    out = output_bytes(width, height, scale)
    if out > SAFETY * host:
        raise _too_large(width, height, scale, out, host)
    kind = getattr(device, "type", str(device)).split(":")[0]
    side = tile or native
    for dev in ([kind, "cpu"] if kind != "cpu" else ["cpu"]):
        have = available_bytes(device) if dev == kind else host
        el = element if dev != "cpu" else 4
        extra = out if dev == "cpu" else 0
        for vae_tiling in (False, True):
            act = unet_activation_bytes(side, el) * (0.5 if vae_tiling else 1.0)
            need = int(weights * (el / element) + act + extra)
            if need <= SAFETY * have:
                return MemoryPlan(dev, side, vae_tiling, need, have)
    raise InvalidRequest(
        f"The diffusion model needs about {(weights + unet_activation_bytes(side, 4)) / GB:.1f} GB for one "
        "tile but the memory free is smaller: close other programs or use a smaller model."
    )
