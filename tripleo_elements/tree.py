"""Element files, the checks made on them before a build, and the staged
ELEMENTS_PATH.

In: :class:`~tripleo_elements.element.Element` objects (a resolved set).
Out: the files of each element (:func:`element_files`, the one lister that
``check`` uses too), the problems diskimage-builder would hit mid-build
(:func:`check_collisions` raises them), warnings for what it does silently
(:func:`overwrites`, :func:`skipped_scripts`), and a staged directory
holding exactly the resolved elements (:func:`stage`).

diskimage-builder copies every element's top-level directories into one
hooks directory (``copy_hooks_not_overwrite`` in its ``common-functions``):
for each entry directly below such a directory (``install.d/10-foo``,
``environment.d/10-x.bash``, ``bin/tool``, ``static/etc``...) it aborts
the build when a *file* of that name was already copied by another
element, and copies otherwise -- so directories merge, and a file nested
deeper (``os-refresh-config/configure.d/20-x``, ``static/etc/motd``) is
silently overwritten by the element copied last.  Elements are copied in
bash associative-array order (:func:`dib_copy_order`), not in dependency
order.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from tripleo_elements import errors
from tripleo_elements.element import (ORC_PHASES, PHASES, RUN_PARTS_NAME,
                                      Element)

#: Directories never listed (caches, version control).
SKIP_DIRS = frozenset({"__pycache__", ".git", ".tox"})
#: Top-level directories diskimage-builder does not copy into the image's
#: hooks (``find ... -not -name tests -not -name __pycache__``).
NOT_COPIED = frozenset({"tests", "__pycache__"})


# ----------------------------------------------------------- the lister

@dataclasses.dataclass(frozen=True, order=True)
class ElementFile:
    """A non-directory entry below an element: a regular file or a
    symbolic link (to a file, or dangling).  ``rel`` is its path inside
    the element, '/'-separated; ``mode`` is its ``lstat`` mode."""

    rel: str
    path: Path
    mode: int

    @property
    def regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.rel.split("/"))


@dataclasses.dataclass(frozen=True, order=True)
class Unreadable:
    """A file or directory below an element that could not be read."""

    path: Path
    reason: str

    def message(self) -> str:
        return f"cannot be read: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Listing:
    """Everything :func:`element_files` found in one element."""

    files: tuple[ElementFile, ...]
    unreadable: tuple[Unreadable, ...]


#: Listings kept by :func:`listings_kept` (None: every call walks).
_KEPT: contextvars.ContextVar[dict[Path, Listing] | None] = \
    contextvars.ContextVar("tie_kept_listings", default=None)


@contextlib.contextmanager
def listings_kept() -> Iterator[None]:
    """Within the block (in this thread or task only), each element
    directory is walked once: later :func:`element_files` calls for the
    same directory get the first listing.  For one pass over a tree that
    does not change under it, e.g. one ``check`` run, whose rules and the
    run-parts, collision and overwrite scans they share with ``plan``
    would otherwise list every element four times."""
    token = _KEPT.set({})
    try:
        yield
    finally:
        _KEPT.reset(token)


def element_files(element: Element) -> Listing:
    """Every file and symlink below ``element`` (directories under
    :data:`SKIP_DIRS` and ``*.pyc`` left out), sorted by ``rel``; symlinked
    directories are not followed, so a link loop is one more entry, never
    an endless walk.  Directories that cannot be read are reported, not
    raised.  Inside :func:`listings_kept`, one walk per directory."""
    kept = _KEPT.get()
    if kept is None:
        return _walk(element)
    listing = kept.get(element.path)
    if listing is None:
        listing = kept[element.path] = _walk(element)
    return listing


def _walk(element: Element) -> Listing:
    base = os.fspath(element.path)
    files: list[ElementFile] = []
    unreadable: list[Unreadable] = []

    def failed(exc: OSError) -> None:
        unreadable.append(Unreadable(Path(exc.filename or base),
                                     exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(base, onerror=failed):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                             and not os.path.islink(
                                 os.path.join(dirpath, d)))
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
            except OSError as exc:
                failed(exc)
                continue
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            files.append(ElementFile(rel, Path(full), mode))
    return Listing(tuple(sorted(files)), tuple(sorted(unreadable)))


# ------------------------------------------------- copy order, collisions

_ASSOC_BUCKETS = 1024


def _bash_hash(name: str) -> int:
    """bash's ``hash_string`` (32-bit FNV-1) of ``name``."""
    value = 2166136261
    for byte in name.encode("utf-8", "surrogateescape"):
        value = (value * 16777619) & 0xFFFFFFFF
        value ^= byte
    return value


def _bucket(name: str) -> int:
    return _bash_hash(name) & (_ASSOC_BUCKETS - 1)


