"""A loopback stand-in for the parts of Keystone, Heat and Zaqar that a
deployment's signal uses, for tests of heat-config-notify's transports.

* ``POST /v3/auth/tokens``: password auth by user id for one project;
  a wrong user, password or project gets 401.  Issues a fresh token and a
  catalog with ``orchestration`` and ``messaging`` endpoints on this
  server.
* ``POST /heat/v1/PROJECT/stacks/.../resources/NAME/signal`` and
  ``POST /zaqar/v2/queues/QUEUE/messages``: need a token issued here
  (``X-Auth-Token``), else 401; the body is recorded.
* Every request body over ``max_body`` bytes gets 413 (Heat's limit is
  1 MiB); ``fail(prefix, times, status)`` answers the next requests under
  a path prefix with that status; ``delay`` seconds before each answer
  simulate a server slower than the client's timeout.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import time
import uuid
from typing import Any

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Signal:
    """One accepted signal: where it went and its JSON body."""

    kind: str  # "heat" or "zaqar"
    path: str
    token: str
    body: Any


class OpenStackStandIn:
    """``with OpenStackStandIn(...) as cloud: cloud.auth_url``."""

    def __init__(self, user_id: str = "user-1", password: str = "secret",
                 project_id: str = "project-1", max_body: int = MIB,
                 host: str = "127.0.0.1",
                 public_host: str | None = None) -> None:
        self.user_id, self.password = user_id, password
        self.project_id, self.max_body = project_id, max_body
        self.delay = 0.0
        self._public_host = public_host
        self._tokens: set[str] = set()
        self._failures: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.signals: list[Signal] = []
        self.refused: list[tuple[str, int]] = []
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > standin.max_body:
                    self.rfile.read(length)
                    standin._refuse(self.path, 413)
                    self._answer(413, {"error": "request too large"})
                    return
                body = self.rfile.read(length) if length else b""
                if standin.delay:
                    time.sleep(standin.delay)
                status, payload, headers = standin._post(
                    self.path, dict(self.headers.items()), body)
                self._answer(status, payload, headers)

            def _answer(self, status: int, payload: Any,
                        headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        daemon=True)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "OpenStackStandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "OpenStackStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        host = self._public_host or "127.0.0.1"
        return f"http://{host}:{self._httpd.server_address[1]}"

    @property
    def auth_url(self) -> str:
        return f"{self.base}/v3"

    def fail(self, prefix: str, times: int, status: int) -> None:
        with self._lock:
            self._failures[prefix] = [status] * times

    def inputs(self, transport: str = "HEAT_SIGNAL", *,
               password: str | None = None,
               queue: str = "signals") -> dict[str, str]:
        """The deploy_* inputs Heat gives a deployment of ``transport``."""
        values = {
            "deploy_signal_transport": transport,
            "deploy_auth_url": self.auth_url,
            "deploy_user_id": self.user_id,
            "deploy_password": self.password if password is None
            else password,
            "deploy_project_id": self.project_id,
        }
        if transport == "ZAQAR_SIGNAL":
            values["deploy_queue_id"] = queue
        return values

    # -- behaviour -------------------------------------------------------
    def _refuse(self, path: str, status: int) -> None:
        with self._lock:
            self.refused.append((path, status))

    def _catalog(self) -> list[dict[str, Any]]:
        def service(kind: str, url: str) -> dict[str, Any]:
            return {"type": kind, "name": kind, "id": kind, "endpoints": [
                {"id": f"{kind}-{iface}", "interface": iface,
                 "region": "RegionOne", "region_id": "RegionOne",
                 "url": url} for iface in ("public", "internal")]}
        return [
            service("identity", self.auth_url),
            service("orchestration",
                    f"{self.base}/heat/v1/{self.project_id}"),
            service("messaging", f"{self.base}/zaqar"),
        ]

    def _post(self, path: str, headers: dict[str, str],
              body: bytes) -> tuple[int, Any, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            for prefix, statuses in self._failures.items():
                if path.startswith(prefix) and statuses:
                    status = statuses.pop(0)
                    self.refused.append((path, status))
                    return status, {"error": {
                        "message": "injected", "code": status}}, {}
        if path.rstrip("/") == "/v3/auth/tokens":
            return self._issue(body)
        token = lower.get("x-auth-token", "")
        kind = ("heat" if re.match(r"/heat/v1/[^/]+/stacks/.+/signal$", path)
                else "zaqar" if re.match(r"/zaqar/v2/queues/[^/]+/messages$",
                                         path) else None)
        if kind is None:
            return 404, {"error": f"no such path {path}"}, {}
        with self._lock:
            if token not in self._tokens:
                self.refused.append((path, 401))
                return 401, {"error": "bad token"}, {}
            self.signals.append(Signal(kind, path, token, json.loads(
                body.decode() or "null")))
        if kind == "zaqar":
            return 201, {"resources": [f"{path}/1"]}, {}
        return 200, None, {}

    def _issue(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            auth = json.loads(body)["auth"]
            user = auth["identity"]["password"]["user"]
            project = auth["scope"]["project"]["id"]
            ok = (user.get("id") == self.user_id
                  and user.get("password") == self.password
                  and project == self.project_id)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            self._refuse("/v3/auth/tokens", 401)
            return 401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "bad credentials"}}, {}
        token = uuid.uuid4().hex
        with self._lock:
            self._tokens.add(token)
        return 201, {"token": {
            "methods": ["password"], "expires_at": "2099-01-01T00:00:00Z",
            "issued_at": "2026-01-01T00:00:00Z",
            "user": {"id": self.user_id, "name": self.user_id,
                     "domain": {"id": "default", "name": "Default"}},
            "project": {"id": self.project_id, "name": self.project_id,
                        "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r", "name": "member"}],
            "catalog": self._catalog()}}, {"X-Subject-Token": token}
