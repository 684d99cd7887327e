"""The download cache shared by builds, made safe for builds at once.

diskimage-builder bind-mounts ``DIB_IMAGE_CACHE`` (apt archives, pip,
git mirrors, debootstrap tarballs) into every build's chroot, so two
builds on one host share apt's lock file and the second one fails.  Each
build here gets a private cache directory *inside* the shared one (same
filesystem), seeded with hard links to the shared files (no copying, no
lock files or partial downloads, nor a file the build would rewrite in
place); after the build, files it added or
replaced are linked back into the shared cache under an exclusive lock,
each with an atomic rename.  Files the build deleted stay shared.  A
private cache left by a killed build is found by its unheld lock and
removed on the next run.

Shared cache path in; a private directory (a context manager) out.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

#: Names of the private caches (and our locks) inside the shared cache.
PRIVATE_PREFIX = ".tie-build-"
OWNER_FILE = ".tie-owner"
MERGE_LOCK = ".tie-merge.lock"
LOCKS_DIR = ".tie-locks"
#: Never shared: apt's lock file and its unfinished downloads.
SKIP_FILES = frozenset({"lock", OWNER_FILE})
SKIP_DIRS = frozenset({"partial"})
#: Seconds before an unlocked private cache counts as left behind.
STALE_AGE = 60.0


def _own(name: str) -> bool:
    return name.startswith(".tie-")


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        # protected_hardlinks (a file of another user), or a limit.
        shutil.copy2(src, dst)


def rewritten_in_place(environ: Mapping[str, str]) -> frozenset[str]:
    """Top-level cache files this build will rewrite in place (through
    the hard link, i.e. in the shared cache) without reading them: they
    are left out of the private copy.  The debootstrap element writes
    its tarball with ``tar -zcf`` when ``DIB_DEBOOTSTRAP_CACHE`` is set
    and the cached one is not used."""
    uses_cache = environ.get("DIB_OFFLINE") or \
        environ.get("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE")
    if environ.get("DIB_DEBOOTSTRAP_CACHE", "0") not in ("", "0") and \
            not uses_cache:
        return frozenset({"debootstrap-*.tar.gz"})
    return frozenset()


def seed(shared: Path, private: Path,
         leave_out: Iterable[str] = ()) -> int:
    """Fill ``private`` with hard links to every shared file (but the
    top-level ones matching a ``leave_out`` pattern); returns how many
    files were linked."""
    leave_out = tuple(leave_out)
    count = 0
    for dirpath, dirnames, filenames in os.walk(shared):
        rel = os.path.relpath(dirpath, shared)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if not _own(d)]
            filenames = [f for f in filenames if not _own(f) and not any(
                fnmatch.fnmatch(f, p) for p in leave_out)]
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        target_dir = private / rel
        for name in dirnames:
            src = os.path.join(dirpath, name)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target_dir / name)
            else:
                (target_dir / name).mkdir(exist_ok=True)
                shutil.copymode(src, target_dir / name)
        dirnames[:] = [d for d in dirnames
                       if not os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames):
            if name in SKIP_FILES:
                continue
            _link_or_copy(os.path.join(dirpath, name), str(target_dir / name))
            count += 1
    return count


def merge(private: Path, shared: Path) -> int:
    """Link files ``private`` added or replaced into ``shared`` (each an
    atomic rename); returns how many.  Call under the merge lock."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(private):
        rel = os.path.relpath(dirpath, private)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        target_dir = shared / rel
        if os.path.islink(target_dir) or (target_dir.exists()
                                          and not target_dir.is_dir()):
            dirnames[:] = []
            continue
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if name in SKIP_FILES:
                continue
            src, dst = os.path.join(dirpath, name), target_dir / name
            if os.path.lexists(dst) and not os.path.islink(src) and \
                    not dst.is_symlink() and os.path.samefile(src, dst):
                continue
            if dst.is_dir() and not dst.is_symlink():
                continue
            tmp = target_dir / f".{name}.tie-merge"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            _link_or_copy(src, str(tmp))
            os.replace(tmp, dst)
            count += 1
    return count


def remove_stale(shared: Path, min_age: float = STALE_AGE) -> list[Path]:
    """Remove private caches whose build is gone (lock not held).  Young
    ones are left: their build may not have taken its lock yet."""
    removed = []
    now = time.time()
    for path in sorted(shared.glob(PRIVATE_PREFIX + "*")):
        owner = path / OWNER_FILE
        try:
            if now - path.stat().st_mtime < min_age:
                continue
        except FileNotFoundError:
            continue
        if not owner.is_file():
            continue
        with open(owner, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def private_cache(shared: Path, environ: Mapping[str, str] | None = None
                  ) -> Iterator[Path]:
    """A private DIB_IMAGE_CACHE seeded from ``shared``, merged back and
    removed when the block ends (also on failure: downloads are kept).
    ``environ`` is the build's environment."""
    shared.mkdir(parents=True, exist_ok=True)
    remove_stale(shared)
    private = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=shared))
    shutil.copymode(shared, private)
    with open(private / OWNER_FILE, "a") as owner:
        fcntl.flock(owner, fcntl.LOCK_EX)
        try:
            with _flock(shared / MERGE_LOCK, fcntl.LOCK_SH):
                seed(shared, private, rewritten_in_place(environ or {}))
            yield private
        finally:
            try:
                with _flock(shared / MERGE_LOCK, fcntl.LOCK_EX):
                    merge(private, shared)
            finally:
                shutil.rmtree(private, ignore_errors=True)


@contextlib.contextmanager
def lock_file(path: Path, mode: int) -> Iterator[bool]:
    """Hold an flock of ``mode`` on ``path`` (made with its directory);
    yields False when ``mode`` has ``LOCK_NB`` and another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def output_lock(shared: Path, output: Path) -> Iterator[bool]:
    """Hold the lock of one output path; yields False when another build
    holds it (the caller refuses to start)."""
    import hashlib
    key = hashlib.sha256(str(output).encode()).hexdigest()[:24]
    with lock_file(shared / LOCKS_DIR / f"{key}.lock",
                   fcntl.LOCK_EX | fcntl.LOCK_NB) as free:
        yield free
