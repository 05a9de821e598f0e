"""What a request says about where it comes from, checked before anything else believes it:
the client's address (behind trusted proxies only), the `Host` it asked for, and whether a
web page on another site sent it.

Pure functions over headers and settings, so each rule is tested on its own and the server
applies them in one place.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from mlapi.config import Networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A host name or IPv4 address, or a bracketed IPv6 one, then an optional port.
HOST = re.compile(
    r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,253}|\[(?P<v6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?$"
)
# Sec-Fetch-Site values of a request the server's own page (or no page at all) made.
OWN_SITE = ("same-origin", "none")


def parse_address(text: str) -> Address | None:
    """An address as a header or a socket gives it (`1.2.3.4`, `::1`, `[::1]:80`,
    `1.2.3.4:80`, `fe80::1%eth0`); None when it is none of those."""
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def within(address: Address, networks: Networks) -> bool:
    return any(address in net for net in networks if address.version == net.version)


def client_address(
    remote: str | None, forwarded_for: Iterable[str], forwarded: Iterable[str], trusted: Networks
) -> str | None:
    """The client's address. From a trusted proxy, the rightmost hop of X-Forwarded-For
    (else of `Forwarded: for=`) that is not itself a trusted proxy: every hop left of it
    was written by someone who could write anything. From anyone else, the connection's
    own address: nobody may choose the address they are counted under."""
    peer = parse_address(remote) if remote else None
    if peer is None or not trusted or not within(peer, trusted):
        return remote
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    if not hops:
        hops = [_forwarded_for(element) for header in forwarded for element in header.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return remote  # a garbled hop: count the request under the proxy itself
        if not within(address, trusted):
            return str(address)
    return str(parse_address(hops[0])) if hops else remote


def _forwarded_for(element: str) -> str:
    """The `for=` of one RFC 7239 element (`for=192.0.2.1;proto=https`), or ''."""
    for pair in element.split(";"):
        name, _, value = pair.strip().partition("=")
        if name.lower() == "for":
            return value
    return ""


def valid_host(host: str) -> bool:
    """A `Host` header a server can use: a name or address, and a port from 1 to 65535."""
    match = HOST.match(host)
    if match is None:
        return False
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(match["v6"])
        except ValueError:
            return False
    return match["port"] is None or 1 <= int(match["port"]) <= 65535


def from_other_site(headers: Mapping[str, str], own_host: str) -> bool:
    """A web page on another site sent this request: its `Origin` names another host than
    `own_host` (`vision.lan:5000`; `null` names none), or the browser says so in
    `Sec-Fetch-Site`. Clients that are not browsers (cameras, Home Assistant, curl) send
    neither header. The scheme is not compared: a proxy may end TLS in front of us."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in OWN_SITE:
        return True
    origin = headers.get("Origin")
    if origin is None:
        return False
    try:
        host = urlsplit(origin.strip()).netloc
    except ValueError:
        return True
    return host.lower() != own_host.lower()
