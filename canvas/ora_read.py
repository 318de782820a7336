"""Reading OpenRaster files safely (the format is described in :mod:`canvas.ora`).

In order, so that nothing big is allocated before every limit was checked
(:mod:`canvas.limits`): the zip directory (member count, safe names); the
layer list ``stack.xml`` (streamed with a byte limit, UTF-8 only, no DTD or
entities, a bounded number of elements); the canvas size and the layer count;
the header of every PNG a layer, mask or selection refers to (each reference
counted against the document's pixel budget); then the pixels, each PNG
streamed from its zip member (:mod:`canvas.zipmember`) and decoded in bands
(:mod:`canvas.png`) into sparse tiles.  A PNG referenced again at the same
place is decoded once and its tiles shared.  Any problem raises
:class:`~canvas.errors.FileFormatError`; a document is returned only when
everything was read.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
import zipfile

from .document import Document
from .errors import file_error
from .layer import Layer
from .blend import ORA_TO_MODE
from .limits import MAX_STACK_XML, MAX_XML_ELEMENTS, MAX_ZIP_MEMBERS, Budget, png_byte_limit
from .png import HEADER_BYTES, PngDecoder, PngHeader, parse_header
from .progress import step
from .raster import SurfaceSink, file_size
from .role import role_from_attributes
from .live import live_from_attributes
from .selection import Selection
from .tiles import TiledSurface
from .zipmember import MemberStream

NS = "https://latent-studio.org/ns/openraster/1"
ET.register_namespace("ls", NS)
MIMETYPE = b"image/openraster"
MAX_OFFSET = 1 << 20
ADVICE = "the file may be damaged; try another copy or an autosave"
MALICIOUS = "it may be malicious; do not use it"
_ENCODINGS = {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1"}
_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


class OraReader:
    def __init__(self, fileobj, progress, name) -> None:
        self.fileobj = fileobj
        self.progress = progress
        self.name = name
        self.size = file_size(fileobj)
        self.budget = Budget(name, self.size)
        self._shared: dict = {}   # flat tiles, shared by every surface of the file
        self._decoded: dict = {}  # (src, x, y, channels, fill) -> surface

    def fail(self, problem: str, advice: str = ADVICE):
        return file_error(self.name, problem, advice)

    # -- the zip and the layer list ----------------------------------------------------------
    def _open(self, zf: zipfile.ZipFile) -> ET.Element:
        self.zf = zf
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise self.fail(f"it holds {len(infos):,} files; an OpenRaster file may hold at most "
                            f"{MAX_ZIP_MEMBERS:,}", MALICIOUS)
        self.members = {}
        for info in infos:
            if not safe_name(info.filename):
                raise self.fail(f"it contains an unsafe file name ({info.filename!r})", MALICIOUS)
            self.members[info.filename] = info
        if "mimetype" in self.members:
            if self._member("mimetype", 1024).read_all().strip() != MIMETYPE:
                raise self.fail("it is not an OpenRaster image", "open it with the application that made it")
        if "stack.xml" not in self.members:
            raise self.fail("it has no layer list (stack.xml)")
        return self._parse(self._member("stack.xml", MAX_STACK_XML).read_all())

    def _member(self, name: str, limit: int) -> MemberStream:
        info = self.members.get(name)
        if info is None:
            raise self.fail(f"the image “{name}” it refers to is missing")
        return MemberStream(self.fileobj, info, limit, self.size, lambda lim: self.budget.too_big(f"“{name}”", lim))

    def _parse(self, xml: bytes) -> ET.Element:
        if xml.startswith(b"\xef\xbb\xbf"):
            xml = xml[3:]
        m = _ENCODING.match(xml)
        if b"\x00" in xml or xml[:2] in (b"\xff\xfe", b"\xfe\xff") or (m and m.group(1).decode("latin-1").lower()
                                                                           not in _ENCODINGS):
            raise self.fail("its layer list is not in UTF-8")
        if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:
            raise self.fail("its layer list uses XML entities, which are not allowed", MALICIOUS)
        parser = ET.XMLPullParser(events=("start",))
        root, count = None, 0
        for i in range(0, len(xml), 1 << 16):
            parser.feed(xml[i:i + (1 << 16)])
            for _event, el in parser.read_events():
                root = el if root is None else root
                count += 1
            if count > MAX_XML_ELEMENTS:
                raise self.fail(f"its layer list has more than {MAX_XML_ELEMENTS:,} elements", MALICIOUS)
        parser.close()
        if root is None:
            raise self.fail("its layer list is empty")
        return root

    def _canvas(self, root: ET.Element) -> tuple[int, int, int, int]:
        if root.tag != "image":
            raise self.fail("its layer list does not describe an image")
        w, h = to_int(root.get("w")), to_int(root.get("h"))
        if w is None or h is None:
            raise self.fail("its image size is missing or not a number")
        self.budget.canvas(w, h)
        ox, oy = to_int(root.get(q("origin-x"), "0")), to_int(root.get(q("origin-y"), "0"))
        if ox is None or oy is None or abs(ox) > MAX_OFFSET or abs(oy) > MAX_OFFSET:
            raise self.fail("its canvas origin is not valid")
        return w, h, ox, oy

    def declared_size(self) -> tuple[int, int]:
        with zipfile.ZipFile(self.fileobj) as zf:
            w, h, _ox, _oy = self._canvas(self._open(zf))
        return w, h

    def parameters(self) -> str | None:
        """The generation parameters of the topmost layer that has some (layer list only)."""
        with zipfile.ZipFile(self.fileobj) as zf:
            root = self._open(zf)
            self._canvas(root)
            stack = root.find("stack")
            entries: list = []
            if stack is not None:
                self._collect(stack, True, 1.0, entries, 0)
        for el, _visible, _opacity in entries:  # the file lists the top layer first
            if el.get(q("parameters")):
                return el.get(q("parameters"))
        return None

    # -- the document --------------------------------------------------------------------------
    def read(self) -> Document:
        with zipfile.ZipFile(self.fileobj) as zf:
            root = self._open(zf)
            w, h, ox, oy = self._canvas(root)
            stack = root.find("stack")
            entries: list[tuple[ET.Element, bool, float]] = []
            if stack is not None:
                self._collect(stack, True, 1.0, entries, 0)
            self.budget.layers(len(entries))
            plans = [self._plan(el, ox, oy) for el, _v, _o in entries]
            selection = self._image_plan(root.get(q("selection")), root.get(q("selection-x")),
                                         root.get(q("selection-y")), ox, oy, 1,
                                         255 if to_int(root.get(q("selection-fill"), "0")) else 0)
            self.budget.document()  # every image declared and counted: only now decode
            doc = Document(w, h, ox, oy)
            layers = []
            n = len(entries)
            for i, ((el, visible, opacity), (pixels, mask)) in enumerate(zip(entries, plans)):
                step(self.progress, i, n + 1, f"Reading layer {i + 1} of {n}", "Opening")
                layers.append(self._layer(el, visible, opacity, pixels, mask))
            layers.reverse()  # the file lists the top layer first; we keep the bottom first
            doc._layers = layers
            if selection is not None:
                doc.selection = Selection(self._decode(*selection))
            doc.live = live_from_attributes(lambda name: root.get(q(name)))
            step(self.progress, n + 1, n + 1, "Opened", "Opening")
            return doc

    def _collect(self, stack: ET.Element, visible: bool, opacity: float, out: list, depth: int) -> None:
        if depth > 64:
            raise self.fail("its layer groups are nested too deeply")
        for el in stack:
            if el.tag not in ("layer", "stack"):
                continue  # text, filter and future elements: not rendered by baseline readers
            vis = visible and el.get("visibility", "visible") != "hidden"
            op = opacity * to_opacity(el.get("opacity"))
            if el.tag == "stack":
                self._collect(el, vis, op, out, depth + 1)
            else:
                out.append((el, vis, op))

    def _plan(self, el: ET.Element, ox: int, oy: int):
        src = el.get("src")
        if not src:
            raise self.fail("a layer has no image")
        pixels = self._image_plan(src, el.get("x"), el.get("y"), ox, oy, 4, 0)
        fill = to_int(el.get(q("mask-fill"), "255"))
        mask = self._image_plan(el.get(q("mask")), el.get(q("mask-x")), el.get(q("mask-y")), ox, oy, 1,
                                0 if fill == 0 else 255)
        return pixels, mask

    def _image_plan(self, src, x, y, ox: int, oy: int, channels: int, fill: int):
        """(src, document x, y, channels, fill, PNG header) of an image the file refers to, its size
        counted; None when `src` is empty."""
        if not src:
            return None
        src = src.strip()
        if not safe_name(src):
            raise self.fail(f"a layer refers to an unsafe file name ({src!r})", MALICIOUS)
        if src not in self.members:
            raise self.fail(f"the layer image “{src}” is missing")
        if not src.lower().endswith(".png"):
            raise self.fail(f"the layer image “{src}” is not a PNG, which this program cannot read",
                            "save it from the other application with plain raster layers")
        xi, yi = to_int(x or "0"), to_int(y or "0")
        if xi is None or yi is None or abs(xi) > MAX_OFFSET or abs(yi) > MAX_OFFSET:
            raise self.fail(f"the position of “{src}” is not valid")
        head = self._member(src, HEADER_BYTES).read(HEADER_BYTES)
        if head[:8] != b"\x89PNG\r\n\x1a\n":
            raise self.fail(f"the layer image “{src}” is not a PNG file")
        header = parse_header(head)
        self.budget.image(header.width, header.height, f"the layer image “{src}”")
        return src, ox + xi, oy + yi, channels, fill, header

    def _decode(self, src: str, x: int, y: int, channels: int, fill: int, header: PngHeader) -> TiledSurface:
        key = (src, x, y, channels, fill)
        if key in self._decoded:
            return self._decoded[key].copy()  # shares the immutable tiles
        stream = self._member(src, png_byte_limit(header.raw_bytes))
        stream.read(HEADER_BYTES)
        sink = SurfaceSink(x, y, channels, fill, self.budget, self._shared)
        PngDecoder(stream.read, header).decode(sink, channels, align=y, transient=self.budget.transient,
                                               cancelled=self._cancelled)
        self._decoded[key] = sink.surface
        return sink.surface

    def _cancelled(self) -> None:
        if self.progress is not None and self.progress.cancelled():
            step(self.progress, 0, 1, "Reading", "Opening")  # raises OperationCancelled

    def _layer(self, el: ET.Element, visible: bool, opacity: float, pixels, mask) -> Layer:
        layer = Layer(name=el.get("name", "Layer"), pixels=self._decode(*pixels), visible=visible,
                      opacity=opacity, blend_mode=ORA_TO_MODE.get(el.get("composite-op", ""), "normal"),
                      locked=el.get("edit-locked", "false").strip().lower() in ("true", "1"),
                      parameters=el.get(q("parameters")), role=role_from_attributes(lambda key: el.get(q(key))))
        if mask is not None:
            layer.mask = self._decode(*mask)
        return layer


def safe_name(name: str) -> bool:
    """No absolute paths, drive letters, backslashes, NULs or '..' components."""
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    if re.match(r"^[A-Za-z]:", name):
        return False
    return ".." not in name.split("/")


def to_int(value) -> int | None:
    if value is None:
        return None
    try:
        f = float(value.strip())
    except (ValueError, AttributeError):
        return None
    if not math.isfinite(f) or abs(f) > 1 << 40:
        return None
    return int(round(f))


def to_opacity(value) -> float:
    if value is None:
        return 1.0
    try:
        f = float(value)
    except ValueError:
        return 1.0
    if not math.isfinite(f):
        return 1.0
    return min(max(f, 0.0), 1.0)
