"""Reading the data files rules look at: YAML, and finding the line a key
or entry sits on.

In: file text or a path.  Out: parsed data (``yaml_load`` raises what the
YAML parser raises), the 1-based line of a problem (0 when unknown).
Nothing here raises on an unreadable file: the line is then 0.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


@functools.cache
def _yaml() -> Any:
    import yaml
    return yaml


def yaml_load(text: str) -> Any:
    """Parse YAML the fast way (libyaml when present), safely."""
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def yaml_error_line(exc: Exception) -> int:
    """The 1-based line a YAML parse error points at, or 0."""
    mark = getattr(exc, "problem_mark", None) or getattr(
        exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 0


def first_line(exc: Exception) -> str:
    """The first line of an exception's text (its type when empty)."""
    problem = getattr(exc, "problem", None)
    if problem:
        return str(problem)
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` that is ``needle`` (stripped), or 0."""
    for number, line in enumerate(_lines(path)):
        if line.strip() == needle:
            return number + 1
    return 0


def line_of_key(path: Path, key: str) -> int:
    """The 1-based line where the mapping key ``key`` is written, or 0."""
    if not key:
        return 0
    for number, line in enumerate(_lines(path)):
        stripped = line.strip().strip('"')
        if stripped.startswith(key) and stripped[len(key):].lstrip(
                '"').startswith(":"):
            return number + 1
    return 0
