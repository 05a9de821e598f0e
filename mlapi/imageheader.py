"""An image's size from its header, read within fixed bounds.

Pillow reads JPEG segments, PNG chunks and GIF extension blocks one by one in Python (GIF
comment sub-blocks are even joined one byte string at a time), so a file made of millions
of empty blocks costs seconds to minutes before a single pixel is decoded. This module
walks at most MAX_BLOCKS of them, jumping by their declared lengths, and refuses a file
whose pixels do not start within that many; every real camera, phone and editor writes
well under a hundred. It is cheap enough for the event loop (well under a millisecond)
and is what `images.decode` checks before it lets Pillow near the bytes.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from mlapi.errors import ImageError

# Segments, chunks or extension sub-blocks before the image data. Real files: JPEG 5-30
# (Exif, XMP, ICC, tables), PNG 3-20, GIF a handful; extended XMP (depth maps) a few dozen.
MAX_BLOCKS = 1024

_FILL = re.compile(rb"\xff+")
# Start-of-frame markers (not DHT C4, JPG C8 or DAC CC); progressive ones keep every
# coefficient of the whole image in memory while decoding, whatever the output scale.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int
    progressive: bool = False
    coefficient_bytes: int = 0  # what a progressive JPEG's decoder holds (libjpeg: 128 a block)


def _too_many(kind: str, what: str) -> ImageError:
    return ImageError(
        f"{kind} with more than {MAX_BLOCKS} {what} before its image data refused "
        "(no camera or editor writes that many)"
    )


def _truncated(kind: str) -> ImageError:
    return ImageError(f"unreadable {kind} header: the file ends before its image data")


def jpeg(data: bytes) -> Header:
    """Walk the segments up to the first scan: size from the frame header, and for a
    progressive JPEG the coefficient memory its decoder needs."""
    frame: Header | None = None
    pos, blocks = 2, 0
    while True:
        fill = _FILL.match(data, pos)
        if fill is None:
            if pos >= len(data):
                raise _truncated("JPEG")
            raise ImageError("unreadable JPEG header: expected a marker between segments")
        pos = fill.end()
        if pos >= len(data):
            raise _truncated("JPEG")
        marker = data[pos]
        pos += 1
        blocks += 1
        if blocks > MAX_BLOCKS:
            raise _too_many("JPEG", "segments")
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9):
            raise ImageError("unreadable JPEG header: the image ends before its first scan")
        if pos + 2 > len(data):
            raise _truncated("JPEG")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ImageError("unreadable JPEG header: a segment of impossible length")
        if marker == 0xDA:  # start of scan: the pixels begin
            if frame is None:
                raise ImageError("unreadable JPEG header: a scan before the frame header")
            return frame
        if marker in _SOF and frame is None:
            frame = _jpeg_frame(data[pos + 2 : pos + length], marker in _PROGRESSIVE)
        pos += length


def _jpeg_frame(segment: bytes, progressive: bool) -> Header:
    if len(segment) < 6:
        raise _truncated("JPEG")
    _, height, width, count = struct.unpack_from(">BHHB", segment)
    if len(segment) < 6 + 3 * count or count == 0:
        raise ImageError("unreadable JPEG header: a frame header of impossible length")
    factors = [(segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(count)]
    hmax = max(h for h, _ in factors) or 1
    vmax = max(v for _, v in factors) or 1
    blocks = sum(
        math.ceil(width * h / hmax / 8) * math.ceil(height * v / vmax / 8) for h, v in factors
    )
    return Header("jpeg", width, height, progressive, 128 * blocks if progressive else 0)


def png(data: bytes) -> Header:
    """The size from IHDR (the first chunk), after checking the chunks up to IDAT."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("unreadable PNG header: IHDR is not the first chunk")
    width, height = struct.unpack_from(">II", data, 16)
    pos = 8
    for _ in range(MAX_BLOCKS):
        if pos + 8 > len(data):
            raise _truncated("PNG")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            return Header("png", width, height)
        if kind == b"IEND":
            raise ImageError("unreadable PNG header: the image ends before its data")
        pos += 12 + length
    raise _too_many("PNG", "chunks")


def gif(data: bytes) -> Header:
    """The logical screen's size (grown to the first frame's, as Pillow does), after
    checking the extension blocks before the first frame."""
    if len(data) < 13:
        raise _truncated("GIF")
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < len(data):
        introducer = data[pos]
        if introducer == 0x2C:  # image descriptor: the first frame
            if pos + 9 > len(data):
                raise _truncated("GIF")
            left, top, w, h = struct.unpack_from("<HHHH", data, pos + 1)
            return Header("gif", max(width, left + w), max(height, top + h))
        if introducer != 0x21:
            raise ImageError("unreadable GIF header: expected an extension or a frame")
        pos += 2  # introducer, label; then sub-blocks, each a length byte and data
        while pos < len(data) and data[pos]:
            blocks += 1
            if blocks > MAX_BLOCKS:
                raise _too_many("GIF", "extension blocks")
            pos += 1 + data[pos]
        pos += 1
    raise _truncated("GIF")


def webp(data: bytes) -> Header:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 " and len(data) >= 30:
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 26))
    else:
        raise ImageError("unreadable WEBP header")
    return Header("webp", width, height)


def bmp(data: bytes) -> Header:
    if len(data) < 26:
        raise _truncated("BMP")
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return Header("bmp", abs(width), abs(height))


def tiff(data: bytes) -> Header:
    """The size from the first directory, whose entry count is checked (Pillow reads each
    entry in Python)."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise _truncated("TIFF")
    (pos,) = struct.unpack_from(order + "I", data, 4)
    if pos + 2 > len(data):
        raise _truncated("TIFF")
    (count,) = struct.unpack_from(order + "H", data, pos)
    if count > MAX_BLOCKS:
        raise _too_many("TIFF", "directory entries")
    size = {256: 0, 257: 0}  # ImageWidth, ImageLength
    for i in range(count):
        entry = pos + 2 + 12 * i
        if entry + 12 > len(data):
            raise _truncated("TIFF")
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in size:
            short = kind == 3
            (size[tag],) = struct.unpack_from(order + ("H" if short else "I"), data, entry + 8)
    return Header("tiff", size[256], size[257])


_GAP = rb"(?:\s|#[^\n]{0,256}\n)+"  # whitespace and comment lines, one at a time: no backtracking
NETPBM_HEADER = re.compile(
    rb"P([1-6])" + _GAP + rb"(\d{1,9})" + _GAP + rb"(\d{1,9})(?:" + _GAP + rb"(\d{1,5}))?\s"
)


def netpbm(data: bytes) -> Header:
    """PBM/PGM/PPM: the magic, then width, height (and the maximum value but for bitmaps)
    as decimal text, comments allowed between them, all within the first 4 KiB (Pillow
    reads a comment one byte at a time)."""
    match = NETPBM_HEADER.match(data[:4096])
    if match is None or (match[1] not in (b"1", b"4") and match[4] is None):
        raise ImageError("unreadable NETPBM header: it does not end within its first 4 KiB")
    return Header("netpbm", int(match[2]), int(match[3]))


READERS = {
    "jpeg": jpeg, "png": png, "gif": gif, "webp": webp, "bmp": bmp, "tiff": tiff, "netpbm": netpbm
}  # fmt: skip


def read(kind: str, data: bytes) -> Header | None:
    """The header of `data` (already sniffed as `kind`), or None for HEIF, whose header
    libheif reads in C without such loops."""
    reader = READERS.get(kind)
    return reader(data) if reader else None
