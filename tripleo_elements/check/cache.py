"""The result cache of ``build-image check``: JSON lists stored under a
content key, so a second run re-checks only what changed.

In: a key (a SHA-256 hex digest the caller makes from everything the
result depends on: file content, tool version, schema version...) and a
list of small dicts.  Out: the same list on a later :func:`get`, or None.
A cache that cannot be read or written is only slower: nothing here
raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The keys kept from each cached item.
_KEPT = ("line", "code", "level", "message")


def default_dir(environ: dict[str, str] | os._Environ[str]) -> Path:
    """``$XDG_CACHE_HOME/tripleo-image-elements/check``."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME", "/root"), ".cache")
    return Path(base) / "tripleo-image-elements" / "check"


def get(cache_dir: Path | None, key: str) -> list[dict[str, Any]] | None:
    """The list stored under ``key``, or None (no cache, or a miss)."""
    if cache_dir is None:
        return None
    try:
        return list(json.loads((cache_dir / key[:2] / key).read_text()))
    except (OSError, ValueError):
        return None


def put(cache_dir: Path | None, key: str,
        items: list[dict[str, Any]]) -> None:
    """Store ``items`` (their ``line``, ``code``, ``level`` and
    ``message``) under ``key``, atomically."""
    if cache_dir is None:
        return
    keep = [{k: item[k] for k in _KEPT if k in item} for item in items]
    target = cache_dir / key[:2] / key
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keep))
        os.replace(tmp, target)
    except OSError:
        pass    # a cache that cannot be written is only slower
