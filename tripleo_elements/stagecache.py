"""The stage cache: a rebuild after a late change starts from the
installed OS tree.

The build's root is captured once package installation and every
``install.d`` script before ``98`` have run (:data:`CAPTURE`), from
inside the chroot, by a helper element this module writes (:data:`ELEMENT`,
``install.d/98-tie-stage-capture``: a non-recursive bind mount of ``/``
tarred, so mounted ``/proc``, ``/dev`` and the shared apt archive are not
in it but what lies under them is); a host hook (``post-root.d``) moves
the tarball out of the image.  Key: :func:`inputs`, the whole-input
manifest of :mod:`tripleo_elements.buildcache` with every element file
that acts after the capture left out (``install.d`` scripts from ``98``
on, ``post-install.d`` and later phases, ``os-refresh-config/``,
``os-apply-config/``), so a changed os-refresh-config script does not
move it.

A rebuild whose stage key matches runs the same build with the helper's
``root.d/07-tie-stage-restore`` extracting the tarball, and with the
hooks that already acted on it (``root.d`` but the shared apt cache's
bind mount, ``pre-install.d``, ``install.d`` before ``98``) left out of
the staged elements: nothing runs twice, so nothing needs to be
idempotent.  The restore undoes the one change diskimage-builder itself
made between ``root.d`` and the capture (``create_base`` moving
``/etc/resolv.conf`` aside), which it repeats after ``root.d``.

Entries live in ``$XDG_CACHE_HOME/tripleo-image-elements/stages/<key>/``
(``root.tar``, ``inputs.json``, ``entry.json`` in the build cache's
format, so its listing, locks and prune apply); the tarball's sha256 is
recorded at store time (hashed as it is copied out of the image) and
checked as the restore unpacks it (one read, hashing on the second
core): an entry of the wrong size is not tried, one whose bytes do not
match fails the restoring build, is discarded, and the build runs
again as a capturing cold build.
Debian family only (builds with the ``debootstrap`` element).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tripleo_elements import build, buildcache, errors, outputs
from tripleo_elements import plan as plan_mod

FORMAT = "tie-stage-cache-1"
ELEMENT = "tie-stage"
CAPTURE = "98-tie-stage-capture"
TARBALL = "root.tar"
#: The stage cache is on unless this is set to 0 (or no, off, false);
#: ``build-image --no-stage-cache`` sets it so.
ENABLE_ENV = "TIE_STAGE_CACHE"
_OFF = ("0", "no", "off", "false")
#: Element directories that act only after the capture.
AFTER = frozenset({"post-install.d", "post-root.d", "block-device.d",
                   "pre-finalise.d", "finalise.d", "cleanup.d",
                   "os-refresh-config", "os-apply-config"})
#: Phases whose scripts (before :data:`CAPTURE`) acted on the captured
#: root; a restored build leaves them out.
BEFORE = ("root.d", "pre-install.d", "install.d")
#: Hooks kept in a restored build: they set up the build host, not the root.
KEEP_ON_RESTORE = frozenset({"root.d/50-shared-apt-cache"})
_RUN_PARTS = re.compile(r"^[0-9A-Za-z_-]+$")

_RESTORE = """#!/bin/bash
# tie-stage: put the cached root back (build-image's stage cache).
# sudo here touches only the image's own $TARGET_ROOT/etc/resolv.conf:
# dib-lint: disable=safe_sudo
if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail
[ "${TIE_STAGE_MODE:-}" = restore ] || exit 0
echo "tie-stage: restoring the root from $TIE_STAGE_FILE"
# The tarball is hashed as it is unpacked (no second read before): a
# mismatch with the sha256 recorded at store time fails the build and
# leaves $TIE_STAGE_CORRUPT, so build-image discards the entry and
# builds afresh.
digest=$(mktemp)
trap 'rm -f "$digest"' EXIT
set +e
"${DIB_PYTHON_EXEC:-python3}" "$(dirname "$0")/../tie-stage-hash.py" \\
    "$TIE_STAGE_FILE" "$digest" \\
    | sudo tar -C "$TARGET_ROOT" --numeric-owner --xattrs \\
        --xattrs-include='*' -xpf -
