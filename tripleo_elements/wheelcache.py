"""The os-collect-config wheel download cache, for ``build-image cache``.

The element's ``extra-data.d/50-os-collect-config-wheels`` fills it: one
directory per key (``<root>/<key>/`` with the wheels, ``SHA256SUMS``,
``inputs`` and ``fetched``, seconds since the epoch), a build holding
``<root>/.locks/<key>`` (flock) while it reads or refills one, and
``<root>/.tmp-<key>-*`` while a download is under way.  In: the
environment (``DIB_OCC_WHEEL_CACHE_DIR``, ``XDG_CACHE_HOME``).  Out: the
entries as :class:`buildcache.Entry` and pruning by age and size, with
entries in use left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

from tripleo_elements import buildcache, downloads

NAME = "os-collect-config wheels"


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$DIB_OCC_WHEEL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/tripleo-image-elements/wheels``."""
    named = environ.get("DIB_OCC_WHEEL_CACHE_DIR", "")
    if named:
        return Path(named)
    return buildcache.cache_dir(environ).parent / "wheels"


def _requirement(path: Path) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (path / "inputs").read_text().splitlines():
            if line.startswith("requirement "):
                return line.split(" ", 1)[1]
    return "?"


def _read(path: Path) -> buildcache.Entry | None:
    try:
        fetched = float((path / "fetched").read_text().strip())
        sums = (path / "SHA256SUMS").read_text()
    except (OSError, ValueError, UnicodeDecodeError):
        return None     # a partial or foreign directory
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return buildcache.Entry(
        key=path.name, path=path, name=NAME, output=_requirement(path),
        created=fetched, used=fetched, size=size, inputs={},
        files={line.split(" ", 2)[-1]: {} for line in sums.splitlines()
               if line.strip()})


def entries(root: Path) -> list[buildcache.Entry]:
    """Every complete entry, most recently fetched first."""
    found = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".") or not path.is_dir():
                continue
            entry = _read(path)
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda e: (-e.used, e.key))


def prune(root: Path, *, max_bytes: int | None = None,
          max_age: float | None = None,
          now: float | None = None) -> list[buildcache.Entry]:
    """Remove entries fetched longer than ``max_age`` seconds ago, then
    the oldest until the rest fit in ``max_bytes``; an entry a build
    holds stays, and so do downloads younger than an hour.  Returns what
    was removed."""
    now = time.time() if now is None else now
    removed = []
    known = entries(root)
    total = sum(e.size for e in known)
    for entry in reversed(known):       # oldest first
        old = max_age is not None and now - entry.used > max_age
        big = max_bytes is not None and total > max_bytes
        if not (old or big):
            continue
        with downloads.lock_file(root / ".locks" / entry.key,
                                 fcntl.LOCK_EX | fcntl.LOCK_NB) as got:
            if not got:
                continue
            trash = root / f".trash-{entry.key}-{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(entry.path, trash)
                shutil.rmtree(trash, ignore_errors=True)
        removed.append(entry)
        total -= entry.size
    if root.is_dir():
        for left in root.iterdir():
            if left.name.startswith((".tmp-", ".trash-")):
                with contextlib.suppress(OSError):
                    if now - left.stat().st_mtime > 3600:
                        shutil.rmtree(left, ignore_errors=True)
    return removed
