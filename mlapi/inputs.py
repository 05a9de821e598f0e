"""Which files `detect` and `stream` read: files as given, the images inside folders, and
glob matches, in order (one list of suffixes for both commands)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".heic", ".heif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    | {".ppm", ".pgm", ".pbm", ".pnm"}
)


def natural(path: Path | str) -> list[str | int]:
    """A sort key that puts f2 before f10, as people number their files."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def is_pattern(spec: str) -> bool:
    return any(ch in spec for ch in "*?[") and not Path(spec).exists()


def expand(
    patterns: tuple[str, ...] | list[str],
    skipped: list[Path] | None = None,
    unmatched: list[str] | None = None,
) -> list[Path]:
    """Files as given, image files inside directories, and glob matches, in order.

    Other files found in directories are left out, and listed in `skipped` when given, so
    a command can say what it did not read; patterns that matched nothing (a glob, or a
    name with brackets that is no file either) are listed in `unmatched`."""
    paths: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            for f in sorted(p.iterdir(), key=natural):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(f)
                elif skipped is not None:
                    skipped.append(f)
        elif is_pattern(pattern):
            matches = sorted(glob.glob(pattern, recursive=True), key=natural)
            paths += [Path(m) for m in matches]
            if not matches and unmatched is not None:
                unmatched.append(pattern)
        else:
            paths.append(p)  # missing files are reported per file, not fatal
    return paths