status=("${PIPESTATUS[@]}")
set -e
if [ "$(cat "$digest")" != "$TIE_STAGE_SHA256" ]; then
    echo "tie-stage: $TIE_STAGE_FILE does not have its recorded sha256" >&2
    touch "$TIE_STAGE_CORRUPT"
    exit 1
fi
[ "${status[0]}" = 0 ] && [ "${status[1]}" = 0 ]
# create_base moved resolv.conf aside after root.d of the captured build
# and does so again after this root.d: undo the first time.
etc=$TARGET_ROOT/etc
if [ -L "$etc/resolv.conf.ORIG" ] || [ -e "$etc/resolv.conf.ORIG" ]; then
    sudo mv -f -T "$etc/resolv.conf.ORIG" "$etc/resolv.conf"
else
    sudo rm -f "$etc/resolv.conf"
fi
"""

_CAPTURE = """#!/bin/bash
# tie-stage: capture the root for build-image's stage cache.
if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail
[ "${TIE_STAGE_MODE:-}" = capture ] || exit 0
mnt=/tmp/tie-stage-root
mkdir -p "$mnt"
mount --bind / "$mnt"
trap 'umount "$mnt"; rmdir "$mnt"' EXIT
tar -C "$mnt" --numeric-owner --xattrs --xattrs-include='*' -cpf \\
    /tmp/tie-stage.tar --exclude=./tmp/tie-stage.tar \\
    --exclude=./tmp/tie-stage-root --exclude=./tmp/in_target.d .
echo "tie-stage: root captured ($(du -m /tmp/tie-stage.tar | cut -f1) MiB)"
"""

_COLLECT = """#!/bin/bash
# tie-stage: move the captured root out of the image.
# sudo here reads and removes only the image's own $TMP_MOUNT_PATH/tmp:
# dib-lint: disable=safe_sudo
if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail
[ "${TIE_STAGE_MODE:-}" = capture ] || exit 0
# Copied out and hashed in one pass (the hash is recorded in the entry);
# Python's sha256 is several times faster than coreutils'.
src=$TMP_MOUNT_PATH/tmp/tie-stage.tar
sudo cat "$src" | "${DIB_PYTHON_EXEC:-python3}" \\
    "$(dirname "$0")/../tie-stage-hash.py" - "$TIE_STAGE_FILE.sha256" \\
    > "$TIE_STAGE_FILE"
sudo rm -f "$src"
"""

#: ``python3 tie-stage-hash.py SRC DIGEST`` (in the helper element, for
#: the host hooks): copy SRC (``-``: stdin) to stdout
#: and write its sha256 to DIGEST; read to the end even when stdout
#: closes early (tar stopped by a corrupt tarball).
HASHER = """# tie-stage: copy a file to stdout and write its sha256.
import hashlib, os, sys
digest, out, writing = hashlib.sha256(), sys.stdout.buffer, True
src = sys.stdin.buffer if sys.argv[1] == "-" else open(sys.argv[1], "rb")
for block in iter(lambda: src.read(1 << 20), b""):
    digest.update(block)
    if writing:
        try:
            out.write(block)
        except BrokenPipeError:
            writing = False
try:
    out.flush()
except BrokenPipeError:
    pass
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
with open(sys.argv[2], "w") as f:
    f.write(digest.hexdigest() + "\\n")
"""


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/tripleo-image-elements/stages``."""
    return buildcache.cache_dir(environ).parent / "stages"


def environ_for(environ: Mapping[str, str], off: bool
                ) -> Mapping[str, str]:
    """``environ``, with the stage cache turned off when ``off`` (the
    ``--no-stage-cache`` flag of ``build`` and ``plan``)."""
    return {**environ, ENABLE_ENV: "0"} if off else environ