def dib_copy_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order diskimage-builder copies their files.

    ``generate_hooks`` walks ``${!image_elements[@]}``, a bash associative
    array: bash 5 lists its keys bucket by bucket (1,024 buckets chosen by
    an FNV-1 hash of the key).  Two names in one bucket come out in the
    order element-info printed them, which is a Python set's: that order
    is not decided here (see :func:`copy_winner`).
    """
    return sorted(names, key=lambda n: (_bucket(n), n))


def copy_winner(names: Sequence[str]) -> str | None:
    """The element whose copy of a nested file diskimage-builder keeps
    (the last one copied), or None when bash's order cannot tell."""
    order = dib_copy_order(names)
    if len(order) > 1 and _bucket(order[-1]) == _bucket(order[-2]):
        return None
    return order[-1] if order else None


@dataclasses.dataclass(frozen=True)
class Collision:
    """Several elements ship ``name`` directly below ``directory``:
    diskimage-builder aborts the build."""

    directory: str
    name: str
    paths: tuple[Path, ...]

    def message(self) -> str:
        files = ", ".join(str(p) for p in self.paths)
        return (f"{self.directory}/{self.name} is shipped by "
                f"{len(self.paths)} elements: {files}")


@dataclasses.dataclass(frozen=True)
class Overwrite:
    """Several elements ship the nested file ``rel``: diskimage-builder
    merges the directories and keeps the copy of ``winner``."""

    rel: str
    paths: tuple[Path, ...]
    owners: tuple[str, ...]
    winner: str | None
    identical: bool

    def message(self) -> str:
        files = " and ".join(str(p) for p in self.paths)
        if self.winner is None:
            outcome = ("which copy wins is not decided (their names "
                       "share a bucket of bash's associative array)")
        else:
            outcome = (f"the copy of {self.winner} wins (elements are "
                       f"copied in bash associative-array order, not "
                       f"dependency order)")
        same = " (identical content)" if self.identical else ""
        return (f"{self.rel} is shipped by {files}{same}: "
                f"diskimage-builder merges nested files silently and "
                f"{outcome}")


@dataclasses.dataclass(frozen=True)
class _Entry:
    owner: str
    path: Path
    is_dir: bool


def _copied_entries(element: Element, listing: Listing
                    ) -> Iterator[tuple[str, str, _Entry]]:
    """(top-level directory, entry name, entry) for what
    ``copy_hooks_not_overwrite`` tests, plus (``""``, rel, entry) for each
    nested file it merges."""
    seen_dirs: set[tuple[str, str]] = set()
    for item in listing.files:
        parts = item.parts
        if len(parts) < 2 or parts[0] in NOT_COPIED \
                or parts[1].startswith("."):
            continue
        if len(parts) == 2:
            # `[ -f ... ]` follows links: a link to a file collides too.
            if item.regular or os.path.isfile(item.path):
                yield parts[0], parts[1], _Entry(element.name, item.path,
                                                 False)
            continue
        if (parts[0], parts[1]) not in seen_dirs:
            seen_dirs.add((parts[0], parts[1]))
            yield parts[0], parts[1], _Entry(
                element.name, element.path / parts[0] / parts[1], True)
        if item.regular:
            yield "", item.rel, _Entry(element.name, item.path, False)


def _scan(elements: Iterable[Element]
          ) -> tuple[list[Collision], list[Overwrite]]:
    direct: dict[tuple[str, str], list[_Entry]] = {}
    nested: dict[str, list[_Entry]] = {}
    for element in sorted(elements, key=lambda e: (e.name, str(e.path))):
        for top, name, entry in _copied_entries(element,
                                                element_files(element)):
            if top:
                direct.setdefault((top, name), []).append(entry)
            else:
                nested.setdefault(name, []).append(entry)
    collisions = []
    for (top, name), entries in sorted(direct.items()):
        # Two directories merge; a file meeting anything aborts (or, when
        # a directory was copied first, makes cp fail).
        if len(entries) > 1 and not all(e.is_dir for e in entries):
            collisions.append(Collision(top, name,
                                        tuple(e.path for e in entries)))
    found = []
    for rel, entries in sorted(nested.items()):
        if len(entries) < 2:
            continue
        owners = tuple(e.owner for e in entries)
        found.append(Overwrite(
            rel, tuple(e.path for e in entries), owners,
            copy_winner(owners), _same_files([e.path for e in entries])))
    return collisions, found


def _same_files(paths: Sequence[Path]) -> bool:
    try:
        first = paths[0].read_bytes()
        return all(p.read_bytes() == first for p in paths[1:])
    except OSError:
        return False


def hook_collisions(elements: Iterable[Element]) -> list[Collision]:
    """Entries diskimage-builder aborts on: the same name directly below
    the same top-level directory of more than one of ``elements``, where
    one of them is a file."""
    return _scan(elements)[0]


