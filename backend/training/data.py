"""Training data of the embedded model: openly licensed photos, their licences, crops.

Sources (fixed lists below): the photographic wallpapers of the Debian packages
``plasma-workspace-wallpapers`` and ``mate-backgrounds`` (fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x``, nothing installed), plus the colour photos bundled in the
scikit-image wheel. Abstract and illustrated wallpapers are left out.

Layout of a data folder (the cache, or ``.carry/data`` for the GPU run)::

    photos/<scene>.jpg   each photo, short side at most PHOTO_SHORT_SIDE, JPEG q92
    manifest.json        scene -> file, source, author, licence, split, size
    eval_crops.npz       the held-out crops used by `evaluate` (made on first use)

The held-out split is by scene and fixed here, chosen before any training: never train on it.
This module imports no torch at import time and never needs platformdirs or network on the
training path (the GPU machine has neither).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

PHOTO_SHORT_SIDE = 1024
JPEG_QUALITY = 92
MANIFEST = "manifest.json"
EVAL_CROPS = "eval_crops.npz"


class DataError(Exception):
    """A data problem whose text is presentable to the user as is."""


@dataclass(frozen=True)
class Source:
    scene: str
    origin: str  # "deb:<package>" or "skimage"
    path: str  # path inside the unpacked package, or file name in skimage/data
    author: str
    licence: str


_PLASMA_LICENCE = "LGPL-3.0 (upstream metadata.json; Debian copyright: GPL-2+)"
_MATE_LICENCE = "GPL-2+"


def _plasma(name: str, author: str) -> Source:
    return Source(
        f"plasma-{name}", "deb:plasma-workspace-wallpapers",
        f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg", author, _PLASMA_LICENCE,
    )


def _mate(name: str, author: str) -> Source:
    return Source(
        f"mate-{name}", "deb:mate-backgrounds", f"usr/share/backgrounds/mate/nature/{name}.jpg",
        author, _MATE_LICENCE,
    )


SOURCES: tuple[Source, ...] = (
    _plasma("Autumn", "RJ Quiralta"),
    _plasma("BytheWater", "Maciej Wiklo"),
    _plasma("ColdRipple", "Risto Saukonpää"),
    _plasma("ColorfulCups", "Dmitri Popov"),
    _plasma("DarkestHour", "Risto Saukonpää"),
    _plasma("EveningGlow", "Ian Hex"),
    _plasma("FallenLeaf", "Martin Klapetek"),
    _plasma("Grey", "Sigi Sagi"),
    _plasma("Kite", "Risto Saukonpää"),
    _plasma("OneStandsOut", "Risto Saukonpää"),
    _plasma("Path", "Risto Saukonpää"),
    _plasma("summer_1am", "Risto Saukonpää"),
    _mate("Aqua", "Charles Barbin"),
    _mate("Blinds", "Lennart Poettering, Andrea Cimitan"),
    _mate("Dune", "Marco Cogoni, Hylke Bons"),
    _mate("FreshFlower", "Jens Ansorg"),
    _mate("Garden", "Charles Barbin"),
    _mate("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
    _mate("LadyBird", "Charles Barbin"),
    _mate("RainDrops", "blackcombwhistler07"),
    _mate("Storm", "Sergey Nazarov"),
    _mate("TwoWings", "Charles Barbin, Hylke Bons"),
    _mate("Wood", "Jean-François Fortin Tam"),
    _mate("YellowFlower", "Charles Barbin"),
    Source("skimage-astronaut", "skimage", "astronaut.png", "NASA", "Public domain"),
    Source("skimage-chelsea", "skimage", "chelsea.png", "Stefan van der Walt", "CC0-1.0"),
    Source("skimage-coffee", "skimage", "coffee.png", "Rachel Michetti", "CC0-1.0"),
    Source("skimage-rocket", "skimage", "rocket.jpg", "SpaceX", "Public domain (CC0-1.0)"),
    Source(
        "skimage-motorcycle", "skimage", "motorcycle_left.png",
        "Middlebury 2014 stereo dataset (Scharstein et al.)",
        "Redistributed in scikit-image (BSD-3-Clause package); no separate licence stated",
    ),
    Source("skimage-hubble", "skimage", "hubble_deep_field.jpg", "NASA/ESA", "Public domain"),
)

# Chosen before training, by scene: a landscape at dusk, a forest, a macro, a sky, an indoor still life.
HELDOUT_SCENES: frozenset[str] = frozenset(
    {"plasma-EveningGlow", "plasma-Path", "mate-LadyBird", "mate-Storm", "skimage-coffee"}
)

DEBIAN_PACKAGES = ("plasma-workspace-wallpapers", "mate-backgrounds")


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("latent-studio")) / "data"


def split_of(scene: str) -> str:
    return "heldout" if scene in HELDOUT_SCENES else "train"


def is_prepared(data_dir: Path) -> bool:
    manifest = Path(data_dir) / MANIFEST
    if not manifest.is_file():
        return False
    entries = json.loads(manifest.read_text())["photos"]
    return all((Path(data_dir) / e["file"]).is_file() for e in entries)


def read_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"no prepared data in {data_dir}: run `python main.py prepare-data` first")
    return json.loads(path.read_text())


def _fetch_debs(workdir: Path, log=print) -> Path:
    """apt-get download the wallpaper packages into workdir and unpack them; returns the root."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise DataError("apt-get and dpkg-deb are needed to fetch the training photos (a Debian-like system)")
    log(f"fetching {', '.join(DEBIAN_PACKAGES)} with apt-get download ...")
    proc = subprocess.run(
        ["apt-get", "download", *DEBIAN_PACKAGES], cwd=workdir, capture_output=True, text=True
    )
    debs = sorted(workdir.glob("*.deb"))
    if proc.returncode != 0 or len(debs) < len(DEBIAN_PACKAGES):
        raise DataError(f"apt-get download failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    root = workdir / "root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _skimage_dir() -> Path:
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - the train extra is missing
        raise DataError("scikit-image is needed: pip install 'latent-studio[train]'") from exc
    return Path(skimage.data.__file__).parent


def prepare(data_dir: Path, deb_root: Path | None = None, log=print) -> dict:
    """Fetch (unless deb_root holds unpacked packages), downscale and record every photo."""
    from PIL import Image

    data_dir = Path(data_dir)
    (data_dir / "photos").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latent-studio-debs-") as tmp:
        root = deb_root or _fetch_debs(Path(tmp), log)
        sk = _skimage_dir()
        copyrights = {
            pkg: _read_text(Path(root) / f"usr/share/doc/{pkg}/copyright") for pkg in DEBIAN_PACKAGES
        }
        entries = []
        for src in SOURCES:
            path = (sk / src.path) if src.origin == "skimage" else Path(root) / src.path
            if not path.is_file():
                raise DataError(f"missing source photo {path}")
            im = Image.open(path).convert("RGB")
            w, h = im.size
            scale = min(1.0, PHOTO_SHORT_SIDE / min(w, h))
            if scale < 1.0:
                im = im.resize((round(w * scale), round(h * scale)), Image.LANCZOS)
            rel = f"photos/{src.scene}.jpg"
            im.save(data_dir / rel, quality=JPEG_QUALITY)
            entries.append(
                dict(asdict(src), file=rel, split=split_of(src.scene), original_size=[w, h], size=list(im.size))
            )
            log(f"  {src.scene:24s} {w}x{h} -> {im.size[0]}x{im.size[1]}  {split_of(src.scene)}  {src.licence}")
    manifest = dict(
        photos=entries,
        heldout_scenes=sorted(HELDOUT_SCENES),
        debian_copyright_checked={k: bool(v) for k, v in copyrights.items()},
        photo_short_side=PHOTO_SHORT_SIDE,
    )
    (data_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    mp = sum(e["original_size"][0] * e["original_size"][1] for e in entries) / 1e6
    log(f"prepared {len(entries)} scenes ({mp:.0f} MP at source) in {data_dir}")
    return manifest


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def ensure_prepared(data_dir: Path | None, log=print) -> Path:
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if not is_prepared(data_dir):
        prepare(data_dir, log=log)
    return data_dir


def load_photos(data_dir: Path, split: str) -> list:
    """The photos of one split as uint8 HxWx3 numpy arrays."""
    import numpy as np
    from PIL import Image

    manifest = read_manifest(data_dir)
    photos = [
        np.asarray(Image.open(Path(data_dir) / e["file"]).convert("RGB"))
        for e in manifest["photos"]
        if e["split"] == split
    ]
    if not photos:
        raise DataError(f"no {split} photos in {data_dir}")
    return photos


# --- crops ---------------------------------------------------------------------------------------


def make_crop_bank(photos, n: int, size: int, seed: int = 0, device="cpu", max_zoom_out: float = 4.0,
                   jitter: float = 0.05):
    """n random square crops (uint8 tensor [n,3,size,size]) from the photos.

    Each crop takes a window of side s*size, s log-uniform in [1, max_zoom_out] (bounded by the
    photo), resized to size with antialiasing; random horizontal flip; small brightness,
    contrast and saturation jitter. Photos are drawn with probability proportional to the
    square root of their area so the small scikit-image photos are not drowned out.
    """
    import math

    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    imgs = [torch.from_numpy(p.copy()).permute(2, 0, 1).contiguous().to(device) for p in photos]
    weights = torch.tensor([math.sqrt(i.shape[1] * i.shape[2]) for i in imgs])
    which = torch.multinomial(weights, n, replacement=True, generator=g)
    u = torch.rand(n, 6, generator=g)
    bank = torch.empty(n, 3, size, size, dtype=torch.uint8, device=device)
    for k in range(n):
        img = imgs[int(which[k])]
        _, h, w = img.shape
        top_zoom = max(1.0, min(max_zoom_out, min(h, w) / size))
        side = min(min(h, w), int(round(size * math.exp(float(u[k, 0]) * math.log(top_zoom)))))
        y = int(float(u[k, 1]) * (h - side + 1))
        x = int(float(u[k, 2]) * (w - side + 1))
        crop = img[:, y : y + side, x : x + side].unsqueeze(0).float()
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
        if float(u[k, 3]) < 0.5:
            crop = crop.flip(-1)
        if jitter:
            b = 1 + jitter * (2 * float(u[k, 4]) - 1)
            c = 1 + jitter * (2 * float(u[k, 5]) - 1)
            mean = crop.mean()
            crop = (crop - mean) * c + mean * b
            grey = crop.mean(dim=1, keepdim=True)
            sat = 1 + jitter * (2 * torch.rand((), generator=g).item() - 1)
            crop = grey + (crop - grey) * sat
        bank[k] = crop.round().clamp(0, 255).to(torch.uint8)[0]
    return bank


def heldout_crops(data_dir: Path, size: int = 256, per_scene: int = 8):
    """Deterministic held-out crops (uint8 numpy [n,size,size,3]), cached in the data folder.

    Each held-out photo is shown at half its prepared resolution (as training mostly sees it)
    and cut into per_scene crops on an even grid.
    """
    import numpy as np
    from PIL import Image

    cache = Path(data_dir) / EVAL_CROPS
    if cache.is_file():
        with np.load(cache) as z:
            if z["crops"].shape[1] == size and int(z["per_scene"]) == per_scene:
                return z["crops"]
    crops = []
    for photo in load_photos(data_dir, "heldout"):
        im = Image.fromarray(photo)
        if min(im.size) >= 4 * size:
            im = im.resize((im.size[0] // 2, im.size[1] // 2), Image.LANCZOS)
        a = np.asarray(im)
        h, w = a.shape[:2]
        cols = max(1, min(4, w // size))
        rows = -(-per_scene // cols)
        for k in range(per_scene):
            r, c = divmod(k, cols)
            y = (h - size) * r // max(1, rows - 1) if rows > 1 else (h - size) // 2
            x = (w - size) * c // max(1, cols - 1) if cols > 1 else (w - size) // 2
            crops.append(a[y : y + size, x : x + size])
    crops = np.stack(crops)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=crops, per_scene=per_scene)
    os.replace(tmp, cache)
    return crops
