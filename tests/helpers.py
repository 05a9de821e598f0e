"""Small helpers the test modules share (tests import helpers, never each other)."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path


def run_mlapi(args: list[str], stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m mlapi ARGS` in a child process, as a user runs it; `env` adds variables."""
    return subprocess.run(
        [sys.executable, "-m", "mlapi", *args],
        input=stdin,
        text=True,
        capture_output=True,
        env=dict(os.environ, **env),
        check=False,
        timeout=300,
    )


def iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width×height (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def on_terminal(args: list[str], columns: int, cwd: Path | None = None, **env: str) -> str:
    """`python -m mlapi ARGS` on a pseudo-terminal `columns` wide, as a person sees it
    (escape codes removed)."""
    return converse(args, [], columns, cwd, **env)[0]


def converse(
    args: list[str],
    answers: list[str],
    columns: int = 80,
    cwd: Path | None = None,
    **env: str,
) -> tuple[str, int]:
    """`on_terminal`, typing the next of `answers` at each password prompt; (what the
    terminal showed, the exit status)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdout and stderr are the terminal
        os.environ.update(env, COLUMNS=str(columns), LINES="50", TERM="xterm")
        if cwd is not None:
            os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "mlapi", *args])
    output, answered = b"", 0
    while True:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        # getpass writes the space after the colon once it has flushed pending input
        asked = len(re.findall(rb"password(?: again)?: ", output))
        while answered < asked and answered < len(answers):
            time.sleep(0.1)  # getpass switches echo off, flushing what was typed before
            os.write(fd, answers[answered].encode() + b"\r")
            answered += 1
    _, status = os.waitpid(pid, 0)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    return shown, os.waitstatus_to_exitcode(status)
