"""Run element scripts against a scratch root, sandboxed, with stubs.

``run_script`` runs one script; ``run_orc_phase`` runs an
os-refresh-config phase directory with dib-run-parts' rules (name
filter, numeric order, stop at first failure).  By default the script
runs in a bubblewrap sandbox (:mod:`tripleo_elements.testing.sandbox`)
where the scratch root is ``/`` and every command is either a stub
(:mod:`tripleo_elements.testing.stubs`), an allowed real tool, or
refused: a refused command fails the test with
:class:`~tripleo_elements.errors.CommandNotAllowed`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from tripleo_elements.element import RUN_PARTS_NAME
from tripleo_elements.errors import CommandNotAllowed, ScriptTimedOut
from tripleo_elements.testing import sandbox as sb
from tripleo_elements.testing.stubs import (
    Denied, Reply, Stub, StubServer, When, stub_program)

__all__ = [
    "Denied", "PhaseResult", "Reply", "run_orc_phase", "run_parts_order",
    "run_script", "script_env", "ScriptResult", "Stub", "When",
]

Calls = tuple[tuple[str, ...], ...]


def _calls_of(calls: Calls, name: str) -> list[tuple[str, ...]]:
    return [c for c in calls if c and c[0] == name]


@dataclasses.dataclass(frozen=True)
class ScriptResult:
    """What one script did: status, output, the stub calls it made (argv
    with the command name first, in order) and the commands refused."""

    script: str
    returncode: int
    stdout: str
    stderr: str
    calls: Calls
    denied: tuple[Denied, ...] = ()

    def calls_of(self, name: str) -> list[tuple[str, ...]]:
        """The argv of every call of stub ``name`` (argv[0] is the name)."""
        return _calls_of(self.calls, name)

    def check(self) -> "ScriptResult":
        """Return self, or raise ``AssertionError`` with the output."""
        if self.returncode != 0:
            raise AssertionError(
                f"{self.script} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")
        return self


def script_env(root: Path, stub_dir: Path,
               env: Mapping[str, str] | None = None, *,
               sandboxed: bool = False) -> dict[str, str]:
    """A small, explicit environment plus ``env``.

    ``stub_dir`` always comes first on ``PATH``, also when ``env`` sets
    its own ``PATH`` (which then replaces only the default rest).
    ``TMPDIR`` is the sandbox's private ``/tmp`` (``root/tmp`` on the
    host without a sandbox).
    """
    if sandboxed:
        tmp = "/tmp"
        rest = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    else:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        tmp = str(root / "tmp")
        rest = os.environ.get("PATH", "/usr/bin:/bin")
    result = {
        "HOME": str(root),
        "LANG": "C",
        "LC_ALL": "C",
        "TMPDIR": tmp,
        "DIB_DEBUG_TRACE": "0",
    }
    result.update(env or {})
    result["PATH"] = f"{stub_dir}:{result.get('PATH', rest)}"
    return result


@dataclasses.dataclass(frozen=True)
class _Options:
    stubs: tuple[Stub, ...]
    env: Mapping[str, str] | None
    timeout: float
    sandbox: bool
    strict: bool
    allow: frozenset[str]
    binds: tuple[Path, ...]
    network: bool = False


def _options(stubs: Iterable[Stub | str], env: Mapping[str, str] | None,
             timeout: float, sandbox: bool, strict: bool,
             allow: Iterable[str], binds: Iterable[Path | str],
             network: bool = False) -> _Options:
    return _Options(tuple(map(Stub.of, stubs)), env, timeout, sandbox,
                    strict, sb.DEFAULT_ALLOW | frozenset(allow),
                    tuple(Path(b).absolute() for b in binds), network)


def _script_binds(script: Path) -> tuple[Path, ...]:
    """The host directory a script needs to see: its element (a phase
    directory's parent) or its own directory."""
    parent = script.parent
    if parent.name.endswith(".d") and len(parent.parent.parts) > 2:
        return (parent.parent,)
    return (parent,)


def _decode(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _run_one(script: Path, root: Path, opts: _Options,
             stdin: str | None) -> ScriptResult:
    stubs = opts.stubs
    names = frozenset(s.name for s in stubs)
    created: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="tie-run-") as tmp:
        run_dir = Path(tmp)
        os.chmod(run_dir, 0o777)
        argv = [str(script)]
        if opts.sandbox:
            bwrap = sb.find_bwrap()
            tools, pairs = sb.tools_dir(names, opts.allow, opts.strict)
            real = dict(pairs)
            env = script_env(root, Path(sb.STUB_BIN), opts.env,
                             sandboxed=True)
            env.setdefault("BASH_ENV", sb.BASH_ENV)
            layout = sb.Layout(root, tools, run_dir,
                               _script_binds(script) + opts.binds,
                               opts.network)
            argv = sb.bwrap_argv(bwrap, layout, created) + argv
        else:
            program = run_dir / "stub"
            program.write_text(stub_program(
                os.path.realpath(sys.executable), str(run_dir / "socket")))
            program.chmod(0o755)
            (run_dir / "bin").mkdir()
            real = {}
            for name in sorted(names):
                found = shutil.which(name)
                if found:
                    real[name] = found
                os.symlink(program, run_dir / "bin" / name)
            env = script_env(root, run_dir / "bin", opts.env)
        try:
            with StubServer(run_dir / "socket", stubs, real) as server:
                returncode, out, err = _spawn(argv, root, env, stdin,
                                              opts.timeout, server,
                                              str(script))
        finally:
            sb.cleanup(created)
    if server.errors:
        # A rule of the test itself failed (e.g. a When.test raising):
        # that is the test's error, not the script's.
        raise server.errors[0]
    result = ScriptResult(str(script), returncode, out, err, server.calls,
                          server.denied)
    if result.denied and opts.strict and opts.sandbox:
        first = result.denied[0]
        raise CommandNotAllowed(
            f"{script}: {first.describe()} is neither stubbed nor allowed"
            f" ({len(result.denied)} refused: "
            f"{', '.join(sorted({d.name for d in result.denied}))})",
            result, f"stub it (stubs=[{first.name!r}]), allow it "
            f"(allow=[{first.name!r}]) or pass strict=False")
    return result


def _spawn(argv: list[str], root: Path, env: Mapping[str, str],
           stdin: str | None, timeout: float, server: StubServer,
           script: str) -> tuple[int, str, str]:
    proc = subprocess.Popen(
        argv, cwd=root, env=dict(env), text=True, start_new_session=True,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise ScriptTimedOut(
            f"{script} did not finish within {timeout} s (killed)",
            stdout=_decode(out), stderr=_decode(err), calls=server.calls,
            hint="its stdout, stderr and calls so far are on the error")
    return proc.returncode, out, err


def run_script(script: Path | str, root: Path, *,
               stubs: Iterable[Stub | str] = (),
               env: Mapping[str, str] | None = None,
               stdin: str | None = None,
               timeout: float = 60,
               sandbox: bool = True,
               strict: bool = True,
               allow: Iterable[str] = (),
               binds: Iterable[Path | str] = (),
               network: bool = False) -> ScriptResult:
    """Run ``script`` with ``root`` as scratch space and return its result.

    ``script`` may be relative to the current directory.  The script runs
    with ``root`` as working directory, a clean environment (see
    :func:`script_env`) plus ``env``, and every name in ``stubs``
    resolving to a stub (a name alone: succeeds silently) installed for
    this run only.

    ``sandbox=True`` (the default) runs it in bubblewrap with ``root`` as
    ``/`` (see :mod:`tripleo_elements.testing.sandbox`); with
    ``strict=True`` (the default) a command neither stubbed nor in
    ``DEFAULT_ALLOW`` + ``allow`` is refused and raises
    :class:`~tripleo_elements.errors.CommandNotAllowed` after the run.
    ``binds`` are more host paths made visible read-only (the script's
    element directory always is); ``network=True`` keeps the host's
    network (for a test's loopback servers).  ``sandbox=False`` runs the
    script on the host with stubs first on ``PATH``: nothing is refused.

    Raises :class:`~tripleo_elements.errors.ScriptTimedOut` (with the
    output and calls so far) after ``timeout`` seconds and
    :class:`~tripleo_elements.errors.SandboxUnavailable` when bubblewrap
    is missing or cannot run here.
    """
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    opts = _options(stubs, env, timeout, sandbox, strict, allow, binds,
                    network)
    return _run_one(Path(script).absolute(), root, opts, stdin)


def run_parts_order(directory: Path) -> tuple[list[Path], list[Path]]:
    """dib-run-parts' choice: (scripts to run in order, files skipped).

    Runs executable regular files whose names match ``^[0-9A-Za-z_-]+$``,
    ordered like ``LANG=C sort -n``: by leading number, then bytewise.
    """
    def key(path: Path) -> tuple[int, bytes]:
        match = re.match(r"\d+", path.name)
        return (int(match.group()) if match else 0, path.name.encode())

    run, skipped = [], []
    for path in sorted(Path(directory).iterdir(), key=key):
        if (path.is_file() and os.access(path, os.X_OK)
                and RUN_PARTS_NAME.match(path.name)):
            run.append(path)
        else:
            skipped.append(path)
    return run, skipped


@dataclasses.dataclass(frozen=True)
class PhaseResult:
    """The scripts of one phase that ran, in order, and what was skipped."""

    results: tuple[ScriptResult, ...]
    skipped: tuple[str, ...]

    @property
    def returncode(self) -> int:
        """The first failing script's status, else 0."""
        return next((r.returncode for r in self.results if r.returncode), 0)

    @property
    def ran(self) -> list[str]:
        """Names of the scripts that ran, in order."""
        return [Path(r.script).name for r in self.results]

    @property
    def calls(self) -> Calls:
        """Every stub call of every script, in order."""
        return tuple(c for r in self.results for c in r.calls)

    def calls_of(self, name: str) -> list[tuple[str, ...]]:
        """The argv of every call of stub ``name`` in the phase."""
        return _calls_of(self.calls, name)

    def check(self) -> "PhaseResult":
        """Return self, or raise ``AssertionError`` naming the script
        that failed, with its output."""
        for result in self.results:
            result.check()
        return self


def run_orc_phase(phase_dir: Path | str, root: Path, *,
                  stubs: Iterable[Stub | str] = (),
                  env: Mapping[str, str] | None = None,
                  timeout: float = 60,
                  sandbox: bool = True,
                  strict: bool = True,
                  allow: Iterable[str] = (),
                  binds: Iterable[Path | str] = ()) -> PhaseResult:
    """Run one os-refresh-config phase directory as the image does.

    Scripts run in :func:`run_parts_order` order, each as
    :func:`run_script` runs it (same options; ``timeout`` is per
    script); the first failure stops the phase.  A stub's sequences
    start afresh for each script.
    """
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    opts = _options(stubs, env, timeout, sandbox, strict, allow, binds)
    run, skipped = run_parts_order(Path(phase_dir).absolute())
    results = []
    for script in run:
        result = _run_one(script, root, opts, None)
        results.append(result)
        if result.returncode:
            break
    return PhaseResult(tuple(results), tuple(p.name for p in skipped))
