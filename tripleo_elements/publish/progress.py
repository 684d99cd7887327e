"""Upload progress: one updating line on a terminal, plain lines else."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """Callable with the bytes just sent (``api.ProgressFn``)."""

    def __init__(self, stream: TextIO, total: int, label: str,
                 clock: Callable[[], float] | None = None) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.label = label
        self.tty = stream.isatty()
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.done = 0
        self.last = -1.0
        self.next_step = 25

    def line(self) -> str:
        elapsed = max(self.clock() - self.start, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        pct = 100 * self.done // self.total
        return (f"{self.label}: {human(self.done)}/{human(self.total)} "
                f"({pct}%) {human(rate)}/s ETA {left:.0f}s")

    def __call__(self, sent: int) -> None:
        self.done = min(self.done + sent, self.total)
        if self.tty:
            now = self.clock()
            if now - self.last >= 0.2 or self.done == self.total:
                self.last = now
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
            return
        pct = 100 * self.done // self.total
        while pct >= self.next_step and self.next_step <= 100:
            self.stream.write(f"{self.label}: {self.next_step}% of "
                              f"{human(self.total)}\n")
            self.next_step += 25

    def finish(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()
