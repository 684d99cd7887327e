"""Run every registered rule over a set of elements, once.

In: the elements to check, the elements path they are resolved against,
the resolved set (with ``-e``), code filters and the shellcheck settings.
Out: the sorted :class:`~.model.Finding` list; :func:`failing` says which
of them fail the run.  Each file is listed once (by
:func:`tripleo_elements.tree.element_files`, the lister ``plan`` uses) and
read once; shellcheck runs in its own processes while the in-process
rules run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

from tripleo_elements import errors, tree
from tripleo_elements.check import rules_set, tools
from tripleo_elements.check.model import (CHECKS, ELEMENT, ERROR, FILE,
                                          SHELLCHECK_PREFIX, Check, Context,
                                          Finding, SourceFile, Unread,
                                          code_of, severity_of)
from tripleo_elements.discovery import ElementIndex, default_roots, discover
from tripleo_elements.element import Element
from tripleo_elements.graph import Resolution

#: The notice that shellcheck is missing: it passes any --select that
#: wanted shellcheck (only --ignore or --no-shellcheck silence it).
SHELLCHECK_MISSING = code_of(rules_set._shellcheck_missing)


def read_files(element: Element) -> tuple[list[SourceFile], list[Unread]]:
    """The element's regular files, read (symlinks left out, as
    dib-lint's ``find -type f`` leaves them out), and what could not be
    read."""
    listing = tree.element_files(element)
    unread = [Unread(u.path, u.reason) for u in listing.unreadable]
    files = []
    for item in listing.files:
        if not item.regular:
            continue
        try:
            with open(item.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            unread.append(Unread(item.path, exc.strerror or str(exc)))
            continue
        files.append(SourceFile(element, item.path, item.rel, item.mode,
                                data))
    return files, unread


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


def failing(findings: Iterable[Finding], strict: bool = False
            ) -> list[Finding]:
    """The findings that fail the run: errors, and with ``strict`` the
    warnings and notices too."""
    return [f for f in findings
            if strict or severity_of(f.code) == ERROR]


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
    as a scope for the set rules (hook collisions).  ``requested`` names
    the elements dependency chains start from (default: the resolution's
    request, else each element itself).  ``select``/``ignore`` are code
    prefixes.  ``shellcheck`` False skips shellcheck; when it is wanted
    but not installed one notice says so.  ``cache_dir`` caches
    shellcheck, flake8 and schema results by content (None: no cache).
    """
    with tree.listings_kept():
        return _check_elements(
            elements, index=index, resolution=resolution, select=select,
            ignore=ignore, shellcheck=shellcheck,
            shellcheck_severity=shellcheck_severity, cache_dir=cache_dir,
            requested=requested)


def _check_elements(elements: Sequence[Element], *,
                    index: ElementIndex | None,
                    resolution: Resolution | None,
                    select: Collection[str],
                    ignore: Collection[str],
                    shellcheck: bool,
                    shellcheck_severity: str,
                    cache_dir: Path | None,
                    requested: Sequence[str]) -> list[Finding]:
    targets = tuple(sorted({e.path: e for e in elements}.values(),
                           key=lambda e: (e.name, str(e.path))))
    if index is None:
        index = _default_index(targets)
    if not requested and resolution is not None:
        requested = resolution.requested
    files: list[SourceFile] = []
    unread: list[Unread] = []
    for element in targets:
        element_files, element_unread = read_files(element)
        files.extend(element_files)
        unread.extend(element_unread)
    scripts = [src for src in files if tools.shellcheck_shell(src)]
    binary, unchecked = None, 0
    if shellcheck and scripts and _shellcheck_wanted(select, ignore):
        binary = tools.shellcheck_binary()
        unchecked = len(scripts) if binary is None else 0
    ctx = Context(targets=targets, index=index, resolution=resolution,
                  requested=tuple(requested), files=tuple(files),
                  cache_dir=cache_dir, unreadable=tuple(unread),
                  unchecked_shell=unchecked)
    found: set[Finding] = set()
    pending = None
    if binary is not None:
        # shellcheck runs in its own processes while the rules below run
        # here: the total is the slower of the two, not the sum.
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(1)
        pending = pool.submit(tools.shellcheck_findings, scripts,
                              shellcheck_severity, cache_dir, binary)
        pool.shutdown(wait=False)
    for check in CHECKS.values():
        if not (enabled(check.code, select, ignore)
                or check.code == SHELLCHECK_MISSING):
            continue
        found.update(_run(check, targets, ctx))
    if pending is not None:
        found.update(pending.result())
    disabled = {src.path: src.disabled for src in files if src.disabled}
    return sorted(f for f in found
                  if (enabled(f.code, select, ignore)
                      or (f.code == SHELLCHECK_MISSING
                          and not _matches(f.code, ignore)))
                  and f.code not in disabled.get(f.path, ()))


def _run(check: Check, targets: tuple[Element, ...],
         ctx: Context) -> Iterator[Finding]:
    if check.scope == FILE:
        for src in ctx.files:
            yield from check.run(src, ctx)
    elif check.scope == ELEMENT:
        for element in targets:
            yield from check.run(element, ctx)
    else:
        yield from check.run(targets, ctx)
