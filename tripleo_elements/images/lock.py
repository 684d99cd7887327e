"""The lock file (``FILE.lock``, JSON, beside the images file).

It records, per source, the ref asked for, the commit it resolved to
and a content hash of each element the file's images use from it.
``build-image lock`` writes it, ``--locked`` reads it (see
:func:`tripleo_elements.images.sources.resolve`), ``build-image update
[SOURCE]...`` moves the named sources (all without names) and keeps the
others.  URLs are stored redacted; the file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.images.sources import LockedSource

LOCK_VERSION = 1


def lock_path(images_file: Path) -> Path:
    return images_file.with_name(images_file.name + ".lock")


def read(images_file: Path) -> dict[str, Any]:
    path = lock_path(images_file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise errors.LockStale(
            f"{path} does not exist",
            f"run build-image lock -f {images_file} first") from None
    except (OSError, ValueError) as exc:
        raise errors.LockStale(f"{path}: unreadable lock file ({exc})",
                               "run build-image lock again") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION \
            or not isinstance(data.get("sources"), dict):
        raise errors.LockStale(f"{path}: not a version {LOCK_VERSION} lock "
                               "file", "run build-image lock again")
    return data


def locked_sources(data: Mapping[str, Any]) -> dict[str, LockedSource]:
    out = {}
    for name, entry in data["sources"].items():
        if isinstance(entry, dict) and isinstance(entry.get("commit"), str):
            out[name] = LockedSource(entry["commit"], entry.get("ref"))
    return out


def write(images_file: Path, sources: Mapping[str, dict[str, Any]]) -> Path:
    path = lock_path(images_file)
    data = {"version": LOCK_VERSION, "file": images_file.name,
            "sources": dict(sorted(sources.items()))}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path
