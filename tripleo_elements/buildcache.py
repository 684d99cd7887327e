"""The content-addressed build cache: an unchanged build returns at once.

A :class:`~tripleo_elements.plan.BuildPlan` and the build's environment
flow in; :func:`inputs` turns them into a flat manifest of everything the
build reads that this host controls (each resolved element's files,
the normalised ``disk-image-create`` argv and added environment -- release,
arch, mirror, extra packages --, the block-device configuration, the host's
``DIB_*`` variables, diskimage-builder's version and our own build code),
and the key is the sha256 of that manifest.  An entry
(``$XDG_CACHE_HOME/tripleo-image-elements/builds/<key>/``) holds every
``NAME.*`` the build published (image, checksums, manifest, log, ``.d``
directory, whatever else), ``inputs.json`` and ``entry.json`` (each
file's size and sha256).

A hit copies the entry next to the output, hashing while it copies: a
file that does not match its recorded sha256 (a corrupt or half-written
entry) discards the whole entry and the build runs.  Entries appear by
one atomic rename; a per-key lock makes a second build of the same key
wait for the first and then hit; readers hold it shared, pruning takes
it exclusively and skips busy entries.  What the key cannot see: packages
changing on the mirror (prune with ``--max-age``).

:mod:`tripleo_elements.buildcache_cli` is the ``build-image cache``
command; :func:`describe` answers ``build-image plan``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tripleo_elements import build, downloads, errors, outputs
from tripleo_elements import plan as plan_mod

FORMAT = "tie-build-cache-1"
#: Host variables that change where DIB keeps things, not what it builds.
IGNORED_ENV = frozenset({"DIB_IMAGE_CACHE", "DIB_DEBUG_TRACE",
                         "DIB_SHOW_IMAGE_USAGE"})
WORKDIR_MARK = "@WORKDIR@"
TMPDIR_MARK = "@TMPDIR@"
OUTDIR_MARK = "@OUTDIR@"
#: Restored text files up to this size get the output directory rewritten.
REWRITE_LIMIT = 8 << 20
#: Default size cap applied after each store (``TIE_BUILD_CACHE_MAX_SIZE``).
DEFAULT_MAX_SIZE = 20 << 30
MAX_SIZE_ENV = "TIE_BUILD_CACHE_MAX_SIZE"
_SKIP_NAMES = frozenset({"__pycache__", ".pytest_cache"})
_NOT_BUILD_CODE = frozenset({"errors.py"})
_FICLONE = 0x40049409


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/tripleo-image-elements/builds`` (default
    ``~/.cache/...``)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "tripleo-image-elements" / "builds"


# ------------------------------------------------------------------ key

def tree_digest(root: Path,
                keep: Callable[[str], bool] | None = None) -> str:
    """sha256 over every entry below ``root``: relative name, kind, mode,
    content (files) or target (symlinks, whose targets are followed as
    well, as the staged tree follows them).  ``__pycache__`` and ``*.pyc``
    are left out: Python writes them when the elements' own tests run,
    and DIB never runs them.  ``keep(relative name)`` False leaves a
    file out."""
    h = hashlib.sha256()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        rel_dir = os.path.relpath(dirpath, root)
        if real in seen:
            # A symlink loop: record it, do not descend again.
            h.update(f"loop {rel_dir}\n".encode())
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP_NAMES and (
                keep is None or keep(os.path.normpath(
                    os.path.join(rel_dir, d)))))
        h.update(f"dir {rel_dir} "
                 f"{stat.S_IMODE(os.stat(dirpath).st_mode):o}\n".encode())
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                h.update(f"dirlink {os.path.join(rel_dir, name)} -> "
                         f"{os.readlink(path)}\n".encode())
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.join(rel_dir, name)
            if keep is not None and not keep(os.path.normpath(rel)):
                continue
            if os.path.islink(path):
                h.update(f"link {rel} -> {os.readlink(path)}\n".encode())
            try:
                info = os.stat(path)
            except OSError:
                h.update(f"dangling {rel}\n".encode())
                continue
            if not stat.S_ISREG(info.st_mode):
                h.update(f"special {rel} {info.st_mode:o}\n".encode())
                continue
            h.update(f"file {rel} {stat.S_IMODE(info.st_mode):o} "
                     f"{outputs.sha256_of(Path(path))}\n".encode())
    return h.hexdigest()


def build_code_files(package: Path) -> list[Path]:
    """The files of ``package`` whose content can change an image: the
    top-level modules (not ``errors.py``) and the menu package, which
    computes the menu the build writes into the image."""
    menu = sorted((package / "menu").glob("*.py")) + sorted(
        (package / "menu").glob("*.json"))
    return [p for p in sorted(package.glob("*.py")) + menu
            if p.name not in _NOT_BUILD_CODE]


def code_digest() -> str:
    """Our build code: :func:`build_code_files` of this package."""
    package = Path(plan_mod.__file__).resolve().parent
    h = hashlib.sha256()
    for path in build_code_files(package):
        h.update(f"{path.relative_to(package)} "
                 f"{outputs.sha256_of(path)}\n".encode())
    return h.hexdigest()


def dib_version() -> str:
    from importlib import metadata
    try:
        return metadata.version("diskimage-builder")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _normalise(text: str, plan: plan_mod.BuildPlan) -> str:
    # Where the build works is not an input; the temporary directory
    # first: it may lie inside the work directory or elsewhere (TMP_DIR).
    text = text.replace(str(plan.tmp_dir), TMPDIR_MARK)
    text = text.replace(str(plan.workdir), WORKDIR_MARK)
    return text.replace(str(plan.output.parent), OUTDIR_MARK)


def _secret(name: str) -> bool:
    return any(w in name.upper() for w in plan_mod.SECRET_WORDS)


def inputs(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
           *, code: str | None = None, dib: str | None = None,
           digest: Callable[[Path], str] = tree_digest) -> dict[str, str]:
    """The build's inputs as ``{name: value}``: readable values where
    they are short, digests for trees and secrets."""
    found: dict[str, str] = {
        "format": FORMAT,
        "name": plan.output.name,
        "command": json.dumps([_normalise(a, plan) for a in plan.command]),
        "block-device": hashlib.sha256(
            (plan.block_device_config or "").encode()).hexdigest(),
        "diskimage-builder": dib if dib is not None else dib_version(),
        "build-code": code if code is not None else code_digest(),
    }
    for name in plan.elements:
        found[f"element {name}"] = digest(Path(plan.sources[name]))
    for key, value in plan.environment.items():
        found[f"env {key}"] = _normalise(value, plan)
    for key, value in environ.items():
        if key.startswith("DIB_") and key not in IGNORED_ENV \
                and key not in plan_mod.OWN_VARS \
                and key not in plan.environment:
            found[f"host {key}"] = "sha256:" + hashlib.sha256(
                value.encode()).hexdigest() if _secret(key) else value
    return dict(sorted(found.items()))


def key_of(recorded: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(recorded.items())))
                          .encode()).hexdigest()


def changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What differs between two recorded input manifests, one line each."""
    lines = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"{name}: added")
        elif after is None:
            lines.append(f"{name}: removed")
        elif name.startswith("element ") or name in ("build-code",
                                                     "block-device") \
                or after.startswith("sha256:") or len(before) + len(after) \
                > 160:
            lines.append(f"{name}: changed")
        else:
            lines.append(f"{name}: {before} -> {after}")
    return lines


