"""Helpers to drive a booted Heat image: keys, SSH, Heat-shaped metadata.

Used by test_heat_image.py.  The metadata documents follow what Heat
serves a server with ``software_config_transport: POLL_TEMP_URL``: the
``os-collect-config`` key (request collector polling a URL) and the
``deployments`` list, each deployment signalling its result with a PUT to
its own ``deploy_signal_id`` URL (``TEMP_URL_SIGNAL``).
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

SSH_USER = "stack"
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=60",
               "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=4")


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


def make_keypair(path: Path, comment: str = "tie-functional") -> KeyPair:
    """A fresh ed25519 key pair (``path`` and ``path.pub``)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    comment, "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return KeyPair(path, path.with_suffix(".pub").read_text().strip())


@dataclasses.dataclass(frozen=True)
class Ssh:
    """``ssh`` to the guest through a forwarded loopback port."""

    port: int
    key: Path
    user: str = SSH_USER
    host: str = "127.0.0.1"
    #: Raises when the guest is gone (e.g. HeatGuest.alive): checked
    #: between tries and after a failed command, so no wait outlives qemu.
    alive: Callable[[str], None] | None = None

    def argv(self, command: str, *extra: str) -> list[str]:
        return ["ssh", "-p", str(self.port), "-i", str(self.key),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                *SSH_OPTIONS, *extra, f"{self.user}@{self.host}", command]

    def run(self, command: str, timeout: float = 300.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self.argv(command),
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            self._check_alive(f"ssh {command!r}")
            raise
        if proc.returncode == 255:
            # ssh's own failure: say so plainly when the guest is gone.
            self._check_alive(f"ssh {command!r}")
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ssh {self.user}@guest {command!r}: exit "
                f"{proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr}")
        return proc

    def _check_alive(self, what: str) -> None:
        if self.alive is not None:
            self.alive(what)

    def wait(self, timeout: float) -> float:
        """Retry ``true`` until it works; returns the seconds it took."""
        start = time.monotonic()
        last = ""
        while time.monotonic() - start < timeout:
            self._check_alive("an SSH login")
            try:
                proc = self.run("true", timeout=120, check=False)
            except subprocess.TimeoutExpired:
                last = "timed out"
                continue
            if proc.returncode == 0:
                return time.monotonic() - start
            last = proc.stderr.strip()
            time.sleep(3)
        raise AssertionError(f"no SSH login as {self.user} within "
                             f"{timeout:.0f} s; last error: {last}")


def password_login(port: int, user: str = SSH_USER, password: str = "stack"
                   ) -> subprocess.CompletedProcess[str]:
    """Try a password login (the old default password by default).

    Uses ``sshpass`` when installed; without it, ssh in batch mode still
    shows whether the server offers or accepts passwords at all.
    """
    argv = ["ssh", "-p", str(port), *SSH_OPTIONS,
            "-o", "PreferredAuthentications=password,keyboard-interactive",
            "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1",
            f"{user}@127.0.0.1", "id"]
    if shutil.which("sshpass"):
        argv = ["sshpass", "-p", password, *argv]
    else:
        argv.insert(1, "-oBatchMode=yes")
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


# -------------------------------------------------------------- metadata

def _inputs(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v, "type": "String",
             "description": ""} for k, v in values.items()]


def deployment(dep_id: str, group: str, config: Any, *,
               server_id: str, signal_url: str,
               inputs: Mapping[str, Any] | None = None,
               outputs: Sequence[str] = (),
               action: str = "CREATE") -> dict[str, Any]:
    """One entry of the ``deployments`` key, as Heat writes it."""
    values = dict(inputs or {})
    values.update({
        "deploy_server_id": server_id,
        "deploy_action": action,
        "deploy_stack_id": "tie-stack/6c2e53e0-5a15-4c56-b5f7-000000000000",
        "deploy_resource_name": dep_id,
        "deploy_signal_transport": "TEMP_URL_SIGNAL",
        "deploy_signal_id": signal_url,
        "deploy_signal_verb": "PUT",
    })
    return {"id": dep_id, "name": dep_id, "group": group, "config": config,
            "inputs": _inputs(values),
            "outputs": [{"name": n, "type": "String", "description": "",
                         "error_output": False} for n in outputs],
            "options": {},
            "creation_time": "2026-01-01T00:00:00Z",
            "updated_time": "2026-01-01T00:00:00Z"}


def shell_quote(text: str) -> str:
    return shlex.quote(text)
