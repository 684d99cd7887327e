"""A real OpenStack control plane (Keystone, Nova's API, Heat) on 127.0.0.1.

:class:`ControlPlane` starts, in a work directory it owns, MariaDB and
RabbitMQ (Debian 12 packages, each with its own data directory, socket
and ports; epmd and the Erlang distribution port on loopback too),
Keystone (fernet tokens, ``keystone-manage bootstrap``), Nova's compute
API and the Heat API under gunicorn, and ``heat-engine``; then the
Keystone objects a Heat operator creates (the ``service`` project and
``heat`` user, the ``heat`` stack domain and its ``heat_domain_admin``,
the ``heat_stack_owner``, ``heat_stack_user`` and ``member`` roles, the
orchestration endpoints) and the ``nova`` user and compute endpoints.
Nova is its API alone (no conductor, scheduler or compute): Heat asks it
whether a deployment's server exists when the deployment is deleted.
``mode="keystone"`` starts MariaDB and Keystone only (for services that
only need to authenticate, like the publish tier's Glance).
Keystone, Nova and Heat run from one virtualenv cached by the hash of the
pin file ``requirements.txt`` here (:mod:`tripleo_elements.publish.venvs`).
:mod:`.services` configures and starts each service; :mod:`.heatapi` is
a small client of the Heat API for tests.

Reachability: every URL in the catalog (and so every URL Heat hands a
guest) names :data:`SERVICE_HOST`.  The host resolves it to 127.0.0.1 (a
marked ``/etc/hosts`` line added by :meth:`ControlPlane.start` and
removed by :meth:`ControlPlane.stop`); a qemu guest on user networking
resolves it to 10.0.2.2, which qemu forwards to the host's loopback
(:func:`guest_hosts_part` is the cloud-config that says so).  Nothing
listens beyond 127.0.0.1.

Every process runs in its own session; its pid (and start time, so a
reused pid is never signalled) is kept in ``state.json``, which is how
``stop`` (from any process) ends exactly those.  Passwords live only in
``secrets.json`` and ``openrc`` (mode 0600) and in the services' own
configuration files; they are never printed or logged from here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.publish.venvs import cache_root, ensure_venv, venv_key

__all__ = [
    "ControlPlane", "ControlPlaneError", "GUEST_HOST_IP", "HOST", "Ports",
    "REQUIREMENTS_FILE", "SERVICE_HOST", "add_hosts_line",
    "guest_hosts_part", "remove_hosts_line",
]

HOST = "127.0.0.1"
#: The one name every catalog URL uses (see the module docstring).
SERVICE_HOST = "tie-control.test"
#: The host's loopback as a qemu user-network guest sees it.
GUEST_HOST_IP = "10.0.2.2"
REGION = "RegionOne"
#: The passwords (and Heat's key) a work directory holds.
SECRETS = ("admin", "heat", "nova", "domain_admin", "db_keystone",
           "db_heat", "db_nova", "auth_encryption_key")
VENV_NAME = "heat-control-plane"
REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")
TASKS_FILE = Path(__file__).with_name("tasks.txt")
HOSTS_FILE_ENV = "TIE_HOSTS_FILE"
HOSTS_MARK = "# tie-control-plane"
#: Start and stop order; stop goes backwards.
SERVICES = ("mariadb", "epmd", "rabbitmq", "keystone", "nova-api",
            "heat-engine", "heat-api")
#: What each mode of :meth:`ControlPlane.start` runs (in SERVICES order).
MODES: Mapping[str, tuple[str, ...]] = {
    "all": SERVICES,
    "keystone": ("mariadb", "keystone"),
}


class ControlPlaneError(errors.TieError):
    """The control plane could not be started, stopped or reached."""


# -- name resolution --------------------------------------------------------
def _mark(workdir: Path) -> str:
    return f"{HOSTS_MARK} {workdir}"


def add_hosts_line(hosts: Path, name: str, address: str, mark: str) -> bool:
    """Append ``address name mark`` to ``hosts`` unless that line is there;
    returns whether it wrote.  Written in place (a container's
    /etc/hosts is often a bind mount that cannot be replaced)."""
    line = f"{address} {name} {mark}"
    text = hosts.read_text() if hosts.exists() else ""
    if line in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    hosts.write_text(text + line + "\n")
    return True


def remove_hosts_line(hosts: Path, mark: str) -> bool:
    """Remove the lines ending with ``mark``; returns whether any was."""
    if not hosts.exists():
        return False
    lines = hosts.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.rstrip("\n").endswith(mark)]
    if kept == lines:
        return False
    hosts.write_text("".join(kept))
    return True


def guest_hosts_part() -> str:
    """Cloud-config making :data:`SERVICE_HOST` resolve to the host's
    loopback as a qemu user-network guest reaches it (every boot)."""
    return ("#cloud-config\n"
            "manage_etc_hosts: false\n"
            "bootcmd:\n"
            f"  - [sh, -c, 'grep -q \" {SERVICE_HOST}$\" /etc/hosts || "
            f"echo \"{GUEST_HOST_IP} {SERVICE_HOST}\" >> /etc/hosts']\n")


# -- processes ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return fields[19]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


def _http_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # it answers
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class Ports:
    mysql: int
    epmd: int
    rabbit: int
    rabbit_dist: int
    keystone: int
    heat: int
    nova: int

    @classmethod
    def free(cls) -> "Ports":
        return cls(**{f.name: _free_port() for f in dataclasses.fields(cls)})


class ControlPlane:
    """Keystone, Nova's API and Heat (and their database and broker), or
