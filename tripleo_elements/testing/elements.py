"""Find this project's elements and build throwaway element trees.

``elements_root()`` is the ``elements/`` directory of a source checkout,
or the one installed with the package (``share/tripleo-image-elements``).
``build_element_tree()`` writes a small tree of elements for a test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

FileSpec = str | bytes | tuple[str | bytes, int]
"""A file of a test element: its content, or its content and mode."""


def elements_root() -> Path:
    """The directory holding this project's elements.

    Raises ``FileNotFoundError`` naming the places looked at.
    """
    candidates = [
        Path(__file__).resolve().parents[2] / "elements",
        Path(sys.prefix) / "share" / "tripleo-image-elements" / "elements",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "no elements directory in " + ", ".join(map(str, candidates)))


def element_path(name: str) -> Path:
    """The directory of element ``name``; ``FileNotFoundError`` if absent."""
    path = elements_root() / name
    if not path.is_dir():
        raise FileNotFoundError(f"element {name!r} not found in "
                                f"{elements_root()}")
    return path


def list_elements(root: Path | None = None) -> list[str]:
    """Sorted names of the element directories under ``root``."""
    base = root if root is not None else elements_root()
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")))


def build_element_tree(
        root: Path,
        elements: Mapping[str, Mapping[str, FileSpec]]) -> Path:
    """Write ``elements`` under ``root`` and return ``root``.

    ``elements`` maps an element name to its files: a relative path to a
    :data:`FileSpec`.  Files whose path is in a phase directory
    (``*.d/``) default to mode 0755, others to 0644.  Example::

        build_element_tree(tmp, {"hello": {
            "element-deps": "os-refresh-config\\n",
            "install.d/50-hello": "#!/bin/bash\\necho hello\\n",
        }})
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, files in elements.items():
        element = root / name
        element.mkdir(parents=True, exist_ok=True)
        for relative, spec in files.items():
            if isinstance(spec, tuple):
                content, mode = spec
            else:
                content = spec
                mode = 0o755 if any(part.endswith(".d") for part in
                                    Path(relative).parts[:-1]) else 0o644
            path = element / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            path.write_bytes(data)
            os.chmod(path, mode)
    return root
