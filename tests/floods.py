"""Hostile images made of millions of empty blocks, for the tests and bench/hostile.py."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image as PILImage

from mlapi.images import encode_jpeg


def gif_comments(count: int) -> bytes:
    """The probe's GIF: one comment extension of `count` one-byte sub-blocks."""
    return (
        b"GIF89a" + struct.pack("<HHBBB", 8, 8, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
        + b"\x21\xfe" + b"\x01a" * count + b"\0" + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 8, 8, 0) + b"\x02\x02\x4c\x01\x00\x3b"
    )  # fmt: skip


def jpeg_comments(count: int) -> bytes:
    """An 8×8 JPEG with `count` empty COM segments after its start marker."""
    base = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    return base[:2] + b"\xff\xfe\x00\x02" * count + base[2:]


def png_chunks(count: int) -> bytes:
    """An 8×8 PNG with `count` valid, empty private chunks after IHDR."""
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(out, format="PNG")
    chunk = b"\0\0\0\0prIv" + zlib.crc32(b"prIv").to_bytes(4, "big")
    return out.getvalue()[:33] + chunk * count + out.getvalue()[33:]
