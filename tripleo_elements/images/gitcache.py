"""Git element sources: URL safety, one bare mirror per URL, checkouts.

A source's URL and ref flow in; a commit and a read-only tree of that
commit flow out.  Mirrors live under ``$XDG_CACHE_HOME/tripleo-image-
elements/git`` (``mirrors/KEY.git``, ``checkouts/COMMIT``), each mirror
guarded by an ``flock`` so concurrent runs are safe; a checkout is
written once (``git archive`` into a temporary directory, then renamed)
and never changed, so every build may read it.  The URL goes into the
mirror's config file, never onto a command line, and only in redacted
form into messages (:func:`redact`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tripleo_elements import errors, process

if TYPE_CHECKING:
    import subprocess

SCHEMES = ("https", "ssh", "git", "file")
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$")
#: Fetch only branches and tags (not pull requests, notes...).
REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


def cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "tripleo-image-elements" / "git"


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/@\s'\"]+)@")


def redact(text: str) -> str:
    """``text`` (a URL, or a message quoting URLs) without passwords or
    tokens: ``https://user:pass@host`` -> ``https://***@host``; only a
    plain ssh user name (``ssh://git@host``) is kept."""
    def hide(match: re.Match[str]) -> str:
        scheme, userinfo = match.group(1), match.group(2)
        if scheme.lower() == "ssh" and ":" not in userinfo:
            return match.group(0)
        return f"{scheme}://***@"
    return _USERINFO.sub(hide, text)


def check_url(url: str, source: str) -> None:
    """Refuse what git could run or misread: other schemes (``ext::``),
    option-like text, control characters."""
    shown = redact(url)
    if url.startswith("-") or not url.isprintable() or \
            any(c.isspace() for c in url):
        raise errors.SourceError(
            f"source '{source}': refused URL '{errors.one_line(shown)}' "
            "(starts with '-' or holds spaces or control characters)",
            "give a plain https://, ssh://, git:// or file:// URL")
    parts = urlsplit(url) if "://" in url else None
    scheme = parts.scheme.lower() if parts else ""
    if parts is not None and scheme != "file" and \
            (parts.hostname or "-").startswith("-"):
        raise errors.SourceError(
            f"source '{source}': refused URL '{shown}': no host, or a host "
            "that starts with '-'", "give the server's name")
    if scheme not in SCHEMES:
        raise errors.SourceError(
            f"source '{source}': refused URL '{shown}': only "
            + ", ".join(s + "://" for s in SCHEMES) + " URLs are allowed",
            "write the URL with one of those schemes (no scp-like "
            "host:path, no ext::)")


def check_ref(ref: str, source: str) -> None:
    if not _REF.match(ref) or ".." in ref or "@{" in ref or \
            ref.endswith((".lock", "/", ".")):
        raise errors.SourceError(
            f"source '{source}': refused ref '{errors.one_line(ref)}'",
            "a ref is a branch, tag or commit name; it cannot start with "
            "'-' or hold spaces, '..' or '@{'")


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24]


@dataclasses.dataclass(frozen=True)
class Resolved:
    commit: str
    #: False when the remote could not be reached (cached data used).
    fresh: bool


