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
from tripleo_elements.element import Element, load_element


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


def discover(roots: Iterable[str | os.PathLike[str]]) -> ElementIndex:
    """Index every element directory below the given roots."""
    roots = tuple(Path(os.path.abspath(r)) for r in roots)
    found: dict[str, list[Element]] = {}
    for root in roots:
        if not root.is_dir():
            raise errors.ElementsPathError(
                f"ELEMENTS_PATH entry '{root}' is not a directory",
                "check --elements-path and $ELEMENTS_PATH")
        with os.scandir(root) as it:
            entries = sorted((e.name, e.path) for e in it if e.is_dir())
        for name, path in entries:
            found.setdefault(name, []).append(load_element(path, root))
    elements = {name: copies[0] for name, copies in sorted(found.items())}
    overrides = {
        name: Override(name, copies[0].path,
                       tuple(c.path for c in copies[1:]))
        for name, copies in sorted(found.items()) if len(copies) > 1
    }
    return ElementIndex(roots=roots, elements=elements, overrides=overrides)
