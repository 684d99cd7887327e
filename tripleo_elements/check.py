"""Element lint: diskimage-builder's ``dib-lint`` checks, plus the mistakes
it misses, run in one process.

Every check is a small function in :data:`CHECKS`, registered with a stable
code (``TIE0NN``), a one-line description and a scope:

* ``file``: called once per file below an element directory;
* ``element``: called once per checked element;
* ``set``: called once with every checked element (and the resolved set).

Two external linters run over *all* matching files at once, never one
process per file: shellcheck (one invocation, ``--format=json1``; its
findings keep shellcheck's own codes, ``SC1234``) and pycodestyle/pyflakes
(in-process, for Python scripts without a ``.py`` suffix, as dib-lint runs
flake8 on them; reported as ``TIE032``).

A file can opt out of checks the way dib-lint files already do: a line
``# dib-lint: disable=NAME ...`` (dib-lint's test names, e.g. ``sete``,
``safe_sudo``, or our codes) at the start of a line.  Whole-file findings
(a missing ``set -e``...) use line 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.discovery import (ElementIndex, default_roots,
                                        discover)
from tripleo_elements.element import (PHASES, RUN_PARTS_NAME, Element,
                                      load_element)
from tripleo_elements import graph, tree
from tripleo_elements.graph import Resolution

FILE = "file"
ELEMENT = "element"
SET = "set"

#: Code of the notice emitted when shellcheck is not installed.
SHELLCHECK_MISSING = "TIE080"
#: Prefix of shellcheck's own codes, passed through unchanged.
SHELLCHECK_PREFIX = "SC"
SHELLCHECK_LEVELS = ("error", "warning", "info", "style")


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    """One problem: ``line`` 0 means the file (or directory) as a whole."""

    path: Path
    line: int
    code: str
    message: str

    def format(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "line": self.line,
                "code": self.code, "message": self.message}


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check.  ``dib_lint`` names the dib-lint test it
    reproduces (and the name accepted in ``# dib-lint: disable=``)."""

    code: str
    scope: str
    description: str
    func: Callable[..., Iterable[Finding]]
    dib_lint: str = ""


#: code -> Check, in code order once the module is loaded.
CHECKS: dict[str, Check] = {}


CheckFunc = Callable[..., Iterable[Finding]]


def register(code: str, scope: str, description: str,
             dib_lint: str = "") -> Callable[[CheckFunc], CheckFunc]:
    """Decorator adding a check function to :data:`CHECKS`."""
    def wrap(func: CheckFunc) -> CheckFunc:
        if code in CHECKS:
            raise ValueError(f"check code {code} registered twice")
        CHECKS[code] = Check(code, scope, description, func, dib_lint)
        return func
    return wrap


# ---------------------------------------------------------------- the data

@dataclasses.dataclass(frozen=True)
class SourceFile:
    """A regular file below an element directory, read once."""

    element: Element
    path: Path
    rel: str          # path inside the element, '/'-separated
    mode: int
    data: bytes

    @functools.cached_property
    def name(self) -> str:
        return self.path.name

    @property
    def where(self) -> str:
        """``<element>/<rel>``: what dib-lint's path regexes look at."""
        return f"{self.element.name}/{self.rel}"

    @functools.cached_property
    def binary(self) -> bool:
        return b"\0" in self.data[:8192]

    @functools.cached_property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    @functools.cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    @functools.cached_property
    def first_line(self) -> str:
        return self.lines[0] if self.lines else ""

    @property
    def executable(self) -> bool:
        return bool(self.mode & 0o111)

    @property
    def shebang(self) -> bool:
        return self.first_line.startswith("#!")

    @property
    def is_bash(self) -> bool:
        # dib-lint's test: the first line contains '#!/bin/bash'.
        return "#!/bin/bash" in self.first_line

    @property
    def is_python(self) -> bool:
        return self.shebang and "python" in self.first_line

    @functools.cached_property
    def in_environment_d(self) -> bool:
        return _ENVIRONMENT_D.search(self.where) is not None

    @property
    def dib_lint_file(self) -> bool:
        """Files dib-lint's main loop looks at (not .rst/.yaml/.py)."""
        return not self.name.endswith((".rst", ".yaml", ".py"))

    @functools.cached_property
    def disabled(self) -> frozenset[str]:
        """Codes switched off by ``# dib-lint: disable=...`` lines."""
        names: set[str] = set()
        for line in self.lines:
            if line.startswith(_DISABLE):
                names.update(line[len(_DISABLE):].split())
        return frozenset(_dib_lint_names().get(n, n) for n in names)


_DISABLE = "# dib-lint: disable="
_ENVIRONMENT_D = re.compile(r"environment.d")
_TAB_INDENT = re.compile(r"^ *\t", re.M)
_EXPORT_SUBST = re.compile(r"export .*\$\(")


@functools.cache
def _dib_lint_names() -> dict[str, str]:
    return {c.dib_lint: c.code for c in CHECKS.values() if c.dib_lint}


@dataclasses.dataclass(frozen=True)
class Context:
    """What element- and set-scope checks may look at."""

    targets: tuple[Element, ...]
    index: ElementIndex
    resolution: Resolution | None
    requested: tuple[str, ...]
    files: tuple[SourceFile, ...]
    cache_dir: Path | None = None

    @functools.cached_property
    def providers(self) -> dict[str, tuple[str, ...]]:
        return self.index.providers()

    @functools.cached_property
    def environment_variables(self) -> frozenset[str]:
        """Variables set by an environment.d file of any known element."""
        names: set[str] = set(DIB_VARIABLES)
        elements = {e.path: e for e in self.index.elements.values()}
        elements.update((e.path, e) for e in self.targets)
        for element in elements.values():
            env_dir = element.path / "environment.d"
            for name in _listdir(env_dir):
                try:
                    text = (env_dir / name).read_text(errors="replace")
                except (IsADirectoryError, FileNotFoundError):
                    continue
                names.update(_ASSIGNMENT.findall(text))
        return frozenset(names)


