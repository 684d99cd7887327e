"""One diskimage-builder element: a directory parsed into plain data."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

from tripleo_elements import errors

#: Hook phases, in the order diskimage-builder runs them.
PHASES: tuple[str, ...] = (
    "root.d", "extra-data.d", "pre-install.d", "install.d",
    "post-install.d", "post-root.d", "block-device.d", "pre-finalise.d",
    "finalise.d", "cleanup.d",
)

#: os-refresh-config phase directories shipped inside an element.
ORC_PHASES: tuple[str, ...] = (
    "pre-configure.d", "configure.d", "post-configure.d", "migration.d",
)

#: File names dib-run-parts (and os-refresh-config) will execute.
RUN_PARTS_NAME = re.compile(r"^[0-9A-Za-z_-]+$")

#: Name of the virtual element every image needs exactly one provider of.
OPERATING_SYSTEM = "operating-system"


@dataclasses.dataclass(frozen=True)
class Element:
    """An element directory.

    ``name`` is the directory's basename (diskimage-builder's rule);
    ``depends`` and ``provides`` are the non-blank lines of
    ``element-deps`` and ``element-provides``, sorted and de-duplicated.
    ``root`` is the ELEMENTS_PATH entry the element was found in.
    """

    name: str
    location: str
    root: Path
    provides: tuple[str, ...] = ()

    @functools.cached_property
    def depends(self) -> tuple[str, ...]:
        """``element-deps``, read on first use: resolving a request reads
        it only for the elements the request reaches."""
        return read_name_list(os.path.join(self.location, "element-deps"))

    @functools.cached_property
    def path(self) -> Path:
        """The element directory (made on first use: discovery indexes
        thousands of elements and most are never looked at)."""
        return Path(self.location)

    def hooks(self, phase: str) -> tuple[str, ...]:
        """File names in one phase directory (``install.d``...), sorted."""
        return _list_files(self.path / phase)

    def orc_hooks(self, phase: str) -> tuple[str, ...]:
        """File names in ``os-refresh-config/<phase>``, sorted."""
        return _list_files(self.path / "os-refresh-config" / phase)


def _list_files(directory: Path) -> tuple[str, ...]:
    try:
        with os.scandir(directory) as it:
            return tuple(sorted(e.name for e in it if not e.is_dir()))
    except (FileNotFoundError, NotADirectoryError):
        return ()


def read_name_list(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Read an ``element-deps``/``element-provides`` file.

    Like diskimage-builder: one name a line, blank lines ignored, no
    comment syntax (a ``# x`` line is an element called ``# x``).  A
    missing file is an empty list.
    """
    # Plain strings and os-level I/O: discovery reads two files for each
    # of thousands of elements, and pathlib's overhead dominated.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ElementFormatError(
            f"{path}: not UTF-8 text ({exc.reason})",
            "element-deps and element-provides hold one element name a line")
    return tuple(sorted({line.strip() for line in text.splitlines()
                         if line.strip()}))


def load_element(path: str | os.PathLike[str],
                 root: Path | None = None) -> Element:
    """Parse the element directory at ``path``."""
    spath = os.fspath(path)
    return Element(
        name=os.path.basename(spath),
        location=spath,
        root=root if root is not None else Path(spath).parent,
        provides=read_name_list(os.path.join(spath, "element-provides")),
    )
