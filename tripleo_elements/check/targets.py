"""What ``build-image check`` looks at: the elements named by command-line
paths, and the resolved set of a ``-e`` request.

In: paths (an element directory or a directory of elements), or element
names with an :class:`~tripleo_elements.discovery.ElementIndex` and an
architecture.  Out: :class:`~tripleo_elements.element.Element` objects
sorted by name, and the :class:`~tripleo_elements.graph.Resolution` when
the request resolves.  Bad input raises :class:`errors.UsageError` or
:class:`errors.ElementNotFound`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from tripleo_elements import errors, graph
from tripleo_elements.check.model import listdir
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.element import PHASES, Element, load_element
from tripleo_elements.graph import Resolution
from tripleo_elements.tree import SKIP_DIRS

#: Files whose presence makes a directory an element.
ELEMENT_FILES: tuple[str, ...] = (
    "element-deps", "element-provides", "README.rst",
    "package-installs.yaml", "package-installs.json", "pkg-map", "svc-map",
)
#: Subdirectories that make a directory an element, unless a subdirectory
#: holds an element file: a directory of elements may well hold elements
#: *called* os-apply-config or static (and DIB has ones called pkg-map).
ELEMENT_DIRS: tuple[str, ...] = (
    *PHASES, "environment.d", "static", "os-apply-config",
    "os-refresh-config",
)


def _has_element_file(path: Path) -> bool:
    for name in listdir(path):
        if name in ELEMENT_FILES or name.startswith("source-repository-"):
            if (path / name).is_file():
                return True
    return False


def is_element_dir(path: Path) -> bool:
    """A directory is an element if it holds one of the files
    :data:`ELEMENT_FILES` or a ``source-repository-*`` file; or one of the
    directories :data:`ELEMENT_DIRS` while none of its subdirectories
    holds such a file (that would make it a directory of elements)."""
    if _has_element_file(path):
        return True
    subdirs = [path / n for n in listdir(path) if (path / n).is_dir()]
    return any(d.name in ELEMENT_DIRS for d in subdirs) and not any(
        _has_element_file(d) for d in subdirs)


def targets_from_paths(paths: Iterable[str | os.PathLike[str]]
                       ) -> list[Element]:
    """Elements named by command-line paths.

    A path is one element directory if :func:`is_element_dir` says so,
    otherwise a directory of elements (its subdirectories that are
    elements; hidden ones skipped).  Raises :class:`errors.UsageError`
    for a path that does not exist, is not a directory, or holds no
    element.
    """
    found: dict[Path, Element] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise errors.UsageError(
                f"{path}: no such file or directory",
                "pass an element directory or a directory of elements")
        if not path.is_dir():
            raise errors.UsageError(
                f"{path}: not a directory",
                "pass an element directory or a directory of elements")
        if is_element_dir(path):
            found[path] = load_element(path)
            continue
        children = [path / n for n in listdir(path)
                    if not n.startswith(".") and n not in SKIP_DIRS
                    and (path / n).is_dir() and is_element_dir(path / n)]
        if not children:
            raise errors.UsageError(
                f"{path}: neither an element nor a directory of elements",
                "an element holds element-deps, README.rst, "
                "package-installs.yaml or a phase directory such as "
                "install.d")
        for child in children:
            found[child] = load_element(child, path)
    return sorted(found.values(), key=lambda e: (e.name, str(e.path)))


def resolve_request(index: ElementIndex, requested: Sequence[str],
                    arch: str) -> tuple[Resolution | None, list[str]]:
    """The resolved set of ``requested`` for ``arch``, or -- when it does
    not resolve because of a missing dependency or operating system,
    which the checks report -- every element reachable from the
    request."""
    providers = index.providers()
    for name in requested:
        if name not in index and name not in providers:
            raise errors.ElementNotFound(
                f"element '{name}' not found",
                "searched: " + ", ".join(str(r) for r in index.roots))
    try:
        resolution = graph.resolve(index, requested, arch=arch)
    except (errors.ElementNotFound, errors.MissingOperatingSystem):
        members: list[str] = []
        seen = set()
        queue = deque(requested)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            if name in index:
                members.append(name)
                queue.extend(index[name].depends)
            else:
                queue.extend(providers.get(name, ())[:1])
        return None, sorted(members)
    return resolution, list(resolution.elements)