# ---------------------------------------------------------------- store

@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    name: str
    output: str
    created: float
    used: float
    size: int
    inputs: Mapping[str, str]
    files: Mapping[str, Mapping[str, object]]


def read_entry(path: Path) -> Entry | None:
    """The entry in ``path`` (a build or stage entry), or None when it is
    incomplete or unreadable."""
    try:
        meta = json.loads((path / "entry.json").read_text())
        recorded = json.loads((path / "inputs.json").read_text())
        used = (path / "entry.json").stat().st_mtime
        return Entry(path.name, path, str(meta["name"]), str(meta["output"]),
                     float(meta["created"]), used, int(meta["size"]),
                     dict(recorded), dict(meta["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def entries(root: Path, reader: Callable[[Path], Entry | None] = read_entry
            ) -> list[Entry]:
    """Every complete entry (as ``reader`` reads one directory), most
    recently used first."""
    found = []
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith(".") or not path.is_dir():
                continue
            entry = reader(path)
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda e: (-e.used, e.key))


@contextlib.contextmanager
def _lock(root: Path, key: str, mode: int, suffix: str = ".lock"
          ) -> Iterator[bool]:
    with downloads.lock_file(root / ".locks" / f"{key}{suffix}",
                             mode) as got:
        yield got


def discard(root: Path, key: str) -> None:
    """Remove an entry: renamed out of sight first, so no reader sees a
    half-removed one."""
    path = root / key
    trash = root / f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _clone(src: Path, dst: Path) -> str:
    """Copy ``src`` to a new file ``dst`` (a reflink where the
    filesystem can); return the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        with contextlib.suppress(OSError):
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            fout.seek(0, os.SEEK_END)
        if fout.tell() == 0:
            for block in iter(lambda: fin.read(1 << 20), b""):
                digest.update(block)
                fout.write(block)
            shutil.copymode(src, dst)
            return digest.hexdigest()
    shutil.copymode(src, dst)
    return outputs.sha256_of(dst)


def _copy_tree(src: Path, dst: Path, record: dict[str, dict[str, object]],
               rel: str) -> None:
    """Copy ``src`` (file, directory or symlink) to ``dst``, recording
    each regular file's size and sha256 under its relative name."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        record[rel] = {"link": os.readlink(src)}
    elif src.is_dir():
        dst.mkdir()
        shutil.copymode(src, dst)
        record[rel] = {"dir": True}
        for child in sorted(src.iterdir()):
            _copy_tree(child, dst / child.name, record,
                       f"{rel}/{child.name}")
    elif src.is_file():
        digest = _clone(src, dst)
        record[rel] = {"size": dst.stat().st_size, "sha256": digest}


def _outputs_of(plan: plan_mod.BuildPlan, since: float) -> list[Path]:
    """Every ``NAME.*`` next to the output this build wrote."""
    prefix = plan.output.name + "."
    found = []
    for path in sorted(plan.output.parent.iterdir()):
        if not path.name.startswith(prefix) or ".orig-" in path.name:
            continue
        with contextlib.suppress(OSError):
            if path.lstat().st_mtime >= since - 2:
                found.append(path)
    return found


def store(root: Path, plan: plan_mod.BuildPlan,
          recorded: Mapping[str, str], since: float) -> Entry | None:
    """Copy what the build published into a new entry, atomically.
    Returns None when an entry of that key appeared meanwhile."""
    key = key_of(recorded)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        files: dict[str, dict[str, object]] = {}
        (tmp / "files").mkdir()
        for path in _outputs_of(plan, since):
            suffix = path.name[len(plan.output.name):]
            _copy_tree(path, tmp / "files" / suffix, files, suffix)
        size = sum(int(str(v.get("size", 0))) for v in files.values())
        (tmp / "inputs.json").write_text(
            json.dumps(dict(recorded), indent=1, sort_keys=True) + "\n")
        (tmp / "entry.json").write_text(json.dumps({
            "name": plan.output.name, "output": str(plan.output),
            "created": time.time(), "size": size, "files": files},
            indent=1, sort_keys=True) + "\n")
        try:
            os.rename(tmp, root / key)
        except OSError:
            return None     # the same key was stored meanwhile
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return read_entry(root / key)


# -------------------------------------------------------------- restore

class CorruptEntry(Exception):
    """An entry whose files do not match their record (never shown: the
    entry is discarded and the build runs)."""


def _rewrite(path: Path, old_dir: str, new_dir: str) -> None:
    if old_dir == new_dir or path.stat().st_size > REWRITE_LIMIT:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    if old_dir + "/" in text:
        path.write_text(text.replace(old_dir + "/", new_dir + "/"),
                        encoding="utf-8")


def _restore_into(entry: Entry, tmp: Path) -> None:
    """Copy the entry's files into ``tmp``, checking each one."""
    for rel, info in sorted(entry.files.items()):
        src, dst = entry.path / "files" / rel, tmp / rel
        if "dir" in info:
            if not src.is_dir() or src.is_symlink():
                raise CorruptEntry(rel)
            dst.mkdir()
            shutil.copymode(src, dst)
        elif "link" in info:
            if not src.is_symlink() or os.readlink(src) != info["link"]:
                raise CorruptEntry(rel)
            os.symlink(os.readlink(src), dst)
        else:
            if src.is_symlink() or not src.is_file() \
                    or src.stat().st_size != info.get("size") \
                    or _clone(src, dst) != info.get("sha256"):
                raise CorruptEntry(rel)


def restore(entry: Entry, plan: plan_mod.BuildPlan) -> list[Path]:
    """Put the entry's files next to ``plan.output``; raises
    :class:`CorruptEntry` (nothing replaced) when one does not match."""
    dest = plan.output.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{plan.output.name}.tie-restore-",
                                dir=dest))
    try:
        _restore_into(entry, tmp)
        old_dir = str(Path(entry.output).parent)
        for rel, info in entry.files.items():
            if "size" in info:
                _rewrite(tmp / rel, old_dir, str(dest))
        ours = set(outputs.previous_outputs(plan.manifest)) | {
            p.name for p in plan.images}
        ours |= {n + s for n in ours for s in outputs.SIDECARS}
        ours |= {plan.manifest.name, plan.log.name}
        placed = []
        stamp = time.strftime("%Y%m%d%H%M%S")
        for top in sorted(tmp.iterdir()):
            target = dest / (plan.output.name + top.name)
            if os.path.lexists(target):
                if target.name not in ours:
                    os.rename(target, target.with_name(
                        f"{target.name}.orig-{stamp}"))
                elif target.is_dir() and not target.is_symlink():
                    os.rename(target, tmp / f".old{top.name}")
                    shutil.rmtree(tmp / f".old{top.name}")
            os.replace(top, target)
            placed.append(target)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hit_result(entry: Entry, placed: list[Path], seconds: float
                ) -> build.BuildResult:
    names = {p.name for p in placed}
    artifacts = tuple(
        outputs.Artifact(p, p.stat().st_size,
                         str(entry.files[p.name[len(entry.name):]]["sha256"]))
        for p in placed if p.is_file() and not p.is_symlink()
        and p.name + ".sha256" in names)
    directories = tuple(p for p in placed if p.is_dir()
                        and not p.is_symlink())
    manifest = next((p for p in placed if p.name.endswith(".manifest.json")),
                    placed[0].with_name(entry.name + ".manifest.json"))
    return build.BuildResult(
        artifacts, directories, (), seconds, manifest,
        (f"build cache hit: {entry.key[:16]} (built "
         f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(entry.created))} "
         "UTC); --no-cache builds afresh",))


