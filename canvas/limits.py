"""How much a file may ask for: every limit on what reading a file allocates, in one place.

A file is untrusted input.  Every reader (.ora, PNG, JPEG, WebP, masks) checks
what a file *declares* (its image sizes, its layer count) against these limits
before it allocates anything, and counts what it really unpacks while it
unpacks, so a small hostile file is refused with one sentence instead of
taking the app (and the painter's unsaved work) down.  A :class:`Budget` does
the counting for one file; each refusal is a
:class:`~canvas.errors.FileFormatError` that names the number and the limit.

The numbers, and why:

* ``MAX_IMAGE_PIXELS`` — one image (layer, mask, selection, PNG/JPEG/WebP):
  16384 × 16384, 1 GiB as RGBA.  Generous for painting (a 16k square painting
  is the largest we design for); beyond it, an image is almost surely damaged or
  made to exhaust memory.
* ``MAX_CANVAS_PIXELS`` — the canvas a document declares: 32768 × 32768, the
  largest canvas the New dialog makes (growing and scaling a document stop
  there too, so the app never saves a canvas it would refuse).  A canvas costs
  nothing until painted (layers are sparse tiles), so it may exceed one image.
* ``MAX_DOCUMENT_PIXELS`` — all images of one document together, each
  reference counted (an image referenced by 40 layers counts 40 times):
  64 images of 16384², so a 16k painting with a few dozen full-canvas layers
  and their masks (as Krita and GIMP write them) still opens.
* ``MAX_LAYERS`` — 1000: painting apps' documents rarely pass a few hundred, and
  each layer costs time in every render.
* ``MEMORY_FLOOR`` / ``MAX_EXPANSION`` — the pixel memory a file may fill is at
  most 64 times its own size, or 512 MiB for smaller files.  Only what is kept
  counts: transparent tiles are dropped, tiles of one flat colour are shared,
  and PNG layers are decoded in bands of rows (never a whole-image buffer), so
  a sparse 16k layer costs little; real painted pixels compress 2-10× in PNG.
  The decoders' passing buffers (a band of rows, a JPEG's whole image) count
  too, before they are allocated.
  A file that would unpack further is a decompression bomb (or a giant
  synthetic gradient).  With these two numbers, loading a file of 10 MB or less
  peaks below 1 GB.
* Per zip member, the bytes unpacked are counted while inflating and stop at
  what the member can need (:func:`png_byte_limit` of its declared image; 16 MiB
  for stack.xml); the sizes a zip directory declares are never trusted.
"""
from __future__ import annotations

from .errors import FileFormatError, file_error
from .geometry import MAX_SIDE

MAX_IMAGE_PIXELS = 16384 * 16384          # 268,435,456 px = 1 GiB of RGBA
MAX_CANVAS_PIXELS = 32768 * 32768         # 1,073,741,824 px: the New dialog's largest canvas
MAX_DOCUMENT_PIXELS = 64 * MAX_IMAGE_PIXELS  # 17,179,869,184 px: a few dozen 16k layers and masks
MAX_LAYERS = 1000
MEMORY_FLOOR = 512 << 20                  # bytes of kept pixels any file may fill
MAX_EXPANSION = 64                        # ... or this many times the file's size, if more
MAX_ZIP_MEMBERS = 10_000                  # files inside an .ora (layers + masks + extras)
MAX_STACK_XML = 16 << 20                  # bytes of layer list (a thousand layers with long parameters)
MAX_XML_ELEMENTS = 20_000                 # elements in the layer list (layers, groups, unknown tags)
MAX_PNG_EXTRA = 16 << 20                  # bytes of non-pixel PNG chunks (text, ICC profile, EXIF)
MAX_TEXT = 1 << 20                        # bytes of one text chunk (generation parameters)
MAX_PNG_CHUNKS = 10_000                   # PNG chunks besides the image data (real files: a few dozen)
IDAT_BYTES_PER_CHUNK = 1024               # image data chunks may average no less (encoders write 8-64 KiB)

