"""URL fetching never reaches this machine or private networks, however the address is
written (fast tier: a real listener on loopback that a bypass would reach)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import web
from servers import Loopback

from mlapi.errors import FetchRefused
from mlapi.fetch import fetch_image, is_public


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers every path with a small 'image'."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff\xd8\xff secret", content_type="image/jpeg")

    server = Loopback([web.get("/{tail:.*}", serve)])
    yield server.port
    server.stop()


BYPASSES = [
    "http://127.0.0.1:{port}/img.jpg",
    "http://127。0。0。1:{port}/img.jpg",  # ideographic full stops
    "http://１２７．０．０．１:{port}/img.jpg",  # full-width digits and dots
    "http://127.1:{port}/img.jpg",
    "http://2130706433:{port}/img.jpg",
    "http://0x7f000001:{port}/img.jpg",
    "http://localhost:{port}/img.jpg",
    "http://LOCALHOST.:{port}/img.jpg",
    "http://[::1]:{port}/img.jpg",
    "http://[::127.0.0.1]:{port}/img.jpg",  # IPv4-compatible
    "http://[::ffff:127.0.0.1]:{port}/img.jpg",  # IPv4-mapped
    "http://[64:ff9b::127.0.0.1]:{port}/img.jpg",  # NAT64
    "http://[2002:7f00:1::]:{port}/img.jpg",  # 6to4
    "http://[1/",
    "ftp://127.0.0.1/x",
]


@pytest.mark.parametrize("template", BYPASSES)
def test_no_way_to_write_loopback_gets_through(listener: int, template: str) -> None:
    # Refused for what the address is, not because a connection happened to fail.
    with pytest.raises(FetchRefused, match=r"refused|http or https|not a valid URL"):
        asyncio.run(fetch_image(template.format(port=listener), 1 << 20, timeout=5))


def test_embedded_private_ipv4_is_not_public() -> None:
    assert not is_public("2002:0a00:0001::")  # 6to4 of 10.0.0.1
    assert not is_public("64:ff9b::a9fe:a9fe")  # NAT64 of 169.254.169.254
    assert is_public("2606:4700:4700::1111") and is_public("1.1.1.1")
