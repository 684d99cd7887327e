"""Run element scripts against a scratch root with stubbed commands.

A *stub* is a fake executable put first on ``PATH``: it records its argv
as one JSON line in ``<root>/.stubs/calls.jsonl`` and exits with a chosen
status after printing a chosen output.  ``run_script`` runs one script;
``run_orc_phase`` runs an os-refresh-config phase directory with
dib-run-parts' rules (name filter, numeric order, stop at first failure).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from tripleo_elements.element import RUN_PARTS_NAME

__all__ = [
    "install_stubs", "PhaseResult", "read_calls", "run_orc_phase",
    "run_parts_order", "run_script", "script_env", "ScriptResult", "Stub",
]

STUB_DIR = ".stubs"


@dataclasses.dataclass(frozen=True)
class Stub:
    """A fake command: ``name`` prints ``stdout`` and exits ``exit_code``."""

    name: str
    exit_code: int = 0
    stdout: str = ""


@dataclasses.dataclass(frozen=True)
class ScriptResult:
    """What one script did: status, output and the stubs it called."""

    script: str
    returncode: int
    stdout: str
    stderr: str
    calls: tuple[tuple[str, ...], ...]

    def calls_of(self, name: str) -> list[tuple[str, ...]]:
        """The argv of every call of stub ``name`` (argv[0] is the name)."""
        return [c for c in self.calls if c and c[0] == name]

    def check(self) -> "ScriptResult":
        """Return self, or raise ``AssertionError`` with the output."""
        if self.returncode != 0:
            raise AssertionError(
                f"{self.script} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")
        return self


def _as_stub(stub: Stub | str) -> Stub:
    return stub if isinstance(stub, Stub) else Stub(stub)


def install_stubs(root: Path, stubs: Iterable[Stub | str]) -> Path:
    """Create the stub executables under ``root``; return their directory."""
    bin_dir = root / STUB_DIR / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = root / STUB_DIR / "calls.jsonl"
    for stub in map(_as_stub, stubs):
        if "/" in stub.name or not stub.name:
            raise ValueError(f"bad stub name {stub.name!r}")
        body = (
            "#!/usr/bin/python3\n"
            "import json, os, sys\n"
            f"with open({str(log)!r}, 'a') as f:\n"
            f"    argv = [{stub.name!r}] + sys.argv[1:]\n"
            "    f.write(json.dumps(argv) + '\\n')\n"
            f"sys.stdout.write({stub.stdout!r})\n"
            f"sys.exit({int(stub.exit_code)})\n")
        path = bin_dir / stub.name
        path.write_text(body)
        path.chmod(0o755)
    return bin_dir


def read_calls(root: Path) -> tuple[tuple[str, ...], ...]:
    """Every stub call recorded under ``root``, in order."""
    log = root / STUB_DIR / "calls.jsonl"
    if not log.exists():
        return ()
    return tuple(tuple(json.loads(line))
                 for line in log.read_text().splitlines() if line)


def script_env(root: Path, stub_dir: Path,
               env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small, explicit environment: stubs first on PATH, TMPDIR in root."""
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    result = {
        "PATH": f"{stub_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "LANG": "C",
        "LC_ALL": "C",
        "TMPDIR": str(tmp),
        "DIB_DEBUG_TRACE": "0",
    }
    result.update(env or {})
    return result


def run_script(script: Path | str, root: Path, *,
               stubs: Iterable[Stub | str] = (),
               env: Mapping[str, str] | None = None,
               stdin: str | None = None,
               timeout: float = 60) -> ScriptResult:
    """Run ``script`` with ``root`` as scratch space and return its result.

    The script runs with a clean environment (see :func:`script_env`) plus
    ``env``; every name in ``stubs`` resolves to a recording stub.  The
    script is not given a chroot: elements make their target paths
    overridable by environment variables, and tests point them into
    ``root``.  Calls of stubs from earlier runs under the same root are
    not included.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stub_dir = install_stubs(root, stubs)
    before = len(read_calls(root))
    proc = subprocess.run([str(script)], cwd=root, env=script_env(
        root, stub_dir, env), input=stdin, capture_output=True, text=True,
        timeout=timeout, check=False)
    return ScriptResult(str(script), proc.returncode, proc.stdout,
                        proc.stderr, read_calls(root)[before:])


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
        return next((r.returncode for r in self.results if r.returncode), 0)

    @property
    def ran(self) -> list[str]:
        return [Path(r.script).name for r in self.results]


def run_orc_phase(phase_dir: Path, root: Path, *,
                  stubs: Iterable[Stub | str] = (),
                  env: Mapping[str, str] | None = None,
                  timeout: float = 60) -> PhaseResult:
    """Run one os-refresh-config phase directory as the image does.

    Scripts run in :func:`run_parts_order` order; the first failure stops
    the phase (its result is the last one returned).
    """
    stubs = list(stubs)
    run, skipped = run_parts_order(Path(phase_dir))
    results = []
    for script in run:
        result = run_script(script, root, stubs=stubs, env=env,
                            timeout=timeout)
        results.append(result)
        if result.returncode:
            break
    return PhaseResult(tuple(results), tuple(p.name for p in skipped))