def enabled(environ: Mapping[str, str]) -> bool:
    """On by default; ``TIE_STAGE_CACHE=0`` turns it off (an empty value
    counts as unset)."""
    return environ.get(ENABLE_ENV, "").strip().lower() not in _OFF


def unsupported(plan: plan_mod.BuildPlan) -> str | None:
    """Why the stage cache does not apply to ``plan`` (None: it does)."""
    if "debootstrap" not in plan.elements:
        return "not a Debian-family build (no debootstrap element): " \
            "the whole-input build cache only"
    if ELEMENT in plan.elements:
        return f"an element is named {ELEMENT}"
    return None


# ------------------------------------------------------------------ key

def _order(name: str) -> tuple[int, str]:
    """dib-run-parts' order (``LANG=C sort -n``): leading number, then
    the bytes."""
    digits = re.match(r"\d+", name)
    return (int(digits[0]) if digits else 0, name)


def before_capture(rel: str) -> bool:
    """Whether an element file (relative name) can act before the
    capture, and so is an input of the stage."""
    top, _, rest = rel.partition("/")
    if top in AFTER:
        return False
    if top == "install.d" and rest and "/" not in rest \
            and _RUN_PARTS.match(rest):
        return _order(rest) < _order(CAPTURE)
    return True


def stage_digest(root: Path) -> str:
    return buildcache.tree_digest(root, keep=before_capture)


def inputs(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
           *, code: str | None = None, dib: str | None = None
           ) -> dict[str, str]:
    """The stage's inputs: :func:`buildcache.inputs` over the parts of
    the elements that act before the capture; the output's name and
    path are not inputs."""
    if code is None:
        # Of our code only the hooks (this module) and the menu the
        # build writes for menu-driver's install.d act before the capture.
        code = hashlib.sha256(
            Path(__file__).read_bytes() + json.dumps(
                plan.menu, sort_keys=True).encode()).hexdigest()
    found = buildcache.inputs(plan, environ, code=code, dib=dib,
                              digest=stage_digest)
    found.pop("name", None)
    command = list(plan.command)
    if "-o" in command:
        del command[command.index("-o"):command.index("-o") + 2]
    found["command"] = json.dumps(
        [buildcache._normalise(a, plan) for a in command])
    found["format"] = FORMAT
    found["capture"] = CAPTURE
    return dict(sorted(found.items()))


# -------------------------------------------------------------- entries

def plausible(root: Path, key: str) -> buildcache.Entry | None:
    """The entry ``key`` if its tarball has the size recorded at store
    time (its sha256 is checked while the restore unpacks it)."""
    entry = buildcache.read_entry(root / key)
    if entry is None:
        return None
    info = entry.files.get(TARBALL, {})
    tarball = entry.path / TARBALL
    try:
        if tarball.is_symlink() or tarball.stat().st_size != info.get(
                "size") or not re.fullmatch(
                    r"[0-9a-f]{64}", str(info.get("sha256"))):
            return None
    except OSError:
        return None
    return entry


def usable(root: Path, key: str) -> buildcache.Entry | None:
    """The entry ``key`` if its tarball matches what was recorded at
    store time (size and sha256); None otherwise."""
    entry = plausible(root, key)
    if entry is None:
        return None
    try:
        digest = outputs.sha256_of(entry.path / TARBALL)
    except OSError:
        return None
    return entry if digest == entry.files[TARBALL].get("sha256") else None


