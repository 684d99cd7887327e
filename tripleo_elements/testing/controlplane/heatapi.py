"""A small client of the real Heat API (v1) for tests, over plain HTTP.

Authenticates with Keystone (password, project scope), finds Heat in the
catalog, and drives stacks: create, update (PATCH: same template, new
parameters), delete, wait for a status, outputs, resources and software
deployments.  The token is kept in memory only and never appears in an
exception message or a repr.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from tripleo_elements import errors

__all__ = ["HeatApi", "HeatApiError"]


class HeatApiError(errors.TieError):
    """A Heat or Keystone request failed, or a stack never settled."""


def _request(method: str, url: str, body: Any = None,
             headers: Mapping[str, str] | None = None,
             timeout: float = 60) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), (
                json.loads(raw) if raw.strip() else None)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")[:800]
        raise HeatApiError(f"{method} {url} answered {exc.code}: "
                           f"{' '.join(text.split())}") from None
    except OSError as exc:
        raise HeatApiError(f"{method} {url} failed: {exc}") from None


class HeatApi:
    """Heat v1 as the project ``project`` of ``username``."""

    def __init__(self, auth_url: str, username: str, password: str,
                 project: str = "admin", interface: str = "public") -> None:
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"id": "default"},
                "password": password}}},
            "scope": {"project": {"name": project,
                                  "domain": {"id": "default"}}}}}
        _, headers, doc = _request("POST", auth_url.rstrip("/")
                                   + "/auth/tokens", body)
        self._token = headers.get("X-Subject-Token") or headers.get(
            "x-subject-token", "")
        catalog = doc["token"].get("catalog", [])
        urls = [e["url"] for s in catalog if s["type"] == "orchestration"
                for e in s["endpoints"] if e["interface"] == interface]
        if not urls:
            raise HeatApiError("no orchestration endpoint in the catalog")
        self.url = urls[0].rstrip("/")

    def __repr__(self) -> str:
        return f"HeatApi({self.url})"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return _request(method, self.url + path, body,
                        {"X-Auth-Token": self._token})[2]

    # -- stacks ---------------------------------------------------------------
    def create(self, name: str, template: str,
               parameters: Mapping[str, Any] | None = None,
               timeout_mins: int = 30) -> str:
        """Start creating stack ``name``; returns ``name/id``."""
        doc = self.call("POST", "/stacks", {
            "stack_name": name, "template": template,
            "parameters": dict(parameters or {}),
            "timeout_mins": timeout_mins, "disable_rollback": True})
        return f"{name}/{doc['stack']['id']}"

    def update(self, stack: str, parameters: Mapping[str, Any]) -> None:
        """Update ``stack`` keeping its template, new parameter values."""
        self.call("PATCH", f"/stacks/{stack}",
                  {"parameters": dict(parameters)})

    def delete(self, stack: str) -> None:
        self.call("DELETE", f"/stacks/{stack}")

    def stack(self, stack: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/stacks/{stack}")["stack"])

    def outputs(self, stack: str) -> dict[str, Any]:
        return {o["output_key"]: o.get("output_value")
                for o in self.stack(stack).get("outputs") or []}

    def resource(self, stack: str, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/stacks/{stack}/resources/{name}"
                              )["resource"])

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/software_deployments/{deployment_id}"
                              )["software_deployment"])

    def wait(self, stack: str, action: str, timeout: float,
             alive: Callable[[], None] = lambda: None) -> dict[str, Any]:
        """Wait until ``stack``'s status is ``action``_COMPLETE or
        _FAILED (either is returned); raise on a timeout.  A deleted
        stack counts as DELETE_COMPLETE."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                doc = self.stack(stack)
            except HeatApiError as exc:
                if action == "DELETE" and "answered 404" in str(exc):
                    return {"stack_status": "DELETE_COMPLETE"}
                raise
            status = doc.get("stack_status", "")
            if status in (f"{action}_COMPLETE", f"{action}_FAILED"):
                return doc
            alive()
            if time.monotonic() > deadline:
                raise HeatApiError(
                    f"{stack} still {status} after {timeout:.0f} s: "
                    f"{doc.get('stack_status_reason')}")
            time.sleep(2)