ADVICE_HOSTILE = "it is damaged or made to exhaust memory; if it is genuine, make it smaller in the application " \
                 "that made it"


def side_text(pixels: int) -> str:
    """ "268,435,456 (16384×16384)" for a square number of pixels."""
    side = int(round(pixels ** 0.5))
    return f"{pixels:,} ({side}×{side})" if side * side == pixels else f"{pixels:,}"


def png_byte_limit(raw_bytes: int) -> int:
    """The most bytes a PNG holding `raw_bytes` of filtered rows can legitimately take:
    deflate's worst case (stored blocks, 5 bytes per 16 KiB), IDAT chunk headers
    (12 bytes; encoders use chunks of 8 KiB or more) and the other chunks."""
    return raw_bytes + raw_bytes // 256 + MAX_PNG_EXTRA + 4096


class Budget:
    """What one file has declared and filled so far; every check raises FileFormatError.

    `file_size` is the size of the file on disk (it sets the memory allowance)."""

    def __init__(self, name, file_size: int) -> None:
        self.name = name
        self.file_size = max(0, int(file_size))
        self.memory_limit = max(MEMORY_FLOOR, MAX_EXPANSION * self.file_size)
        self.pixels = 0   # declared, every reference counted
        self.kept = 0     # bytes of pixel tiles kept so far

    def fail(self, problem: str, advice: str = ADVICE_HOSTILE) -> FileFormatError:
        return file_error(self.name, problem, advice)

    def canvas(self, w: int, h: int) -> None:
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            raise self.fail(f"its canvas size {w}×{h} is absurd (each side must be 1 to {MAX_SIDE:,} pixels)")
        if w * h > MAX_CANVAS_PIXELS:
            raise self.fail(f"its canvas of {w}×{h} declares {w * h:,} pixels; Latent Studio opens "
                            f"at most {side_text(MAX_CANVAS_PIXELS)} per canvas")

    def image(self, w: int, h: int, what: str = "the image") -> None:
        """An image of w×h declared (before it is decoded): checks the image and document limits."""
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE) or w * h > MAX_IMAGE_PIXELS:
            raise self.fail(f"{what} declares {w}×{h} = {w * h:,} pixels; Latent Studio opens at most "
                            f"{side_text(MAX_IMAGE_PIXELS)} per image")
        self.pixels += w * h

    def document(self) -> None:
        """After every image of a document was declared: checks their total."""
        if self.pixels > MAX_DOCUMENT_PIXELS:
            raise self.fail(f"its layers, masks and selection declare {self.pixels:,} pixels in all (an image "
                            f"used twice counts twice); Latent Studio opens at most {MAX_DOCUMENT_PIXELS:,} "
                            "(64 images of 16384×16384) per document",
                            "merge or crop layers in the application that made it, or split the document")

    def layers(self, n: int) -> None:
        if n > MAX_LAYERS:
            raise self.fail(f"it has {n:,} layers; Latent Studio opens at most {MAX_LAYERS:,}",
                            "merge or delete layers in the application that made it")

    def keep(self, nbytes: int) -> None:
        """`nbytes` of pixel tiles are about to be kept."""
        self.kept += nbytes
        self._check_memory(self.kept)

    def transient(self, nbytes: int) -> None:
        """A decoder is about to allocate `nbytes` for a moment (on top of what is kept)."""
        self._check_memory(self.kept + nbytes)

    def _check_memory(self, total: int) -> None:
        if total > self.memory_limit:
            raise self.fail(
                f"its pixels unpack to more than {self.memory_limit:,} bytes of memory, the most Latent Studio "
                f"allows for a file of {self.file_size:,} bytes ({MAX_EXPANSION} times its size, at least "
                f"{MEMORY_FLOOR >> 20} MiB), as decompression bombs do",
                "if it is genuine, save it again with less compression or fewer layers")

    def too_big(self, what: str, limit: int) -> FileFormatError:
        """A zip member or PNG chunk that unpacks past what it can need."""
        return self.fail(f"{what} unpacks to more than {limit:,} bytes, more than its content can need",
                         "it is damaged or a decompression bomb; do not use it")
