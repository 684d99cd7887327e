"""The global menu: every feature and variable of an image.

In: the resolved elements (each may ship ``menu.yaml``, checked against
the sibling ``menu.schema.json``), or a ``NAME.menu.json`` written next
to a built image.  Out: a :class:`Menu` (plain JSON data in a frozen
dataclass) or one :class:`~tripleo_elements.errors.MenuError` naming the
file and the key.  A name defined by two elements is a
:class:`~tripleo_elements.errors.MenuClash` naming both.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.menu import rules

FILE_NAME = "menu.yaml"
SCHEMA_PATH = Path(__file__).with_name("menu.schema.json")
#: Where the image's global menu is installed (the menu-driver element).
IMAGE_PATH = "/usr/share/tie-menu/menu.json"
KINDS = ("features", "variables")


@dataclasses.dataclass(frozen=True)
class Menu:
    """Features and variables by name; each entry as in ``menu.yaml``
    plus ``element`` (which element defined it)."""

    features: Mapping[str, Mapping[str, Any]]
    variables: Mapping[str, Mapping[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"features": {k: dict(v) for k, v in
                             sorted(self.features.items())},
                "variables": {k: dict(v) for k, v in
                              sorted(self.variables.items())}}

    @property
    def empty(self) -> bool:
        return not self.features and not self.variables


EMPTY = Menu({}, {})


@functools.cache
def schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text()))


@functools.cache
def _validator() -> Any:
    import jsonschema
    return jsonschema.Draft7Validator(schema())


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def problems_of(data: Any) -> list[str]:
    """Every way parsed ``menu.yaml`` data breaks the schema or the
    rules the schema cannot say, one line each (``key: problem``)."""
    if data is None:
        return []
    found = [f"{_where(e)}: {e.message}"
             for e in sorted(_validator().iter_errors(data),
                             key=lambda e: list(map(str, e.absolute_path)))]
    if found:
        return found
    for name, spec in sorted((data.get("variables") or {}).items()):
        where = f"variables.{name}"
        kind = spec["type"]
        if kind == "enum" and "values" not in spec:
            found.append(f"{where}: an enum needs values")
        if kind != "enum" and "values" in spec:
            found.append(f"{where}: values is only for type enum")
        if kind != "integer" and ("minimum" in spec or "maximum" in spec):
            found.append(f"{where}: minimum/maximum are only for type "
                         "integer")
        if kind not in ("string", "list") and (
                "pattern" in spec or "max_length" in spec
                or "multiline" in spec):
            found.append(f"{where}: pattern, max_length and multiline are "
                         "only for types string and list")
        if "pattern" in spec:
            try:
                re.compile(spec["pattern"])
            except re.error as exc:
                found.append(f"{where}.pattern: does not compile: {exc}")
                continue
        if spec.get("minimum", 0) > spec.get("maximum", spec.get(
                "minimum", 0)):
            found.append(f"{where}: minimum is above maximum")
        problem = rules.value_problem(name, spec, spec.get("default"))
        if problem:
            found.append(f"{where}.default: {problem}")
        if spec.get("secret") and spec.get("default") is not None:
            found.append(f"{where}: a secret variable may not have a "
                         "default (it would be in every image)")
    return found


def load_file(path: Path) -> dict[str, Any]:
    """One element's ``menu.yaml``, validated."""
    from tripleo_elements.check import formats
    try:
        data = formats.yaml_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.from_os_error(path, exc, "menu")
    except Exception as exc:  # any parser failure is a broken file
        raise errors.MenuError(
            f"{path}: does not parse: {formats.first_line(exc)}",
            "fix the YAML")
    problems = problems_of(data)
    if problems:
        raise errors.MenuError(
            f"{path}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1
               else ""),
            "see the menu.yaml format in the README; build-image check "
            "lists every problem")
    return dict(data or {})


def union(menus: Iterable[tuple[str, Path, Mapping[str, Any]]]) -> Menu:
    """The union of ``(element, path, data)`` menus; a name defined
    twice raises :class:`~tripleo_elements.errors.MenuClash`."""
    merged: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
    origin: dict[tuple[str, str], tuple[str, Path]] = {}
    for element, path, data in menus:
        for kind in KINDS:
            for name, spec in (data.get(kind) or {}).items():
                if (kind, name) in origin:
                    first, first_path = origin[(kind, name)]
                    raise errors.MenuClash(
                        f"{kind[:-1]} '{name}' is defined by both element "
                        f"'{first}' ({first_path}) and element '{element}' "
                        f"({path})",
                        "rename one of them, or leave one element out")
                origin[(kind, name)] = (element, path)
                entry = dict(spec)
                entry["element"] = element
                merged[kind][name] = entry
    return Menu(dict(sorted(merged["features"].items())),
                dict(sorted(merged["variables"].items())))


def menu_of(elements: Iterable[tuple[str, Path]]) -> Menu:
    """The global menu of the elements ``(name, directory)``: every
    ``menu.yaml`` loaded and united, in element-name order."""
    found = []
    for name, directory in sorted(elements):
        path = Path(directory) / FILE_NAME
        if path.is_file():
            found.append((name, path, load_file(path)))
    return union(found)


def from_json(data: Any, where: str) -> Menu:
    """A menu written by :meth:`Menu.to_json` (``NAME.menu.json``)."""
    if not isinstance(data, dict) or set(data) - set(KINDS):
        raise errors.MenuError(
            f"{where}: not a menu (expected features and variables)",
            "give the NAME.menu.json written next to a built image")
    plain = {k: {n: {f: v for f, v in s.items() if f != "element"}
                 for n, s in (data.get(k) or {}).items()
                 if isinstance(s, dict)} for k in KINDS}
    problems = problems_of(plain)
    if problems:
        raise errors.MenuError(f"{where}: {problems[0]}",
                               "rebuild the image, or fix the file")
    return Menu(dict(sorted((data.get("features") or {}).items())),
                dict(sorted((data.get("variables") or {}).items())))


def load_json(path: Path) -> Menu:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.from_os_error(path, exc, "menu")
    except ValueError as exc:
        raise errors.MenuError(f"{path}: not JSON: {exc}",
                               "give the NAME.menu.json of a built image")
    return from_json(data, str(path))
