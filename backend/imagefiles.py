"""Reading input images and masks, writing PNGs with generation parameters (headless use)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import BackendError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
Image.MAX_IMAGE_PIXELS = 32768 * 32768  # large canvases are normal here; absurd ones are refused below


class ImageFileError(BackendError):
    """An input image could not be used."""


def read_rgba(path: str | os.PathLike) -> np.ndarray:
    """(h, w, 4) uint8 from a PNG, JPEG or WebP file; .ora gives its flattened visible stack."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path} does not exist: check the file name.")
    suffix = path.suffix.lower()
    if suffix == ".ora":
        return _read_ora(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ImageFileError(f"{path.name} is not a PNG, JPEG, WebP or OpenRaster file: convert it to PNG.")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGBA")).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFileError(f"{path.name} could not be read as an image ({exc}): it may be damaged.") from exc


def _read_ora(path: Path) -> np.ndarray:
    try:
        from canvas.ora import load_ora
    except ImportError as exc:  # the canvas package is part of this project; this only guards partial installs
        raise ImageFileError("OpenRaster files need the canvas package: reinstall Latent Studio.") from exc
    from canvas.errors import DocumentError

    try:
        return load_ora(path).flatten()
    except DocumentError as exc:
        raise ImageFileError(str(exc)) from exc


def read_mask(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 coverage: white (or, for a one-colour image, its alpha) marks what to repaint."""
    rgba = read_rgba(path)
    h, w = rgba.shape[:2]
    if (w, h) != size:
        raise ImageFileError(
            f"The mask is {w}×{h} but the image is {size[0]}×{size[1]}: the mask must be the size of the image."
        )
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    if (alpha < 1).any() and (rgba[..., :3] == rgba[0, 0, :3]).all():
        coverage = alpha * 255.0  # a one-colour stroke layer: its alpha is the mask
    else:
        luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        coverage = luma * alpha
    return np.clip(coverage + 0.5, 0, 255).astype(np.uint8)


def write_png(rgba: np.ndarray, path: str | os.PathLike, parameters: str | None = None) -> None:
    """Writes atomically (temporary file, then rename) with an A1111 ``parameters`` chunk."""
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    image = Image.fromarray(rgba, "RGBA")
    if (rgba[..., 3] == 255).all():
        image = image.convert("RGB")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def numbered(path: Path, index: int, count: int) -> Path:
    """``out.png`` for one image; ``out-0.png``, ``out-1.png``, … for several."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")
