"""Boot built images in a real qemu, for element authors and functional tests.

``with VirtualMachine(image, workdir=tmp) as vm: vm.wait_for_console(
"login:", 300)`` boots ``image`` (never modified: every drive is opened
with ``snapshot=on`` unless told otherwise), writes the serial console to
``workdir/console.log`` and always kills qemu on exit.  Root is not
needed.  Acceleration is KVM only when a probe guest really runs under
it (:func:`detect_accel`); otherwise TCG, which is slow but works
everywhere, so time limits must be generous.

Every process is started through :func:`spawn`, the one place unit tests
replace to run without qemu.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from tripleo_elements import errors

logger = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
ACCEL_ENV = "TIE_QEMU_ACCEL"
ACCELS = ("kvm", "tcg")
CONSOLE_TAIL_LINES = 40

# A 512-byte x86 boot sector that writes PROBE_MARKER to COM1 and halts:
#   xor ax,ax; mov ds,ax; cld; mov dx,0x3f8; mov si,0x7c17
#   L: lodsb; test al,al; jz H; out dx,al; jmp L
#   H: cli; hlt; jmp H
# It runs BIOS and guest code under the accelerator being probed; it
# needs no file from the host but qemu itself.
PROBE_MARKER = b"TIE-ACCEL-PROBE-OK"
_PROBE_CODE = bytes.fromhex(
    "31c08ed8fc" "baf803" "be177c" "ac84c07403eeebf8" "faf4ebfd")


class VmError(errors.TieError):
    """The VM did not do what was expected (exit 1, not bad input)."""

    ref = "vm-failed"
    exit_code = errors.EXIT_FAILED


class ConsoleTimeout(VmError):
    """The console never showed the expected text."""

    ref = "vm-console-timeout"


def spawn(argv: Sequence[str], output: IO[bytes] | None = None,
          ) -> subprocess.Popen[bytes]:
    """Start ``argv`` (stdin closed, stdout+stderr to ``output``).

    The only place this module creates processes.  Logs a copy-pasteable
    command line.  Raises VmError when the program is missing.  The child
    stays in our process group so a Ctrl-C of the test run reaches it.
    """
    logger.info("running: %s", shlex.join(argv))
    try:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT)
    except FileNotFoundError as exc:
        raise VmError(f"{argv[0]}: not found",
                      "install qemu-system-x86 and qemu-utils") from exc


def _reap(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate, then kill after ``grace`` seconds; always waits."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def probe_boot_sector() -> bytes:
    """The probe guest: a bootable 512-byte disk (see PROBE_MARKER)."""
    body = _PROBE_CODE + PROBE_MARKER + b"\r\n\0"
    return body.ljust(510, b"\0") + b"\x55\xaa"


def kvm_device_usable(path: Path = Path("/dev/kvm")) -> bool:
    """True when ``path`` can be opened read-write by this user."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_accel(accel: str, timeout: float = 3.0,
                qemu: str = QEMU) -> bool:
    """Boot the probe guest under ``accel``; True if it prints its marker.

    Bounded by ``timeout`` seconds; the probe qemu is always killed.
    """
    with tempfile.TemporaryDirectory(prefix="tie-accel-") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(probe_boot_sector())
        serial = Path(tmp) / "serial.log"
        argv = [qemu, "-accel", accel, "-m", "32", "-display", "none",
                "-monitor", "none", "-no-reboot", "-nodefaults",
                "-serial", f"file:{serial}",
                "-drive", f"file={disk},format=raw,if=ide,snapshot=on"]
        with open(Path(tmp) / "qemu.log", "wb") as log:
            proc = spawn(argv, log)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if serial.exists() and PROBE_MARKER in serial.read_bytes():
                    return True
                if proc.poll() is not None:
                    return False
                time.sleep(0.1)
            return False
        finally:
            _reap(proc, grace=2.0)


