"""The only place that turns bytes into pixels.

Sniffs the real format from magic bytes, reads width×height from the header and checks it
against a cap *before* decoding, decodes JPEGs at reduced size when the models need fewer
pixels, and applies EXIF orientation so boxes refer to the upright image.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from mlapi import imageheader
from mlapi.config import DEFAULT_MAX_PIXELS
from mlapi.errors import ImageError, ImageTooLarge

# Formats without reduced decoding cost their full size in memory (and more, in copies):
# a 1.9 KB WebP can declare 49 MP. Screenshots, PNG exports and phone photos stay under.
# WebP decodes through RGBA: it costs more. HEIF has no reduced decode, but phones write
# 24-48 MP HEICs: decoded whole (0.4 s for 24 MP here), then halved until under
# MAX_DECODED_PIXELS, so only one frame of that size is ever held.
MAX_PIXELS_OTHER = {"webp": 12_000_000, "heif": 50_000_000}
MAX_PIXELS_NO_DRAFT = 16_000_000  # PNG, GIF, BMP, TIFF, Netpbm
# JPEGs over this are decoded at 1/2, 1/4 or 1/8 even for full-resolution detectors.
MAX_DECODED_PIXELS = 16_000_000
ORIENTATION = 0x0112  # the EXIF tag
# A progressive JPEG has about 10 scans; hundreds make a tiny file take a minute to decode.
MAX_JPEG_SCANS = 64
# A progressive JPEG's decoder holds every DCT coefficient of the whole image (128 bytes a
# block), whatever the output scale: 147 MB for 49 MP in 4:2:0, twice that in 4:4:4. Over
# this the photo is refused; over PARALLEL_PROGRESSIVE its resolutions decode one at a time.
MAX_PROGRESSIVE_BYTES = 160 << 20  # every 4:2:0 photo under the 50 MP cap; 4:4:4 to 27 MP
PARALLEL_PROGRESSIVE = 24 << 20  # 8 MP in 4:2:0

# Pillow's own bomb guard would fire later and with a warning; our cap is checked first.
PILImage.MAX_IMAGE_PIXELS = None
try:  # HEIC/HEIF through Pillow, with its EXIF orientation (the `heic` extra)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF = True
except ImportError:
    HEIF = False

# HEIF brands (ISO/IEC 23008-12) that phones and cameras write; read by pillow-heif.
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"WEBP", 8, "webp"),
    (b"BM", 0, "bmp"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)
NETPBM = re.compile(rb"P[1-6]\s")  # PBM, PGM, PPM, ASCII or binary


@dataclass(frozen=True, eq=False)
class Image:
    """An upright RGB image, possibly decoded at reduced size.

    `width`/`height` are the upright original's; `pixels` may be smaller by `scale`
    (pixels = original × scale), so detectors map boxes back with `1 / scale`.
    """

    pixels: np.ndarray  # H×W×3 uint8, RGB
    width: int
    height: int
    format: str

    @property
    def scale(self) -> float:
        return float(self.pixels.shape[1] / self.width)

    @classmethod
    def from_array(cls, rgb: np.ndarray, format: str = "raw") -> Image:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageError("expected an H×W×3 uint8 RGB array")
        return cls(np.ascontiguousarray(rgb), rgb.shape[1], rgb.shape[0], format)


def sniff(data: bytes) -> str | None:
    """The image format named by the magic bytes, or None."""
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "heif"
    if NETPBM.match(data):
        return "netpbm"
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic and (name != "webp" or data[:4] == b"RIFF"):
            return name
    return None


def pixel_cost(data: bytes) -> int:
    """How many pixels `data` holds, from a bounded walk of its header (imageheader; well
    under a millisecond, so the event loop may call it): what a job costs the inference
    pool. Unreadable data and HEIF count as 4 pixels a byte."""
    kind = sniff(data)
    try:
        header = imageheader.read(kind, data) if kind else None
    except ImageError:
        header = None
    return header.width * header.height if header else 4 * len(data)


def decode_memory(data: bytes) -> int:
    """Bytes a progressive JPEG's decoder holds besides its output (0 for anything else)."""
    try:
        header = imageheader.read("jpeg", data) if sniff(data) == "jpeg" else None
    except ImageError:
        return 0
    return header.coefficient_bytes if header else 0