def nested_overwrites(elements: Iterable[Element]) -> list[Overwrite]:
    """Nested files shipped by more than one of ``elements``: merged by
    diskimage-builder, one copy silently wins."""
    return _scan(elements)[1]


def overwrites(elements: Iterable[Element]) -> list[str]:
    """Warning messages for :func:`nested_overwrites`."""
    return [o.message() for o in nested_overwrites(elements)]


# ------------------------------------------------------- skipped scripts

@dataclasses.dataclass(frozen=True)
class SkippedScript:
    """A hook script in a phase directory that run-parts will not run."""

    path: Path
    reason: str

    def message(self) -> str:
        return f"{self.path}: run-parts will skip it ({self.reason})"


#: Directories whose files run-parts runs, relative to the element.
PHASE_DIRS = frozenset(PHASES) | frozenset(
    f"os-refresh-config/{phase}" for phase in ORC_PHASES)
_HOOK_PREFIX = re.compile(r"^[0-9]+-")


def hook_like(name: str, shebang: bool) -> bool:
    """Phase directories also carry data files the hooks install
    (``dhcp-all-interfaces.conf``, ``foo.udev``, an init script): a file
    there is taken for a hook when its name starts with ``NN-``, or when it
    starts with ``#!`` and its name is one run-parts runs."""
    if _HOOK_PREFIX.match(name):
        return True
    return shebang and RUN_PARTS_NAME.match(name) is not None


def looks_like_hook(path: Path) -> bool:
    """:func:`hook_like` for the file at ``path`` (read for its ``#!``)."""
    if _HOOK_PREFIX.match(path.name):
        return True
    try:
        with open(path, "rb") as handle:
            shebang = handle.read(2) == b"#!"
    except OSError:
        return False
    return hook_like(path.name, shebang)


def skipped_scripts(element: Element) -> list[SkippedScript]:
    """Hook scripts (:func:`looks_like_hook`) in the element's phase
    directories (diskimage-builder's and os-refresh-config's) that
    run-parts skips: a name not matching ``^[0-9A-Za-z_-]+$``, or not
    executable."""
    found = []
    for item in element_files(element).files:
        directory, _, name = item.rel.rpartition("/")
        if directory not in PHASE_DIRS or not looks_like_hook(item.path):
            continue
        if not RUN_PARTS_NAME.match(name):
            found.append(SkippedScript(
                item.path, "name must match ^[0-9A-Za-z_-]+$"))
        elif not os.access(item.path, os.X_OK):
            found.append(SkippedScript(item.path, "not executable"))
    return found


# ------------------------------------------------------- before a build

def validate_element_files(elements: Iterable[Element]) -> None:
    """Raise :class:`errors.ElementFormatError` for the first element
    file diskimage-builder would fail on mid-build: a
    ``package-installs.yaml``/``.json`` that does not parse or does not
    match the schema ``build-image check`` uses (TIE030/TIE060)."""
    from tripleo_elements.check import package_installs
    for element in sorted(elements, key=lambda e: e.name):
        for path in package_installs.files_of(element):
            problems = package_installs.problems(path)
            if problems:
                line, message = problems[0]
                more = (f" (and {len(problems) - 1} more)"
                        if len(problems) > 1 else "")
                where = f"{path}:{line}" if line else str(path)
                raise errors.ElementFormatError(
                    f"{where}: {message}{more}",
                    "diskimage-builder would fail mid-build; "
                    f"build-image check {element.path} lists every problem")


def check_collisions(elements: Iterable[Element]) -> None:
    """Refuse, before anything runs, what would make diskimage-builder
    fail mid-build: raise :class:`errors.HookCollision` for the first
    entry two elements ship where diskimage-builder aborts, and
    :class:`errors.ElementFormatError` for an invalid package-installs
    file (:func:`validate_element_files`)."""
    elements = list(elements)
    collisions = hook_collisions(elements)
    if collisions:
        first = collisions[0]
        more = (f" (and {len(collisions) - 1} more)"
                if len(collisions) > 1 else "")
        raise errors.HookCollision(
            first.message() + more,
            "diskimage-builder would abort mid-build; rename one script "
            "or drop one of the elements")
    validate_element_files(elements)


# ------------------------------------------------------------ staging

@dataclasses.dataclass(frozen=True)
class StagedTree:
    """A directory holding exactly the resolved elements (as symlinks)."""

    path: Path
    elements: Mapping[str, Path]


def stage(sources: Mapping[str, Path], parent: Path | None = None
          ) -> StagedTree:
    """Create a temporary ELEMENTS_PATH with one symlink per element.

    The caller removes it (it lives in the build's work directory).
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
