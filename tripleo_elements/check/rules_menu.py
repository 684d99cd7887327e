"""Element-scope rules for ``menu.yaml`` and the features' templates.

In: an :class:`~tripleo_elements.element.Element` (its ``menu.yaml``,
``package-installs`` files and ``tie-menu-templates/`` tree) and the
:class:`~.model.Context`.  Out: :class:`~.model.Hit` objects.  The schema
and its extra rules are :mod:`tripleo_elements.menu.model`'s, the same
``plan`` applies (it refuses a broken ``menu.yaml`` before anything runs).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tripleo_elements.check import cache, formats, package_installs
from tripleo_elements.check.model import ELEMENT, Context, Hit, register
from tripleo_elements.element import Element
from tripleo_elements.menu import model

TEMPLATES = "tie-menu-templates"


def _menu(element: Element) -> tuple[Path, Any] | None:
    """The parsed menu.yaml, or None (missing or unparsable: TIE030)."""
    path = element.path / model.FILE_NAME
    if not path.is_file():
        return None
    try:
        return path, formats.yaml_load(path.read_text(encoding="utf-8"))
    except Exception:
        return None


@functools.cache
def _menu_code_version() -> str:
    """A hash of the menu package's code and schema: what
    :func:`tripleo_elements.menu.model.problems_of` depends on besides
    the file."""
    digest = hashlib.sha256(b"menu-problems\0")
    package = Path(model.__file__).parent
    for source in sorted(package.glob("*.py")) + sorted(
            package.glob("*.json")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def _problems(path: Path, data: Any, ctx: Context) -> list[str]:
    """:func:`~tripleo_elements.menu.model.problems_of`, cached by the
    file's content and the menu code: validating imports jsonschema,
    which costs more than the rest of a warm check, and four rules ask."""
    try:
        content = path.read_bytes()
    except OSError:
        return model.problems_of(data)
    key = hashlib.sha256(_menu_code_version().encode() + b"\0"
                         + content).hexdigest()
    cached = cache.get(ctx.cache_dir, key)
    if cached is None:
        cached = [{"message": m} for m in model.problems_of(data)]
        cache.put(ctx.cache_dir, key, cached)
    return [str(item["message"]) for item in cached]


@register("TIE090", ELEMENT, "menu.yaml does not match its schema "
          "(unknown key, bad type, default of the wrong type...)")
def _schema(element: Element, ctx: Context) -> Iterator[Hit]:
    found = _menu(element)
    if found is None:
        return
    path, data = found
    for problem in _problems(path, data, ctx):
        key = problem.split(":", 1)[0].split(".")
        line = formats.line_of_key(path, key[1]) if len(key) > 1 else 0
        yield Hit(path, line, problem)


def _valid(element: Element, ctx: Context
           ) -> tuple[Path, dict[str, Any]] | None:
    found = _menu(element)
    if found is None or not isinstance(found[1], dict) \
            or _problems(found[0], found[1], ctx):
        return None
    return found[0], found[1]


@register("TIE091", ELEMENT, "menu.yaml feature needs a package the "
          "element's package-installs does not install")
def _packages(element: Element, ctx: Context) -> Iterator[Hit]:
    found = _valid(element, ctx)
    if found is None:
        return
    path, data = found
    installed: set[str] = set()
    for pi in package_installs.files_of(element):
        try:
            listed = package_installs.load(pi)
        except Exception:
            continue    # TIE030 / TIE060 say why
        if isinstance(listed, dict):
            installed.update(map(str, listed))
    for name, feature in sorted((data.get("features") or {}).items()):
        for package in feature.get("packages") or []:
            if package not in installed:
                yield Hit(path, formats.line_of_key(path, name),
                          f"feature {name} needs package {package}, which "
                          "no package-installs file of this element "
                          "installs (the image is built without it)")


@register("TIE092", ELEMENT, "menu template uses a secret variable but "
          "its .oac does not make it mode 0600")
def _secrets(element: Element, ctx: Context) -> Iterator[Hit]:
    found = _valid(element, ctx)
    root = element.path / TEMPLATES
    if found is None or not root.is_dir():
        return
    secrets = [n for n, v in (found[1].get("variables") or {}).items()
               if v.get("secret")]
    if not secrets:
        return
    uses = re.compile(r"\{\{\s*[#^&{]?\s*(" + "|".join(
        map(re.escape, secrets)) + r")\s*\}")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.endswith(".oac"):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue    # TIE003
        match = uses.search(text)
        if match is None:
            continue
        mode = None
        oac = path.with_name(path.name + ".oac")
        try:
            mode = (formats.yaml_load(oac.read_text()) or {}).get("mode")
        except Exception:
            pass
        if mode != 0o600:
            yield Hit(path, text.count("\n", 0, match.start()) + 1,
                      f"uses secret variable {match[1]}: give it a "
                      f"{oac.name} with mode: 0600")


@register("TIE093", ELEMENT, "tie-menu-templates/ directory names no "
          "feature of the element's menu.yaml")
def _template_dirs(element: Element, ctx: Context) -> Iterator[Hit]:
    root = element.path / TEMPLATES
    if not root.is_dir():
        return
    found = _valid(element, ctx)
    features = set((found[1].get("features") or {}) if found else ())
    for entry in sorted(root.iterdir()):
        if entry.name not in features:
            yield Hit(entry, 0, f"{TEMPLATES}/{entry.name}: no feature "
                      f"'{entry.name}' in {element.name}/menu.yaml (the "
                      "menu driver renders it only for that feature)")
