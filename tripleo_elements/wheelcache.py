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
from collections.abc import Mapping
from pathlib import Path

from tripleo_elements import buildcache

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
    return buildcache.entries(root, _read)


def prune(root: Path, *, max_bytes: int | None = None,
          max_age: float | None = None,
          now: float | None = None) -> list[buildcache.Entry]:
    """Remove entries fetched longer than ``max_age`` seconds ago, then
    the oldest until the rest fit in ``max_bytes``; an entry a build
    holds (``.locks/<key>``, the hook's flock) stays, and so do downloads
    younger than an hour.  Returns what was removed."""
    return buildcache.prune(root, max_bytes=max_bytes, max_age=max_age,
                            now=now, reader=_read, lock_suffix="")