class GitCache:
    """The shared mirror cache (see the module docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base

    # -- plumbing

    def _git(self, mirror: Path, url: str, *args: str,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["git"]
        if url.lower().startswith("file://"):
            argv += ["-c", "protocol.file.allow=always"]
        argv += ["--git-dir", str(mirror), *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": os.environ.get("HOME", "/"),
               "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true",
               "SSH_ASKPASS": "true", "LC_ALL": "C"}
        if "SSH_AUTH_SOCK" in os.environ:
            env["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
        return process.run(argv, env=env, check=check, timeout=600)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        locks = self.base / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def mirror_path(self, url: str) -> Path:
        return self.base / "mirrors" / f"{_key(url)}.git"

    def _init(self, mirror: Path, url: str) -> None:
        if (mirror / "config").is_file():
            return
        tmp = Path(tempfile.mkdtemp(prefix=".init-", dir=mirror.parent))
        self._git(tmp, url, "init", "--bare", "--quiet")
        # The URL is written to the config file, not passed on a command
        # line (where ps and logs would show its credentials).
        with open(tmp / "config", "a") as config:
            quoted = url.replace("\\", "\\\\").replace('"', '\\"')
            config.write(f'[remote "origin"]\n\turl = "{quoted}"\n')
            for spec in REFSPECS:
                config.write(f"\tfetch = {spec}\n")
        os.rename(tmp, mirror)

    def _fetch(self, mirror: Path, url: str) -> str | None:
        """Update the mirror; None on success, else git's complaint."""
        result = self._git(mirror, url, "fetch", "--quiet", "--prune",
                           "--no-write-fetch-head", "origin", check=False)
        if result.returncode != 0:
            text = (result.stderr or result.stdout).strip().splitlines()
            return redact(text[-1]) if text else "git fetch failed"
        head = self._git(mirror, url, "ls-remote", "--symref", "origin",
                         "HEAD", check=False)
        match = re.search(r"^ref: (refs/heads/\S+)\tHEAD$", head.stdout,
                          re.M)
        if match:
            self._git(mirror, url, "symbolic-ref", "HEAD", match.group(1))
        return None

    def _rev(self, mirror: Path, url: str, name: str) -> str | None:
        result = self._git(mirror, url, "rev-parse", "--verify", "--quiet",
                           "--end-of-options", f"{name}^{{commit}}",
                           check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def _lookup(self, mirror: Path, url: str, ref: str | None
                ) -> str | None:
        if ref is None:
            return self._rev(mirror, url, "HEAD")
        for name in (f"refs/heads/{ref}", f"refs/tags/{ref}"):
            commit = self._rev(mirror, url, name)
            if commit:
                return commit
        if _HEX.match(ref):
            return self._rev(mirror, url, ref)
        return None

    # -- API

    def has_commit(self, url: str, commit: str) -> bool:
        mirror = self.mirror_path(url)
        return mirror.is_dir() and self._rev(mirror, url, commit) == commit

    def resolve(self, name: str, url: str, ref: str | None, *,
                fetch: bool = True) -> Resolved:
        """Fetch (unless ``fetch`` is false) and resolve ``ref``.  With
        the remote unreachable, the mirror's last known answer is used
        and ``fresh`` is False; with nothing cached, SourceError."""
        check_url(url, name)
        if ref is not None:
            check_ref(ref, name)
        mirror = self.mirror_path(url)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(_key(url)):
            self._init(mirror, url)
            problem = self._fetch(mirror, url) if fetch else None
            commit = self._lookup(mirror, url, ref)
        what = f"ref '{ref}'" if ref else "its default branch"
        if commit is None:
            if problem:
                raise errors.SourceUnreachable(
                    f"source '{name}': {redact(url)} cannot be reached "
                    f"({problem}) and nothing is cached for {what}",
                    "check the URL and the network, then run again")
            raise errors.SourceError(
                f"source '{name}': {redact(url)} has no branch, tag or "
                f"commit '{ref}'" if ref else
                f"source '{name}': {redact(url)} has no default branch",
                "check 'ref' in the images file")
        return Resolved(commit, problem is None)

    def checkout(self, url: str, commit: str) -> Path:
        """A read-only tree of ``commit`` (made once, shared)."""
        target = self.base / "checkouts" / commit
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        mirror = self.mirror_path(url)
        with self._locked(_key(url)):
            if target.is_dir():
                return target
            data = self._archive(mirror, url, commit)
            tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-",
                                        dir=target.parent))
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                    archive.extractall(tmp, filter="tar")
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target

    def _archive(self, mirror: Path, url: str, commit: str) -> bytes:
        with tempfile.TemporaryDirectory(dir=self.base) as tmp:
            out = Path(tmp) / "tree.tar"
            result = self._git(mirror, url, "archive", "--format=tar",
                               "-o", str(out), commit, check=False)
            if result.returncode != 0:
                raise errors.SourceError(
                    f"{redact(url)}: cannot check out {commit}: "
                    + redact(result.stderr.strip()),
                    "remove the cache directory and run again")
            return out.read_bytes()
