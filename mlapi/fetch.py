"""Fetch an image from a URL for a client, without letting it reach private networks.

Every hop (the first URL and each redirect) must resolve only to public addresses: the
resolver refuses loopback, private, link-local, multicast and reserved ranges, and IP
literals are checked before connecting. Size and time are capped.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from mlapi.errors import MlapiError

MAX_REDIRECTS = 3


class FetchRefused(MlapiError):
    status = 400


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(is_public(entry["host"]) for entry in found):
            raise FetchRefused(f"{host} resolves to a private or local address; refused")
        return found

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused("url must be an http or https URL")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() == "localhost" or parts.hostname.endswith(".localhost"):
            raise FetchRefused("url points at this machine; refused") from None
        return
    if not is_public(str(literal)):
        raise FetchRefused(f"url points at a private or local address ({literal}); refused")


async def fetch_image(url: str, max_bytes: int, timeout: float = 10.0) -> bytes:
    timeouts = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(), limit=2)
    async with aiohttp.ClientSession(timeout=timeouts, connector=connector) as session:
        try:
            for _ in range(MAX_REDIRECTS + 1):
                _check_url(url)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        raise FetchRefused(f"url answered HTTP {response.status}")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(1 << 16):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchRefused(f"url body is over {max_bytes} bytes")
                    return bytes(body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, FetchRefused) else None
            if cause:
                raise cause from None
            raise FetchRefused(f"could not fetch url: {exc.__class__.__name__}") from exc
    raise FetchRefused("url redirected too many times")
