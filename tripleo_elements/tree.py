"""The staged ELEMENTS_PATH and the checks made on it before a build.

diskimage-builder merges the hook scripts of every element per phase; two
elements shipping the same file name in one phase make it abort mid-build,
and a script whose name run-parts rejects (or that is not executable) is
silently skipped.  Both are found here, before anything slow runs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from tripleo_elements import errors
from tripleo_elements.element import (ORC_PHASES, PHASES, RUN_PARTS_NAME,
                                      Element)


@dataclasses.dataclass(frozen=True)
class Collision:
    """Several elements ship ``name`` in the same ``phase`` directory."""

    phase: str
    name: str
    paths: tuple[Path, ...]

    def message(self) -> str:
        files = ", ".join(str(p) for p in self.paths)
        return (f"{self.phase}/{self.name} is shipped by "
                f"{len(self.paths)} elements: {files}")


@dataclasses.dataclass(frozen=True)
class SkippedScript:
    """A file in a phase directory that run-parts will not execute."""

    path: Path
    reason: str

    def message(self) -> str:
        return f"{self.path}: run-parts will skip it ({self.reason})"


def _phase_dirs(element: Element) -> Iterable[tuple[str, Path]]:
    for phase in PHASES:
        yield phase, element.path / phase
    for phase in ORC_PHASES:
        yield (f"os-refresh-config/{phase}",
               element.path / "os-refresh-config" / phase)


def hook_collisions(elements: Iterable[Element]) -> list[Collision]:
    """Same file name in the same phase (DIB phases and os-refresh-config
    phases) shipped by more than one of ``elements``."""
    seen: dict[tuple[str, str], list[Path]] = {}
    for element in sorted(elements, key=lambda e: e.name):
        for phase, directory in _phase_dirs(element):
            for name in _files(directory):
                seen.setdefault((phase, name), []).append(directory / name)
    return [Collision(phase, name, tuple(paths))
            for (phase, name), paths in sorted(seen.items())
            if len(paths) > 1]


def skipped_scripts(element: Element) -> list[SkippedScript]:
    """Files in the element's phase directories that run-parts skips."""
    found = []
    for _phase, directory in _phase_dirs(element):
        for name in _files(directory):
            path = directory / name
            if not RUN_PARTS_NAME.match(name):
                found.append(SkippedScript(
                    path, "name must match ^[0-9A-Za-z_-]+$"))
            elif not os.access(path, os.X_OK):
                found.append(SkippedScript(path, "not executable"))
    return found


def _files(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for e in it if not e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def check_collisions(elements: Iterable[Element]) -> None:
    """Raise :class:`errors.HookCollision` for the first collision."""
    collisions = hook_collisions(elements)
    if collisions:
        first = collisions[0]
        more = (f" (and {len(collisions) - 1} more)"
                if len(collisions) > 1 else "")
        raise errors.HookCollision(
            first.message() + more,
            "diskimage-builder would abort mid-build; rename one script "
            "or drop one of the elements")


@dataclasses.dataclass(frozen=True)
class StagedTree:
    """A directory holding exactly the resolved elements (as symlinks)."""

    path: Path
    elements: Mapping[str, Path]


def stage(sources: Mapping[str, Path], parent: Path | None = None
          ) -> StagedTree:
    """Create a temporary ELEMENTS_PATH with one symlink per element.

    The caller removes it with :func:`remove` (or uses :func:`staged`).
    """
    path = Path(tempfile.mkdtemp(prefix="tie-elements-", dir=parent))
    try:
        for name, source in sorted(sources.items()):
            (path / name).symlink_to(Path(source).resolve(),
                                     target_is_directory=True)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return StagedTree(path=path, elements=dict(sorted(sources.items())))


def remove(tree: StagedTree) -> None:
    shutil.rmtree(tree.path, ignore_errors=True)