#: Variables diskimage-builder itself sets for every element's hooks.
DIB_VARIABLES: tuple[str, ...] = (
    "ARCH", "DIB_ARGS", "DIB_DEBUG_TRACE", "DIB_ELEMENTS",
    "DIB_IMAGE_SIZE", "DIB_INIT_SYSTEM", "DIB_PYTHON", "DIB_PYTHON_VERSION",
    "IMAGE_ELEMENT", "IMAGE_NAME", "TMP_HOOKS_PATH", "TMP_MOUNT_PATH",
)

_ASSIGNMENT = re.compile(
    r"^[ \t]*(?:export[ \t]+|declare[ \t]+-\w+[ \t]+)?"
    r"([A-Za-z_][A-Za-z0-9_]*)(?==|[ \t]*$)", re.M)


def _listdir(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _whole(src: SourceFile, code: str, message: str) -> Finding:
    return Finding(src.path, 0, code, message)


def _at(src: SourceFile, index: int, code: str, message: str) -> Finding:
    """A finding on the 0-based line ``index`` of ``src``."""
    return Finding(src.path, index + 1, code, message)


# ------------------------------------------------------- dib-lint's checks

@register("TIE001", ELEMENT, "element has no README.rst")
def _readme(element: Element, ctx: Context) -> Iterator[Finding]:
    if not (element.path / "README.rst").is_file():
        yield Finding(element.path, 0, "TIE001",
                      "element has no README.rst")


@register("TIE002", FILE, "Markdown (.md) documentation file; use .rst",
          dib_lint="mddocs")
def _md_docs(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if src.name.endswith(".md"):
        yield _whole(src, "TIE002", ".md docs found; use reStructuredText")


@register("TIE010", FILE, "file starting with #! is not executable",
          dib_lint="executable")
def _shebang_executable(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if src.dib_lint_file and src.shebang and not src.executable:
        yield _whole(src, "TIE010",
                     "starts with #! but is not executable (chmod +x)")


@register("TIE011", FILE, "bash script whose #! line is not #!/bin/bash")
def _bash_shebang(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if (src.dib_lint_file and re.match(r"#!.*bash", src.first_line)
            and src.first_line != "#!/bin/bash"):
        yield _at(src, 0, "TIE011",
                  f"only use #!/bin/bash for scripts, not "
                  f"'{src.first_line}'")


def _bash_checked(src: SourceFile) -> bool:
    return src.dib_lint_file and src.is_bash


def _grep(src: SourceFile, pattern: str) -> bool:
    return re.search(pattern, src.text, re.M) is not None


@register("TIE012", FILE, "bash script without set -e", dib_lint="sete")
def _set_e(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if _bash_checked(src) and not _grep(src, r"^set -[^ \n]*e"):
        yield _whole(src, "TIE012", "is not set -e")


@register("TIE013", FILE, "bash script without set -u", dib_lint="setu")
def _set_u(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if _bash_checked(src) and not _grep(src, r"^set -[^ \n]*u"):
        yield _whole(src, "TIE013", "is not set -u")


@register("TIE014", FILE, "bash script without set -o pipefail",
          dib_lint="setpipefail")
def _set_pipefail(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if _bash_checked(src) and not _grep(src, r"^set -o pipefail"):
        yield _whole(src, "TIE014", "is not set -o pipefail")


@register("TIE015", FILE, "bash script ignores DIB_DEBUG_TRACE",
          dib_lint="dibdebugtrace")
def _debug_trace(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if _bash_checked(src) and "DIB_DEBUG_TRACE" not in src.text:
        yield _whole(src, "TIE015",
                     "does not follow DIB_DEBUG_TRACE (set -x only when "
                     "${DIB_DEBUG_TRACE:-0} -gt 0)")


_SET_X = re.compile(r"^set +(-[a-wyz]*x|-o +xtrace)")


@register("TIE016", FILE, "bash script turns on xtrace unconditionally")
def _unconditional_xtrace(src: SourceFile,
                          ctx: Context) -> Iterator[Finding]:
    # DIB's convention indents `set -x` inside the DIB_DEBUG_TRACE test; a
    # top-level one traces every build.
    if not _bash_checked(src) or src.in_environment_d:
        return
    for number, line in enumerate(src.lines):
        if _SET_X.match(line):
            yield _at(src, number, "TIE016",
                      "set -x outside the DIB_DEBUG_TRACE test")


_INDENT = re.compile(r"^(    )* {1,3}[^ ]")


@register("TIE020", FILE, "script indented by other than 4 spaces",
          dib_lint="indent")
def _indent(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not (src.dib_lint_file and src.shebang) or src.is_python:
        return
    for number, line in enumerate(src.lines):
        if _INDENT.match(line):
            yield _at(src, number, "TIE020", "should use 4 spaces indent")


def _indent_file(src: SourceFile) -> bool:
    # dib-lint's second loop: *.rst files and executable files.
    return src.name.endswith(".rst") or src.executable


@register("TIE021", FILE, "tab characters in indentation",
          dib_lint="tabindent")
def _tabs(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not _indent_file(src) or src.binary:
        return
    match = _TAB_INDENT.search(src.text)
    if match:
        yield _at(src, src.text.count("\n", 0, match.start()), "TIE021",
                  "contains tab characters")


@register("TIE022", FILE, "no newline at end of file", dib_lint="newline")
def _newline(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    wanted = _indent_file(src) or (src.dib_lint_file
                                   and "source-repository-" in src.name)
    if wanted and src.data and not src.data.endswith(b"\n"):
        yield _at(src, max(len(src.lines) - 1, 0), "TIE022",
                  "no newline at end of file")


@register("TIE024", FILE, "element-deps not sorted alphabetically")
def _deps_sorted(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if src.name != "element-deps":
        return
    names = [line for line in src.text.split("\n")
             if line and not line.startswith("#")]
    if names != sorted(names):
        first = next(i for i, (a, b) in enumerate(zip(names, sorted(names)))
                     if a != b)
        number = src.lines.index(names[first])
        yield _at(src, number, "TIE024",
                  f"is not sorted alphabetically (expected "
                  f"'{sorted(names)[first]}' here)")


@register("TIE025", FILE, "environment.d file turns on tracing (set -x)")
def _env_trace(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not (src.dib_lint_file and src.in_environment_d):
        return
    for number, line in enumerate(src.lines):
        if "set -x" in line:
            yield _at(src, number, "TIE025",
                      "environment file should not set tracing")
            return


@register("TIE026", FILE, "environment.d file is executable")
def _env_exec(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if src.dib_lint_file and src.in_environment_d and src.executable:
        yield _whole(src, "TIE026",
                     "environment file should not be marked as executable "
                     "(it is sourced)")


@register("TIE027", FILE, "export VAR=$(cmd) hides cmd's failure")
def _export_subst(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not src.dib_lint_file or "export " not in src.text:
        return
    for number, line in enumerate(src.lines):
        if _EXPORT_SUBST.search(line):
            yield _at(src, number, "TIE027",
                      "split export and assignment: export hides the "
                      "exit status of $(...)")


def _read_lines(src: SourceFile) -> Iterator[tuple[int, str]]:
    """Lines as dib-lint's ``while read LINE`` sees them: stripped, and a
    backslash-newline joins the next line on."""
    lines = src.lines
    number = 0
    while number < len(lines):
        start, text = number, lines[number]
        while text.endswith("\\") and number + 1 < len(lines):
            number += 1
            text = text[:-1] + lines[number]
        number += 1
        yield start, text.strip()


_OUTSIDE_PHASE = re.compile(
    r"(root.d|extra-data.d|block-device.d|finalise.d|cleanup.d)")
_SAFE_SUDO = re.compile(r"(dib-lint: safe_sudo|^#|install-packages|"
                        r"TARGET_ROOT|IMAGE_BLOCK_DEVICE|TMP_MOUNT_PATH|"
                        r"TMP_IMAGE_PATH)")


@register("TIE028", FILE,
          "sudo outside the chroot not confined to the image's paths",
          dib_lint="safe_sudo")
def _safe_sudo(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not src.dib_lint_file or not _OUTSIDE_PHASE.search(
            src.where.rpartition("/")[0]):
        return
    for number, line in _read_lines(src):
        if "sudo " in line and not _SAFE_SUDO.search(line):
            yield _at(src, number, "TIE028",
                      f"potentially unsafe sudo: {line}")


@register("TIE029", FILE, "use of `which` (use `type -p` / `command -v`)",
          dib_lint="which")
def _which(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not src.dib_lint_file or src.binary:
        return
    for number, line in _read_lines(src):
        if ("which " in line and not line.startswith("#")
                and "dib-lint: which" not in line):
            yield _at(src, number, "TIE029",
                      f"potential use of which: {line}")


@functools.cache
def _yaml() -> Any:
    import yaml
    return yaml


def _yaml_load(text: str) -> Any:
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def _yaml_error_line(exc: Exception) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(
        exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 0


@register("TIE030", FILE, "YAML file does not parse")
def _yaml_parse(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not src.name.endswith(".yaml"):
        return
    try:
        _yaml_load(src.data.decode("utf-8"))
    except Exception as exc:  # any failure is a broken file
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        yield Finding(src.path, _yaml_error_line(exc), "TIE030",
                      f"is not a valid YAML file: {problem}")


@register("TIE031", FILE, "pkg-map is not valid JSON")
def _pkg_map(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if src.name != "pkg-map" or src.executable:
        return
    try:
        json.loads(src.data.decode("utf-8"))
    except ValueError as exc:
        yield Finding(src.path, getattr(exc, "lineno", 0), "TIE031",
                      f"is not a valid JSON file: {exc}")


@register("TIE032", SET, "Python script without .py fails flake8 "
          "(pycodestyle/pyflakes, in-process)")
def _python_scripts(elements: Sequence[Element],
                    ctx: Context) -> Iterator[Finding]:
    scripts = [src for src in ctx.files
               if src.dib_lint_file and src.is_python]
    misses = []
    for src in scripts:
        cached = _cache_get(ctx.cache_dir, _flake8_key(src))
        if cached is None:
            misses.append(src)
            continue
        for item in cached:
            yield Finding(src.path, item["line"], "TIE032",
                          f"flake8 {item['code']} {item['message']}")
    if misses:
        found: dict[Path, list[dict[str, Any]]] = {
            src.path: [] for src in misses}
        for src, line, code, message in _flake8(misses):
            found[src.path].append(
                {"line": line, "code": code, "message": message})
            yield Finding(src.path, line, "TIE032",
                          f"flake8 {code} {message}")
        for src in misses:
            _cache_put(ctx.cache_dir, _flake8_key(src), found[src.path])


def _flake8_key(src: SourceFile) -> str:
    import pycodestyle
    import pyflakes
    salt = f"flake8\0{pycodestyle.__version__}\0{pyflakes.__version__}\0"
    return hashlib.sha256(salt.encode() + src.data).hexdigest()


def _flake8(scripts: Sequence[SourceFile]
            ) -> Iterator[tuple[SourceFile, int, str, str]]:
    """(file, line, flake8 code, message) for each problem pycodestyle and
    pyflakes find, with flake8's default ignore list."""
    import pycodestyle
    import pyflakes.api
    from flake8.plugins.pyflakes import FLAKE8_PYFLAKES_CODES

    found: list[tuple[int, str, str]] = []

    class Flakes:
        def unexpectedError(self, filename: str, msg: str) -> None:
            found.append((0, "E902", str(msg)))

        def syntaxError(self, filename: str, msg: str, lineno: int,
                        offset: int, text: str) -> None:
            found.append((lineno or 0, "E999", str(msg)))

        def flake(self, message: Any) -> None:
            code = FLAKE8_PYFLAKES_CODES.get(type(message).__name__, "F")
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


# ------------------------------------------------ what dib-lint misses

def _walk_closure(ctx: Context) -> dict[str, str | None]:
    """Parents of every element reachable from the request (or from each
    target) through element-deps, following every provider."""
    roots = ctx.requested or tuple(sorted({e.name for e in ctx.targets}))
    parents: dict[str, str | None] = {name: None for name in roots}
    queue = deque(roots)
    by_name = {e.name: e for e in ctx.targets}
    while queue:
        name = queue.popleft()
        element = by_name.get(name) or ctx.index.elements.get(name)
        if element is None:
            continue
        for dep in element.depends:
            for step in (dep, *ctx.providers.get(dep, ())):
                if step not in parents:
                    parents[step] = name
                    queue.append(step)
    return parents


def _line_of(path: Path, needle: str) -> int:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    for number, line in enumerate(lines):
        if line.strip() == needle:
            return number + 1
    return 0


@register("TIE040", SET,
          "element-deps names an element nothing on the path provides")
def _missing_deps(elements: Sequence[Element],
                  ctx: Context) -> Iterator[Finding]:
    parents = _walk_closure(ctx)
    known = set(ctx.index.elements) | set(ctx.providers) | {
        e.name for e in ctx.targets}
    for element in ctx.targets:
        for dep in element.depends:
            if dep in known or dep.startswith("#"):
                continue
            chain = " -> ".join(
                graph.chain_to(parents, element.name) + [dep])
            deps = element.path / "element-deps"
            yield Finding(deps, _line_of(deps, dep), "TIE040",
                          f"{chain}: element '{dep}' not found on the "
                          f"elements path (no element has that name or "
                          f"provides it)")


@register("TIE041", ELEMENT,
          "element-deps/element-provides line looks like a comment")
def _comment_lines(element: Element, ctx: Context) -> Iterator[Finding]:
    for name in ("element-deps", "element-provides"):
        path = element.path / name
        listed = element.depends if name == "element-deps" \
            else element.provides
        for entry in listed:
            if entry.startswith("#"):
                yield Finding(path, _line_of(path, entry), "TIE041",
                              f"'{entry}' is read as an element name: "
                              f"{name} has no comment syntax")


_HOOK_PREFIX = re.compile(r"^[0-9]+-")


def _looks_like_hook(path: Path) -> bool:
    """Phase directories also carry data files the hooks install
    (``dhcp-all-interfaces.conf``, ``foo.udev``): a skipped file is taken
    for a hook when its name starts with ``NN-``, or when only the missing
    execute bit keeps it from running and it starts with ``#!``."""
    if _HOOK_PREFIX.match(path.name):
        return True
    try:
        with open(path, "rb") as handle:
            shebang = handle.read(2) == b"#!"
    except OSError:
        return False
    return shebang and RUN_PARTS_NAME.match(path.name) is not None


@register("TIE050", ELEMENT, "hook script run-parts silently skips "
          "(bad name or not executable)")
def _skipped(element: Element, ctx: Context) -> Iterator[Finding]:
    for skipped in tree.skipped_scripts(element):
        if _looks_like_hook(skipped.path):
            yield Finding(skipped.path, 0, "TIE050",
                          f"run-parts will skip it ({skipped.reason})")


def _exclusive(a: Element, b: Element) -> bool:
    """Two elements providing one name can never be in one image."""
    return bool(set(a.provides) & set(b.provides))


@register("TIE051", SET,
          "two elements of one set ship the same hook name in a phase")
def _collisions(elements: Sequence[Element],
                ctx: Context) -> Iterator[Finding]:
    groups: list[tuple[Element, ...]] = []
    if ctx.resolution is not None:
        groups.append(tuple(ctx.index[n] for n in ctx.resolution.elements
                            if n in ctx.index))
    groups.append(tuple(ctx.targets))
    for group in groups:
        owner = {}
        for element in group:
            owner[element.path] = element
        for collision in tree.hook_collisions(group):
            users = [_owner(owner, p) for p in collision.paths]
            if not any(not _exclusive(a, b) for i, a in enumerate(users)
                       for b in users[i + 1:]):
                continue
            others = ", ".join(str(p) for p in collision.paths[1:])
            yield Finding(collision.paths[0], 0, "TIE051",
                          f"{collision.phase}/{collision.name} is also "
                          f"shipped by {others}: diskimage-builder aborts "
                          f"when both are in one image")


def _owner(owners: dict[Path, Element], path: Path) -> Element:
    for parent in path.parents:
        if parent in owners:
            return owners[parent]
    raise KeyError(path)


#: JSON schema of package-installs.yaml / .json, from diskimage-builder's
#: package-installs README and package-installs-squash.
PACKAGE_INSTALLS_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            {"type": "null"},
            {"$ref": "#/definitions/params"},
            {"type": "array", "items": {"$ref": "#/definitions/params"}},
        ],
    },
    "definitions": {
        "params": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                # package-installs-v2 only runs in these three phases.
                "phase": {"enum": ["pre-install.d", "install.d",
                                   "post-install.d"]},
                # Only the key's presence counts: 'uninstall: false'
                # still uninstalls.
                "uninstall": {"const": True},
                "build-only": {"const": True},
                "installtype": {"type": "string", "minLength": 1},
                "arch": {"$ref": "#/definitions/archlist"},
                "not-arch": {"$ref": "#/definitions/archlist"},
                "dib_python_version": {"enum": [2, 3, "2", "3"]},
                "when": {"anyOf": [
                    {"$ref": "#/definitions/when"},
                    {"type": "array", "minItems": 1,
                     "items": {"$ref": "#/definitions/when"}},
                ]},
            },
            "not": {"required": ["arch", "not-arch"]},
        },
        "archlist": {"type": "string",
                     "pattern": r"^[\w.-]+( *, *[\w.-]+)*$"},
        "when": {"type": "string",
                 "pattern": r"^\w+\s*(=|!=)\s*.*$"},
    },
}

_WHEN = re.compile(r"(?P<var>\w+)\s*(?:=|!=)")


def _package_installs_files(element: Element) -> list[Path]:
    return [element.path / f"package-installs.{ext}"
            for ext in ("json", "yaml")
            if (element.path / f"package-installs.{ext}").is_file()]


def _load_package_installs(path: Path) -> Any:
    # package-installs-squash: JSON first, then YAML.
    text = path.read_text(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return _yaml_load(text)


@functools.cache
def _package_installs_validator() -> Any:
    import jsonschema
    return jsonschema.Draft7Validator(PACKAGE_INSTALLS_SCHEMA)


def _leaf_errors(error: Any) -> list[Any]:
    """Replace an ``anyOf`` failure by the errors of the one branch whose
    type fits the value (a mapping: the params branch...)."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    branches: dict[int, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for subs in branches.values()
               if not any(e.validator == "type"
                          and not e.path for e in subs)]
    if len(fitting) != 1:
        return [error]
    return [leaf for sub in fitting[0] for leaf in _leaf_errors(sub)]


def _schema_message(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    prefix = f"{where}: " if where else ""
    params = PACKAGE_INSTALLS_SCHEMA["definitions"]["params"]["properties"]
    if error.validator == "additionalProperties" and where:
        unknown = sorted(set(error.instance) - set(params))
        return (f"{prefix}unknown key(s) {', '.join(unknown)} (known: "
                + ", ".join(sorted(params)) + ")")
    if error.validator == "not":
        return f"{prefix}arch and not-arch are exclusive"
    if error.validator == "const":
        return (f"{prefix}{error.instance!r}: only the key's presence "
                f"counts; write 'true' or drop the key")
    if error.validator == "pattern" and where.endswith("when") or \
            where.rpartition("/")[0].endswith("when"):
        return (f"{prefix}{error.instance!r} is not 'VARIABLE = value' or "
                f"'VARIABLE != value'")
    if error.validator == "anyOf":
        return (f"{prefix}{error.instance!r} is neither empty, a mapping "
                f"of settings nor a list of them")
    return f"{prefix}{error.message}"


@register("TIE060", ELEMENT, "package-installs entry does not match the "
          "schema (unknown key, bad phase, bad when...)")
def _package_installs(element: Element, ctx: Context) -> Iterator[Finding]:
    for path in _package_installs_files(element):
        # Cached by content: importing jsonschema costs more than the rest
        # of a warm run.
        data = path.read_bytes()
        key = hashlib.sha256(b"package-installs\0" + data).hexdigest()
        cached = _cache_get(ctx.cache_dir, key)
        if cached is None:
            cached = [{"line": f.line, "message": f.message}
                      for f in _validate_package_installs(path)]
            _cache_put(ctx.cache_dir, key, cached)
        for item in cached:
            yield Finding(path, item["line"], "TIE060", item["message"])


def _validate_package_installs(path: Path) -> Iterator[Finding]:
    """Schema violations of one package-installs file (none if it does
    not parse: TIE030 reports that)."""
    try:
        data = _load_package_installs(path)
    except Exception:
        return
    if data is None:
        return
    leaves = [leaf for error in _package_installs_validator().iter_errors(
        data) for leaf in _leaf_errors(error)]
    for error in sorted(leaves,
                        key=lambda e: list(map(str, e.absolute_path))):
        package = next(iter(error.absolute_path), "")
        yield Finding(path, _line_of_key(path, str(package)), "TIE060",
                      _schema_message(error))


def _line_of_key(path: Path, key: str) -> int:
    if not key:
        return 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    for number, line in enumerate(lines):
        stripped = line.strip().strip('"')
        if stripped.startswith(key) and stripped[len(key):].lstrip(
                '"').startswith(":"):
            return number + 1
    return 0


@register("TIE061", ELEMENT, "package-installs `when` tests a variable "
          "no environment.d file sets")
def _package_installs_when(element: Element,
                           ctx: Context) -> Iterator[Finding]:
    for path in _package_installs_files(element):
        try:
            data = _load_package_installs(path)
        except Exception:
            continue
        if not isinstance(data, dict):
            continue
        for package, params in data.items():
            entries = params if isinstance(params, list) else [params]
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                when = entry.get("when")
                tests = when if isinstance(when, list) else [when]
                for test in tests:
                    match = _WHEN.match(test) if isinstance(test, str) \
                        else None
                    if match and match["var"] not in \
                            ctx.environment_variables:
                        yield Finding(
                            path, _line_of_key(path, str(package)),
                            "TIE061",
                            f"{package}: when tests ${match['var']}, which "
                            f"no environment.d file sets: package-installs "
                            f"fails with 'The variable <{match['var']}> is "
                            f"not set'")


_OAC_KEYS = ("allow_empty", "group", "mode", "owner")


@register("TIE070", FILE, ".oac control file with an unknown key, a "
          "quoted or out-of-range mode, or no template")
def _oac(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if not (src.rel.startswith("os-apply-config/")
            and src.name.endswith(".oac")):
        return
    if not src.path.with_suffix("").exists():
        yield _whole(src, "TIE070", f"controls {src.path.with_suffix('')}, "
                     f"which does not exist")
    try:
        data = _yaml_load(src.text) or {}
    except Exception:
        yield _whole(src, "TIE070", "does not parse as YAML")
        return
    if not isinstance(data, dict):
        yield _whole(src, "TIE070", "is not a mapping of "
                     + ", ".join(_OAC_KEYS))
        return

    def line(key: str) -> int:
        return _line_of_key(src.path, key)

    for key in sorted(map(str, data)):
        if key not in _OAC_KEYS:
            yield Finding(src.path, line(key), "TIE070",
                          f"unknown key '{key}' (valid: "
                          f"{', '.join(_OAC_KEYS)})")
    mode = data.get("mode")
    if "mode" in data and type(mode) is not int:
        yield Finding(src.path, line("mode"), "TIE070",
                      f"mode {mode!r} is not a number: write it unquoted, "
                      f"e.g. mode: 0600")
    elif isinstance(mode, int) and not 0 <= mode <= 0o777:
        yield Finding(src.path, line("mode"), "TIE070",
                      f"mode {mode:#o} is out of range 0..0777")
    if "allow_empty" in data and type(data["allow_empty"]) is not bool:
        yield Finding(src.path, line("allow_empty"), "TIE070",
                      "allow_empty must be true or false")
    for key in ("owner", "group"):
        if key in data and type(data[key]) not in (int, str):
            yield Finding(src.path, line(key), "TIE070",
                          f"{key} must be a name or a number")


@register("TIE071", FILE, "os-apply-config template whose mustache does "
          "not parse")
def _template(src: SourceFile, ctx: Context) -> Iterator[Finding]:
    if (not src.rel.startswith("os-apply-config/")
            or src.name.endswith(".oac") or src.executable or src.binary):
        return
    from pystache import parser
    try:
        parser.parse(src.text, raise_on_mismatch=True)
    except parser.ParsingError as exc:
        match = re.search(r"position (\d+)", str(exc))
        line = src.text.count("\n", 0, int(match[1])) + 1 if match else 0
        yield Finding(src.path, line, "TIE071",
                      f"mustache does not parse: {exc}")


@register(SHELLCHECK_MISSING, SET,
          "shellcheck is not installed: bash scripts were not checked")
def _shellcheck_missing(elements: Sequence[Element],
                        ctx: Context) -> Iterator[Finding]:
    # Emitted by check_elements itself; registered for --select/--ignore
    # and the documentation.
    return iter(())


# ------------------------------------------------------------- shellcheck

def shellcheck_binary() -> str | None:
    """Path of the shellcheck executable, or None."""
    return shutil.which("shellcheck")


def run_shellcheck(paths: Sequence[Path], severity: str = "warning",
                   binary: str = "shellcheck") -> list[dict[str, Any]]:
    """Run shellcheck once over ``paths`` and return its json1 comments.

    The one place this module starts a process (through
    :func:`process.run`).  All files are checked as bash
    (``--shell=bash``).  Raises :class:`errors.TieError` when shellcheck
    fails to run.
    """
    from tripleo_elements import process
    if not paths:
        return []
    argv = [binary, "--format=json1", "--shell=bash",
            f"--severity={severity}", "--", *map(str, paths)]
    proc = process.run(argv, check=False)
    if proc.returncode not in (0, 1):
        raise errors.TieError(
            f"shellcheck failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[:300]}",
            "run the command by hand: " + " ".join(argv[:5]) + " ...")
    return list(json.loads(proc.stdout or "{}").get("comments", []))


def _shellcheck_parallel(paths: Sequence[Path], severity: str,
                         binary: str) -> list[dict[str, Any]]:
    """``run_shellcheck`` over a few chunks at once (one per CPU)."""
    from concurrent.futures import ThreadPoolExecutor
    jobs = max(1, min(os.cpu_count() or 1, len(paths) // 8 or 1))
    chunks = [list(paths[i::jobs]) for i in range(jobs)]
    if jobs == 1:
        return run_shellcheck(paths, severity, binary)
    with ThreadPoolExecutor(jobs) as pool:
        results = pool.map(
            lambda chunk: run_shellcheck(chunk, severity, binary), chunks)
        return [c for result in results for c in result]


def _shellcheck_findings(scripts: Sequence[SourceFile], severity: str,
                         cache_dir: Path | None) -> list[Finding]:
    binary = shellcheck_binary()
    if binary is None:
        return [Finding(Path("shellcheck"), 0, SHELLCHECK_MISSING,
                        f"shellcheck not found on PATH: {len(scripts)} bash "
                        f"script(s) not checked (install shellcheck or pass "
                        f"--no-shellcheck)")]
    salt = f"{_shellcheck_version(binary)}\0{severity}\0".encode()
    keys = {src.path: hashlib.sha256(salt + src.data).hexdigest()
            for src in scripts}
    results: dict[Path, list[dict[str, Any]]] = {}
    misses = []
    for src in scripts:
        cached = _cache_get(cache_dir, keys[src.path])
        if cached is None:
            misses.append(src.path)
        else:
            results[src.path] = cached
    fresh: dict[Path, list[dict[str, Any]]] = {p: [] for p in misses}
    if misses:
        for comment in _shellcheck_parallel(misses, severity, binary):
            fresh.setdefault(Path(comment["file"]), []).append(comment)
        for path, comments in fresh.items():
            if path in keys:
                _cache_put(cache_dir, keys[path], comments)
    results.update(fresh)
    env_files = {src.path for src in scripts if src.in_environment_d}
    findings = []
    for path, comments in results.items():
        for comment in comments:
            code = f"{SHELLCHECK_PREFIX}{comment['code']}"
            if path in env_files and code == "SC2034":
                continue    # environment.d sets variables for other files
            findings.append(Finding(
                path, int(comment.get("line", 0)), code,
                f"{comment.get('level', 'warning')}: {comment['message']}"))
    return findings


@functools.cache
def _shellcheck_version(binary: str) -> str:
    # Part of the cache key only: a changed binary means a new key.
    try:
        st = os.stat(binary)
    except OSError:
        return binary
    return f"{os.path.realpath(binary)}:{st.st_size}:{st.st_mtime_ns}"


def _cache_get(cache_dir: Path | None, key: str
               ) -> list[dict[str, Any]] | None:
    if cache_dir is None:
        return None
    try:
        return list(json.loads((cache_dir / key[:2] / key).read_text()))
    except (OSError, ValueError):
        return None


def _cache_put(cache_dir: Path | None, key: str,
               comments: list[dict[str, Any]]) -> None:
    if cache_dir is None:
        return
    keep = [{k: c[k] for k in ("line", "code", "level", "message") if k in c}
            for c in comments]
    # (The same store holds shellcheck's comments and flake8 results.)
    target = cache_dir / key[:2] / key
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(keep))
        os.replace(tmp, target)
    except OSError:
        pass    # a cache that cannot be written is only slower


def default_cache_dir(environ: dict[str, str] | os._Environ[str]
                      ) -> Path:
    """``$XDG_CACHE_HOME/tripleo-image-elements/check``."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME", "/root"), ".cache")
    return Path(base) / "tripleo-image-elements" / "check"


# ------------------------------------------------------------ the driver

_SKIP_DIRS = frozenset({"__pycache__", ".git", ".tox"})


def _read_files(element: Element) -> Iterator[SourceFile]:
    """Regular files below the element (symlinks and caches left out,
    as dib-lint's ``find -type f`` leaves out symlinks)."""
    base = str(element.path)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            with open(full, "rb") as handle:
                data = handle.read()
            rel = os.path.relpath(full, base).replace(os.sep, "/")
            yield SourceFile(element, Path(full), rel, st.st_mode, data)


def _matches(code: str, patterns: Collection[str]) -> bool:
    return any(code.startswith(p) for p in patterns)


def enabled(code: str, select: Collection[str] = (),
            ignore: Collection[str] = ()) -> bool:
    """True if ``code`` passes ``--select`` and ``--ignore`` (prefixes)."""
    if select and not _matches(code, select):
        return False
    return not _matches(code, ignore)


def _shellcheck_wanted(select: Collection[str],
                       ignore: Collection[str]) -> bool:
    if _matches(SHELLCHECK_PREFIX, ignore):
        return False
    return not select or any(p.startswith(SHELLCHECK_PREFIX)
                             or SHELLCHECK_PREFIX.startswith(p)
                             for p in select)


def validate_codes(patterns: Iterable[str]) -> None:
    """Raise :class:`errors.UsageError` for a ``--select``/``--ignore``
    entry that matches no code."""
    for pattern in patterns:
        known = any(code.startswith(pattern) for code in CHECKS)
        if not known and not pattern.startswith(SHELLCHECK_PREFIX) \
                and not SHELLCHECK_PREFIX.startswith(pattern):
            raise errors.UsageError(
                f"'{pattern}' matches no check code",
                "codes are listed in the README: TIE001..., or "
                "shellcheck's SCnnnn")


def _default_index(elements: Sequence[Element]) -> ElementIndex:
    roots = sorted({e.root for e in elements}, key=str)
    return discover(default_roots(roots, environ={}))


def check_elements(elements: Sequence[Element], *,
                   index: ElementIndex | None = None,
                   resolution: Resolution | None = None,
                   select: Collection[str] = (),
                   ignore: Collection[str] = (),
                   shellcheck: bool = True,
                   shellcheck_severity: str = "warning",
                   cache_dir: Path | None = None,
                   requested: Sequence[str] = ()) -> list[Finding]:
    """Every finding for ``elements``, sorted by path, line and code.

    ``index`` is the elements path the dependencies are looked up in
    (default: the elements' own roots, then this project's and
    diskimage-builder's elements).  ``resolution`` adds the resolved set
    as a scope for the set checks (hook collisions).  ``requested`` names
    the elements dependency chains start from (default: the resolution's
    request, else each element itself).  ``select``/``ignore`` are code
    prefixes.  ``shellcheck`` False skips shellcheck; when it is wanted
    but not installed one ``TIE080`` finding says so.  ``cache_dir``
    caches shellcheck and flake8 results by file content (None: no
    cache).
    """
    targets = tuple(sorted({e.path: e for e in elements}.values(),
                           key=lambda e: (e.name, str(e.path))))
    if index is None:
        index = _default_index(targets)
    if not requested and resolution is not None:
        requested = resolution.requested
    files = tuple(src for element in targets
                  for src in _read_files(element))
    ctx = Context(targets=targets, index=index, resolution=resolution,
                  requested=tuple(requested), files=files,
                  cache_dir=cache_dir)
    active = [c for c in CHECKS.values()
              if c.code != SHELLCHECK_MISSING
              and enabled(c.code, select, ignore)]
    found: set[Finding] = set()
    pending = None
    if shellcheck and _shellcheck_wanted(select, ignore):
        scripts = [src for src in files if _shellcheck_target(src)]
        if scripts:
            # shellcheck runs in its own processes while the checks below
            # run here: the total is the slower of the two, not the sum.
            from concurrent.futures import ThreadPoolExecutor
            pool = ThreadPoolExecutor(1)
            pending = pool.submit(_shellcheck_findings, scripts,
                                  shellcheck_severity, cache_dir)
            pool.shutdown(wait=False)
    for check in active:
        if check.scope == FILE:
            for src in files:
                found.update(check.func(src, ctx))
        elif check.scope == ELEMENT:
            for element in targets:
                found.update(check.func(element, ctx))
        else:
            found.update(check.func(targets, ctx))
    if pending is not None:
        found.update(pending.result())
    disabled = {src.path: src.disabled for src in files if src.disabled}
    # The shellcheck notice passes any --select that wanted shellcheck:
    # only --ignore TIE080 (or --no-shellcheck) silences it.
    return sorted(f for f in found
                  if (enabled(f.code, select, ignore)
                      or (f.code == SHELLCHECK_MISSING
                          and not _matches(f.code, ignore)))
                  and f.code not in disabled.get(f.path, ()))


def _shellcheck_target(src: SourceFile) -> bool:
    if src.binary or src.name.endswith((".py", ".rst", ".yaml")):
        return False
    if re.match(r"#!\S*/(env +)?bash\b", src.first_line):
        return True
    return src.in_environment_d and not src.shebang and \
        src.name.endswith(".bash")


# ------------------------------------------------------------- targets

#: Files whose presence makes a directory an element.
ELEMENT_FILES: tuple[str, ...] = (
    "element-deps", "element-provides", "README.rst",
    "package-installs.yaml", "package-installs.json", "pkg-map", "svc-map",
)
#: Subdirectories that make a directory an element, unless a subdirectory
#: holds an element file: a directory of elements may well hold elements
#: *called* os-apply-config or static (and DIB has ones called pkg-map).
ELEMENT_DIRS: tuple[str, ...] = (
    *PHASES, "environment.d", "static", "os-apply-config",
    "os-refresh-config",
)


def _has_element_file(path: Path) -> bool:
    for name in _listdir(path):
        if name in ELEMENT_FILES or name.startswith("source-repository-"):
            if (path / name).is_file():
                return True
    return False


def is_element_dir(path: Path) -> bool:
    """A directory is an element if it holds one of the files
    :data:`ELEMENT_FILES` or a ``source-repository-*`` file; or one of the
    directories :data:`ELEMENT_DIRS` while none of its subdirectories
    holds such a file (that would make it a directory of elements)."""
    if _has_element_file(path):
        return True
    subdirs = [path / n for n in _listdir(path) if (path / n).is_dir()]
    return any(d.name in ELEMENT_DIRS for d in subdirs) and not any(
        _has_element_file(d) for d in subdirs)


def targets_from_paths(paths: Iterable[str | os.PathLike[str]]
                       ) -> list[Element]:
    """Elements named by command-line paths.

    A path is one element directory if :func:`is_element_dir` says so,
    otherwise a directory of elements (its subdirectories that are
    elements; hidden ones skipped).  Raises :class:`errors.UsageError`
    for a path that does not exist, is not a directory, or holds no
    element.
    """
    found: dict[Path, Element] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise errors.UsageError(
                f"{path}: no such file or directory",
                "pass an element directory or a directory of elements")
        if not path.is_dir():
            raise errors.UsageError(
                f"{path}: not a directory",
                "pass an element directory or a directory of elements")
        if is_element_dir(path):
            found[path] = load_element(path)
            continue
        children = [path / n for n in _listdir(path)
                    if not n.startswith(".") and n not in _SKIP_DIRS
                    and (path / n).is_dir() and is_element_dir(path / n)]
        if not children:
            raise errors.UsageError(
                f"{path}: neither an element nor a directory of elements",
                "an element holds element-deps, README.rst, "
                "package-installs.yaml or a phase directory such as "
                "install.d")
        for child in children:
            found[child] = load_element(child, path)
    return sorted(found.values(), key=lambda e: (e.name, str(e.path)))


# ------------------------------------------------------------- output

FORMATS = ("text", "json")


def format_findings(findings: Iterable[Finding], fmt: str = "text") -> str:
    """``text``: one ``path:line: CODE message`` a line; ``json``: a list
    of objects with path, line, code and message.  Sorted, so two runs
    over the same tree give the same bytes."""
    ordered = sorted(findings)
    if fmt == "json":
        return json.dumps([f.as_dict() for f in ordered], indent=2) + "\n"
    if fmt == "text":
        return "".join(f.format() + "\n" for f in ordered)
    raise errors.UsageError(f"unknown format '{fmt}'",
                            f"use one of: {', '.join(FORMATS)}")


def describe_checks() -> str:
    """One ``CODE  scope  description`` line per registered check."""
    return "".join(f"{c.code}  {c.scope:<7}  {c.description}\n"
                   for c in sorted(CHECKS.values(), key=lambda c: c.code))


# ------------------------------------------------------------- command

def _codes(values: Sequence[str] | None) -> list[str]:
    return [c.strip() for v in values or () for c in v.split(",")
            if c.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` subcommand's options."""
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="element directory or directory of elements")
    parser.add_argument("-e", "--element", action="append", default=[],
                        dest="elements", metavar="ELEMENT",
                        help="check the resolved set of these elements")
    parser.add_argument("--elements-path", action="append", default=[],
                        metavar="DIR",
                        help="extra ELEMENTS_PATH entry (repeatable)")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--select", action="append", metavar="CODES",
                        help="only these codes (comma-separated prefixes)")
    parser.add_argument("--ignore", action="append", metavar="CODES",
                        help="skip these codes (comma-separated prefixes)")
    parser.add_argument("--no-shellcheck", action="store_true",
                        help="do not run shellcheck")
    parser.add_argument("--shellcheck-severity", choices=SHELLCHECK_LEVELS,
                        default="warning",
                        help="lowest shellcheck level reported "
                        "(default: warning)")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not cache shellcheck results")
    parser.add_argument("--list-checks", action="store_true",
                        help="print every check code and exit")


def run(args: argparse.Namespace,
        environ: dict[str, str] | os._Environ[str] | None = None) -> int:
    """Run the ``check`` subcommand; returns the exit code (0 clean, 1
    findings).  Raises :class:`errors.TieError` for bad input."""
    environ = os.environ if environ is None else environ
    if args.list_checks:
        sys.stdout.write(describe_checks())
        return errors.EXIT_OK
    select, ignore = _codes(args.select), _codes(args.ignore)
    validate_codes(select + ignore)
    if not args.paths and not args.elements:
        raise errors.UsageError("nothing to check",
                                "pass element directories or -e ELEMENT")
    targets = targets_from_paths(args.paths)
    roots = list(args.elements_path) + sorted(
        {str(e.root) for e in targets})
    index = discover(default_roots(roots, environ))
    resolution = None
    if args.elements:
        resolution, members = _resolve_for_check(index, args.elements)
        targets = targets + [index[n] for n in members]
    cache = None if args.no_cache else default_cache_dir(environ)
    findings = check_elements(
        targets, index=index, resolution=resolution, select=select,
        ignore=ignore, shellcheck=not args.no_shellcheck,
        shellcheck_severity=args.shellcheck_severity, cache_dir=cache,
        requested=tuple(args.elements))
    sys.stdout.write(format_findings(findings, args.format))
    return errors.EXIT_FAILED if findings else errors.EXIT_OK


def _resolve_for_check(index: ElementIndex, requested: Sequence[str]
                       ) -> tuple[Resolution | None, list[str]]:
    """The resolved set, or -- when it does not resolve because of a
    missing dependency or operating system, which the checks report --
    every element reachable from the request."""
    providers = index.providers()
    for name in requested:
        if name not in index and name not in providers:
            raise errors.ElementNotFound(
                f"element '{name}' not found",
                "searched: " + ", ".join(str(r) for r in index.roots))
    from tripleo_elements.graph import resolve
    try:
        resolution = resolve(index, requested)
    except (errors.ElementNotFound, errors.MissingOperatingSystem):
        members: list[str] = []
        seen = set()
        queue = deque(requested)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            if name in index:
                members.append(name)
                queue.extend(index[name].depends)
            else:
                queue.extend(providers.get(name, ())[:1])
        return None, sorted(members)
    return resolution, list(resolution.elements)


def main(argv: list[str] | None = None) -> int:
    """``build-image check``: exit 0 clean, 1 findings, 2 bad usage."""
    parser = argparse.ArgumentParser(
        prog="build-image check",
        description="Lint diskimage-builder elements (dib-lint's checks "
        "and more).")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return run(args)
    except errors.TieError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code


__all__ = [
    "CHECKS", "Check", "Finding", "add_arguments", "check_elements",
    "describe_checks", "format_findings", "main", "run",
    "targets_from_paths",
]
