"""Throwaway element trees for the driver's unit tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

Spec = Mapping[str, object]


def make_tree(root: Path, elements: Mapping[str, Spec]) -> Path:
    """Create ``root/<name>/...`` for each element.

    A spec maps file names to content: ``deps``/``provides`` (lists) become
    ``element-deps``/``element-provides``; any other key is a relative file
    path whose value is its text (executable when it starts with ``#!``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, spec in elements.items():
        element = root / name
        element.mkdir(parents=True, exist_ok=True)
        for key, value in spec.items():
            if key in ("deps", "provides"):
                path = element / f"element-{'deps' if key == 'deps' else key}"
                assert isinstance(value, (list, tuple))
                path.write_text("".join(f"{v}\n" for v in value))
                continue
            path = element / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(value))
            if str(value).startswith("#!"):
                os.chmod(path, 0o755)
    return root