@functools.lru_cache(maxsize=None)
def _detect_accel_cached(timeout: float) -> str:
    if not kvm_device_usable():
        logger.info("qemu accelerator: tcg (/dev/kvm not usable)")
        return "tcg"
    if probe_accel("kvm", timeout):
        logger.info("qemu accelerator: kvm")
        return "kvm"
    logger.warning("qemu accelerator: tcg (a KVM guest made no progress "
                   "within %.0f s)", timeout)
    return "tcg"


def detect_accel(timeout: float = 3.0,
                 environ: Mapping[str, str] | None = None) -> str:
    """'kvm' if a guest really runs under KVM here, else 'tcg'.

    ``TIE_QEMU_ACCEL`` (``kvm`` or ``tcg``) in ``environ`` (default: the
    process environment) overrides the probe.  Otherwise KVM needs a
    usable ``/dev/kvm`` *and* the probe guest must print its marker within
    ``timeout`` seconds; the answer is cached for the life of the process.

    Why a time bound and not just "did it print": on hosts with broken or
    pathologically slow nested KVM the probe does finish, but 40-50 times
    slower than under TCG (measured: 10-15 s vs 0.2-0.3 s for BIOS plus
    the boot sector), and a real kernel then looks hung.  A healthy KVM
    runs the probe well inside 3 s.
    """
    env = os.environ if environ is None else environ
    forced = env.get(ACCEL_ENV, "").strip()
    if forced:
        if forced not in ACCELS:
            raise errors.UsageError(
                f"{ACCEL_ENV}={forced!r} is not one of {', '.join(ACCELS)}",
                f"unset {ACCEL_ENV} to probe, or set kvm or tcg")
        return forced
    return _detect_accel_cached(timeout)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def create_disk(path: Path, size: str, fmt: str = "qcow2") -> Path:
    """Create a blank disk image with qemu-img; returns ``path``."""
    proc = spawn([QEMU_IMG, "create", "-q", "-f", fmt, str(path), size])
    if proc.wait() != 0:
        raise VmError(f"{path}: qemu-img create failed "
                      f"(exit {proc.returncode})")
    return path


@dataclasses.dataclass(frozen=True)
class Drive:
    """An extra drive.  ``snapshot`` keeps the file unmodified."""

    path: Path
    format: str = "qcow2"
    interface: str = "virtio"
    media: str = "disk"
    snapshot: bool = True
    readonly: bool = False

    def qemu_arg(self) -> str:
        # qemu's -drive syntax: commas in a value are written twice.
        parts = [f"file={str(self.path).replace(',', ',,')}",
                 f"format={self.format}", f"if={self.interface}",
                 f"media={self.media}"]
        if self.snapshot:
            parts.append("snapshot=on")
        if self.readonly:
            parts.append("readonly=on")
        return ",".join(parts)

    @classmethod
    def iso(cls, path: Path) -> "Drive":
        """A read-only CD-ROM, e.g. a config drive."""
        return cls(path, format="raw", interface="ide", media="cdrom",
                   snapshot=False, readonly=True)


