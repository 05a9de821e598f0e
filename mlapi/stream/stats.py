"""What a stream run counts, for its summary line and exit status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    read: int = 0
    processed: int = 0
    dropped: int = 0
    emitted: int = 0
    reconnects: int = 0
    failed: int = 0  # frames that could not be read (a bad file in a folder)
    undelivered: int = 0  # events the webhook or --exec command did not take
    started: float = field(default_factory=time.monotonic)

    def summary(self, width: int | None = None) -> str:
        """Every count, or on a terminal `width` wide the ones that fit: counts that are 0
        go first, then the rate, then the later counts; a word is never cut."""
        elapsed = time.monotonic() - self.started
        fps = self.processed / elapsed if elapsed else 0.0
        parts = [
            (f"{self.read} frames read", -1),
            (f"{self.processed} processed ({fps:.1f}/s)", -1),
            (f"{self.dropped} dropped", self.dropped),
            (f"{self.emitted} events", -1),
            (f"{self.reconnects} reconnects", self.reconnects),
            (f"{self.failed} failed", self.failed),
            (f"{self.undelivered} undelivered", self.undelivered),
            (f"{elapsed:.1f} s", -1),
        ]
        line = ", ".join(text for text, _ in parts)
        if width is None or len(line) <= width:
            return line
        kept = [text for text, count in parts if count != 0]  # -1: always worth saying
        if len(", ".join(kept)) > width:
            kept[1] = f"{self.processed} processed"
        while len(kept) > 1 and len(", ".join(kept)) > width:
            kept.pop()
        return ", ".join(kept)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.undelivered)
