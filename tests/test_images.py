"""Image input: formats from magic bytes, EXIF orientation, caps checked before decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import png_header_only
from PIL import Image as PILImage

from mlapi import images
from mlapi.config import DEFAULT_MAX_PIXELS
from mlapi.errors import ImageError, ImageTooLarge
from mlapi.images import decode, sniff


def encoded(fmt: str, size: tuple[int, int] = (64, 48), exif: PILImage.Exif | None = None) -> bytes:
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[:, : size[0] // 2] = (255, 0, 0)  # left half red, right half black
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    PILImage.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("PPM", "netpbm")],
)
def test_formats_are_sniffed_and_decoded(fmt: str, name: str) -> None:
    data = encoded(fmt)
    assert sniff(data) == name
    image = decode(data)
    assert (image.width, image.height, image.format) == (64, 48, name)
    assert image.pixels.shape == (48, 64, 3)
    assert image.pixels[24, 10, 0] > 200 and image.pixels[24, 50, 0] < 50


def test_exif_orientation_is_applied() -> None:
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = decode(encoded("JPEG", (64, 48), exif))
    assert (image.width, image.height) == (48, 64)
    assert image.pixels.shape == (64, 48, 3)
    # the red left half of the stored image is the top half once upright
    assert image.pixels[10, 24, 0] > 200 and image.pixels[54, 24, 0] < 50


def test_reduced_jpeg_decoding_keeps_original_size() -> None:
    data = encoded("JPEG", (1600, 1200))
    image = decode(data, min_side=400)
    assert (image.width, image.height) == (1600, 1200)
    assert image.pixels.shape[1] == 400 and image.scale == 0.25


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is plain text and not a picture", "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 10, "JPEG"),
    ],
)
def test_bad_input_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        decode(data)


def test_truncated_jpeg_is_refused() -> None:
    data = encoded("JPEG", (640, 480))
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        decode(data[: len(data) // 2])


def test_pixel_bomb_is_refused_from_the_header() -> None:
    bomb = png_header_only(16000, 16000)
    assert len(bomb) < 200
    # The body holds no real pixel data, so only a header check can give this error.
    with pytest.raises(ImageTooLarge, match="16000×16000"):
        decode(bomb, max_pixels=DEFAULT_MAX_PIXELS)
    assert ImageTooLarge.status == 413


def test_a_big_heic_is_decoded_then_reduced_under_the_pixel_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 24-48 MP phone HEIC is not refused: decoded, then reduced (here with a small budget
    standing in for 16 MP), boxes still in the photo's own pixels."""
    pillow_heif = pytest.importorskip("pillow_heif")  # the `heic` extra

    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:, :160] = (200, 30, 30)
    buf = io.BytesIO()
    pillow_heif.from_pillow(PILImage.fromarray(rgb)).save(buf, quality=90)
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 50_000)  # 76,800 pixels are too many
    image = decode(buf.getvalue())
    assert (image.width, image.height) == (320, 240)  # the photo's own size
    assert image.pixels.shape == (120, 160, 3) and image.scale == 0.5
    assert image.pixels[60, 20][0] > 150 and image.pixels[60, 140].max() < 40


def test_heic_from_a_phone_decodes() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")  # the `heic` extra

    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:, :160] = (200, 30, 30)  # left half red, so orientation and colour are checked
    buf = io.BytesIO()
    pillow_heif.from_pillow(PILImage.fromarray(rgb)).save(buf, quality=90)
    data = buf.getvalue()
    assert sniff(data) == "heif"
    image = decode(data)
    assert (image.width, image.height, image.format) == (320, 240, "heif")
    left, right = image.pixels[120, 40], image.pixels[120, 280]
    assert left[0] > 150 > left[1] and right.max() < 40


def test_a_png_is_decoded_once_for_every_detector_size() -> None:
    """Only JPEG decodes smaller; other formats serve every side from one decode."""
    from mlapi.engine import Pixels

    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((300, 400, 3), np.uint8)).save(buf, "PNG")
    pixels = Pixels(buf.getvalue())
    first = pixels.at(192)
    assert pixels.at(416) is first and pixels.at(None) is first


def test_greyscale_and_ascii_netpbm_decode() -> None:
    grey = io.BytesIO()
    PILImage.new("L", (5, 3), 200).save(grey, format="PPM")  # written as PGM (P5)
    assert grey.getvalue()[:2] == b"P5"
    assert decode(grey.getvalue()).pixels[0, 0].tolist() == [200, 200, 200]
    ascii_ppm = b"P3\n# made by hand\n2 1\n255\n255 0 0  0 255 0\n"
    assert decode(ascii_ppm).pixels.tolist() == [[[255, 0, 0], [0, 255, 0]]]
    with pytest.raises(ImageError, match="4 KiB"):
        decode(b"P6\n1 1\n#" + b"a" * 100_000 + b"\n255\n\0\0\0")  # a comment Pillow reads bytewise
