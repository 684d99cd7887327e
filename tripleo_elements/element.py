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

    ``name`` is the basename of the directory's real path
    (diskimage-builder's rule, see :func:`element_name`);
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


def list_files(directory: str | os.PathLike[str], *,
               include_dirs: bool = False) -> tuple[str, ...]:
    """Sorted names of the entries of ``directory`` that are not
    directories (all entries with ``include_dirs``).

    This is the one lister of element files: phase directories,
    ``environment.d``, ``bin``...  A missing directory (or a path that is
    not one) has no entries; an unreadable one, or a symlink loop, raises
    :class:`errors.UnreadablePath` / :class:`errors.SymlinkLoop`.  An
    entry whose type cannot be told (a link looping on itself) counts as
    a file: it is a name run-parts or a copy would meet.
    """
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as exc:
        raise errors.from_os_error(directory, exc, "directory") from None
    if include_dirs:
        return tuple(sorted(e.name for e in entries))
    return tuple(sorted(e.name for e in entries if not _is_dir(e)))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


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
    except OSError as exc:
        raise errors.from_os_error(path, exc, os.path.basename(path)) \
            from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.ElementFormatError(
            f"{path}: not UTF-8 text ({exc.reason})",
            "element-deps and element-provides hold one element name a line")
    return tuple(sorted({line.strip() for line in text.splitlines()
                         if line.strip()}))


def element_name(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(name, location)`` of the element directory at ``path``.

    diskimage-builder names an element by the basename of its *real*
    path: a link ``web -> ../common/nginx`` is the element ``nginx``,
    found at ``../common/nginx``.  Paths that are not links keep their
    spelling.
    """
    spath = os.fspath(path)
    if os.path.islink(spath):
        spath = os.path.realpath(spath)
    name = os.path.basename(spath.rstrip(os.sep))
    if name in ("", ".", ".."):
        name = os.path.basename(os.path.abspath(spath)) or spath
    return name, spath


def load_element(path: str | os.PathLike[str],
                 root: Path | None = None) -> Element:
    """Parse the element directory at ``path`` (named as
    :func:`element_name` says)."""
    name, spath = element_name(path)
    return Element(
        name=name,
        location=spath,
        root=root if root is not None else Path(spath).parent,
        provides=read_name_list(os.path.join(spath, "element-provides")),
    )
