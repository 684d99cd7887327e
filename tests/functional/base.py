"""Shared helpers for the root-only functional tier.

These tests build real images (loop devices, mounts, chroots) and boot
them in qemu.  They are skipped, with the reason, when this host cannot
do what a build needs; the probe *tries* a bind mount and a loop device
in a temporary directory instead of checking the uid, so it answers for
containers without the capabilities too.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import testtools
from testtools import content

BUILD_TIMEOUT = 3600.0
LOG_TAIL_LINES = 60
# A prebuilt image to use instead of building (to iterate on the boot
# checks without a 5-minute build); unset in CI.
PREBUILT_ENV = "TIE_BASE_IMAGE"


def _try(argv: Sequence[str]) -> str | None:
    """Run a probe command; None on success, else a short reason."""
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        return f"'{' '.join(argv)}' failed: {detail or proc.returncode}"
    return None


@functools.lru_cache(maxsize=None)
def missing_build_capability() -> str | None:
    """Why this host cannot build images, or None when it can.

    Tries, in a fresh temporary directory, a bind mount and attaching a
    loop device to a small file (both undone at once).
    """
    with tempfile.TemporaryDirectory(prefix="tie-cap-") as tmp:
        src, dst = Path(tmp, "src"), Path(tmp, "dst")
        src.mkdir()
        dst.mkdir()
        reason = _try(["mount", "--bind", str(src), str(dst)])
        if reason is not None:
            return f"cannot bind mount ({reason})"
        _try(["umount", str(dst)])
        backing = Path(tmp, "loop.img")
        with open(backing, "wb") as handle:
            handle.truncate(1024 * 1024)
        try:
            proc = subprocess.run(
                ["losetup", "--show", "-f", str(backing)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot attach a loop device ({exc})"
        if proc.returncode != 0:
            return ("cannot attach a loop device "
                    f"({' '.join(proc.stderr.split())})")
        _try(["losetup", "-d", proc.stdout.strip()])
    return None


def console_script(name: str) -> Path:
    """The installed console script ``name`` of this environment."""
    return Path(sys.executable).parent / name


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def build_image(args: list[str], output: Path,
                log: Path | None = None,
                timeout: float = BUILD_TIMEOUT) -> Path:
    """Run ``build-image -o OUTPUT ARGS...``; return ``OUTPUT.qcow2``.

    The command's output goes to ``log`` (default ``OUTPUT.build.log``).
    Raises AssertionError, with the last lines of the log, when it exits
    non-zero, times out (it is interrupted with SIGINT first so
    diskimage-builder cleans up its mounts and loop devices) or writes no
    image.
    """
    script = console_script("build-image")
    log = log or output.with_name(output.name + ".build.log")
    output.parent.mkdir(parents=True, exist_ok=True)
    # --no-cache: a functional build is about the real build.
    argv = [str(script), "-o", str(output), "--no-cache", *args]
    with open(log, "wb") as handle:
        handle.write(f"$ {' '.join(argv)}\n".encode())
        handle.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise AssertionError(
                f"{' '.join(argv)}: no result after {timeout:.0f} s; last "
                f"lines of {log}:\n{_tail(log)}")
    if code != 0:
        raise AssertionError(
            f"{' '.join(argv)}: exit {code}; last lines of {log}:\n"
            f"{_tail(log)}")
    image = output.with_name(output.name + ".qcow2")
    if not image.is_file():
        raise AssertionError(f"{' '.join(argv)}: exit 0 but no {image}; "
                             f"last lines of {log}:\n{_tail(log)}")
    return image


class FunctionalTestCase(testtools.TestCase):
    """Skips unless the host can build; gives a work dir kept on failure.

    ``self.workdir`` is removed after a passing test; after a failure it
    is left in place (its path is attached to the result) so the build
    log and console log can be read.
    """

    def setUp(self) -> None:
        super().setUp()
        reason = missing_build_capability()
        if reason is not None:
            self.skipTest(f"needs a host that can build images: {reason}")
        self.workdir = Path(tempfile.mkdtemp(prefix="tie-functional-"))
        self._keep_workdir = False
        self.addOnException(self._keep_on_failure)
        self.addCleanup(self._remove_workdir)

    def _keep_on_failure(self, exc_info: object) -> None:
        # A skip is no failure: nothing to read, so nothing is left.
        if isinstance(exc_info, tuple) and isinstance(
                exc_info[1], self.skipException):
            return
        self._keep_workdir = True
        self.addDetail("workdir", content.text_content(str(self.workdir)))

    def _remove_workdir(self) -> None:
        if self._keep_workdir:
            return
        # --one-file-system: never delete through a mount left behind.
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.workdir)],
                       check=False)

    def attach_log(self, name: str, path: Path,
                   lines: int | None = None) -> None:
        """Attach ``path`` (or its last ``lines``) to the test result."""
        def read() -> list[bytes]:
            text = _tail(path, lines) if lines else (
                path.read_text(encoding="utf-8", errors="replace")
                if path.exists() else "(missing)")
            return [text.encode("utf-8")]
        self.addDetail(name, content.Content(content.UTF8_TEXT, read))
