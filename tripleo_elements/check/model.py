"""The data of ``build-image check`` and the registry of its rules.

In: rule functions, registered with :func:`register` under a stable code
(``TIE0NN``), a scope, a severity and a one-line description; each yields
:class:`Hit` objects (where, and what is wrong) and never names its code.
Out: :data:`CHECKS` (code -> :class:`Check`), whose :meth:`Check.run`
stamps every hit into a :class:`Finding` carrying the rule's code, plus
the inputs rules look at: :class:`SourceFile` (a file below an element,
read once) and :class:`Context` (everything else).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.element import Element, list_files
from tripleo_elements.graph import Resolution

FILE = "file"
ELEMENT = "element"
SET = "set"
SCOPES = (FILE, ELEMENT, SET)

#: A finding that fails the run (exit 1).
ERROR = "error"
#: Reported, but fails the run only with ``--strict``.
WARNING = "warning"
#: Something was not checked; fails the run only with ``--strict``.
NOTICE = "notice"
SEVERITIES = (ERROR, WARNING, NOTICE)

#: Prefix of shellcheck's own codes, passed through unchanged.
SHELLCHECK_PREFIX = "SC"


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
class Hit:
    """What a rule reports: the registry adds the code."""

    path: Path
    line: int
    message: str


RuleFunc = Callable[..., Iterable[Hit]]


@dataclasses.dataclass(frozen=True)
class Check:
    """A registered rule.  ``dib_lint`` names the dib-lint test it
    reproduces (and the name accepted in ``# dib-lint: disable=``)."""

    code: str
    scope: str
    description: str
    func: RuleFunc
    dib_lint: str = ""
    severity: str = ERROR

    def run(self, subject: Any, ctx: Context) -> Iterator[Finding]:
        """The rule's hits on ``subject`` (a :class:`SourceFile`, an
        element, or the checked elements), stamped with this code."""
        for hit in self.func(subject, ctx):
            yield Finding(hit.path, hit.line, self.code, hit.message)


#: code -> Check; filled as the rule modules are imported.
CHECKS: dict[str, Check] = {}


def register(code: str, scope: str, description: str, dib_lint: str = "",
             severity: str = ERROR) -> Callable[[RuleFunc], RuleFunc]:
    """Decorator adding a rule function to :data:`CHECKS`."""
    if scope not in SCOPES or severity not in SEVERITIES:
        raise ValueError(f"check {code}: bad scope or severity")

    def wrap(func: RuleFunc) -> RuleFunc:
        if code in CHECKS:
            raise ValueError(f"check code {code} registered twice")
        CHECKS[code] = Check(code, scope, description, func, dib_lint,
                             severity)
        return func
    return wrap


def severity_of(code: str) -> str:
    """A registered code's severity; shellcheck's codes are errors."""
    check = CHECKS.get(code)
    return check.severity if check is not None else ERROR


def code_of(func: RuleFunc) -> str:
    """The code ``func`` is registered under (for callers that need to
    name a rule without repeating its code)."""
    for check in CHECKS.values():
        if check.func is func:
            return check.code
    raise KeyError(func)


# ---------------------------------------------------------------- files

_DISABLE = "# dib-lint: disable="
#: Element directories whose files run in the instance, not the build.
INSTANCE_DIRS = ("static/", "os-refresh-config/", "os-apply-config/")
_ENVIRONMENT_D = re.compile(r"(^|/)environment\.d/")
#: The shell a ``#!`` line names: ``/bin/sh``, ``/usr/bin/env dash``...
_SHELL = re.compile(
    r"^#!\s*(?:\S*/)?(?:env\s+(?:-\S+\s+)*)?(?:\S*/)?"
    r"(?P<shell>bash|dash|sh|ksh|mksh)(?:\s|$)")


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

    @functools.cached_property
    def shell(self) -> str | None:
        """``bash``, ``sh``, ``dash``, ``ksh`` or ``mksh`` for a script
        whose ``#!`` line names that shell (``environment.d/*.bash``
        files, sourced by bash, count as bash); None otherwise."""
        match = _SHELL.match(self.first_line)
        if match:
            return match["shell"]
        if self.in_environment_d and not self.shebang \
                and self.name.endswith(".bash"):
            return "bash"
        return None

    @property
    def is_python(self) -> bool:
        return self.shebang and "python" in self.first_line

    @functools.cached_property
    def in_environment_d(self) -> bool:
        return _ENVIRONMENT_D.search(self.rel) is not None

    @property
    def runs_in_instance(self) -> bool:
        """A file that runs on the booted instance, not during the build:
        under ``static/``, ``os-refresh-config/`` or ``os-apply-config/``.
        Build-time rules (``DIB_DEBUG_TRACE``) mean nothing there."""
        return self.rel.startswith(INSTANCE_DIRS)

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
        by_name = {c.dib_lint: c.code for c in CHECKS.values()
                   if c.dib_lint}
        return frozenset(by_name.get(n, n) for n in names)


def whole(src: SourceFile, message: str) -> Hit:
    """A hit on ``src`` as a whole (line 0)."""
    return Hit(src.path, 0, message)


def at(src: SourceFile, index: int, message: str) -> Hit:
    """A hit on the 0-based line ``index`` of ``src``."""
    return Hit(src.path, index + 1, message)


# -------------------------------------------------------------- context

#: Variables diskimage-builder itself sets for every element's hooks.
DIB_VARIABLES: tuple[str, ...] = (
    "ARCH", "DIB_ARGS", "DIB_DEBUG_TRACE", "DIB_ELEMENTS",
    "DIB_IMAGE_SIZE", "DIB_INIT_SYSTEM", "DIB_PYTHON", "DIB_PYTHON_VERSION",
    "IMAGE_ELEMENT", "IMAGE_NAME", "TMP_HOOKS_PATH", "TMP_MOUNT_PATH",
)

_ASSIGNMENT = re.compile(
    r"^[ \t]*(?:export[ \t]+|declare[ \t]+-\w+[ \t]+)?"
    r"([A-Za-z_][A-Za-z0-9_]*)(?==|[ \t]*$)", re.M)


def listdir(directory: Path) -> list[str]:
    """Sorted names in ``directory`` (:func:`element.list_files`); empty
    when it cannot be listed (what cannot be read is reported as TIE003
    from the element's file listing)."""
    try:
        return list(list_files(directory, include_dirs=True))
    except errors.TieError:
        return []


@dataclasses.dataclass(frozen=True)
class Unread:
    """A file or directory below a checked element that could not be
    read."""

    path: Path
    reason: str


@dataclasses.dataclass(frozen=True)
class Context:
    """What element- and set-scope rules may look at.  ``unchecked_shell``
    counts the shell scripts shellcheck was wanted for but not found."""

    targets: tuple[Element, ...]
    index: ElementIndex
    resolution: Resolution | None
    requested: tuple[str, ...]
    files: tuple[SourceFile, ...]
    cache_dir: Path | None = None
    unreadable: tuple[Unread, ...] = ()
    unchecked_shell: int = 0

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
            for name in listdir(env_dir):
                try:
                    text = (env_dir / name).read_text(errors="replace")
                except OSError:
                    continue
                names.update(_ASSIGNMENT.findall(text))
        return frozenset(names)
