"""Follow disk-image-create's output: which phase and script is running,
and how long each phase took.

Lines flow in (one call of :meth:`Progress.line` per output line); status
changes flow out through the ``report`` callback, and :meth:`finish`
returns the time spent per phase.  No I/O: the caller owns the process
and the log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_PHASE = re.compile(r"(?:hooks|in_target\.d)/([a-z-]+\.d)(?:/([\w-]+))?")
#: Steps after the last hook phase, named by the line that starts them.
_STEPS = (("Converting image using qemu-img", "convert"),)
#: Lines of output kept for the error message of a failed build.
TAIL_LINES = 30


class Progress:
    """Follows disk-image-create's output: current phase, script, and the
    time spent in each phase.  ``report`` receives status changes."""

    def __init__(self, report: Callable[[str, str | None], None]) -> None:
        self.report = report
        self.phase = "setup"
        self.script: str | None = None
        self.started = time.monotonic()
        self.phase_started = self.started
        self.times: dict[str, float] = {}
        self.tail: list[str] = []

    def line(self, text: str) -> None:
        self.tail = (self.tail + [text])[-TAIL_LINES:]
        for marker, step in _STEPS:
            if marker in text:
                self._close_phase()
                self.phase, self.script = step, None
                self.report(step, None)
                return
        match = _PHASE.search(text)
        if not match:
            return
        phase, script = match.group(1), match.group(2)
        if phase != self.phase:
            self._close_phase()
            self.phase = phase
            self.script = None
        if script and script != self.script and "Running" in text:
            self.script = script
        self.report(self.phase, self.script)

    def where(self) -> str:
        """``phase`` or ``phase/script``: where the build is (or died)."""
        return self.phase + (f"/{self.script}" if self.script else "")

    def _close_phase(self) -> None:
        now = time.monotonic()
        self.times[self.phase] = (self.times.get(self.phase, 0.0)
                                  + now - self.phase_started)
        self.phase_started = now

    def finish(self) -> tuple[tuple[str, float], ...]:
        self._close_phase()
        return tuple(self.times.items())
