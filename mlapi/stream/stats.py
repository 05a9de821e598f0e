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

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        fps = self.processed / elapsed if elapsed else 0.0
        return (
            f"{self.read} frames read, {self.processed} processed ({fps:.1f}/s), "
            f"{self.dropped} dropped, {self.emitted} events, {self.reconnects} reconnects, "
            f"{self.failed} failed, {self.undelivered} undelivered, {elapsed:.1f} s"
        )

    @property
    def ok(self) -> bool:
        return not (self.failed or self.undelivered)
