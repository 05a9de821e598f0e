"""Fetch an image from a URL for a client, without letting it reach private networks.

Every hop (the first URL and each redirect) must resolve only to public addresses: the
resolver refuses loopback, private, link-local, multicast and reserved ranges, and IP
literals are checked before connecting, as the URL library will read them (full-width
digits and ideographic dots are IPv4 too) and with any IPv4 address an IPv6 one carries
(IPv4-compatible, NAT64, 6to4, Teredo) checked as well. Size and time are capped.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urljoin

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver

from mlapi.config import Networks
from mlapi.edge import within
from mlapi.errors import FetchRefused

MAX_REDIRECTS = 3


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, by any of the usual embeddings."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if int(ip) >> 32 == 0 or ip in NAT64:  # IPv4-compatible ::a.b.c.d, NAT64
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and not (inner.is_global and not inner.is_multicast):
            return False
    return ip.is_global and not ip.is_multicast


def allowed(address: str, networks: Networks = ()) -> bool:
    """Public, or inside a network the operator allowed (their own cameras and NVRs)."""
    if is_public(address):
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return within(ip, networks)


class PublicOnlyResolver(AbstractResolver):
    def __init__(self, networks: Networks = ()) -> None:
        self._inner = ThreadedResolver()
        self._networks = networks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(allowed(entry["host"], self._networks) for entry in found):
            raise FetchRefused(f"{host} resolves to a private or local address; refused")
        return found

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: str, networks: Networks = ()) -> yarl.URL:
    """The URL as the client will use it, once its host is known to be allowed."""
    try:
        parsed = yarl.URL(url)
        host = parsed.host  # normalised: IDNA, full-width digits, ideographic dots
    except (ValueError, UnicodeError, TypeError):
        raise FetchRefused("url is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise FetchRefused("url must be an http or https URL")
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            raise FetchRefused("url points at this machine; refused") from None
        return parsed  # a name: the resolver checks every address it resolves to
    if not allowed(str(literal), networks):
        raise FetchRefused(f"url points at a private or local address ({literal}); refused")
    return parsed


async def fetch(
    url: str,
    max_bytes: int,
    timeout: float = 10.0,
    networks: Networks = (),
    verify_ssl: bool = True,
    form: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body) of a GET (or, with `form`, a POST) to `url`: public addresses only,
    or inside `networks`; redirects of a GET followed (each hop checked), size and time
    capped."""
    timeouts = aiohttp.ClientTimeout(total=timeout)
    connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(networks), limit=2, ssl=verify_ssl)
    async with aiohttp.ClientSession(timeout=timeouts, connector=connector) as session:
        try:
            for _ in range(MAX_REDIRECTS + 1):
                checked = _check_url(url, networks)
                method = "POST" if form is not None else "GET"
                async with session.request(
                    method, checked, data=form, allow_redirects=False
                ) as response:
                    if response.status in (301, 302, 303, 307, 308) and form is None:
                        url = urljoin(str(checked), response.headers.get("Location", ""))
                        continue
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(1 << 16):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchRefused(f"url body is over {max_bytes} bytes")
                    return response.status, bytes(body)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, FetchRefused) else None
            if cause:
                raise cause from None
            if isinstance(exc, aiohttp.InvalidURL):
                raise FetchRefused("url is not a valid URL") from None
            raise FetchRefused(f"could not fetch url: {exc.__class__.__name__}") from exc
    raise FetchRefused("url redirected too many times")


async def fetch_image(
    url: str,
    max_bytes: int,
    timeout: float = 10.0,
    networks: Networks = (),
    verify_ssl: bool = True,
) -> bytes:
    """The body at `url`: public addresses only, or inside `networks`."""
    status, body = await fetch(url, max_bytes, timeout, networks, verify_ssl)
    if status != 200:
        raise FetchRefused(f"url answered HTTP {status}")
    return body
