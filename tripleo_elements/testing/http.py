"""A real HTTP server on loopback that plays Heat's side in tests.

It serves JSON metadata documents (what os-collect-config's ``request``
collector polls) and records every request sent to it (deployment signals,
``cfn-signal`` WaitCondition PUTs).  Paths can be told to fail a number of
times first, to exercise retries.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["HeatServer", "Request"]


@dataclasses.dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class HeatServer:
    """Loopback server: ``with HeatServer() as srv: srv.url('/signal')``.

    ``host`` defaults to 127.0.0.1; a VM on qemu user networking reaches
    it as 10.0.2.2 (see :meth:`guest_url`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Condition()
        self._documents: dict[str, tuple[bytes, float]] = {}
        self._failures: dict[str, tuple[int, int]] = {}
        self._requests: list[Request] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                req = Request(self.command, path,
                              {k: v for k, v in self.headers.items()}, body)
                status, payload, headers = server._respond(req)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="heat-server", daemon=True)

    # -- lifecycle ------------------------------------------------------
    def start(self) -> "HeatServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> "HeatServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        """URL of ``path`` as seen from this host."""
        return f"http://127.0.0.1:{self.port}{path}"

    def guest_url(self, path: str, gateway: str = "10.0.2.2") -> str:
        """URL of ``path`` as seen from a qemu user-networking guest."""
        return f"http://{gateway}:{self.port}{path}"

    # -- configuration --------------------------------------------------
    def set_document(self, path: str, document: Any) -> None:
        """Serve ``document`` (JSON-encoded) on GET ``path`` from now on."""
        data = json.dumps(document, sort_keys=True).encode("utf-8")
        with self._lock:
            # Last-Modified has one-second resolution: make sure a change
            # is always visible to a client that honours it.
            previous = self._documents.get(path)
            stamp = time.time()
            if previous and int(stamp) <= int(previous[1]):
                stamp = int(previous[1]) + 1.0
            self._documents[path] = (data, stamp)

    def fail(self, path: str, times: int, status: int = 503) -> None:
        """Answer the next ``times`` requests to ``path`` with ``status``."""
        with self._lock:
            self._failures[path] = (times, status)

    # -- inspection -----------------------------------------------------
    def requests(self, path: str | None = None,
                 method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests
                    if (path is None or r.path == path)
                    and (method is None or r.method == method)]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0,
                 method: str | None = None,
                 alive: Callable[[], None] | None = None,
                 check_every: float = 1.0) -> list[Request]:
        """Block until ``count`` non-GET requests reached ``path``.

        ``alive``, when given, is called at least every ``check_every``
        seconds and ends the wait by raising (e.g.
        ``VirtualMachine.check_alive``: the client that should send the
        requests is gone).  Raises ``TimeoutError`` naming what arrived
        instead.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._requests if r.path == path
                       and r.method != "GET"
                       and (method is None or r.method == method)]
                if len(got) >= count:
                    return got
                if alive is not None:
                    alive()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({f"{r.method} {r.path}"
                                   for r in self._requests})
                    raise TimeoutError(
                        f"{count} request(s) to {path} not received in "
                        f"{timeout:.0f}s; received: {seen or 'nothing'}")
                self._lock.wait(min(remaining, check_every)
                                if alive is not None else remaining)

    # -- internals ------------------------------------------------------
    def _respond(self, req: Request) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self._requests.append(req)
            self._lock.notify_all()
            times, status = self._failures.get(req.path, (0, 0))
            if times > 0:
                self._failures[req.path] = (times - 1, status)
                return status, b'{"error": "injected failure"}', {
                    "Content-Type": "application/json"}
            if req.method in ("GET", "HEAD"):
                doc = self._documents.get(req.path.split("?", 1)[0])
                if doc is None:
                    return 404, b"{}", {"Content-Type": "application/json"}
                data, stamp = doc
                return 200, data, {
                    "Content-Type": "application/json",
                    "Last-Modified": email.utils.formatdate(stamp,
                                                            usegmt=True)}
            return 200, b"{}", {"Content-Type": "application/json"}