def lookup(root: Path, key: str, plan: plan_mod.BuildPlan
           ) -> build.BuildResult | None:
    """Restore entry ``key`` for ``plan`` (None: no usable entry; a
    corrupt one is discarded)."""
    started = time.monotonic()
    entry = read_entry(root / key)
    if entry is None:
        if (root / key).exists():
            discard(root, key)      # partial: no entry.json/inputs.json
        return None
    try:
        placed = restore(entry, plan)
    except (CorruptEntry, OSError):
        discard(root, key)
        return None
    if not placed:
        discard(root, key)
        return None
    with contextlib.suppress(OSError):
        os.utime(entry.path / "entry.json")
    return _hit_result(entry, placed, time.monotonic() - started)


def max_size(environ: Mapping[str, str]) -> int:
    text = environ.get(MAX_SIZE_ENV, "").strip()
    return parse_size(text) if text else DEFAULT_MAX_SIZE


def execute(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
            report: Callable[[str, str | None], None], *,
            root: Path | None = None, use_cache: bool = True
            ) -> build.BuildResult:
    """:func:`tripleo_elements.build.execute` through the cache."""
    if not use_cache:
        return build.execute(plan, environ, report)
    root = root or cache_dir(environ)
    limit = max_size(environ)
    recorded = inputs(plan, environ)
    key = key_of(recorded)
    build.check_writable(plan)
    try:
        (root / ".locks").mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as exc:
        # A cache that cannot be used only makes the build slower.
        result = build.execute(plan, environ, report)
        return dataclasses.replace(result, notices=(
            *result.notices, f"build cache {root} not usable "
            f"({exc.strerror or exc}): built without it"))
    with _lock(root, key, fcntl.LOCK_EX):
        with downloads.output_lock(plan.image_cache, plan.output) as free:
            if not free:
                raise errors.BuildLocked(
                    f"another build is writing {plan.output} right now",
                    "wait for it, or choose another -o")
            hit = lookup(root, key, plan)
        if hit is not None:
            return hit
        since = time.time()
        from tripleo_elements import stagecache
        result = stagecache.execute(plan, environ, report)
        notices = list(result.notices)
        try:
            if store(root, plan, recorded, since) is not None:
                notices.append(f"stored in the build cache: {key[:16]}")
        except OSError as exc:
            notices.append(f"not stored in the build cache {root}: "
                           f"{exc.strerror or exc}")
    with contextlib.suppress(OSError):
        prune(root, max_bytes=limit, keep=(key,))
    return dataclasses.replace(result, notices=tuple(notices))


