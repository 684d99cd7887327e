"""File-scope rules: called once for each file below a checked element.

In: a :class:`~.model.SourceFile` (read once) and the
:class:`~.model.Context`.  Out: :class:`~.model.Hit` objects; the
registry stamps each with the rule's code.  dib-lint's checks keep their
dib-lint test name (``dib_lint=``), accepted in ``# dib-lint: disable=``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from tripleo_elements import tree
from tripleo_elements.check import formats
from tripleo_elements.check.model import (FILE, Context, Hit, SourceFile,
                                          at, register, whole)

#: Shells that have ``set -e``, ``set -u`` and ``set -x`` (POSIX).
POSIX_SHELLS = frozenset({"bash", "dash", "sh", "ksh", "mksh"})
#: Shells that have ``set -o pipefail`` (dash and POSIX sh do not).
PIPEFAIL_SHELLS = frozenset({"bash", "ksh", "mksh"})


@register("TIE002", FILE, "Markdown (.md) documentation file; use .rst",
          dib_lint="mddocs")
def _md_docs(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.name.endswith(".md"):
        yield whole(src, ".md docs found; use reStructuredText")


@register("TIE010", FILE, "file starting with #! is not executable",
          dib_lint="executable")
def _shebang_executable(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.dib_lint_file and src.shebang and not src.executable:
        yield whole(src, "starts with #! but is not executable (chmod +x)")


@register("TIE011", FILE, "bash script whose #! line is not #!/bin/bash")
def _bash_shebang(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if (src.dib_lint_file and re.match(r"#!.*bash", src.first_line)
            and src.first_line != "#!/bin/bash"):
        yield at(src, 0, f"only use #!/bin/bash for scripts, not "
                 f"'{src.first_line}'")


def _script_in(src: SourceFile, shells: frozenset[str]) -> bool:
    """A script (``#!`` line) the shell rules apply to: every bash script
    (dib-lint's rule), and a hook script in a phase directory written for
    another of ``shells`` (a missing ``set -e`` loses failures in any
    shell; init scripts and other data files there are not hooks)."""
    if not (src.dib_lint_file and src.shebang):
        return False
    if src.is_bash or src.shell == "bash":
        return "bash" in shells
    return (src.shell in shells
            and src.rel.rpartition("/")[0] in tree.PHASE_DIRS
            and tree.hook_like(src.name, src.shebang))


def _grep(src: SourceFile, pattern: str) -> bool:
    return re.search(pattern, src.text, re.M) is not None


@register("TIE012", FILE, "shell script without set -e (any shell)",
          dib_lint="sete")
def _set_e(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if _script_in(src, POSIX_SHELLS) and not _grep(src, r"^set -[^ \n]*e"):
        yield whole(src, "is not set -e")


@register("TIE013", FILE, "shell script without set -u (any shell)",
          dib_lint="setu")
def _set_u(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if _script_in(src, POSIX_SHELLS) and not _grep(src, r"^set -[^ \n]*u"):
        yield whole(src, "is not set -u")


@register("TIE014", FILE, "bash (or ksh) script without set -o pipefail "
          "(not asked of sh/dash, which lack it)", dib_lint="setpipefail")
def _set_pipefail(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if _script_in(src, PIPEFAIL_SHELLS) and \
            not _grep(src, r"^set -o pipefail"):
        yield whole(src, "is not set -o pipefail")


@register("TIE015", FILE, "build-time shell script ignores DIB_DEBUG_TRACE "
          "(not asked of static/, os-refresh-config/, os-apply-config/)",
          dib_lint="dibdebugtrace")
def _debug_trace(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.runs_in_instance:
        return
    if _script_in(src, POSIX_SHELLS) and "DIB_DEBUG_TRACE" not in src.text:
        yield whole(src, "does not follow DIB_DEBUG_TRACE (set -x only when "
                    "${DIB_DEBUG_TRACE:-0} -gt 0)")


_SET_X = re.compile(r"^set +(-[a-wyz]*x|-o +xtrace)")


@register("TIE016", FILE, "build-time shell script turns on xtrace "
          "unconditionally")
def _unconditional_xtrace(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    # DIB's convention indents `set -x` inside the DIB_DEBUG_TRACE test; a
    # top-level one traces every build.  Files run in the instance are
    # not traced by DIB_DEBUG_TRACE: their xtrace is their own choice.
    if (not _script_in(src, POSIX_SHELLS) or src.in_environment_d
            or src.runs_in_instance):
        return
    for number, line in enumerate(src.lines):
        if _SET_X.match(line):
            yield at(src, number, "set -x outside the DIB_DEBUG_TRACE test")


_INDENT = re.compile(r"^(    )* {1,3}[^ ]")


@register("TIE020", FILE, "script indented by other than 4 spaces",
          dib_lint="indent")
def _indent(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not (src.dib_lint_file and src.shebang) or src.is_python:
        return
    for number, line in enumerate(src.lines):
        if _INDENT.match(line):
            yield at(src, number, "should use 4 spaces indent")


def _indent_file(src: SourceFile) -> bool:
    # dib-lint's second loop: *.rst files and executable files.
    return src.name.endswith(".rst") or src.executable


_TAB_INDENT = re.compile(r"^ *\t", re.M)


@register("TIE021", FILE, "tab characters in indentation",
          dib_lint="tabindent")
def _tabs(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not _indent_file(src) or src.binary:
        return
    match = _TAB_INDENT.search(src.text)
    if match:
        yield at(src, src.text.count("\n", 0, match.start()),
                 "contains tab characters")


@register("TIE022", FILE, "no newline at end of file", dib_lint="newline")
def _newline(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    wanted = _indent_file(src) or (src.dib_lint_file
                                   and "source-repository-" in src.name)
    if wanted and src.data and not src.data.endswith(b"\n"):
        yield at(src, max(len(src.lines) - 1, 0),
                 "no newline at end of file")


@register("TIE024", FILE, "element-deps not sorted alphabetically")
def _deps_sorted(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.name != "element-deps":
        return
    # diskimage-builder strips each line, so "\r" endings are harmless.
    entries = [(number, line.strip()) for number, line
               in enumerate(src.lines)
               if line.strip() and not line.strip().startswith("#")]
    names = [name for _, name in entries]
    expected = sorted(names)
    for (number, name), wanted in zip(entries, expected):
        if name != wanted:
            yield at(src, number, f"is not sorted alphabetically (expected "
                     f"'{wanted}' here)")
            return


_ENV_SET_X = re.compile(r"set -x")


@register("TIE025", FILE, "environment.d file turns on tracing (set -x)")
def _env_trace(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not (src.dib_lint_file and src.in_environment_d):
        return
    for number, line in enumerate(src.lines):
        if _ENV_SET_X.search(line):
            yield at(src, number, "environment file should not set tracing")
            return


@register("TIE026", FILE, "environment.d file is executable")
def _env_exec(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.dib_lint_file and src.in_environment_d and src.executable:
        yield whole(src, "environment file should not be marked as "
                    "executable (it is sourced)")


_EXPORT_SUBST = re.compile(r"export .*\$\(")


@register("TIE027", FILE, "export VAR=$(cmd) hides cmd's failure")
def _export_subst(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not src.dib_lint_file or "export " not in src.text:
        return
    for number, line in enumerate(src.lines):
        if _EXPORT_SUBST.search(line):
            yield at(src, number, "split export and assignment: export "
                     "hides the exit status of $(...)")


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
def _safe_sudo(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not src.dib_lint_file or not _OUTSIDE_PHASE.search(
            src.where.rpartition("/")[0]):
        return
    for number, line in _read_lines(src):
        if "sudo " in line and not _SAFE_SUDO.search(line):
            yield at(src, number, f"potentially unsafe sudo: {line}")


@register("TIE029", FILE, "use of `which` (use `type -p` / `command -v`)",
          dib_lint="which")
def _which(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not src.dib_lint_file or src.binary:
        return
    for number, line in _read_lines(src):
        if ("which " in line and not line.startswith("#")
                and "dib-lint: which" not in line):
            yield at(src, number, f"potential use of which: {line}")


@register("TIE030", FILE, "YAML file does not parse")
def _yaml_parse(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not src.name.endswith(".yaml"):
        return
    try:
        formats.yaml_load(src.data.decode("utf-8"))
    except Exception as exc:  # any failure is a broken file
        yield Hit(src.path, formats.yaml_error_line(exc),
                  f"is not a valid YAML file: {formats.first_line(exc)}")


@register("TIE031", FILE, "pkg-map is not valid JSON")
def _pkg_map(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if src.name != "pkg-map" or src.executable:
        return
    try:
        json.loads(src.data.decode("utf-8"))
    except ValueError as exc:
        yield Hit(src.path, getattr(exc, "lineno", 0),
                  f"is not a valid JSON file: {exc}")


_OAC_KEYS = ("allow_empty", "group", "mode", "owner")
#: os-apply-config template trees: the image's, and the menu features'
#: (rendered by the menu-driver element).
_TEMPLATE_DIRS = ("os-apply-config/", "tie-menu-templates/")


@register("TIE070", FILE, ".oac control file with an unknown key, a "
          "quoted or out-of-range mode, or no template")
def _oac(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if not (src.rel.startswith(_TEMPLATE_DIRS)
            and src.name.endswith(".oac")):
        return
    template = src.path.with_suffix("")
    if not template.exists():
        yield whole(src, f"controls {template}, which does not exist")
    try:
        data = formats.yaml_load(src.text) or {}
    except Exception:
        yield whole(src, "does not parse as YAML")
        return
    if not isinstance(data, dict):
        yield whole(src, "is not a mapping of " + ", ".join(_OAC_KEYS))
        return

    def line(key: str) -> int:
        return formats.line_of_key(src.path, key)

    for key in sorted(map(str, data)):
        if key not in _OAC_KEYS:
            yield Hit(src.path, line(key), f"unknown key '{key}' (valid: "
                      f"{', '.join(_OAC_KEYS)})")
    mode = data.get("mode")
    if "mode" in data and type(mode) is not int:
        yield Hit(src.path, line("mode"), f"mode {mode!r} is not a number: "
                  f"write it unquoted, e.g. mode: 0600")
    elif isinstance(mode, int) and not 0 <= mode <= 0o777:
        yield Hit(src.path, line("mode"),
                  f"mode {mode:#o} is out of range 0..0777")
    if "allow_empty" in data and type(data["allow_empty"]) is not bool:
        yield Hit(src.path, line("allow_empty"),
                  "allow_empty must be true or false")
    for key in ("owner", "group"):
        if key in data and type(data[key]) not in (int, str):
            yield Hit(src.path, line(key),
                      f"{key} must be a name or a number")


_POSITION = re.compile(r"position (\d+)")


@register("TIE071", FILE, "os-apply-config template whose mustache does "
          "not parse")
def _template(src: SourceFile, ctx: Context) -> Iterator[Hit]:
    if (not src.rel.startswith(_TEMPLATE_DIRS)
            or src.name.endswith(".oac") or src.executable or src.binary):
        return
    from pystache import parser
    try:
        parser.parse(src.text, raise_on_mismatch=True)
    except parser.ParsingError as exc:
        match = _POSITION.search(str(exc))
        line = src.text.count("\n", 0, int(match[1])) + 1 if match else 0
        yield Hit(src.path, line, f"mustache does not parse: {exc}")
