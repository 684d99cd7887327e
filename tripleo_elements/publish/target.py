"""Turn ``--to TARGET`` into a provider name and its settings.

TARGET is either a URL (``s3://bucket/prefix``, ``swift://container/prefix``,
``glance://cloud``, ``dir:///path``; query parameters become settings, e.g.
``?endpoint_url=http://127.0.0.1:8333&path_style=true``) or the name of an
entry of the publishers file: YAML, ``publishers: {NAME: {provider: ..,
SETTING: ..}}``, found at ``--publishers FILE``, else ``$TIE_PUBLISHERS``,
else ``$XDG_CONFIG_HOME/tripleo-image-elements/publishers.yaml`` (default
``~/.config/...``).  The same mapping is what an image definition's
``publish:`` list will hold, so both call :func:`from_mapping`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from tripleo_elements.publish.errors import PublishSettingsError

SCHEMES = ("dir", "glance", "s3", "swift")
_BOOL = {"true": True, "yes": True, "1": True,
         "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class Target:
    label: str
    provider: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def publishers_file(explicit: str | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if env.get("TIE_PUBLISHERS"):
        return Path(env["TIE_PUBLISHERS"])
    config = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME", "/root"), ".config")
    return Path(config) / "tripleo-image-elements" / "publishers.yaml"


def _value(text: str) -> Any:
    if text.lower() in _BOOL:
        return _BOOL[text.lower()]
    if text.isdigit():
        return int(text)
    return text


def from_url(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme
    settings: dict[str, Any] = {}
    path = parts.path.lstrip("/")
    if scheme == "dir":
        if parts.netloc:
            raise PublishSettingsError(
                f"{url}: dir URLs have no host",
                "write dir:///absolute/path (three slashes)")
        settings["path"] = parts.path
    elif scheme in ("s3", "swift"):
        key = "bucket" if scheme == "s3" else "container"
        if not parts.netloc:
            raise PublishSettingsError(f"{url}: no {key} named",
                                       f"write {scheme}://{key}/prefix")
        settings[key] = parts.netloc
        if path:
            settings["prefix"] = path
    elif scheme == "glance":
        if parts.netloc:
            settings["cloud"] = parts.netloc
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        settings[key] = _value(value)
    return Target(url, scheme, settings)


def from_mapping(label: str, entry: Any) -> Target:
    """A ``{provider: NAME, SETTING: VALUE...}`` mapping (publishers file
    entry, or later an item of an image definition's ``publish:`` list)."""
    if not isinstance(entry, Mapping) or "provider" not in entry:
        raise PublishSettingsError(
            f"{label}: a publisher is a mapping with a 'provider' key",
            f"one of {', '.join(SCHEMES)} or an installed provider")
    settings = {k: v for k, v in entry.items() if k != "provider"}
    return Target(label, str(entry["provider"]), settings)


def resolve(text: str, publishers: Path) -> Target:
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in SCHEMES:
            raise PublishSettingsError(
                f"{text}: unknown URL scheme '{scheme}'",
                f"use one of {', '.join(s + '://' for s in SCHEMES)} or "
                f"a name from {publishers}")
        return from_url(text)
    try:
        data = yaml.safe_load(publishers.read_text()) or {}
    except FileNotFoundError:
        raise PublishSettingsError(
            f"'{text}' is not a URL and {publishers} does not exist",
            "give a URL (s3://bucket/prefix) or create the publishers "
            "file (README 'Publishing images')") from None
    except yaml.YAMLError as exc:
        raise PublishSettingsError(
            f"{publishers}: not valid YAML: "
            f"{str(exc).splitlines()[0]}", "fix the file") from None
    entries = data.get("publishers") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise PublishSettingsError(
            f"{publishers}: no 'publishers:' mapping",
            "publishers: {NAME: {provider: s3, bucket: ...}}")
    if text not in entries:
        raise PublishSettingsError(
            f"no publisher '{text}' in {publishers}",
            f"known: {', '.join(sorted(entries)) or 'none'}")
    return from_mapping(f"{publishers}:{text}", entries[text])