# ------------------------------------------------------- plan and prune

def describe(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
             root: Path | None = None) -> dict[str, object]:
    """Hit or miss for ``plan``; on a miss, what changed since the
    newest recorded build of the same output (else of the same name)."""
    root = root or cache_dir(environ)
    recorded = inputs(plan, environ)
    key = key_of(recorded)
    answer: dict[str, object] = {"key": key, "dir": str(root)}
    try:
        known = entries(root)
    except OSError as exc:
        answer.update(status="miss", changed=[],
                      reason=f"the cache cannot be read: "
                      f"{exc.strerror or exc}")
        return answer
    if any(e.key == key for e in known):
        answer["status"] = "hit"
        return answer
    answer["status"] = "miss"
    from tripleo_elements import stagecache
    try:
        answer["stage"] = stagecache.describe(plan, environ)
    except OSError as exc:
        answer["stage"] = {"status": "unused", "reason": "the stage cache "
                           f"cannot be read: {exc.strerror or exc}"}
    earlier = next((e for e in known if e.output == str(plan.output)),
                   None) or next((e for e in known
                                  if e.name == plan.output.name), None)
    if earlier is None:
        answer["changed"] = []
        answer["reason"] = f"no earlier build of {plan.output.name} cached"
    else:
        answer["compared_with"] = earlier.key
        answer["changed"] = changes(earlier.inputs, recorded)
    return answer


