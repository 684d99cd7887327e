"""Set-scope rules: called once with every checked element.

In: the checked elements and the :class:`~.model.Context` (the elements
path, the resolved set with ``-e``, every file read).  Out:
:class:`~.model.Hit` objects (the registry adds the code).  Hook
collisions follow diskimage-builder's copy rule as
:mod:`tripleo_elements.tree` models it for ``plan``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from tripleo_elements import graph, tree
from tripleo_elements.check import formats, tools
from tripleo_elements.check.model import (NOTICE, SET, WARNING, Context,
                                          Hit, register)
from tripleo_elements.element import Element


@register("TIE003", SET, "file or directory below an element cannot be "
          "read (permissions, a link loop...)")
def _unreadable(elements: Sequence[Element], ctx: Context) -> Iterator[Hit]:
    for item in ctx.unreadable:
        yield Hit(item.path, 0, f"cannot be read: {item.reason}")


@register("TIE032", SET, "Python script without .py fails flake8 "
          "(pycodestyle/pyflakes, in-process)")
def _python_scripts(elements: Sequence[Element],
                    ctx: Context) -> Iterator[Hit]:
    scripts = [src for src in ctx.files
               if src.dib_lint_file and src.is_python]
    for src, line, code, message in tools.flake8_cached(scripts,
                                                        ctx.cache_dir):
        yield Hit(src.path, line, f"flake8 {code} {message}")


def _walk_closure(ctx: Context) -> dict[str, str | None]:
    """Parents of every element reachable from the request (or from each
    target) through element-deps, following every provider."""
    roots = ctx.requested or tuple(sorted({e.name for e in ctx.targets}))
    return graph.closure(ctx.index, roots, providers=ctx.providers,
                         elements={e.name: e for e in ctx.targets})


@register("TIE040", SET,
          "element-deps names an element nothing on the path provides")
def _missing_deps(elements: Sequence[Element],
                  ctx: Context) -> Iterator[Hit]:
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
            yield Hit(deps, formats.line_of(deps, dep),
                      f"{chain}: element '{dep}' not found on the "
                      f"elements path (no element has that name or "
                      f"provides it)")


def _closure_providers(element: Element, ctx: Context
                       ) -> dict[str, frozenset[str]]:
    """Virtual name -> the elements providing it among ``element`` and
    its concrete dependencies (virtual dependencies are not followed: any
    provider may satisfy them)."""
    seen = {element.name}
    todo = [element]
    found: dict[str, set[str]] = {}
    while todo:
        current = todo.pop()
        for name in current.provides:
            found.setdefault(name, set()).add(current.name)
        for dep in current.depends:
            if dep not in seen and dep in ctx.index:
                seen.add(dep)
                todo.append(ctx.index[dep])
    return {k: frozenset(v) for k, v in found.items()}


def _exclusive(a: Element, b: Element, ctx: Context) -> bool:
    """Two elements that bring different providers of one name (two
    operating systems...) can never be in one image: resolving both
    fails with "provided twice"."""
    mine, theirs = _closure_providers(a, ctx), _closure_providers(b, ctx)
    return any(mine[name].isdisjoint(theirs[name])
               for name in mine.keys() & theirs.keys())


def _groups(ctx: Context) -> list[tuple[Element, ...]]:
    """The sets that may meet in one image: the resolved set (with
    ``-e``) and the checked elements."""
    groups: list[tuple[Element, ...]] = []
    if ctx.resolution is not None:
        groups.append(tuple(ctx.index[n] for n in ctx.resolution.elements
                            if n in ctx.index))
    groups.append(tuple(ctx.targets))
    return groups


def _owner(group: Sequence[Element], path: Path) -> Element:
    owners = {e.path: e for e in group}
    for parent in path.parents:
        if parent in owners:
            return owners[parent]
    raise KeyError(path)


def _can_meet(group: Sequence[Element], paths: Sequence[Path],
              ctx: Context) -> bool:
    """Some two of the elements shipping ``paths`` can be in one image."""
    users = [_owner(group, p) for p in paths]
    return any(not _exclusive(a, b, ctx) for i, a in enumerate(users)
               for b in users[i + 1:])


@register("TIE051", SET, "two elements of one set ship the same name "
          "directly in one directory (install.d, environment.d, bin...): "
          "diskimage-builder aborts")
def _collisions(elements: Sequence[Element],
                ctx: Context) -> Iterator[Hit]:
    for group in _groups(ctx):
        for collision in tree.hook_collisions(group):
            if not _can_meet(group, collision.paths, ctx):
                continue
            others = ", ".join(str(p) for p in collision.paths[1:])
            yield Hit(collision.paths[0], 0,
                      f"{collision.directory}/{collision.name} is also "
                      f"shipped by {others}: diskimage-builder aborts "
                      f"when both are in one image")


@register("TIE052", SET, "two elements of one set ship the same nested "
          "file (os-refresh-config/configure.d/..., static/...): "
          "diskimage-builder keeps one copy silently", severity=WARNING)
def _overwrites(elements: Sequence[Element],
                ctx: Context) -> Iterator[Hit]:
    for group in _groups(ctx):
        for overwrite in tree.nested_overwrites(group):
            if _can_meet(group, overwrite.paths, ctx):
                yield Hit(overwrite.paths[0], 0, overwrite.message())


@register("TIE080", SET, "shellcheck is not installed: shell scripts were "
          "not checked (a notice; fails only with --strict)",
          severity=NOTICE)
def _shellcheck_missing(elements: Sequence[Element],
                        ctx: Context) -> Iterator[Hit]:
    if ctx.unchecked_shell:
        yield Hit(Path("shellcheck"), 0,
                  f"shellcheck not found on PATH: {ctx.unchecked_shell} "
                  f"shell script(s) not checked (install shellcheck, or "
                  f"pass --no-shellcheck; --strict makes this fail)")