def _tail(text: str, lines: int = CONSOLE_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


class VirtualMachine:
    """One qemu guest booted from ``image``; a context manager.

    Contract: the image and snapshot drives are never written; the
    console goes to ``workdir/console.log`` (qemu's own output to
    ``workdir/qemu.log``); each guest port in ``forwards`` is reachable on
    127.0.0.1 at :meth:`host_port`; the VM is killed after ``time_limit``
    seconds whatever happens, and always on ``stop``/``__exit__``.  qemu
    runs with ``-no-reboot``: a guest that reboots ends the VM, so a
    reboot loop shows up as an early exit instead of a timeout.
    """

    def __init__(self, image: Path, workdir: Path, *,
                 memory_mb: int = 1024, cpus: int = 1,
                 forwards: Sequence[int] = (),
                 drives: Sequence[Drive] = (),
                 accel: str | None = None,
                 time_limit: float = 1800.0,
                 image_format: str = "qcow2",
                 qemu: str = QEMU,
                 extra_args: Sequence[str] = ()) -> None:
        self.image = Path(image)
        self.workdir = Path(workdir)
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.ports = {guest: free_tcp_port() for guest in forwards}
        self.drives = tuple(drives)
        self._accel = accel
        self.time_limit = time_limit
        self.image_format = image_format
        self.qemu = qemu
        self.extra_args = tuple(extra_args)
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.timed_out = False

    @property
    def accel(self) -> str:
        if self._accel is None:
            self._accel = detect_accel()
        return self._accel

    def host_port(self, guest_port: int) -> int:
        """The 127.0.0.1 port forwarded to ``guest_port``."""
        return self.ports[guest_port]

    def argv(self) -> list[str]:
        """The qemu command line (pure; nothing is started)."""
        argv = [self.qemu, "-accel", self.accel,
                "-m", f"{self.memory_mb}M", "-smp", str(self.cpus),
                "-display", "none", "-vga", "none", "-monitor", "none",
                "-no-reboot",
                "-serial", f"file:{self.console_log}"]
        if self.accel == "kvm":
            argv += ["-cpu", "host"]
        boot = Drive(self.image, format=self.image_format)
        argv += ["-drive", boot.qemu_arg()]
        for drive in self.drives:
            argv += ["-drive", drive.qemu_arg()]
        netdev = "user,id=net0" + "".join(
            f",hostfwd=tcp:127.0.0.1:{host}-:{guest}"
            for guest, host in sorted(self.ports.items()))
        argv += ["-netdev", netdev,
                 "-device", "virtio-net-pci,netdev=net0"]
        argv += list(self.extra_args)
        return argv

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "VirtualMachine":
        """Start qemu (once) and arm the hard time limit."""
        if self._proc is not None:
            raise VmError("VM already started")
        if not self.image.is_file():
            raise VmError(f"{self.image}: no such image",
                          "build the image first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        argv = self.argv()
        with open(self.qemu_log, "wb") as log:
            self._proc = spawn(argv, log)
        self._timer = threading.Timer(self.time_limit, self._time_up)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _time_up(self) -> None:
        logger.error("VM exceeded its %.0f s time limit; killing it",
                     self.time_limit)
        self.timed_out = True
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """Terminate qemu, kill it after ``grace`` s, reap it.  Idempotent."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._proc is not None:
                _reap(self._proc, grace)

    def __enter__(self) -> "VirtualMachine":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- console ------------------------------------------------------------
    def console_text(self) -> str:
        """Everything the guest wrote to its serial console so far."""
        try:
            data = self.console_log.read_bytes()
        except FileNotFoundError:
            return ""
        return data.decode("utf-8", errors="replace")

    def wait_for_console(self, pattern: str | re.Pattern[str],
                         timeout: float,
                         poll_interval: float = 0.5) -> str:
        """Wait until the console matches ``pattern``; return the console.

        A ``str`` pattern is a regular expression.  Raises ConsoleTimeout
        (message ends with the last 40 console lines) after ``timeout``
        seconds, or VmError as soon as qemu is found to have exited.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            if regex.search(text):
                return text
            if not self.running:
                code = None if self._proc is None else self._proc.returncode
                why = (f"was killed at its {self.time_limit:.0f} s time "
                       "limit" if self.timed_out else
                       f"exited (status {code})")
                raise VmError(
                    f"qemu {why} before the console showed "
                    f"{regex.pattern!r}; see {self.qemu_log}; last console "
                    f"lines:\n{_tail(text)}")
            if time.monotonic() >= deadline:
                raise ConsoleTimeout(
                    f"no {regex.pattern!r} on the console of {self.image} "
                    f"within {timeout:.0f} s ({self.accel}); last "
                    f"{CONSOLE_TAIL_LINES} console lines:\n{_tail(text)}",
                    f"full console: {self.console_log}")
            time.sleep(poll_interval)
