"""Run ``build-image`` for the build tests of the functional tier."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.functional import base

#: A cold debian-minimal build takes about 4.5 minutes here.
BUILD_TIMEOUT = 1800.0


class Build:
    """One ``build-image`` run, started at once, waited for later."""

    def __init__(self, args: list[str], output: Path) -> None:
        self.output = output
        self.log = output.with_name(output.name + ".build.log")
        # --no-cache: these tests are about real builds.
        self.argv = [str(base.console_script("build-image")), "-o",
                     str(output), "--no-cache", *args]
        output.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with open(self.log, "wb") as handle:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.seconds = 0.0

    def wait(self, timeout: float = BUILD_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGINT: build-image passes it on so DIB cleans up.
            self.proc.send_signal(2)
            code = self.proc.wait(timeout=300)
        self.seconds = time.monotonic() - self.started
        return code

    def tail(self, lines: int = base.LOG_TAIL_LINES) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def manifest(self) -> dict[str, Any]:
        path = self.output.with_name(self.output.name + ".manifest.json")
        data: dict[str, Any] = json.loads(path.read_text())
        return data
