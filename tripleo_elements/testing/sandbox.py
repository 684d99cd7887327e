"""The bubblewrap sandbox scripts under test run in.

The script sees the scratch root as ``/``.  The host's ``/usr`` (with
``/bin``, ``/sbin``, ``/lib``, ``/lib64``) and a few ``/etc`` files
real tools need are bound read-only; the root's own ``/usr/local`` and
``/usr/libexec`` stay writable; ``/tmp`` is private, ``/proc`` and
``/dev`` are minimal, the network, PIDs, IPC and host name are unshared.
The scratch root is also visible at its host path, so environment
variables pointing into it keep working.

Every command directory (``/usr/bin``, ``/usr/sbin``) is replaced by a
generated one: a stubbed name runs the stub program, an allowed name
runs the real tool, any other name runs the stub program too, which the
stub server records as :class:`~tripleo_elements.testing.stubs.Denied`.
Absolute paths (``/bin/rm``) go through the same directories.

Mount points the sandbox needs in the root are created before the run
and removed afterwards when still empty, so the root holds only what the
script wrote.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tripleo_elements.errors import SandboxUnavailable
from tripleo_elements.testing.stubs import stub_program

__all__ = [
    "DEFAULT_ALLOW", "ETC_FILES", "Layout", "bwrap_argv", "cleanup",
    "find_bwrap", "probe", "tools_dir",
]

DEFAULT_ALLOW = frozenset({
    # shells and interpreters
    "bash", "sh", "dash", "env", "python3",
    # shell-builtin twins and tests
    "true", "false", "test", "[", "echo", "printf", "pwd", "sleep",
    # reading and writing files (writes stay inside the scratch root)
    "cat", "cp", "mv", "ln", "mkdir", "touch", "chmod", "chown", "chgrp",
    "install", "mktemp", "tee", "ls", "stat", "readlink", "realpath",
    "basename", "dirname", "find", "xargs",
    # text
    "awk", "mawk", "gawk", "sed", "grep", "egrep", "fgrep", "cut", "tr",
    "sort", "uniq", "head", "tail", "wc", "tac", "nl", "paste", "join",
    "comm", "diff", "cmp", "od", "base64", "sha256sum", "md5sum", "seq",
    "expr", "fold", "fmt", "column",
    # identity and time (read only)
    "id", "whoami", "uname", "date", "printenv", "getent", "nproc",
})
"""Commands a sandboxed script may run for real without a stub.  Not in
it, on purpose: ``rm``, ``rmdir`` and every command that installs,
manages services, users, disks or the network."""

ETC_FILES = (
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
    "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
    "/etc/localtime",
)
"""Host files bound read-only into ``/etc`` unless the root has its own."""

COMMAND_DIRS = ("/usr/bin", "/usr/sbin")
ROOT_OWN = ("/usr/local", "/usr/libexec")
INNER = "/.tie"
HOST = INNER + "/host"


@functools.lru_cache(maxsize=None)
def probe(bwrap: str) -> str:
    """'' if ``bwrap`` can make a sandbox here, else why not."""
    try:
        proc = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid",
             "--proc", "/proc", "--dev", "/dev", "true"],
            capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return str(exc)
    return "" if proc.returncode == 0 else proc.stderr.strip()


def find_bwrap() -> str:
    """The ``bwrap`` to use; :class:`SandboxUnavailable` if none works."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable(
            "bwrap (bubblewrap) is not installed: scripts cannot be "
            "sandboxed", "install the bubblewrap package (apt-get install "
            "bubblewrap), or pass sandbox=False to run on the host")
    why = probe(found)
    if why:
        raise SandboxUnavailable(
            f"bwrap cannot create a sandbox here: {why}",
            "user namespaces are probably restricted "
            "(sysctl kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces); run as root or pass sandbox=False")
    return found


@dataclasses.dataclass(frozen=True)
class Layout:
    """One run's sandbox, as paths on the host: the scratch ``root``,
    the generated ``tools`` (seen as ``/.tie``), the ``run_dir`` holding
    the stub server's socket (``/.tie/run``) and more read-only
    ``binds``."""

    root: Path
    tools: Path
    run_dir: Path
    binds: tuple[Path, ...] = ()
    #: Share the host's network (loopback servers of a test); off by
    #: default.
    network: bool = False


SOCKET = INNER + "/run/socket"
STUB_BIN = INNER + "/bin"
BASH_ENV = INNER + "/bash_env"

# Sourced by every bash the script starts (BASH_ENV): keeps the current
# script and line in the environment, so a refused command can say where
# it was called.  functrace makes the trap follow into functions; the
# redirection keeps the trap out of a script's own xtrace output.
BASH_ENV_TEXT = """set -o functrace
trap '{ TIE_CALLER="${BASH_SOURCE[0]:-$0}:$LINENO"; } 2>/dev/null' DEBUG
export TIE_CALLER
"""


def _inner_real(path: str) -> str:
    """Where the real program at host ``path`` is seen in the sandbox."""
    real = os.path.realpath(path)
    if any(real.startswith(d + "/") for d in COMMAND_DIRS):
        return HOST + real
    return real


@functools.lru_cache(maxsize=None)
def _cache_base() -> Path:
    # Generated once per process and shared by every run with the same
    # stubs and allow list: writing ~1,400 links per run is slow.
    shm = "/dev/shm"
    fast = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    base = Path(tempfile.mkdtemp(prefix="tie-sandbox-", dir=fast))
    atexit.register(shutil.rmtree, base, True)
    return base