def describe_text(answer: Mapping[str, object]) -> str:
    key = str(answer["key"])[:16]
    if answer["status"] == "hit":
        return f"build cache: hit ({key}): the build returns the " \
            "recorded image\n"
    lines = [f"build cache: miss ({key})"]
    if "reason" in answer:
        lines[0] += f": {answer['reason']}"
    else:
        lines[0] += f"; changed since {str(answer['compared_with'])[:16]}:"
        changed = answer.get("changed")
        lines += [f"  {c}" for c in (changed if isinstance(changed, list)
                                     else [])]
    text = "\n".join(lines) + "\n"
    stage = answer.get("stage")
    if isinstance(stage, Mapping):
        from tripleo_elements import stagecache
        text += stagecache.describe_text(stage)
    return text


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``500M``, ``10G``, ``1024`` (bytes) -> bytes."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        number = float(value[:len(value) - len(unit)])
    except ValueError:
        number = -1
    if number < 0:
        raise errors.UsageError(f"'{text}' is not a size",
                                "give bytes or e.g. 500M, 10G")
    return int(number * _UNITS[unit])


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` -> seconds."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _AGES else "d"
    digits = value[:-1] if value[-1:] in _AGES else value
    try:
        number = float(digits)
    except ValueError:
        number = -1
    if number < 0:
        raise errors.UsageError(f"'{text}' is not an age",
                                "give e.g. 30d, 12h, 2w")
    return number * _AGES[unit]


def prune(root: Path, *, max_bytes: int | None = None,
          max_age: float | None = None, keep: tuple[str, ...] = (),
          now: float | None = None,
          reader: Callable[[Path], Entry | None] = read_entry,
          lock_suffix: str = ".lock") -> list[Entry]:
    """Remove entries unused for longer than ``max_age`` seconds, then
    the least recently used until the rest fit in ``max_bytes``; entries
    in use (``.locks/<key><lock_suffix>`` held) and ``keep`` stay;
    leftovers of killed stores go.  Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    known = entries(root, reader)
    total = sum(e.size for e in known)
    for entry in reversed(known):       # least recently used first
        old = max_age is not None and now - entry.used > max_age
        big = max_bytes is not None and total > max_bytes
        if entry.key in keep or not (old or big):
            continue
        with _lock(root, entry.key, fcntl.LOCK_EX | fcntl.LOCK_NB,
                   lock_suffix) as got:
            if not got:
                continue
            discard(root, entry.key)
        removed.append(entry)
        total -= entry.size
    if root.is_dir():
        for left in root.iterdir():
            if left.name.startswith((".tmp-", ".trash-")):
                with contextlib.suppress(OSError):
                    if now - left.stat().st_mtime > 3600:
                        shutil.rmtree(left, ignore_errors=True)
    return removed
