"""The external linters ``build-image check`` runs over many files at once:
shellcheck (separate processes, a few chunks per CPU taken from one
queue, never one per file) and flake8's checkers pycodestyle and pyflakes
(in-process).

In: the :class:`~.model.SourceFile` objects to lint and a cache directory.
Out: shellcheck's comments as :class:`~.model.Finding` objects keeping
shellcheck's own codes (``SC2086``), and flake8 problems as
(file, line, flake8 code, message) tuples the TIE032 rule reports.  Results
are cached by file content plus tool version (:mod:`.cache`).

shellcheck's result must depend on a file's content only, or neither the
cache nor checking each distinct content once would be right.  Left to
itself it does not: a constant ``source`` of a file that is another input
of the same process is followed even without ``-x`` (so the findings
would depend on how the files were cut into chunks), a ``.shellcheckrc``
beside the file or in the home directory and ``SHELLCHECK_OPTS`` change
what it reports.  So shellcheck runs with ``--norc`` and without
``SHELLCHECK_OPTS``, and a script that may read another file (its text
has a ``source`` or ``.`` command, or a ``source=`` directive:
:func:`may_source`) is checked as a copy alone in its own directory of a
private temporary tree, in processes of such copies only: nothing it can
name is another input of its process.  The other scripts read nothing
but themselves and are checked in place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.check import cache
from tripleo_elements.check.model import (SHELLCHECK_PREFIX, Finding,
                                          SourceFile)

SHELLCHECK_LEVELS = ("error", "warning", "info", "style")
#: The shells shellcheck knows; a script in any other is not given to it.
SHELLCHECK_SHELLS = frozenset({"bash", "dash", "sh", "ksh"})


# ------------------------------------------------------------ shellcheck

#: Data files, whatever their #! line says (an nft rule file's braces
#: are SC1083 to shellcheck).
NOT_SHELL_SUFFIXES = (".nft", ".conf", ".rules", ".service", ".json",
                      ".cfg", ".ini", ".j2", ".txt")


def shellcheck_shell(src: SourceFile) -> str | None:
    """The ``--shell`` to check ``src`` as, or None when shellcheck
    should not look at it (not a shell script, or binary, or docs)."""
    if src.binary or src.name.endswith((".py", ".rst", ".yaml")):
        return None
    if src.name.endswith(NOT_SHELL_SUFFIXES):
        return None
    if src.rel.startswith("os-apply-config/") and "{{" in src.text:
        # A template is not the script: its {{mustache}} tags are what
        # shellcheck would report (SC1083, SC1054).
        return None
    shell = src.shell
    if shell == "mksh":
        shell = "ksh"
    return shell if shell in SHELLCHECK_SHELLS else None


def shellcheck_binary() -> str | None:
    """Path of the shellcheck executable, or None."""
    return shutil.which("shellcheck")


#: The environment variable shellcheck reads more options from.
SHELLCHECK_OPTS = "SHELLCHECK_OPTS"


def run_shellcheck(paths: Sequence[Path], severity: str = "warning",
                   binary: str = "shellcheck",
                   shell: str = "bash") -> list[dict[str, Any]]:
    """Run shellcheck once over ``paths`` (all checked as ``shell``) and
    return its json1 comments.  No ``.shellcheckrc`` and no
    ``SHELLCHECK_OPTS`` is read: the arguments here are all it gets.

    The one place this package starts a process (through
    :func:`tripleo_elements.process.run`).  Raises
    :class:`errors.ShellcheckFailed` when shellcheck fails to run.
    """
    from tripleo_elements import process
    if not paths:
        return []
    argv = [binary, "--norc", "--format=json1", f"--shell={shell}",
            f"--severity={severity}", "--", *map(str, paths)]
    env = {k: v for k, v in os.environ.items() if k != SHELLCHECK_OPTS}
    proc = process.run(argv, check=False, env=env)
    if proc.returncode not in (0, 1):
        raise errors.ShellcheckFailed(
            f"shellcheck failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[:300]}",
            "run the command by hand: " + " ".join(argv[:5]) + " ...")
    try:
        return list(json.loads(proc.stdout or "{}").get("comments", []))
    except ValueError as exc:
        raise errors.ShellcheckFailed(
            f"shellcheck printed no JSON: {exc}",
            "run the command by hand: " + " ".join(argv[:5]) + " ...")


def chunks(paths: Sequence[Path], sizes: Sequence[int], jobs: int
           ) -> list[list[Path]]:
    """``paths`` split into at most ``jobs`` lists of about equal total
    size (largest first onto the lightest list), each in input order."""
    loads: list[tuple[int, int]] = [(0, i) for i in range(jobs)]
    members: list[list[int]] = [[] for _ in range(jobs)]
    for index in sorted(range(len(paths)), key=lambda i: (-sizes[i], i)):
        load, slot = min(loads)
        loads[slot] = (load + sizes[index] + 512, slot)
        members[slot].append(index)
    return [[paths[i] for i in sorted(m)] for m in members if m]


#: Chunks per CPU for a large group: more, smaller chunks taken from one
#: queue end closer together than one fixed share per CPU (a chunk's
#: time is only roughly its size); each costs one more process start.
CHUNKS_PER_CPU = 4


Groups = Mapping[str, list[SourceFile]] | Sequence[
    tuple[str, list[SourceFile]]]


def run_groups(groups: Groups, severity: str, binary: str,
               cpus: int | None = None) -> list[dict[str, Any]]:
    """:func:`run_shellcheck` over every group's files at once (a group:
    a shell and its files, as a mapping or (shell, files) pairs; two
    groups may have the same shell, and no process mixes two groups):
    each group is split into chunks of about equal size (never fewer
    than 8 files a chunk; one chunk on one CPU), and one worker per CPU
    takes them largest first, so every CPU stays busy until the end and
    a small group (the ``sh`` scripts) runs beside the large one, not
    after it."""
    from concurrent.futures import ThreadPoolExecutor
    cpus = max(1, cpus or os.cpu_count() or 1)
    work: list[tuple[int, str, list[Path]]] = []
    pairs = list(groups.items()) if isinstance(groups, Mapping) \
        else list(groups)
    for shell, group in sorted(pairs, key=lambda pair: pair[0]):
        size = {src.path: len(src.data) for src in group}
        count = 1 if cpus == 1 else max(
            1, min(CHUNKS_PER_CPU * cpus, len(group) // 8))
        for chunk in chunks(list(size), list(size.values()), count):
            work.append((sum(size[p] for p in chunk), shell, chunk))
    work.sort(key=lambda item: -item[0])
    if len(work) <= 1 or cpus == 1:
        return [c for _, shell, chunk in work
                for c in run_shellcheck(chunk, severity, binary, shell)]
    with ThreadPoolExecutor(min(cpus, len(work))) as pool:
        results = pool.map(
            lambda item: run_shellcheck(item[2], severity, binary,
                                        item[1]), work)
        return [c for result in results for c in result]


@functools.cache
def _binary_version(binary: str) -> str:
    # Part of the cache key only: a changed binary means a new key.
    try:
        st = os.stat(binary)
    except OSError:
        return binary
    return f"{os.path.realpath(binary)}:{st.st_size}:{st.st_mtime_ns}"


#: What shellcheck may read another file for: a ``source`` or ``.``
#: word where a command could start (line start, a blank or an operator
#: before it, a blank after it), or a ``shellcheck`` directive naming
#: ``source=`` or ``source-path=``; matched after dropping backslashes
#: and quotes, so ``\.`` or ``"source"`` count too.  It may match more
#: than the commands (an argument, a comment): that only costs a copy.
_MAY_SOURCE = re.compile(
    rb"(?:^|[\s;&|(){}!`])(?:source|\.)(?:\s|$)"
    rb"|shellcheck\s[^\n]*source", re.MULTILINE)


def may_source(src: SourceFile) -> bool:
    """True unless ``src`` surely makes shellcheck read no other file."""
    return _MAY_SOURCE.search(src.data.translate(None, b"\\'\"")) \
        is not None


def stage(groups: Mapping[str, list[SourceFile]], root: Path
          ) -> tuple[list[tuple[str, list[SourceFile]]], dict[Path, Path]]:
    """The groups for shellcheck, and copy -> original path for the files
    :func:`may_source` picks: those are copied, each alone in its own
    numbered directory under ``root`` (its name kept), into groups of
    their own (a process holds copies only, or originals only).  No
    script checked beside a copy can be followed by it: what it names
    relative to its own directory is itself, and other inputs of its
    process are in directories nobody knows the name of."""
    pairs: list[tuple[str, list[SourceFile]]] = []
    origin: dict[Path, Path] = {}
    for shell, group in sorted(groups.items()):
        picked = [may_source(src) for src in group]
        plain = [src for src, pick in zip(group, picked) if not pick]
        copies = []
        for src in (src for src, pick in zip(group, picked) if pick):
            where = root / str(len(origin)) / src.name
            where.parent.mkdir()
            where.write_bytes(src.data)
            origin[where] = src.path
            copies.append(
                SourceFile(src.element, where, src.rel, src.mode, src.data))
        pairs.extend((shell, files) for files in (plain, copies) if files)
    return pairs, origin


#: Part of the cache key: results cached before shellcheck saw each
#: script alone (``--norc``, copies) may hold what it read elsewhere.
RESULT_KIND = "content-only"


def shellcheck_findings(scripts: Sequence[SourceFile], severity: str,
                        cache_dir: Path | None,
                        binary: str) -> list[Finding]:
    """shellcheck's findings on ``scripts``, each file checked as the
    shell its ``#!`` line names; ``SC2034`` (unused variable) is dropped
    for ``environment.d`` files, whose variables other scripts use."""
    version = _binary_version(binary)
    by_shell: dict[str, list[SourceFile]] = {}
    for src in scripts:
        shell = shellcheck_shell(src)
        if shell is not None:
            by_shell.setdefault(shell, []).append(src)
    results: dict[Path, list[dict[str, Any]]] = {}
    keys: dict[Path, str] = {}
    misses: dict[str, list[SourceFile]] = {}
    for shell, group in sorted(by_shell.items()):
        salt = f"{RESULT_KIND}\0{version}\0{severity}\0{shell}\0".encode()
        # shellcheck's comments depend on the content only (the cache
        # relies on that too): each distinct content is checked once.
        first: dict[str, SourceFile] = {}
        for src in group:
            key = keys[src.path] = hashlib.sha256(
                salt + src.data).hexdigest()
            if key in first:
                continue
            cached = cache.get(cache_dir, key)
            if cached is None:
                first[key] = src
            else:
                results[src.path] = cached
        if first:
            misses[shell] = list(first.values())
    fresh: dict[Path, list[dict[str, Any]]] = {
        src.path: [] for group in misses.values() for src in group}
    if misses:
        with tempfile.TemporaryDirectory(prefix="tie-shellcheck-") as tmp:
            staged, origin = stage(misses, Path(tmp))
            for comment in run_groups(staged, severity, binary):
                path = Path(comment["file"])
                path = origin.get(path, path)
                if path in fresh:
                    fresh[path].append(comment)
    for group in misses.values():
        for src in group:
            cache.put(cache_dir, keys[src.path], fresh[src.path])
    by_key = {keys[path]: comments for path, comments in fresh.items()
              if path in keys}
    for src in scripts:
        if src.path in keys and src.path not in results:
            results[src.path] = by_key.get(keys[src.path], [])
    env_files = {src.path for src in scripts if src.in_environment_d}
    findings = []
    for path, comments in results.items():
        for comment in comments:
            code = f"{SHELLCHECK_PREFIX}{comment['code']}"
            if path in env_files and code == "SC2034":
                continue
            findings.append(Finding(
                path, int(comment.get("line", 0)), code,
                f"{comment.get('level', 'warning')}: {comment['message']}"))
    return findings


# ---------------------------------------------------------------- flake8

def _flake8_key(src: SourceFile) -> str:
    import pycodestyle
    import pyflakes
    salt = f"flake8\0{pycodestyle.__version__}\0{pyflakes.__version__}\0"
    return hashlib.sha256(salt.encode() + src.data).hexdigest()


def flake8_cached(scripts: Sequence[SourceFile], cache_dir: Path | None
                  ) -> Iterator[tuple[SourceFile, int, str, str]]:
    """:func:`flake8` through the cache."""
    misses = []
    for src in scripts:
        cached = cache.get(cache_dir, _flake8_key(src))
        if cached is None:
            misses.append(src)
            continue
        for item in cached:
            yield src, item["line"], item["code"], item["message"]
    if misses:
        found: dict[Path, list[dict[str, Any]]] = {
            src.path: [] for src in misses}
        for src, line, code, message in flake8(misses):
            found[src.path].append(
                {"line": line, "code": code, "message": message})
            yield src, line, code, message
        for src in misses:
            cache.put(cache_dir, _flake8_key(src), found[src.path])


_PYFLAKES_CODES = "FLAKE8_PYFLAKES_CODES"


@functools.cache
def pyflakes_codes() -> dict[str, str]:
    """flake8's table of pyflakes message class -> code (``F401``...).

    Read from ``flake8/plugins/pyflakes.py`` without importing flake8:
    its import pulls in flake8's option and plugin machinery
    (``importlib.metadata``...), about 0.1 s, more than checking a few
    scripts.  Falls back to importing the module when the table is not
    a plain literal there."""
    import ast
    import importlib.util
    spec = importlib.util.find_spec("flake8")
    if spec is not None and spec.origin:
        source = Path(spec.origin).with_name("plugins") / "pyflakes.py"
        try:
            module = ast.parse(source.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            module = ast.Module(body=[], type_ignores=[])
        for node in module.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == _PYFLAKES_CODES):
                try:
                    table = ast.literal_eval(node.value)
                except ValueError:
                    break
                if isinstance(table, dict):
                    return {str(k): str(v) for k, v in table.items()}
    from flake8.plugins import pyflakes as plugin
    return dict(getattr(plugin, _PYFLAKES_CODES))


def flake8(scripts: Sequence[SourceFile]
           ) -> Iterator[tuple[SourceFile, int, str, str]]:
    """(file, line, flake8 code, message) for each problem pycodestyle and
    pyflakes find, with flake8's default ignore list."""
    import pycodestyle
    import pyflakes.api

    found: list[tuple[int, str, str]] = []

    class Flakes:
        def unexpectedError(self, filename: str, msg: str) -> None:
            found.append((0, "E902", str(msg)))

        def syntaxError(self, filename: str, msg: str, lineno: int,
                        offset: int, text: str) -> None:
            found.append((lineno or 0, "E999", str(msg)))

        def flake(self, message: Any) -> None:
            code = pyflakes_codes().get(type(message).__name__, "F")
            found.append((message.lineno, code,
                          message.message % message.message_args))

    class Style(pycodestyle.BaseReport):
        def error(self, line_number: int, offset: int, text: str,
                  check: Any) -> str | None:
            code = super().error(line_number, offset, text, check)
            if code:
                found.append((line_number, text[:4], text[5:]))
            return code

    guide = pycodestyle.StyleGuide(
        reporter=Style, ignore=pycodestyle.DEFAULT_IGNORE.split(","),
        quiet=True)
    for src in scripts:
        found.clear()
        pyflakes.api.check(src.text, str(src.path), Flakes())
        pycodestyle.Checker(str(src.path), lines=src.text.splitlines(True),
                            options=guide.options,
                            report=Style(guide.options)).check_all()
        for line, code, message in found:
            yield src, line, code, message