@functools.lru_cache(maxsize=None)
def tools_dir(stubs: frozenset[str], allow: frozenset[str],
              strict: bool) -> tuple[Path, tuple[tuple[str, str], ...]]:
    """The generated ``/.tie`` for these stubs and allowed commands, and
    ``(name, real program)`` pairs for pass-through stubs.

    ``/.tie/cmd-usr-bin`` replaces ``/usr/bin``: a stub or refused name
    links to the stub program, an allowed one to the real tool (the host
    directory is seen at ``/.tie/host/usr/bin``).
    """
    out = Path(tempfile.mkdtemp(dir=_cache_base()))
    os.chmod(out, 0o755)
    program = INNER + "/stub"
    python = _inner_real("/usr/bin/python3")
    (out / "stub").write_text(stub_program(python, SOCKET))
    (out / "stub").chmod(0o755)
    (out / "bash_env").write_text(BASH_ENV_TEXT)
    (out / "run").mkdir()
    (out / "bin").mkdir()
    for name in sorted(stubs):
        os.symlink(program, out / "bin" / name)
    real: dict[str, str] = {}
    for directory in COMMAND_DIRS:
        if not os.path.isdir(directory):
            continue
        cmd = out / ("cmd" + directory.replace("/", "-"))
        cmd.mkdir()
        (out / HOST.removeprefix(INNER + "/") / directory.lstrip("/")).mkdir(
            parents=True)
        for entry in sorted(os.listdir(directory)):
            inner = _inner_real(f"{directory}/{entry}")
            real.setdefault(entry, inner)
            refused = strict and entry not in allow
            os.symlink(program if entry in stubs or refused else inner,
                       cmd / entry)
        for name in sorted(stubs - set(os.listdir(cmd))):
            os.symlink(program, cmd / name)
    return out, tuple(sorted(real.items()))


def _mount_point(root: Path, inner: str, is_dir: bool,
                 created: list[Path]) -> None:
    """Create ``root``/``inner`` (and parents) if missing, recording what
    was created so :func:`cleanup` can remove it."""
    target = root / inner.lstrip("/")
    missing = []
    parent = target.parent
    while not os.path.lexists(parent) and parent != root:
        missing.append(parent)
        parent = parent.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)
    if os.path.lexists(target):
        return
    if is_dir:
        target.mkdir()
    else:
        target.touch()
    created.append(target)


def cleanup(created: Iterable[Path]) -> None:
    """Remove the mount points :func:`bwrap_argv` created, when empty."""
    for path in reversed(list(created)):
        try:
            if path.is_symlink():
                path.unlink()
            elif path.is_dir():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()
        except OSError:
            pass  # the script put something there: keep it


def bwrap_argv(bwrap: str, layout: Layout, created: list[Path]) -> list[str]:
    """The bwrap command line for ``layout`` (before the script's argv).

    Creates the mount points it needs in the root, appending them to
    ``created`` (pass that list to :func:`cleanup` after the run).
    """
    root = layout.root
    argv = [bwrap, "--die-with-parent", "--new-session",
            *([] if layout.network else ["--unshare-net"]),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", "sandbox", "--bind", str(root), "/"]

    def mount(option: list[str], inner: str, is_dir: bool = True) -> None:
        # Mount points under /tmp are made by bwrap in the private tmpfs.
        if inner == "/tmp" or not _inside(Path(inner), Path("/tmp")):
            _mount_point(root, inner, is_dir, created)
        argv.extend([*option, inner])

    mount(["--ro-bind", "/usr"], "/usr")
    mount(["--ro-bind", str(layout.tools)], INNER)
    argv.extend(["--bind", str(layout.run_dir), INNER + "/run"])
    for own in ROOT_OWN:
        if os.path.isdir(own):
            _mount_point(root, own, True, created)
            argv.extend(["--bind", str(root / own.lstrip("/")), own])
    for directory in COMMAND_DIRS:
        out = layout.tools / ("cmd" + directory.replace("/", "-"))
        if out.is_dir():
            argv.extend(["--ro-bind", directory, HOST + directory,
                         "--ro-bind", str(out), directory])
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        target = root / top.lstrip("/")
        if not os.path.lexists(top):
            continue
        if os.path.islink(top) and not os.path.lexists(target):
            os.symlink(os.readlink(top), target)
            created.append(target)
        elif not target.is_dir() or target.is_symlink():
            if not os.path.islink(top):
                mount(["--ro-bind", top], top)
        elif top in ("/bin", "/sbin"):
            # The root has its own /bin: commands come from ours.
            mount(["--ro-bind", str(layout.tools / "cmd-usr-bin")], top)
        else:
            # The root has its own /lib: the host's library directories
            # (what the loader and ld.so.cache name) are bound inside it.
            host = os.path.realpath(top)
            for name in sorted(os.listdir(host)):
                wanted = name.endswith("-linux-gnu") or name.startswith("ld-")
                if wanted and not os.path.lexists(target / name):
                    mount(["--ro-bind", f"{host}/{name}"], f"{top}/{name}",
                          os.path.isdir(f"{host}/{name}"))
    for path in ETC_FILES:
        inner = root / path.lstrip("/")
        if os.path.exists(path) and not os.path.lexists(inner):
            mount(["--ro-bind", path], path, os.path.isdir(path))
    mount(["--proc"], "/proc")
    mount(["--dev"], "/dev")
    mount(["--tmpfs"], "/tmp")
    for extra in layout.binds:
        if not _inside(extra, root):
            mount(["--ro-bind", str(extra)], str(extra), extra.is_dir())
    mount(["--bind", str(root)], str(root))
    argv.extend(["--chdir", "/"])
    return argv


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True