Keystone alone (``mode``), in ``workdir``."""

    def __init__(self, workdir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir.resolve()
        self.env = dict(os.environ if env is None else env)
        self.hosts_file = Path(self.env.get(HOSTS_FILE_ENV, "/etc/hosts"))
        self.logs = self.workdir / "logs"
        self.state_file = self.workdir / "state.json"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}

    # -- public -------------------------------------------------------------
    @property
    def venv(self) -> Path:
        return ensure_venv(VENV_NAME, self.env,
                           requirements=REQUIREMENTS_FILE.read_text())

    @property
    def ports(self) -> Ports:
        return Ports(**self._state()["ports"])

    @property
    def keystone_url(self) -> str:
        return f"http://{SERVICE_HOST}:{self.ports.keystone}/v3"

    @property
    def heat_url(self) -> str:
        return f"http://{SERVICE_HOST}:{self.ports.heat}"

    @property
    def nova_url(self) -> str:
        return f"http://{SERVICE_HOST}:{self.ports.nova}/v2.1"

    @property
    def services(self) -> tuple[str, ...]:
        """The services of the mode this work directory was started in."""
        names = self._state().get("services") or SERVICES
        return tuple(n for n in SERVICES if n in names)

    @property
    def openrc(self) -> Path:
        return self.workdir / "openrc"

    def admin_env(self) -> dict[str, str]:
        """OS_* variables for the admin (holds a password: never log)."""
        env = {k: v for k, v in self.env.items() if not k.startswith("OS_")}
        env.update({
            "OS_AUTH_URL": self.keystone_url, "OS_USERNAME": "admin",
            "OS_PASSWORD": self._secrets()["admin"],
            "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": REGION,
            "OS_IDENTITY_API_VERSION": "3", "OS_INTERFACE": "public"})
        return env

    def secret_values(self) -> list[str]:
        """Every password made here (to check logs and output for)."""
        return sorted(self._secrets().values())

    def service_user(self, name: str) -> str:
        """Make (or reset) Keystone user ``name``, admin on the
        ``service`` project, as an operator does for a service that
        validates tokens; returns its password (never log it)."""
        if not name.isidentifier() or name in SECRETS:
            raise ControlPlaneError(f"not a service user name: {name!r}",
                                    "use a plain name like 'glance'")
        values = self._secrets()
        key = f"service_{name}"
        if key not in values:
            values[key] = secrets.token_hex(16)
            self._save_secrets(values)
        self.tasks("service-user", {
            "auth_url": f"http://{HOST}:{self.ports.keystone}/v3",
            "admin_password": values["admin"], "name": name,
            "password": values[key]})
        return values[key]

    def openstack(self, *args: str, timeout: float = 120
                  ) -> subprocess.CompletedProcess[str]:
        """Run the venv's ``openstack`` CLI as admin."""
        return subprocess.run(
            [str(self.venv / "bin" / "openstack"), *args],
            env=self.admin_env(), capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 600, mode: str = "all"
              ) -> "ControlPlane":
        """Start the services of ``mode`` (a key of :data:`MODES`),
        initialising each in the work directory once."""
        if mode not in MODES:
            raise ControlPlaneError(
                f"unknown control plane mode {mode!r}",
                "one of: " + ", ".join(sorted(MODES)))
        if self.state_file.exists() and any(
                s == "up" for s in self.status().values()):
            raise ControlPlaneError(
                f"a control plane already runs in {self.workdir}",
                "tools/control-plane stop --workdir " + str(self.workdir))
        began = time.monotonic()
        venv = self.venv
        self.timings["venv_s"] = time.monotonic() - began
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not self.state_file.exists():
            self._write_state({"ports": {}, "pids": {}, "initialised": []})
        self._complete_state(mode)
        self._make_secrets()
        self._add_hosts()
        try:
            self._start_all(venv, began + timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["up_s"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        """End every process started here, by pid; drop the hosts line."""
        state = self._state() if self.state_file.exists() else {}
        pids: dict[str, list[int | str]] = dict(state.get("pids", {}))
        for name in reversed(SERVICES):
            if name in pids:
                pid, started = int(pids[name][0]), str(pids[name][1])
                self._end(name, pid, started)
                pids.pop(name)
            # Forget it, so a later start() of this object does not take
            # the process it ended for one that died.
            self._procs.pop(name, None)
        if state:
            state["pids"] = pids
            self._write_state(state)
        remove_hosts_line(self.hosts_file, _mark(self.workdir))

    def status(self) -> dict[str, str]:
        """``up``, ``down`` or ``not answering`` for each service."""
        state = self._state()
        ports = Ports(**{f.name: state["ports"].get(f.name, 0)
                         for f in dataclasses.fields(Ports)})
        probes = {
            "mariadb": lambda: _port_open(ports.mysql),
            "epmd": lambda: _port_open(ports.epmd),
            "rabbitmq": lambda: _port_open(ports.rabbit),
            "keystone": lambda: _http_up(
                f"http://{HOST}:{ports.keystone}/v3"),
            "nova-api": lambda: _http_up(f"http://{HOST}:{ports.nova}/"),
            "heat-api": lambda: _http_up(f"http://{HOST}:{ports.heat}/"),
            "heat-engine": lambda: True,
        }
        result = {}
        for name in self.services:
            pid = state["pids"].get(name)
            if not pid or _start_time(int(pid[0])) != str(pid[1]):
                result[name] = "down"
            else:
                result[name] = "up" if probes[name]() else "not answering"
        return result

    def describe(self) -> str:
        """Where each service listens and how to use it (no secrets)."""
        p = self.ports
        # Where the venv is (describing does not build it).
        venv = cache_root(self.env) / venv_key(
            VENV_NAME, REQUIREMENTS_FILE.read_text())
        running = self.services
        lines = {
            "mariadb": f"mariadb   {HOST}:{p.mysql} (socket "
                       f"{self.workdir / 'mysql' / 'mysqld.sock'})",
            "rabbitmq": f"rabbitmq  {HOST}:{p.rabbit} (epmd {HOST}:"
                        f"{p.epmd}, distribution {HOST}:{p.rabbit_dist})",
            "keystone": f"keystone  {self.keystone_url}  (listens on "
                        f"{HOST}:{p.keystone})",
            "nova-api": f"nova-api  {self.nova_url}  (listens on {HOST}:"
                        f"{p.nova}; the API alone, no compute)",
            "heat-api": f"heat-api  {self.heat_url}/v1  (listens on "
                        f"{HOST}:{p.heat})",
        }
        example = "stack list" if "heat-api" in running else "token issue"
        return "\n".join([
            f"work directory: {self.workdir} (logs in {self.logs})",
            *(line for name, line in lines.items() if name in running),
            f"{SERVICE_HOST} is {HOST} here ({self.hosts_file}) and "
            f"{GUEST_HOST_IP} in a qemu user-network guest",
            "use it:",
            f"  . {self.openrc}",
            f"  {venv / 'bin' / 'openstack'} {example}",
        ])

    # -- state ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError) as exc:
            raise ControlPlaneError(
                f"no control plane state in {self.workdir}: {exc}",
                "start one with tools/control-plane start") from None

    def _write_state(self, state: Mapping[str, object]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_file)

    def _secrets(self) -> dict[str, str]:
        return dict(json.loads((self.workdir / "secrets.json").read_text()))

    def _make_secrets(self) -> None:
        """Make the passwords this work directory lacks (a directory
        made by an older version lacks Nova's); keep the others."""
        path = self.workdir / "secrets.json"
        values = self._secrets() if path.exists() else {}
        missing = [name for name in SECRETS if name not in values]
        if not missing:
            return
        values.update({name: secrets.token_hex(16) for name in missing})
        self._save_secrets(values)

    def _save_secrets(self, values: Mapping[str, str]) -> None:
        path = self.workdir / "secrets.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w") as handle:
            json.dump(dict(values), handle)

    def _complete_state(self, mode: str) -> None:
        """Record ``mode``'s services; give every service a port (a
        directory made by an older version has none for Nova)."""
        state = self._state()
        ports = dict(state.get("ports", {}))
        for field in dataclasses.fields(Ports):
            ports.setdefault(field.name, _free_port())
        done = state.get("initialised")
        if done is True:  # older versions: one flag for Keystone + Heat
            done = ["mariadb", "keystone", "heat"]
        state.update(ports=ports, services=list(MODES[mode]),
                     initialised=list(done or []))
        self._write_state(state)

    def _add_hosts(self) -> None:
        try:
            add_hosts_line(self.hosts_file, SERVICE_HOST, HOST,
                           _mark(self.workdir))
        except OSError as exc:
            raise ControlPlaneError(
                f"cannot add {SERVICE_HOST} to {self.hosts_file}: "
                f"{exc.strerror}",
                f"run as root, or set {HOSTS_FILE_ENV} to a hosts file "
                f"your resolver reads") from None

    # -- processes ------------------------------------------------------
    def _spawn(self, name: str, argv: list[str],
               env: Mapping[str, str] | None = None,
               cwd: Path | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")
        with log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=cwd or self.workdir, env=dict(env or self._base_env()))
        self._procs[name] = proc
        started = _start_time(proc.pid)
        state = self._state()
        state["pids"][name] = [proc.pid, started]
        self._write_state(state)

    def _end(self, name: str, pid: int, started: str) -> None:
        if _start_time(pid) != started:
            return  # gone (or the pid is someone else's now)
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            proc = self._procs.get(name)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        break
                elif _start_time(pid) != started:
                    break
                time.sleep(0.2)
            else:
                continue
            # Leftovers of the group (gunicorn workers, erl helpers).
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(
                    errors="replace")[-1500:]
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode}: "
                    f"{' '.join(tail.split())}",
                    f"see {self.logs / (name + '.log')}")

    def _wait(self, what: str, ready: "object", deadline: float) -> None:
        assert callable(ready)
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{what} did not come up in time",
                                        f"see the logs in {self.logs}")
            time.sleep(0.3)

    def _base_env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        env = {k: v for k, v in self.env.items() if k in keep}
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env["HOME"] = str(self.workdir)
        return env

    def _run(self, name: str, argv: list[str], *, stdin: str = "",
             env: Mapping[str, str] | None = None,
             timeout: float = 300) -> None:
        """A one-shot setup command; output to its log, not to ours."""
        with open(self.logs / f"setup-{name}.log", "ab") as log:
            proc = subprocess.run(
                argv, input=stdin.encode(), stdout=log,
                stderr=subprocess.STDOUT, cwd=self.workdir,
                env=dict(env or self._base_env()), timeout=timeout)
        if proc.returncode != 0:
            tail = (self.logs / f"setup-{name}.log").read_text(
                errors="replace")[-1500:]
            raise ControlPlaneError(
                f"{name} failed ({proc.returncode}): {' '.join(tail.split())}",
                f"see {self.logs / ('setup-' + name + '.log')}")

    def _start_all(self, venv: Path, deadline: float) -> None:
        from tripleo_elements.testing.controlplane import services as svc
        state = self._state()
        done = set(state["initialised"])
        running = set(state["services"])
        ports = Ports(**state["ports"])
        secret = self._secrets()

        def started(name: str) -> None:
            # Initialised once: a later start skips its one-time setup.
            if name not in done:
                done.add(name)
                state = self._state()
                state["initialised"] = sorted(done)
                self._write_state(state)

        t = time.monotonic()
        svc.start_mariadb(self, ports, secret, "mariadb" not in done,
                          deadline)
        started("mariadb")
        if "rabbitmq" in running:
            svc.start_rabbitmq(self, ports, deadline)
        self.timings["db_broker_s"] = time.monotonic() - t
        # (one-time setup name, service in SERVICES, starter): each is
        # timed, started, and marked initialised the same way.
        steps = (("keystone", "keystone", svc.start_keystone),
                 ("nova", "nova-api", svc.start_nova),
                 ("heat", "heat-api", svc.start_heat))
        for name, service, starter in steps:
            if service not in running:
                continue
            t = time.monotonic()
            starter(self, venv, ports, secret, name not in done, deadline)
            started(name)
            self.timings[f"{name}_s"] = time.monotonic() - t
        self._write_openrc()

    def _write_openrc(self) -> None:
        env = self.admin_env()
        lines = [f"export {k}={env[k]}" for k in sorted(env)
                 if k.startswith("OS_")]
        fd = os.open(self.openrc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with open(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")

    def tasks(self, task: str, params: Mapping[str, object],
              timeout: float = 300) -> None:
        """Run a task of tasks.txt with the venv's python."""
        self._run(task, [str(self.venv / "bin" / "python"), "-I",
                         str(TASKS_FILE), task],
                  stdin=json.dumps(dict(params)), timeout=timeout)
