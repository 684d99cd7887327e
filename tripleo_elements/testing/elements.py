"""Find this project's elements and build throwaway element trees.

``elements_root()`` is the ``elements/`` directory of a source checkout,
or the one installed with the package (``share/tripleo-image-elements``);
``element_path()`` finds an element in your directories
(``ELEMENTS_PATH``) before those.
``build_element_tree()`` writes a small tree of elements for a test (the
one tree builder of the project's own tests); ``element_files()`` spells
the usual files of one element.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "FileSpec", "Link", "build_element_tree", "element_files",
    "element_path", "elements_root", "list_elements",
]


@dataclasses.dataclass(frozen=True)
class Link:
    """A symbolic link to ``target`` (written as given: relative targets
    are relative to the link's directory; dangling and looping links are
    allowed)."""

    target: str


FileSpec = str | bytes | tuple[str | bytes, int] | Link
"""A file of a test element: its content, its content and mode, or a
:class:`Link`."""


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


def element_path(name: str,
                 elements_path: str | Iterable[Path | str] | None = None
                 ) -> Path:
    """The directory of element ``name``.

    Searched in ``elements_path`` (a list of directories, or a
    colon-separated string like ``ELEMENTS_PATH``; when ``None``, the
    ``ELEMENTS_PATH`` environment variable), then in this project's
    elements; the first directory holding ``name`` wins, as in
    diskimage-builder.  Raises ``FileNotFoundError`` naming every
    directory searched.
    """
    if elements_path is None:
        elements_path = os.environ.get("ELEMENTS_PATH", "")
    if isinstance(elements_path, str):
        dirs = [Path(d) for d in elements_path.split(":") if d]
    else:
        dirs = [Path(d) for d in elements_path]
    try:
        dirs.append(elements_root())
    except FileNotFoundError:
        pass
    for directory in dirs:
        if (directory / name).is_dir():
            return directory / name
    raise FileNotFoundError(
        f"element {name!r} not found in "
        f"{', '.join(map(str, dirs)) or 'no directory'} (pass "
        "elements_path=[your elements directory] or set ELEMENTS_PATH)")


def list_elements(root: Path | None = None) -> list[str]:
    """Sorted names of the element directories under ``root``."""
    base = root if root is not None else elements_root()
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")))


def element_files(*, deps: Iterable[str] | None = None,
                  provides: Iterable[str] | None = None,
                  files: Mapping[str, FileSpec] | None = None
                  ) -> dict[str, FileSpec]:
    """The files of one element for :func:`build_element_tree`:
    ``element-deps`` and ``element-provides`` (one name a line; left out
    when ``None``) plus ``files``."""
    out: dict[str, FileSpec] = {}
    if deps is not None:
        out["element-deps"] = "".join(f"{name}\n" for name in deps)
    if provides is not None:
        out["element-provides"] = "".join(f"{name}\n" for name in provides)
    out.update(files or {})
    return out


def build_element_tree(
        root: Path,
        elements: Mapping[str, Mapping[str, FileSpec] | Link]) -> Path:
    """Write ``elements`` under ``root`` and return ``root``.

    ``elements`` maps an element name to its files (a relative path to a
    :data:`FileSpec`), or to a :class:`Link` to make the element directory
    itself a symbolic link.  Files whose path is in a phase directory
    (``*.d/``) default to mode 0755, others to 0644.  Example::

        build_element_tree(tmp, {"hello": {
            "element-deps": "os-refresh-config\\n",
            "install.d/50-hello": "#!/bin/bash\\necho hello\\n",
        }, "hi": Link("hello")})
    """
    root.mkdir(parents=True, exist_ok=True)
    for name, files in elements.items():
        element = root / name
        if isinstance(files, Link):
            os.symlink(files.target, element)
            continue
        element.mkdir(parents=True, exist_ok=True)
        for relative, spec in files.items():
            path = element / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(spec, Link):
                os.symlink(spec.target, path)
                continue
            if isinstance(spec, tuple):
                content, mode = spec
            else:
                content = spec
                mode = 0o755 if any(part.endswith(".d") for part in
                                    Path(relative).parts[:-1]) else 0o644
            data = content.encode() if isinstance(content, str) else content
            path.write_bytes(data)
            os.chmod(path, mode)
    return root
