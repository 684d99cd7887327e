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
from collections.abc import Iterable, Sequence
from pathlib import Path

from tripleo_elements import discovery, errors, graph
from tripleo_elements.check.model import listdir
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.element import Element, load_element
from tripleo_elements.graph import Resolution
from tripleo_elements.tree import SKIP_DIRS


def is_element_dir(path: Path) -> bool:
    """One element rather than a directory of elements: the rule the
    resolver uses too (:func:`discovery.is_element_dir`)."""
    return discovery.is_element_dir(path)


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
        # A virtual name is followed to its first provider only.
        def successors(name: str) -> Sequence[str]:
            if name in index:
                return index[name].depends
            return providers.get(name, ())[:1]

        members = [n for n in graph.walk(requested, successors)
                   if n in index]
        return None, sorted(members)
    return resolution, list(resolution.elements)