def store(root: Path, tmp: Path, plan: plan_mod.BuildPlan,
          recorded: Mapping[str, str]) -> bool:
    """Turn ``tmp`` (holding the captured ``root.tar``) into entry
    ``key_of(recorded)`` by one rename; False when it already exists."""
    tarball = tmp / TARBALL
    size = tarball.stat().st_size
    hashed = tmp / f"{TARBALL}.sha256"
    digest = hashed.read_text().strip() if hashed.is_file() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        digest = outputs.sha256_of(tarball)
    hashed.unlink(missing_ok=True)
    (tmp / "inputs.json").write_text(
        json.dumps(dict(recorded), indent=1, sort_keys=True) + "\n")
    (tmp / "entry.json").write_text(json.dumps({
        "name": plan.output.name, "output": str(plan.output),
        "created": time.time(), "size": size,
        "files": {TARBALL: {"size": size, "sha256": digest}}},
        indent=1, sort_keys=True) + "\n")
    try:
        os.rename(tmp, root / buildcache.key_of(recorded))
    except OSError:
        return False
    return True


# ------------------------------------------------------------- the run

README = """tie-stage
=========

Generated by build-image for one build (its stage cache): captures the
root once every package is installed, moves it out of the image, or
puts a cached root back instead of building it.  Not an element to name;
see ``tripleo_elements/stagecache.py``.
"""


def write_element(parent: Path) -> Path:
    """The helper element (capture, collect, restore hooks)."""
    element = parent / ELEMENT
    element.mkdir(parents=True, exist_ok=True)
    (element / "README.rst").write_text(README)
    for rel, text in (("root.d/07-tie-stage-restore", _RESTORE),
                      (f"install.d/{CAPTURE}", _CAPTURE),
                      ("post-root.d/99-tie-stage-collect", _COLLECT),
                      ("tie-stage-hash.py", HASHER)):
        path = element / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    return element


def ran_before(rel: str) -> bool:
    """An element file that is a hook which acted on the captured root
    (left out of a restored build)."""
    top, _, rest = rel.partition("/")
    if top not in BEFORE or not rest or "/" in rest \
            or not _RUN_PARTS.match(rest) or rel in KEEP_ON_RESTORE:
        return False
    return top != "install.d" or _order(rest) < _order(CAPTURE)


def without_ran_hooks(sources: Mapping[str, Path], parent: Path
                      ) -> dict[str, Path]:
    """``sources`` with each element that has hooks which already acted
    replaced by a copy without them."""
    result = {}
    for name, source in sources.items():
        source = Path(source)
        drop = [f"{phase}/{p.name}" for phase in BEFORE
                if (source / phase).is_dir()
                for p in (source / phase).iterdir()
                if ran_before(f"{phase}/{p.name}")]
        if not drop:
            result[name] = source
            continue
        copy = parent / name
        shutil.copytree(source, copy, symlinks=True)
        for rel in drop:
            (copy / rel).unlink()
        result[name] = copy
    return result


def _with_stage(plan: plan_mod.BuildPlan, sources: Mapping[str, Path],
                element: Path, mode: str, tarball: Path,
                **more: str) -> plan_mod.BuildPlan:
    return dataclasses.replace(
        plan, elements=(*plan.elements, ELEMENT),
        sources={**sources, ELEMENT: element},
        command=(*plan.command, ELEMENT),
        environment={**plan.environment, "TIE_STAGE_MODE": mode,
                     "TIE_STAGE_FILE": str(tarball), **more})


