"""Element sources: resolve them, read their contract, order them.

:class:`~tripleo_elements.images.definitions.SourceSpec` entries (and
optionally a lock) flow in; :class:`Source` values flow out: the
directory that holds the source's elements, its commit, and its
contract read from the source root (format 1, see README "The source
contract"):

``settings``
    ``NAME=value`` lines (``#`` comments): defaults for the build
    environment, applied only where nothing else set the variable.
``requires``
    names of other sources this one needs, one a line.
``bindep.txt``
    host packages its elements need (bindep format; lines without a
    profile are checked).

Sources are ordered by :func:`order`: file order, except that a source
comes before (overrides) the sources it requires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from tripleo_elements import errors, host, process
from tripleo_elements.images import gitcache
from tripleo_elements.images.definitions import SourceSpec

CONTRACT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    #: Where its elements are (the checkout or path, plus subdir).
    elements_dir: Path
    root: Path
    #: The redacted URL, or the path.
    origin: str
    ref: str | None = None
    commit: str | None = None
    settings: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    bindep: tuple[str, ...] = ()

    def label(self) -> str:
        return f"{self.name}@{self.commit[:12]}" if self.commit else \
            self.name


@dataclasses.dataclass(frozen=True)
class LockedSource:
    """What a lock file says about one source."""

    commit: str
    ref: str | None


def _inside(path: Path, top: Path, what: str, source: str) -> Path:
    real, real_top = Path(os.path.realpath(path)), \
        Path(os.path.realpath(top))
    if not real.is_relative_to(real_top):
        raise errors.SourceError(
            f"source '{source}': {what} '{path}' leaves its checkout "
            f"({real_top})", "give a subdir inside the source")
    return real


def read_settings(path: Path, source: str) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        return ()
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.match(name):
            raise errors.SourceError(
                f"source '{source}': {path}:{number}: not NAME=value: "
                f"{errors.one_line(raw)}",
                "settings holds NAME=value lines (the value is taken "
                "literally)")
        found[name] = value
    return tuple(found.items())


def read_requires(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    return tuple(dict.fromkeys(
        line.strip() for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")))


def read_bindep(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    return tuple(sorted({p.package for p in host.read_bindep(path)
                         if not p.profiles}))


def _contract(name: str, root: Path, subdir: str, **fields: object
              ) -> Source:
    elements_dir = _inside(root / subdir, root, "subdir", name)
    if not elements_dir.is_dir():
        raise errors.SourceError(
            f"source '{name}': no directory '{subdir}' in {root}",
            "set 'subdir' to where its elements are")
    return Source(name=name, elements_dir=elements_dir, root=root,
                  settings=read_settings(root / "settings", name),
                  requires=read_requires(root / "requires"),
                  bindep=read_bindep(root / "bindep.txt"),
                  **fields)  # type: ignore[arg-type]


def resolve(specs: Sequence[SourceSpec], cache: gitcache.GitCache, *,
            locked: Mapping[str, LockedSource] | None = None,
            fresh: frozenset[str] = frozenset(),
            warn: Callable[[str], None]) -> tuple[Source, ...]:
    """Fetch and check out every source; ``locked`` (``--locked``): use
    exactly those commits (errors.LockStale when a ref moved or a commit
    is gone), except for the sources named in ``fresh`` (``update``).
    Returned in precedence order (:func:`order`)."""
    out = []
    for spec in specs:
        if spec.path is not None:
            root = Path(os.path.abspath(spec.path))
            if not root.is_dir():
                raise errors.SourceError(
                    f"source '{spec.name}': {root} is not a directory",
                    "fix 'path' (relative to the images file)")
            out.append(_contract(spec.name, root, spec.subdir,
                                 origin=str(root)))
            continue
        assert spec.git is not None
        url = spec.git
        commit = _commit(spec, url, cache,
                         None if spec.name in fresh else locked, warn)
        root = cache.checkout(url, commit)
        out.append(_contract(spec.name, root, spec.subdir,
                             origin=gitcache.redact(url), ref=spec.ref,
                             commit=commit))
    return order(out)


def _commit(spec: SourceSpec, url: str, cache: gitcache.GitCache,
            locked: Mapping[str, LockedSource] | None,
            warn: Callable[[str], None]) -> str:
    shown = gitcache.redact(url)
    ref_text = spec.ref or "(default branch)"
    if locked is None:
        resolved = cache.resolve(spec.name, url, spec.ref)
        if not resolved.fresh:
            warn(f"source '{spec.name}': {shown} cannot be reached; using "
                 f"the cached {ref_text} at {resolved.commit[:12]}")
        return resolved.commit
    if spec.name not in locked:
        raise errors.LockStale(
            f"source '{spec.name}' is not in the lock file",
            "run build-image update -f FILE " + spec.name)
    want = locked[spec.name]
    try:
        resolved = cache.resolve(spec.name, url, spec.ref)
    except errors.SourceUnreachable:
        if cache.has_commit(url, want.commit):
            warn(f"source '{spec.name}': {shown} cannot be reached; using "
                 f"the cached locked commit {want.commit[:12]}")
            return want.commit
        raise
    except errors.SourceError as exc:
        # Reachable, but the ref is gone.
        raise errors.LockStale(
            f"source '{spec.name}' ref {ref_text}: locked "
            f"{want.commit[:12]}, current: none ({exc.message})",
            f"fix 'ref', or run build-image update -f FILE {spec.name}"
        ) from None
    if not resolved.fresh:
        if cache.has_commit(url, want.commit):
            warn(f"source '{spec.name}': {shown} cannot be reached; using "
                 f"the cached locked commit {want.commit[:12]}")
            return want.commit
        raise errors.SourceError(
            f"source '{spec.name}': {shown} cannot be reached and the "
            f"locked commit {want.commit} is not cached",
            "restore the network or the remote, then run again")
    if want.ref != spec.ref or resolved.commit != want.commit:
        gone = "" if cache.has_commit(url, want.commit) else \
            " (the locked commit is gone from the remote)"
        raise errors.LockStale(
            f"source '{spec.name}' ref {ref_text}: locked "
            f"{want.commit[:12]}, current {resolved.commit[:12]}{gone}",
            f"run build-image update -f FILE {spec.name} to move the "
            "lock, or drop --locked")
    return want.commit


def order(sources: Sequence[Source]) -> tuple[Source, ...]:
    """File order, but every source before the sources it requires (it
    builds on them, so its elements override theirs)."""
    names = {s.name: i for i, s in enumerate(sources)}
    for source in sources:
        for needed in source.requires:
            if needed not in names:
                raise errors.SourceError(
                    f"source '{source.name}' requires '{needed}', which is "
                    "not a source of this file",
                    f"add a source named '{needed}'")
    # Kahn's algorithm, always taking the earliest ready source.
    waiting = {s.name: 0 for s in sources}
    for source in sources:
        for needed in source.requires:
            waiting[needed] += 1
    done: list[Source] = []
    ready = [s for s in sources if waiting[s.name] == 0]
    while ready:
        ready.sort(key=lambda s: names[s.name])
        current = ready.pop(0)
        done.append(current)
        for needed in current.requires:
            waiting[needed] -= 1
            if waiting[needed] == 0:
                ready.append(sources[names[needed]])
    if len(done) < len(sources):
        stuck = [s.name for s in sources if s not in done]
        raise errors.SourceError(
            "sources require each other in a cycle: " + " -> ".join(
                _cycle(sources, stuck)),
            "remove one of those 'requires' lines")
    return tuple(done)


def _cycle(sources: Sequence[Source], stuck: Sequence[str]) -> list[str]:
    by_name = {s.name: s for s in sources}
    path = [stuck[0]]
    while True:
        following = [n for n in by_name[path[-1]].requires if n in stuck]
        nxt = following[0]
        if nxt in path:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)


def apply_settings(environ: Mapping[str, str],
                   image_env: Mapping[str, str],
                   sources: Iterable[Source]) -> tuple[
                       dict[str, str], dict[str, str]]:
    """The build environment: the host's, then the image's
    ``environment`` over it, then each source's settings only where the
    variable is still unset (sources in precedence order, the first one
    wins).  Returns (environment, {variable: source} applied)."""
    env = dict(environ)
    env.update(image_env)
    applied: dict[str, str] = {}
    for source in sources:
        for name, value in source.settings:
            if name not in env:
                env[name] = value
                applied[name] = source.name
    return env, dict(sorted(applied.items()))


def missing_packages(sources: Iterable[Source],
                     installed: Callable[[str], bool] | None = None
                     ) -> dict[str, tuple[str, ...]]:
    """Source -> its bindep packages not installed on this host."""
    check = installed or _dpkg_installed
    out = {}
    for source in sources:
        missing = tuple(p for p in source.bindep if not check(p))
        if missing:
            out[source.name] = missing
    return out


def check_bindep(sources: Iterable[Source],
                 installed: Callable[[str], bool] | None = None) -> None:
    missing = missing_packages(sources, installed)
    if missing:
        names = "; ".join(f"source '{s}' needs {', '.join(p)}"
                          for s, p in missing.items())
        packages = sorted({p for ps in missing.values() for p in ps})
        raise errors.HostToolsMissing(
            f"host packages missing: {names}",
            "apt-get install " + " ".join(packages))


def _dpkg_installed(package: str) -> bool:
    result = process.run(["dpkg-query", "-W", "-f=${db:Status-Status}",
                          "--", package], check=False)
    return result.returncode == 0 and result.stdout.strip() == "installed"


def content_hash(directory: Path) -> str:
    """sha256 over an element's files: relative path, kind, executable
    bit, content (or link target); independent of mtimes and order."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames
                                        if os.path.islink(
                                            os.path.join(dirpath, d))]):
            path = Path(dirpath) / name
            rel = path.relative_to(directory).as_posix()
            if path.is_symlink():
                digest.update(f"L {rel} {os.readlink(path)}\n".encode())
                continue
            mode = "x" if path.stat().st_mode & 0o111 else "-"
            digest.update(f"F {rel} {mode}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()
