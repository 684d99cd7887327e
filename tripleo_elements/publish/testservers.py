"""Real storage servers on 127.0.0.1 for tests and benchmarks.

:class:`SeaweedS3` (SeaweedFS's S3 gateway) and :class:`SwiftCluster`
(proxy + account/container/object servers, tempauth, tempurl, slo) run
from cached virtualenvs (:mod:`.venvs`) in a scratch directory, every
port chosen free and bound to loopback only.  ``stop()`` ends exactly the
processes started here, by pid (their own process group); ``kill()``
simulates a crash (SIGKILL) and ``start()`` again reuses the data.
This is test infrastructure: it starts long-running processes, which
``process.run`` (one-shot commands) does not do.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tripleo_elements.publish.venvs import ensure_venv

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, deadline: float, procs: list[subprocess.Popen[bytes]],
               logs: list[Path]) -> None:
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                tail = "".join(p.read_text(errors="replace")[-2000:]
                               for p in logs)
                raise RuntimeError(f"server exited {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: up
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up in time")


class _Servers:
    """A set of processes in one scratch dir, stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._files: list[IO[bytes]] = []

    def _spawn(self, name: str, argv: list[str],
               env: Mapping[str, str] | None = None) -> None:
        log = self.workdir / f"{name}.log"
        out = open(log, "ab")
        self._files.append(out)
        self.logs.append(log)
        self.procs.append(subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
            stdin=subprocess.DEVNULL, start_new_session=True,
            env=dict(env or os.environ)))

    def _signal(self, sig: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _up(self, urls: list[str], timeout: float = 60) -> None:
        """Wait for every URL to answer; on failure stop what started."""
        deadline = time.monotonic() + timeout
        try:
            for url in urls:
                _wait_http(url, deadline, self.procs, self.logs)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """Crash every server now (SIGKILL), as a power cut would."""
        self._signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _reap(self) -> None:
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for f in self._files:
            f.close()
        self.procs, self._files = [], []


class SeaweedS3(_Servers):
    """SeaweedFS ``weed mini`` with its S3 gateway and one identity."""

    ACCESS = "tie-test-access"
    SECRET = "tie-test-secret-0123456789"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.venv = ensure_venv("s3")
        self.ports = {flag: free_port() for flag in (
            "master.port", "master.port.grpc", "volume.port",
            "volume.port.grpc", "volume.port.public", "filer.port",
            "filer.port.grpc", "filer.port.public", "s3.port",
            "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
            "s3.debug.port", "s3.metricsPort", "admin.port",
            "admin.port.grpc", "webdav.port", "debug.port", "metricsPort")}
        self.endpoint = f"http://{HOST}:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.ACCESS,
                "AWS_SECRET_ACCESS_KEY": self.SECRET,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> "SeaweedS3":
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "identities.json"
        config.write_text(json.dumps({"identities": [{
            "name": "tie", "credentials": [{"accessKey": self.ACCESS,
                                            "secretKey": self.SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        argv = [str(self.venv / "bin" / "weed"), "mini", f"-dir={data}",
                f"-ip={HOST}", f"-ip.bind={HOST}", f"-s3.config={config}",
                "-master.telemetry=false", "-admin.ui=false",
                "-webdav=false"]
        argv += [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = {k: v for k, v in os.environ.items() if not k.startswith(
            "AWS_")}
        self._spawn("weed", argv, env)
        self._up([self.endpoint + "/"])
        return self


_SERVER_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
devices = {devices}
mount_check = false
disable_fallocate = true
swift_dir = {swift_dir}
log_address = {workdir}/no-syslog
log_level = WARNING

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""

_PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {swift_dir}
log_address = {workdir}/no-syslog
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging \
listing_formats tempurl slo tempauth copy proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_tie_tester = {key} .admin
token_life = 3600
fernet_key_k1 = {fernet}
active_fernet_key_id = k1

[filter:tempurl]
use = egg:swift#tempurl

[filter:slo]
use = egg:swift#slo
min_segment_size = 1

[filter:copy]
use = egg:swift#copy

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

"""


_RINGS = """
import json, sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], json.loads(sys.argv[2])
for kind in ("account", "container", "object"):
    b = RingBuilder(4, 1, 1)
    b.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1",
               "port": ports[kind], "device": "d1", "weight": 1})
    b.rebalance()
    b.get_ring().save(f"{etc}/{kind}.ring.gz")
"""


class SwiftCluster(_Servers):
    """One-replica Swift on a plain directory, tempauth user tie:tester."""

    USER = "tie:tester"
    KEY = "tie-swift-key-0123456789"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.venv = ensure_venv("swift")
        saved = workdir / "ports.json"
        if saved.exists():  # the rings name these ports: keep them
            self.ports = json.loads(saved.read_text())
        else:
            self.ports = {k: free_port() for k in (
                "proxy", "account", "container", "object")}
        self.auth_url = f"http://{HOST}:{self.ports['proxy']}/auth/v1.0"

    def env(self) -> dict[str, str]:
        return {"ST_AUTH": self.auth_url, "ST_USER": self.USER,
                "ST_KEY": self.KEY}

    def _configure(self) -> Path:
        etc = self.workdir / "etc"
        devices = self.workdir / "srv"
        if (etc / "object.ring.gz").exists():
            return etc
        (devices / "d1").mkdir(parents=True, exist_ok=True)
        etc.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ports.json").write_text(json.dumps(self.ports))
        (etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = tie\n"
            "swift_hash_path_prefix = tie\n\n"
            "[storage-policy:0]\nname = gold\ndefault = yes\n")
        # All three rings in one interpreter (a swift-ring-builder run per
        # step costs ~25 s of start-up on a loaded 2-core machine).
        subprocess.run([str(self.venv / "bin" / "python"), "-c",
                        _RINGS, str(etc), json.dumps(self.ports)],
                       check=True)
        for kind in ("account", "container", "object"):
            (etc / f"{kind}-server.conf").write_text(_SERVER_CONF.format(
                port=self.ports[kind], devices=devices, swift_dir=etc,
                kind=kind, workdir=self.workdir))
        (etc / "proxy-server.conf").write_text(_PROXY_CONF.format(
            port=self.ports["proxy"], swift_dir=etc, key=self.KEY,
            fernet=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            workdir=self.workdir))
        return etc

    def start(self) -> "SwiftCluster":
        etc = self._configure()
        for kind in ("account", "container", "object", "proxy"):
            self._spawn(kind, [str(self.venv / "bin" / f"swift-{kind}-server"),
                               str(etc / f"{kind}-server.conf"), "-v"])
        self._up([f"http://{HOST}:{self.ports[kind]}/"
                  for kind in ("account", "container", "object")]
                 + [f"http://{HOST}:{self.ports['proxy']}/healthcheck"])
        return self


_GLANCE_CONF = """[DEFAULT]
enabled_backends = fs:file
log_file = {workdir}/glance-api.log
image_size_cap = 10737418240

[database]
connection = sqlite:///{workdir}/glance.sqlite

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {workdir}/images

[os_glance_staging_store]
filesystem_store_datadir = {workdir}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {workdir}/tasks

[paste_deploy]
flavor =

[oslo_policy]
policy_file = {workdir}/etc/policy.yaml
enforce_new_defaults = false
enforce_scope = false

[oslo_concurrency]
lock_path = {workdir}/locks
"""


# The stdlib's threaded WSGI server: enough for tests, and needs no
# compiler (building uWSGI from source costs ~2 min of a cold CI run).
_WSGIREF = """
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from glance.wsgi.api import application
class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
class Handler(WSGIRequestHandler):
    def log_message(self, *args):
        pass
make_server("127.0.0.1", int(sys.argv[1]), application,
            server_class=Server, handler_class=Handler).serve_forever()
"""


@dataclasses.dataclass(frozen=True)
class KeystoneAuth:
    """Where a test Glance validates tokens (keystonemiddleware's
    ``auth_token``) and who it is there; ``user``/``project`` is whom the
    ``clouds.yaml`` Glance writes authenticates as."""

    auth_url: str
    service_user: str
    service_password: str
    user: str
    password: str
    project: str

    def __repr__(self) -> str:  # no password in a repr
        return f"KeystoneAuth({self.auth_url}, {self.user}@{self.project})"


def clouds_yaml(cloud: str, endpoint: str,
                keystone: KeystoneAuth | None = None,
                password: str | None = None) -> str:
    """A clouds.yaml with one cloud for the test Glance at ``endpoint``:
    no auth, or Keystone password auth (``password`` overrides
    ``keystone.password``, e.g. with a wrong one)."""
    if keystone is None:
        auth = ["    auth_type: none", "    auth:",
                f"      endpoint: {endpoint}"]
    else:
        auth = ["    auth_type: password", "    auth:",
                f"      auth_url: {keystone.auth_url}",
                f"      username: {keystone.user}",
                f"      password: {password or keystone.password}",
                f"      project_name: {keystone.project}",
                "      user_domain_name: Default",
                "      project_domain_name: Default",
                "    identity_api_version: 3"]
    return "\n".join(["clouds:", f"  {cloud}:", *auth,
                      f"    image_endpoint_override: {endpoint}", ""])


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as handle:
        handle.write(text)


class GlanceServer(_Servers):
    """glance-api (``glance.wsgi.api:application``), sqlite + file store,
    under the stdlib's WSGI server or, with ``wsgi="uwsgi"`` (or
    ``TIE_GLANCE_WSGI=uwsgi``), under uWSGI as production runs it.  No
    auth, or with ``keystone`` keystonemiddleware's ``auth_token`` against
    that Keystone (Glance's own policy then applies)."""

    def __init__(self, workdir: Path, wsgi: str | None = None,
                 keystone: KeystoneAuth | None = None) -> None:
        super().__init__(workdir)
        self.keystone = keystone
        self.cloud = "tie-glance" if keystone is None else "tie-glance-ks"
        self.wsgi = wsgi or os.environ.get("TIE_GLANCE_WSGI", "wsgiref")
        if self.wsgi not in ("wsgiref", "uwsgi"):
            raise ValueError(f"TIE_GLANCE_WSGI={self.wsgi}: wsgiref|uwsgi")
        self.venv = ensure_venv("glance" if self.wsgi == "wsgiref"
                                else "glance-uwsgi")
        saved = workdir / "port"
        self.port = int(saved.read_text()) if saved.exists() else \
            free_port()
        self.endpoint = f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"OS_CLIENT_CONFIG_FILE": str(self.workdir / "clouds.yaml"),
                "OS_CLOUD": self.cloud}

    def _configure(self) -> Path:
        etc = self.workdir / "etc"
        if (self.workdir / "glance.sqlite").exists():
            return etc
        for sub in ("etc", "images", "staging", "tasks", "locks"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "port").write_text(str(self.port))
        conf = _GLANCE_CONF.format(workdir=self.workdir)
        ks = self.keystone
        if ks is None:
            # No Keystone: every request is an admin (RUNTIME-NOTES).
            policy = '"context_is_admin": "@"\n"default": "@"\n'
        else:
            policy = "{}\n"  # Glance's own rules
            conf = conf.replace("[paste_deploy]\nflavor =\n",
                                "[paste_deploy]\nflavor = keystone\n")
            conf += "\n".join([
                "", "[keystone_authtoken]",
                f"www_authenticate_uri = {ks.auth_url}",
                f"auth_url = {ks.auth_url}",
                "auth_type = password",
                f"username = {ks.service_user}",
                f"password = {ks.service_password}",
                "user_domain_name = Default",
                "project_name = service",
                "project_domain_name = Default",
                ""])
        _write_private(etc / "glance-api.conf", conf)
        paste = next(self.venv.glob("etc/glance/glance-api-paste.ini"))
        (etc / "glance-api-paste.ini").write_text(paste.read_text())
        (etc / "policy.yaml").write_text(policy)
        _write_private(self.workdir / "clouds.yaml",
                       clouds_yaml(self.cloud, self.endpoint, ks))
        subprocess.run([str(self.venv / "bin" / "glance-manage"),
                        "--config-dir", str(etc), "db_sync"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return etc

    def start(self) -> "GlanceServer":
        etc = self._configure()
        env = dict(os.environ, OS_GLANCE_CONFIG_DIR=str(etc))
        if self.wsgi == "wsgiref":
            self._spawn("glance-api", [str(self.venv / "bin" / "python"),
                                       "-c", _WSGIREF, str(self.port)], env)
            self._up([f"{self.endpoint}/versions"], timeout=120)
            return self
        self._spawn("uwsgi", [
            str(self.venv / "bin" / "uwsgi"), "--http11-socket",
            f"{HOST}:{self.port}", "--module",
            "glance.wsgi.api:application", "--master", "--processes", "1",
            "--threads", "4", "--die-on-term", "--need-app",
            "--buffer-size", "65535", "--chunked-input-limit", "1048576",
            "--home", str(self.venv)], env)
        self._up([f"{self.endpoint}/versions"], timeout=120)
        return self