@contextlib.contextmanager
def _run_dir(root: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def execute(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
            report: Callable[[str, str | None], None], *,
            root: Path | None = None) -> build.BuildResult:
    """:func:`build.execute` through the stage cache: from the cached
    root when the stage key matches, else a build that captures it."""
    if not enabled(environ) or unsupported(plan) is not None:
        return build.execute(plan, environ, report)
    root = root or cache_dir(environ)
    recorded = inputs(plan, environ)
    key = buildcache.key_of(recorded)
    try:
        (root / ".locks").mkdir(parents=True, exist_ok=True)
    except OSError:
        return build.execute(plan, environ, report)
    corrupt = []
    with buildcache._lock(root, key, fcntl.LOCK_SH):
        entry = plausible(root, key)
        if entry is not None:
            with _run_dir(root) as tmp:
                element = write_element(tmp / "helper")
                sources = without_ran_hooks(plan.sources, tmp / "elements")
                marker = tmp / "corrupt"
                try:
                    result = build.execute(_with_stage(
                        plan, sources, element, "restore",
                        entry.path / TARBALL,
                        TIE_STAGE_SHA256=str(entry.files[TARBALL]["sha256"]),
                        TIE_STAGE_CORRUPT=str(marker)), environ, report)
                except errors.BuildFailed:
                    if not marker.exists():
                        raise
                    corrupt.append(f"stage cache entry {key[:16]} did not "
                                   "have its recorded sha256: discarded, "
                                   "built afresh")
            if not corrupt:
                with contextlib.suppress(OSError):
                    os.utime(entry.path / "entry.json")
                return dataclasses.replace(result, notices=(
                    *result.notices, f"stage cache hit: {key[:16]} (built "
                    "from the cached OS tree)"))
    if (root / key).exists():
        with buildcache._lock(root, key, fcntl.LOCK_EX | fcntl.LOCK_NB) \
                as free:
            if free:
                buildcache.discard(root, key)
    with _run_dir(root) as tmp:
        element = write_element(tmp / "helper")
        (tmp / "stage").mkdir()
        tarball = tmp / "stage" / TARBALL
        result = build.execute(_with_stage(
            plan, plan.sources, element, "capture", tarball),
            environ, report)
        notice = "stage cache: the build captured no root"
        if tarball.is_file():
            try:
                stored = store(root, tmp / "stage", plan, recorded)
                notice = (f"stored in the stage cache: {key[:16]}" if stored
                          else "")
            except OSError as exc:
                notice = f"not stored in the stage cache {root}: " \
                    f"{exc.strerror or exc}"
    with contextlib.suppress(OSError):
        buildcache.prune(root, max_bytes=buildcache.max_size(environ),
                         keep=(key,))
    return dataclasses.replace(result, notices=(
        *result.notices, *corrupt, *([notice] if notice else [])))


# ----------------------------------------------------------------- plan

def describe(plan: plan_mod.BuildPlan, environ: Mapping[str, str],
             root: Path | None = None) -> dict[str, object]:
    """Stage hit or miss for ``plan`` and, on a miss, what changed since
    the newest stage of the same output (else of any output)."""
    why = unsupported(plan) if enabled(environ) else \
        f"off ({ENABLE_ENV}=0 or --no-stage-cache)"
    if why is not None:
        return {"status": "unused", "reason": why}
    root = root or cache_dir(environ)
    recorded = inputs(plan, environ)
    key = buildcache.key_of(recorded)
    answer: dict[str, object] = {"key": key, "dir": str(root)}
    known = buildcache.entries(root)
    if any(e.key == key for e in known):
        answer["status"] = "hit"
        return answer
    answer["status"] = "miss"
    earlier = next((e for e in known if e.output == str(plan.output)),
                   None) or (known[0] if known else None)
    if earlier is None:
        answer["changed"] = []
        answer["reason"] = "no stage cached"
    else:
        answer["compared_with"] = earlier.key
        answer["changed"] = buildcache.changes(earlier.inputs, recorded)
    return answer


def describe_text(answer: Mapping[str, object]) -> str:
    if answer["status"] == "unused":
        return f"stage cache: not used: {answer['reason']}\n"
    key = str(answer["key"])[:16]
    if answer["status"] == "hit":
        return f"stage cache: hit ({key}): a miss of the build cache " \
            "starts from the cached OS tree\n"
    head = f"stage cache: miss ({key})"
    if "reason" in answer:
        return f"{head}: {answer['reason']}\n"
    changed = answer.get("changed")
    lines = [f"{head}; changed since {str(answer['compared_with'])[:16]}:"]
    lines += [f"  {c}" for c in (changed if isinstance(changed, list)
                                 else [])]
    return "\n".join(lines) + "\n"
