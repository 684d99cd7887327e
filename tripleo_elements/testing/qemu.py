"""Boot built images in a real qemu, for element authors and functional tests.

``with VirtualMachine(image, workdir=tmp) as vm: vm.wait_for_console(
"login:", 300)`` boots ``image`` (never modified: every drive is opened
with ``snapshot=on`` unless told otherwise), writes the serial console to
``workdir/console.log`` and always kills qemu on exit.  Root is not
needed.  Acceleration is KVM only where real guests were seen to reach
their kernel under it (see :class:`VirtualMachine` and :mod:`.accel`);
otherwise TCG, which is slow but works everywhere, so time limits must
be generous.  Every wait on a guest ends within a poll interval once
qemu has exited, with its exit status and the tails of its logs.

Every process is started through :func:`spawn`, the one place unit tests
replace to run without qemu.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from tripleo_elements import errors
from tripleo_elements.testing import accel as accel_module

__all__ = [
    "ACCELS", "ACCEL_ENV", "ConsoleTimeout", "Drive", "KERNEL_STARTED",
    "VirtualMachine", "VmError", "VmExited", "create_disk", "detect_accel",
    "free_tcp_port", "spawn",
]

logger = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
ACCEL_ENV = accel_module.ACCEL_ENV
ACCELS = accel_module.ACCELS
CONSOLE_TAIL_LINES = 40
QEMU_LOG_TAIL_LINES = 10
#: How long a guest started under KVM on trial has to show the kernel's
#: first console line.  Under a healthy KVM the firmware, the bootloader
#: (and its menu timeout) and the kernel get there in well under 20 s.
KVM_TRIAL_SECONDS = 45.0
#: The known point of a real boot: the kernel's banner, or any kernel
#: message with its timestamp (when the banner is filtered by loglevel),
#: or systemd's greeting.
KERNEL_STARTED = re.compile(
    r"Linux version \d|^\[ *\d+\.\d{6}\] |Welcome to ", re.M)


# The error classes live in errors.py with every other; these names stay
# here for users of this module.
VmError = errors.VmError
ConsoleTimeout = errors.ConsoleTimeout
VmExited = errors.VmExited


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


def detect_accel(environ: Mapping[str, str] | None = None) -> str:
    """The accelerator a new guest would start with on this host.

    ``TIE_QEMU_ACCEL`` when set; ``tcg`` when ``/dev/kvm`` cannot be
    opened; else what real guests showed on this host (remembered in
    ``$TIE_QEMU_ACCEL_CACHE``), ``kvm`` (on trial) when none has run yet.
    Starts nothing: the trial happens in :meth:`VirtualMachine.start`.
    """
    cache = accel_module.AccelCache(
        accel_module.default_cache_path(environ),
        accel_module.host_fingerprint(QEMU, KVM_SHAPE))
    return accel_module.choose(cache, environ).accel


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


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


#: Guest arguments used under KVM only, and the options among a VM's
#: extra arguments that decide whether KVM works: together the "shape"
#: that the remembered accelerator answer is keyed by.
KVM_CPU = ("-cpu", "host")
KVM_SHAPE = KVM_CPU
_SHAPE_OPTIONS = frozenset({"-cpu", "-machine", "-M", "-bios", "-pflash",
                            "-kernel", "-smp"})

T = TypeVar("T")


class VirtualMachine:
    """One qemu guest booted from ``image``; a context manager.

    Contract: the image and snapshot drives are never written; the
    console goes to ``workdir/console.log`` (qemu's own output to
    ``workdir/qemu.log``); each guest port in ``forwards`` is reachable on
    127.0.0.1 at :meth:`host_port`; the VM is killed after ``time_limit``
    seconds whatever happens, and always on ``stop``/``__exit__``.  qemu
    runs with ``-no-reboot``: a guest that reboots ends the VM, so a
    reboot loop shows up as an early exit instead of a timeout.

    Accelerator: ``accel`` (or ``TIE_QEMU_ACCEL``) forces one.  Otherwise
    (see :mod:`.accel`) TCG when ``/dev/kvm`` cannot be opened, else KVM
    on trial: :meth:`start` waits up to ``kvm_trial_seconds`` for the
    kernel's first console line (``KERNEL_STARTED``); when qemu aborts or
    the guest gets nowhere, the guest is restarted once under TCG (the
    KVM attempt's logs are kept as ``console.kvm.log``/``qemu.kvm.log``,
    the reason in :attr:`fallback_reason`), and the answer is remembered
    for this host so the next guests start under TCG at once.

    Every wait (:meth:`wait_for_console`, :meth:`wait_until`, and the
    ``alive`` callable :meth:`check_alive` handed to other waits) ends
    within one poll interval once qemu has exited, with its status and
    the tails of qemu's log and the console.
    """

    def __init__(self, image: Path, workdir: Path, *,
                 memory_mb: int = 1024, cpus: int = 1,
                 forwards: Sequence[int] = (),
                 drives: Sequence[Drive] = (),
                 accel: str | None = None,
                 time_limit: float = 1800.0,
                 image_format: str = "qcow2",
                 qemu: str = QEMU,
                 extra_args: Sequence[str] = (),
                 kvm_trial_seconds: float = KVM_TRIAL_SECONDS,
                 accel_cache: accel_module.AccelCache | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        if accel is not None and accel not in ACCELS:
            raise errors.UsageError(
                f"accelerator {accel!r} is not one of {', '.join(ACCELS)}",
                "pass kvm, tcg or None (decide by what guests do)")
        self.image = Path(image)
        self.workdir = Path(workdir)
        self.memory_mb = memory_mb
        self.cpus = cpus
        self.ports = {guest: free_tcp_port() for guest in forwards}
        self.drives = tuple(drives)
        self._requested_accel = accel
        self._accel: str | None = accel
        self.time_limit = time_limit
        self.image_format = image_format
        self.qemu = qemu
        self.extra_args = tuple(extra_args)
        self.kvm_trial_seconds = kvm_trial_seconds
        self._accel_cache = accel_cache
        self._environ = environ
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self.timed_out = False
        self.accel_reason = ""
        self.fallback_reason: str | None = None
        self.started_at = 0.0

    @property
    def accel(self) -> str:
        """The accelerator the guest runs (or would start) under."""
        if self._accel is None:
            self._accel = self.choose_accel().accel
        return self._accel

    def host_port(self, guest_port: int) -> int:
        """The 127.0.0.1 port forwarded to ``guest_port``."""
        return self.ports[guest_port]

    def shape(self) -> tuple[str, ...]:
        """The arguments KVM's answer depends on (see KVM_SHAPE)."""
        args = self.extra_args
        extra = [f"{a} {b}" for a, b in zip(args, args[1:])
                 if a in _SHAPE_OPTIONS]
        return (*KVM_SHAPE, *extra)

    def argv(self, accel: str | None = None) -> list[str]:
        """The qemu command line (pure; nothing is started)."""
        accel = accel or self.accel
        argv = [self.qemu, "-accel", accel,
                "-m", f"{self.memory_mb}M", "-smp", str(self.cpus),
                "-display", "none", "-vga", "none", "-monitor", "none",
                "-no-reboot",
                "-serial", f"file:{self.console_log}"]
        if accel == "kvm":
            argv += list(KVM_CPU)
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

    # -- accelerator --------------------------------------------------------
    def _cache(self) -> accel_module.AccelCache:
        if self._accel_cache is None:
            self._accel_cache = accel_module.AccelCache(
                accel_module.default_cache_path(self._environ),
                accel_module.host_fingerprint(self.qemu, self.shape()))
        return self._accel_cache

    def choose_accel(self) -> accel_module.AccelChoice:
        """The accelerator :meth:`start` begins with (starts nothing)."""
        if self._requested_accel is not None:
            return accel_module.AccelChoice(
                self._requested_accel, "chosen by the caller", "argument")
        forced = accel_module.forced(self._environ)
        if forced is not None:
            return accel_module.AccelChoice(
                forced, f"forced by {ACCEL_ENV}", "env")
        return accel_module.choose(self._cache(), self._environ)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "VirtualMachine":
        """Start qemu (once) and arm the hard time limit.

        With KVM on trial this blocks until the kernel's first console
        line (at most ``kvm_trial_seconds``), falling back to TCG once.
        """
        if self._proc is not None:
            raise VmError("VM already started")
        if not self.image.is_file():
            raise VmError(f"{self.image}: no such image",
                          "build the image first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        choice = self.choose_accel()
        self._accel = choice.accel
        self.accel_reason = choice.reason
        self._timer = threading.Timer(self.time_limit, self._time_up)
        self._timer.daemon = True
        self._timer.start()
        self._launch(choice.accel)
        if not choice.trial:
            logger.info("qemu accelerator: %s (%s)", choice.accel,
                        choice.reason)
            return self
        failure = self._kvm_trial()
        if failure is None:
            if choice.source != "cache":
                self._cache().put("kvm", "a guest reached its kernel "
                                  "under KVM")
            self.accel_reason = "a guest reached its kernel under KVM"
            logger.info("qemu accelerator: kvm (the guest reached its "
                        "kernel within %.0f s)", self.kvm_trial_seconds)
            return self
        self.fallback_reason = failure
        logger.warning("qemu accelerator: tcg, restarting the guest: under "
                       "KVM %s", failure)
        self._cache().put("tcg", f"under KVM {failure}")
        for log in (self.console_log, self.qemu_log):
            if log.exists():
                os.replace(log, log.with_suffix(".kvm.log"))
        self._accel = "tcg"
        self.accel_reason = f"fell back from KVM: {failure}"
        self._launch("tcg")
        return self

    def _launch(self, accel: str) -> None:
        self.console_log.write_bytes(b"")
        argv = self.argv(accel)
        with self._lock:
            if self.timed_out:
                raise VmError(f"VM exceeded its {self.time_limit:.0f} s "
                              "time limit before it started")
            with open(self.qemu_log, "wb") as log:
                self._proc = spawn(argv, log)
        self.started_at = time.monotonic()

    def _kvm_trial(self) -> str | None:
        """None when the KVM guest reached its kernel in time, else why
        not (qemu is then stopped)."""
        deadline = time.monotonic() + self.kvm_trial_seconds
        while True:
            if KERNEL_STARTED.search(self.console_text()):
                return None
            if not self.running:
                code = None if self._proc is None else self._proc.returncode
                last = _tail(_read_text(self.qemu_log), 2).replace("\n", " / ")
                return (f"qemu exited (status {code}) before the kernel "
                        f"started" + (f": {last}" if last else ""))
            if time.monotonic() >= deadline:
                self._reap_quietly()
                shown = _tail(self.console_text(), 1).strip()
                return (f"the guest showed no kernel console line within "
                        f"{self.kvm_trial_seconds:.0f} s"
                        + (f" (console ends: {shown!r})" if shown else
                           " (console empty)"))
            time.sleep(0.2)

    def _reap_quietly(self) -> None:
        with self._lock:
            if self._proc is not None:
                _reap(self._proc, 5.0)

    def _time_up(self) -> None:
        logger.error("VM exceeded its %.0f s time limit; killing it",
                     self.time_limit)
        self.timed_out = True
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """qemu's exit status (None while it runs or before it started)."""
        return None if self._proc is None else self._proc.poll()

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

    # -- liveness -----------------------------------------------------------
    def exit_report(self, waiting_for: str = "") -> str:
        """Why qemu is gone, with the tails of its log and the console."""
        code = self.returncode
        why = (f"was killed at its {self.time_limit:.0f} s time limit"
               if self.timed_out else f"exited (status {code})")
        what = f" while waiting for {waiting_for}" if waiting_for else ""
        qemu_tail = _tail(_read_text(self.qemu_log), QEMU_LOG_TAIL_LINES)
        return (f"qemu ({self.accel}) {why}{what}; see {self.qemu_log}\n"
                f"last lines of qemu's log:\n{qemu_tail or '(empty)'}\n"
                f"last console lines:\n{_tail(self.console_text())}")

    def check_alive(self, waiting_for: str = "") -> None:
        """Raise :class:`VmExited` (with :meth:`exit_report`) unless qemu
        runs.  Hand it to any wait on the guest as its ``alive`` check."""
        if self._proc is None:
            raise VmError("the VM was never started", "call start() first")
        if not self.running:
            raise VmExited(self.exit_report(waiting_for),
                           f"full console: {self.console_log}")

    def wait_until(self, ready: Callable[[], T | None], timeout: float,
                   what: str, poll_interval: float = 0.5) -> T:
        """Poll ``ready()`` until it returns something other than None.

        Raises :class:`VmExited` as soon as qemu is gone, TimeoutError
        (naming ``what``) after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = ready()
            if value is not None:
                return value
            self.check_alive(what)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s "
                                   f"({self.accel})")
            time.sleep(poll_interval)

    # -- console ------------------------------------------------------------
    def console_text(self) -> str:
        """Everything the guest wrote to its serial console so far."""
        return _read_text(self.console_log)

    def wait_for_console(self, pattern: str | re.Pattern[str],
                         timeout: float,
                         poll_interval: float = 0.5) -> str:
        """Wait until the console matches ``pattern``; return the console.

        A ``str`` pattern is a regular expression.  Raises ConsoleTimeout
        (message ends with the last 40 console lines) after ``timeout``
        seconds, or VmExited as soon as qemu is found to have exited.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def matched() -> str | None:
            text = self.console_text()
            return text if regex.search(text) else None

        try:
            return self.wait_until(matched, timeout,
                                   f"{regex.pattern!r} on the console",
                                   poll_interval)
        except TimeoutError:
            raise ConsoleTimeout(
                f"no {regex.pattern!r} on the console of {self.image} "
                f"within {timeout:.0f} s ({self.accel}); last "
                f"{CONSOLE_TAIL_LINES} console lines:\n"
                f"{_tail(self.console_text())}",
                f"full console: {self.console_log}") from None
