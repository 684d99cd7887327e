"""Which qemu accelerator to boot guests with, and the remembered answer.

In: the environment (``TIE_QEMU_ACCEL`` forces ``kvm`` or ``tcg``), the
state of ``/dev/kvm``, and the answers earlier guests gave on this host.
Out: an :class:`AccelChoice` (accelerator, why, and whether a KVM guest
is on trial and may still fall back to TCG).

KVM is never trusted because ``/dev/kvm`` opens, nor because a tiny probe
guest ran: on some hosts a probe runs under KVM while every real guest
aborts (``failed to set MSR``) or stops in the bootloader for good.  So
the answer comes from a real guest: :class:`~.qemu.VirtualMachine` starts
the guest under KVM on trial, and only when it reaches the kernel's
first console line within a short deadline is KVM recorded as working.
The answer is remembered in a small JSON file keyed by a fingerprint of
the host (kernel, CPU model, boot id) and of qemu (binary, version, the
CPU/machine arguments the guests use), so later guests skip the trial.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import errors

__all__ = [
    "ACCEL_ENV", "ACCELS", "CACHE_ENV", "AccelCache", "AccelChoice",
    "choose", "default_cache_path", "forced", "host_fingerprint",
    "kvm_device_usable", "qemu_version",
]

ACCEL_ENV = "TIE_QEMU_ACCEL"
CACHE_ENV = "TIE_QEMU_ACCEL_CACHE"
ACCELS = ("kvm", "tcg")
DEFAULT_CACHE = Path("~/.cache/tripleo-image-elements/qemu-accel.json")
CACHE_FORMAT = "tie-qemu-accel-1"


@dataclasses.dataclass(frozen=True)
class AccelChoice:
    """``accel`` to start with, and why.

    ``trial`` is True when the choice is KVM not yet proven on this host
    (or proven before but still to be watched): the VM falls back to TCG
    once if its guest aborts or makes no progress.  ``source`` is one of
    ``env``, ``argument``, ``device``, ``cache``, ``default``.
    """

    accel: str
    reason: str
    source: str
    trial: bool = False


def kvm_device_usable(path: Path = Path("/dev/kvm")) -> bool:
    """True when ``path`` is a character device this user can open
    read-write."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISCHR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def default_cache_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$TIE_QEMU_ACCEL_CACHE``, else ``~/.cache/.../qemu-accel.json``."""
    env = os.environ if environ is None else environ
    value = env.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CACHE.expanduser()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    for line in _read(cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


@functools.lru_cache(maxsize=None)
def qemu_version(qemu: str) -> str:
    """The first line of ``qemu --version`` ("" when it cannot run).

    Bounded by 20 s; called once per binary and process.
    """
    try:
        proc = subprocess.run([qemu, "--version"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout.splitlines() or [""])[0].strip()


def host_fingerprint(qemu: str, shape: Sequence[str]) -> dict[str, str]:
    """What the remembered answer depends on.

    ``shape`` are the guest arguments that decide whether KVM works (the
    ``-cpu``, ``-machine`` and firmware options).  The boot id is part of
    it: nested KVM can behave differently after the host restarts, and a
    new trial costs at most one deadline per host boot.
    """
    binary = shutil.which(qemu) or qemu
    return {
        "qemu": os.path.realpath(binary),
        "qemu_version": qemu_version(binary),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "boot_id": _read(Path("/proc/sys/kernel/random/boot_id")),
        "shape": " ".join(shape),
    }


class AccelCache:
    """The remembered answers: one JSON file, entries keyed by the hash of
    a fingerprint.  Reads and writes are locked and atomic; a broken or
    unreadable file counts as empty (the answer is then found again)."""

    def __init__(self, path: Path, fingerprint: Mapping[str, str]) -> None:
        self.path = Path(path)
        self.fingerprint = dict(fingerprint)
        blob = json.dumps([CACHE_FORMAT, self.fingerprint], sort_keys=True)
        self.key = hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self) -> AccelChoice | None:
        entry = self._load().get(self.key)
        if not isinstance(entry, dict) or entry.get("accel") not in ACCELS:
            return None
        return AccelChoice(str(entry["accel"]),
                           f"remembered for this host: "
                           f"{entry.get('reason', '')}", "cache",
                           trial=entry["accel"] == "kvm")

    def put(self, accel: str, reason: str) -> None:
        """Remember ``accel`` for this fingerprint (best effort: a cache
        that cannot be written only costs a new trial next time)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"),
                      "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = self._load()
                data[self.key] = {"accel": accel, "reason": reason,
                                  "fingerprint": self.fingerprint,
                                  "recorded": int(time.time())}
                fd, tmp = tempfile.mkstemp(dir=self.path.parent,
                                           prefix=".qemu-accel-")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, indent=2, sort_keys=True)
                os.replace(tmp, self.path)
        except OSError:
            pass


def forced(environ: Mapping[str, str] | None = None) -> str | None:
    """``TIE_QEMU_ACCEL`` when set (validated), else None."""
    env = os.environ if environ is None else environ
    value = env.get(ACCEL_ENV, "").strip()
    if not value:
        return None
    if value not in ACCELS:
        raise errors.UsageError(
            f"{ACCEL_ENV}={value!r} is not one of {', '.join(ACCELS)}",
            f"unset {ACCEL_ENV} to let real guests decide, or set kvm or "
            "tcg")
    return value


def choose(cache: AccelCache | None,
           environ: Mapping[str, str] | None = None,
           kvm_usable: bool | None = None) -> AccelChoice:
    """The accelerator to start a guest with (see the module docstring).

    Order: ``TIE_QEMU_ACCEL``; TCG when ``/dev/kvm`` cannot be opened;
    the remembered answer for this host; else KVM on trial.
    """
    value = forced(environ)
    if value is not None:
        return AccelChoice(value, f"forced by {ACCEL_ENV}", "env")
    if kvm_usable is None:
        kvm_usable = kvm_device_usable()
    if not kvm_usable:
        return AccelChoice("tcg", "/dev/kvm cannot be opened", "device")
    if cache is not None:
        remembered = cache.get()
        if remembered is not None:
            return remembered
    return AccelChoice("kvm", "not tried on this host yet", "default",
                       trial=True)
