"""systemd's notify protocol (sd_notify(3)), for `Type=notify` units: no libsystemd needed.

When systemd starts `mlapi serve` it sets NOTIFY_SOCKET to an AF_UNIX datagram socket
(a path, or an abstract name written with a leading '@'); the server sends READY=1 once it
is warm, STOPPING=1 when it starts to drain, and WATCHDOG=1 every WATCHDOG_USEC / 2 when the
unit has WatchdogSec. Without NOTIFY_SOCKET every call here does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket

SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"


def _address(name: str) -> str | bytes:
    """NOTIFY_SOCKET as socket.connect takes it: '@name' is the abstract name '\\0name'."""
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False when there is none or
    it cannot be reached (never raises: a daemon does not fail for its supervisor's sake)."""
    name = os.environ.get(SOCKET_ENV)
    if not name or name[0] not in "/@":
        return False
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(_address(name))
        sock.sendall(state.encode())
        return True
    return False


def enabled() -> bool:
    return bool(os.environ.get(SOCKET_ENV))


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when the manager
    wants none (unset, not for this process, or not a number)."""
    if not enabled():
        return None
    pid = os.environ.get(WATCHDOG_PID_ENV)
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get(WATCHDOG_ENV) or 0)
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def detach() -> None:
    """In a child process: only the parent talks to the service manager."""
    for name in (SOCKET_ENV, WATCHDOG_ENV, WATCHDOG_PID_ENV):
        os.environ.pop(name, None)