def decode(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image:
    """Decode image bytes into an upright RGB `Image`.

    `min_side`: the smallest long side the models need; a JPEG is then decoded at the
    largest 1/2, 1/4 or 1/8 reduction that still gives at least that many pixels.
    """
    if not data:
        raise ImageError("empty file: no image data")
    kind = sniff(data)
    if kind is None:
        raise ImageError(
            "not an image: expected JPEG, HEIC, PNG, WebP, BMP, GIF, TIFF or Netpbm data"
        )
    if kind == "heif" and not HEIF:
        raise ImageError("HEIC/HEIF needs the heic extra on this install: pip install pillow-heif")
    # Sized by our own bounded walk first: Pillow's header readers loop in Python over
    # every block, and a file of millions of empty ones would hold this worker for minutes.
    header = imageheader.read(kind, data)
    if header is not None:
        _check_size(kind, header.width, header.height, max_pixels)
        if header.coefficient_bytes > MAX_PROGRESSIVE_BYTES:
            raise ImageTooLarge(
                f"progressive JPEG of {header.width}×{header.height} needs "
                f"{header.coefficient_bytes >> 20} MiB to decode, over the limit of "
                f"{MAX_PROGRESSIVE_BYTES >> 20} MiB (a baseline JPEG of this size is fine)"
            )
    if kind == "jpeg" and data.count(b"\xff\xda") > MAX_JPEG_SCANS:  # start-of-scan markers
        raise ImageError(f"JPEG with more than {MAX_JPEG_SCANS} scans refused (a decode bomb)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pil = PILImage.open(io.BytesIO(data))
        width, height = pil.size
    except Exception as exc:
        raise ImageError(f"unreadable {kind.upper()} header: {_reason(exc)}") from exc
    _check_size(kind, width, height, max_pixels)
    try:
        if kind == "jpeg":
            # draft() keeps both sides >= the request; ask for the long side only.
            side = min_side or max(width, height)
            scale = 1.0  # the JPEG scale (1, 1/2, 1/4, 1/8) that brings it under the cap
            while width * height * scale * scale > MAX_DECODED_PIXELS and scale > 1 / 8:
                scale /= 2
            ratio = min(side / max(width, height), scale)
            if ratio < 1:
                pil.draft("RGB", (max(1, int(width * ratio)), max(1, int(height * ratio))))
        pil.load()
        # exif_transpose copies the image even when there is nothing to turn.
        turned = pil.getexif().get(ORIENTATION, 1) not in (0, 1)
        upright = ImageOps.exif_transpose(pil) if turned else pil
        rgb = _to_rgb(upright)
        if kind == "heif" and rgb.width * rgb.height > MAX_DECODED_PIXELS:
            factor = math.ceil(math.sqrt(rgb.width * rgb.height / MAX_DECODED_PIXELS))
            rgb = rgb.reduce(factor)  # box filter: the mean of each factor×factor block
    except Exception as exc:
        raise ImageError(f"corrupt or truncated {kind.upper()} data: {_reason(exc)}") from exc
    orientation_swaps = upright.size != pil.size and upright.size == pil.size[::-1]
    full_w, full_h = (height, width) if orientation_swaps else (width, height)
    return Image(np.asarray(rgb), full_w, full_h, kind)


def _check_size(kind: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"invalid {kind.upper()} dimensions {width}×{height}")
    cap = max_pixels if kind == "jpeg" else MAX_PIXELS_OTHER.get(kind, MAX_PIXELS_NO_DRAFT)
    limit = min(max_pixels, cap)
    if width * height > limit:
        raise ImageTooLarge(
            f"{kind.upper()} image is {width}×{height} = {width * height / 1e6:.1f} MP, "
            f"over the limit of {limit / 1e6:.1f} MP"
        )


def _reason(exc: Exception) -> str:
    """An exception's message without object reprs (no heap addresses in answers)."""
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)) or exc.__class__.__name__


def _to_rgb(pil: PILImage.Image) -> PILImage.Image:
    """RGB, with 16- and 32-bit greyscale scaled to 8 bits (Pillow would clip to white)."""
    if pil.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(pil, dtype=np.uint32)
        shift = 8 if values.max(initial=0) < 65536 else 24
        return PILImage.fromarray((values >> shift).astype(np.uint8), "L").convert("RGB")
    return pil if pil.mode == "RGB" else pil.convert("RGB")  # convert() would copy an RGB one


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
