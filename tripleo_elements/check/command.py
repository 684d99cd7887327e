"""The ``build-image check`` command: options in, findings printed, an
exit code out.

In: command-line arguments (and the environment, for ELEMENTS_PATH and
the cache directory).  Out: the findings on stdout (text or JSON) and
``0`` (nothing fails), ``1`` (an error finding, or any finding with
``--strict``); bad input raises :class:`errors.TieError` (exit 2 through
:func:`main`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from tripleo_elements import errors, host
from tripleo_elements.check import cache, driver, targets
from tripleo_elements.check.model import CHECKS, Finding
from tripleo_elements.check.tools import SHELLCHECK_LEVELS
from tripleo_elements.discovery import default_roots, discover

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
    parser.add_argument("-a", "--arch", default=host.host_arch(),
                        help="architecture -e resolves for (default: this "
                        "host's, %(default)s)")
    parser.add_argument("--elements-path", action="append", default=[],
                        metavar="DIR",
                        help="extra ELEMENTS_PATH entry (repeatable)")
    parser.add_argument("--only", action="append", default=[],
                        metavar="PATH",
                        help="report findings only for files under PATH "
                        "(repeatable; with -e and element PATHs the "
                        "default is those PATHs)")
    parser.add_argument("--all-findings", action="store_true",
                        help="with -e and element PATHs, also report "
                        "findings in the other resolved elements")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--select", action="append", metavar="CODES",
                        help="only these codes (comma-separated prefixes)")
    parser.add_argument("--ignore", action="append", metavar="CODES",
                        help="skip these codes (comma-separated prefixes)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on warnings and notices too (e.g. "
                        "shellcheck not installed)")
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
    """Run the ``check`` subcommand; returns the exit code (0 nothing
    fails, 1 findings that fail).  Raises :class:`errors.TieError` for bad
    input."""
    environ = os.environ if environ is None else environ
    if args.list_checks:
        sys.stdout.write(describe_checks())
        return errors.EXIT_OK
    select, ignore = _codes(args.select), _codes(args.ignore)
    driver.validate_codes(select + ignore)
    if not args.paths and not args.elements:
        raise errors.UsageError("nothing to check",
                                "pass element directories or -e ELEMENT")
    try:
        findings = _check(args, select, ignore, environ)
    except OSError as exc:
        # What is read before the rules run (the elements path, element
        # metadata) and cannot be: one line, not a traceback.
        raise errors.ElementFormatError(
            f"{exc.filename or 'an element file'}: cannot be read: "
            f"{exc.strerror or exc}",
            "fix the permissions or remove the symbolic link loop") from exc
    sys.stdout.write(format_findings(findings, args.format))
    if driver.failing(findings, strict=args.strict):
        return errors.EXIT_FAILED
    return errors.EXIT_OK


def _check(args: argparse.Namespace, select: list[str], ignore: list[str],
           environ: dict[str, str] | os._Environ[str]) -> list[Finding]:
    found = targets.targets_from_paths(args.paths)
    roots = list(args.elements_path) + sorted(
        {str(e.root) for e in found})
    index = discover(default_roots(roots, environ))
    resolution = None
    if args.elements:
        resolution, members = targets.resolve_request(
            index, args.elements, args.arch)
        found = found + [index[n] for n in members]
    cache_dir = None if args.no_cache else cache.default_dir(environ)
    findings = driver.check_elements(
        found, index=index, resolution=resolution, select=select,
        ignore=ignore, shellcheck=not args.no_shellcheck,
        shellcheck_severity=args.shellcheck_severity,
        cache_dir=cache_dir, requested=tuple(args.elements))
    return limit_findings(findings, _only(args))


def _only(args: argparse.Namespace) -> list[Path]:
    """The paths findings are limited to: ``--only``, else (``-e`` with
    element paths) the paths given, else none (every finding)."""
    only = [Path(p) for p in args.only]
    for path in only:
        if not path.exists():
            raise errors.UsageError(f"--only {path}: no such file or "
                                    "directory",
                                    "pass a path of your elements")
    if not only and args.elements and args.paths and not args.all_findings:
        only = [Path(p) for p in args.paths]
    return only


def limit_findings(findings: Iterable[Finding],
                   only: Sequence[Path]) -> list[Finding]:
    """The findings about files under one of ``only`` (all when empty)."""
    if not only:
        return list(findings)
    roots = [os.path.realpath(p) for p in only]

    def under(path: Path) -> bool:
        real = os.path.realpath(path)
        return any(real == r or real.startswith(r.rstrip("/") + "/")
                   for r in roots)
    return [f for f in findings if under(f.path)]


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
