"""Find elements on an ordered ELEMENTS_PATH.

Earlier entries override later ones, as in diskimage-builder; every
override is recorded so ``build-image list`` and ``plan`` can show it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tripleo_elements import errors
from tripleo_elements.element import (PHASES, Element, element_name,
                                      list_files, load_element)


@dataclasses.dataclass(frozen=True)
class Override:
    """``name`` found in ``winner`` shadows the copies in ``shadowed``."""

    name: str
    winner: Path
    shadowed: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class ElementIndex:
    """Every element visible on an ELEMENTS_PATH (earliest entry wins)."""

    roots: tuple[Path, ...]
    elements: Mapping[str, Element]
    overrides: Mapping[str, Override]

    def __contains__(self, name: object) -> bool:
        return name in self.elements

    def __getitem__(self, name: str) -> Element:
        return self.elements[name]

    def names(self) -> list[str]:
        return sorted(self.elements)

    def providers(self) -> dict[str, tuple[str, ...]]:
        """Virtual name -> sorted names of the elements providing it."""
        out: dict[str, set[str]] = {}
        for element in self.elements.values():
            for name in element.provides:
                out.setdefault(name, set()).add(element.name)
        return {k: tuple(sorted(v)) for k, v in sorted(out.items())}


def our_elements_dir() -> Path:
    """The ``elements/`` directory shipped with this project."""
    source = Path(__file__).resolve().parent.parent / "elements"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "tripleo-image-elements" / "elements"


def dib_elements_dir() -> Path:
    """diskimage-builder's own element directory."""
    import diskimage_builder
    return Path(diskimage_builder.__file__).resolve().parent / "elements"


def default_roots(user_paths: Sequence[str | os.PathLike[str]] = (),
                  environ: Mapping[str, str] | None = None) -> list[Path]:
    """The ELEMENTS_PATH in search order.

    The user's ``--elements-path`` entries first, then ``$ELEMENTS_PATH``,
    then this project's elements, then diskimage-builder's.
    """
    roots: list[Path] = [Path(p) for p in user_paths]
    env_path = (environ or {}).get("ELEMENTS_PATH", "")
    roots += [Path(p) for p in env_path.split(":") if p]
    # Built-in directories that are absent (an install without our
    # elements) are left out; a directory the user named must exist.
    roots += [d for d in (our_elements_dir(), dib_elements_dir())
              if d.is_dir()]
    seen: set[Path] = set()
    unique = []
    for root in roots:
        key = Path(os.path.abspath(root))
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


#: Files that only an element holds (diskimage-builder reads them, or
#: they document one).
ELEMENT_FILES: tuple[str, ...] = (
    "element-deps", "element-provides", "package-installs.yaml",
    "package-installs.json", "pkg-map", "svc-map",
)
#: Directories diskimage-builder copies out of an element as hook
#: directories, or that our config elements ship.
ELEMENT_SUBDIRS: tuple[str, ...] = (
    *PHASES, "environment.d", "static", "bin", "os-apply-config",
    "os-refresh-config",
)


def _marks_an_element(path: str, entries: Iterable[str]) -> bool:
    for name in entries:
        if (name in ELEMENT_FILES or name.startswith("source-repository-")
                or name.upper().startswith("README")):
            if os.path.isfile(os.path.join(path, name)):
                return True
    return False


def is_element_dir(path: str | os.PathLike[str]) -> bool:
    """Does ``path`` look like one element rather than a directory of
    elements?

    diskimage-builder has no marker file: every directory of an
    ELEMENTS_PATH entry is an element.  For a path given on its own
    (``build-image check PATH``) this tells the two apart: an element
    holds one of :data:`ELEMENT_FILES`, a ``source-repository-*`` file or
    a README, or one of :data:`ELEMENT_SUBDIRS` (``bin/`` included) while
    none of its subdirectories holds such a file (that makes it a
    directory of elements: elements may well be *called* ``static`` or
    ``bin``).  Raises :class:`errors.UnreadablePath` if it cannot be read.
    """
    spath = os.fspath(path)
    entries = list_files(spath, include_dirs=True)
    if _marks_an_element(spath, entries):
        return True
    subdirs = [n for n in entries if os.path.isdir(os.path.join(spath, n))]
    return any(n in ELEMENT_SUBDIRS for n in subdirs) and not any(
        _marks_an_element(os.path.join(spath, n),
                          list_files(os.path.join(spath, n),
                                     include_dirs=True))
        for n in subdirs)


def element_dirs(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(name, location)`` of every element in one ELEMENTS_PATH entry.

    diskimage-builder's rule: every directory in ``root`` (a link to a
    directory included; what it is linked from does not matter) is an
    element, named by the basename of its real path.  Dangling links and
    plain files are not elements.  Sorted by name.

    Raises :class:`errors.UnreadablePath` when ``root`` or an entry cannot
    be read, :class:`errors.SymlinkLoop` for a link loop among the entries
    (diskimage-builder silently skips it) and
    :class:`errors.ElementNameClash` when two entries resolve to
    different directories of the same name (diskimage-builder would keep
    whichever the file system lists last).
    """
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise errors.from_os_error(root, exc, "ELEMENTS_PATH entry") \
            from None
    found: dict[str, tuple[str, str]] = {}
    for entry in entries:
        try:
            if not entry.is_dir():
                continue
        except OSError as exc:
            raise errors.from_os_error(entry.path, exc, "element directory") \
                from None
        if entry.is_symlink():
            name, location = element_name(entry.path)
        else:
            name, location = entry.name, entry.path
        if name in found and found[name][1] != location:
            first = found[name][0]
            raise errors.ElementNameClash(
                f"{root}: '{first}' and '{entry.name}' are both the element "
                f"'{name}' (diskimage-builder names an element by its real "
                f"directory) but are different directories",
                "keep one of them, or put them in different "
                "ELEMENTS_PATH entries")
        found.setdefault(name, (entry.name, location))
    return sorted((name, location) for name, (_, location) in found.items())


def discover(roots: Iterable[str | os.PathLike[str]]) -> ElementIndex:
    """Index every element directory below the given roots (see
    :func:`element_dirs` for what an element is)."""
    absolute = tuple(Path(os.path.abspath(r)) for r in roots)
    found: dict[str, list[Element]] = {}
    for root in absolute:
        if not root.is_dir():
            raise errors.ElementsPathError(
                f"ELEMENTS_PATH entry '{root}' is not a directory",
                "check --elements-path and $ELEMENTS_PATH")
        for name, path in element_dirs(root):
            found.setdefault(name, []).append(load_element(path, root))
    elements = {name: copies[0] for name, copies in sorted(found.items())}
    overrides = {
        name: Override(name, copies[0].path,
                       tuple(c.path for c in copies[1:]))
        for name, copies in sorted(found.items()) if len(copies) > 1
    }
    return ElementIndex(roots=absolute, elements=elements,
                        overrides=overrides)
