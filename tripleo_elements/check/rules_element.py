"""Element-scope rules: called once for each checked element.

In: an :class:`~tripleo_elements.element.Element` and the
:class:`~.model.Context`.  Out: :class:`~.model.Hit` objects (the registry
adds the code).  The package-installs rules share their schema with
``plan`` (:mod:`.package_installs`); the run-parts rule shares
:func:`tripleo_elements.tree.skipped_scripts` with ``plan``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from tripleo_elements import tree
from tripleo_elements.check import cache, formats, package_installs
from tripleo_elements.check.model import ELEMENT, Context, Hit, register
from tripleo_elements.element import Element


@register("TIE001", ELEMENT, "element has no README.rst")
def _readme(element: Element, ctx: Context) -> Iterator[Hit]:
    if not (element.path / "README.rst").is_file():
        yield Hit(element.path, 0, "element has no README.rst")


@register("TIE041", ELEMENT,
          "element-deps/element-provides line looks like a comment")
def _comment_lines(element: Element, ctx: Context) -> Iterator[Hit]:
    for name in ("element-deps", "element-provides"):
        path = element.path / name
        listed = element.depends if name == "element-deps" \
            else element.provides
        for entry in listed:
            if entry.startswith("#"):
                yield Hit(path, formats.line_of(path, entry),
                          f"'{entry}' is read as an element name: "
                          f"{name} has no comment syntax")


@register("TIE050", ELEMENT, "hook script run-parts silently skips "
          "(bad name or not executable)")
def _skipped(element: Element, ctx: Context) -> Iterator[Hit]:
    for skipped in tree.skipped_scripts(element):
        yield Hit(skipped.path, 0,
                  f"run-parts will skip it ({skipped.reason})")


@register("TIE060", ELEMENT, "package-installs entry does not match the "
          "schema (unknown key, bad phase, bad when...)")
def _package_installs(element: Element, ctx: Context) -> Iterator[Hit]:
    for path in package_installs.files_of(element):
        # Cached by content and schema: importing jsonschema costs more
        # than the rest of a warm run.
        try:
            data = path.read_bytes()
        except OSError:
            continue    # reported as unreadable (TIE003)
        salt = f"package-installs\0{package_installs.schema_version()}\0"
        key = hashlib.sha256(salt.encode() + data).hexdigest()
        cached = cache.get(ctx.cache_dir, key)
        if cached is None:
            cached = [{"line": line, "message": message} for line, message
                      in package_installs.problems(path, parse_errors=False)]
            cache.put(ctx.cache_dir, key, cached)
        for item in cached:
            yield Hit(path, item["line"], item["message"])


@register("TIE061", ELEMENT, "package-installs `when` tests a variable "
          "no environment.d file sets")
def _package_installs_when(element: Element,
                           ctx: Context) -> Iterator[Hit]:
    for path in package_installs.files_of(element):
        try:
            data = package_installs.load(path)
        except Exception:
            continue    # TIE030 / TIE060 / TIE003 say why
        for package, var in package_installs.when_variables(data):
            if var not in ctx.environment_variables:
                yield Hit(path, formats.line_of_key(path, package),
                          f"{package}: when tests ${var}, which no "
                          f"environment.d file sets: package-installs "
                          f"fails with 'The variable <{var}> is not set'")
