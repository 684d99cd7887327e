"""The menu as text, Markdown or JSON (``build-image menu --format``).

In: the JSON form of a (project) menu (:func:`.policy.project_menu`).
Out: a string.  A secret variable's default is never shown.
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("text", "json", "markdown")
SECRET = "(secret)"


def _default(spec: dict[str, Any]) -> str:
    if "default" not in spec or spec["default"] is None:
        return "(none)"
    if spec.get("secret"):
        return SECRET
    return json.dumps(spec["default"])


def _constraints(spec: dict[str, Any]) -> str:
    parts = []
    if spec.get("values"):
        parts.append("one of " + ", ".join(spec["values"]))
    if "minimum" in spec or "maximum" in spec:
        parts.append(f"{spec.get('minimum', '')}..{spec.get('maximum', '')}")
    if spec.get("pattern"):
        parts.append(f"pattern {spec['pattern']}")
    if spec.get("secret"):
        parts.append("secret")
    if spec.get("metadata_key"):
        parts.append(f"metadata key {spec['metadata_key']}")
    return "; ".join(parts)


def _public(data: dict[str, Any]) -> dict[str, Any]:
    variables = {}
    for name, spec in data["variables"].items():
        spec = dict(spec)
        if spec.get("secret") and spec.get("default") is not None:
            spec["default"] = SECRET
        variables[name] = spec
    return {"features": data["features"], "variables": variables}


def _head(name: str, spec: dict[str, Any], width: int) -> str:
    """``name`` padded, then ``[state]`` (padded) when there is one."""
    if "state" not in spec:
        return f"  {name:<{width}}  "
    return f"  {name:<{width}}  {'[' + spec['state'] + ']':<13}  "


def to_text(data: dict[str, Any]) -> str:
    lines = []
    for kind in ("features", "variables"):
        entries = data[kind]
        lines.append(f"{kind} ({len(entries)}):")
        width = max((len(n) for n in entries), default=0)
        for name, spec in entries.items():
            head = _head(name, spec, width)
            if kind == "features":
                units = ", ".join(spec.get("units") or []) or "(none)"
                lines.append(head + spec["description"])
                lines.append(" " * len(head) + f"units: {units}; element: "
                             f"{spec.get('element', '?')}")
                continue
            lines.append(head + f"{spec['type']}, default "
                         f"{_default(spec)}: {spec['description']}")
            extra = _constraints(spec)
            if extra:
                lines.append(" " * len(head) + extra)
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(data: dict[str, Any]) -> str:
    stated = any("state" in s for s in data["features"].values()) or any(
        "state" in s for s in data["variables"].values())
    state_h = " State |" if stated else ""
    state_r = "---|" if stated else ""
    lines = ["## Features", "",
             f"| Feature |{state_h} Description | Units | Element |",
             f"|---|{state_r}---|---|---|"]
    for name, spec in data["features"].items():
        state = f" {spec.get('state', '')} |" if stated else ""
        lines.append(f"| `{name}` |{state} {_cell(spec['description'])} | "
                     f"{', '.join(spec.get('units') or [])} | "
                     f"{spec.get('element', '')} |")
    lines += ["", "## Variables", "",
              f"| Variable |{state_h} Type | Default | Description | "
              "Constraints |",
              f"|---|{state_r}---|---|---|---|"]
    for name, spec in data["variables"].items():
        state = f" {spec.get('state', '')} |" if stated else ""
        lines.append(f"| `{name}` |{state} {spec['type']} | "
                     f"{_cell(_default(spec))} | "
                     f"{_cell(spec['description'])} | "
                     f"{_cell(_constraints(spec))} |")
    return "\n".join(lines) + "\n"


def render(data: dict[str, Any], fmt: str) -> str:
    data = _public(data)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return to_markdown(data)
    return to_text(data)
