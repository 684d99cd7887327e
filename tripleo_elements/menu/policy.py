"""Project policy and instance selections, and the metadata they make.

In: a :class:`~tripleo_elements.menu.model.Menu`, a project policy file
(YAML: per feature a state, per variable a state and a default) and an
instance's choices (``--enable``/``--disable``/``--set`` or a selection
file).  Out: the project menu (the global menu with each entry's
``state``), the metadata document for the instance (the JSON that goes
into the server's Heat metadata, under :data:`METADATA_KEY`), or a
:class:`~tripleo_elements.errors.MenuRefused` listing every problem, one
line each (the same rules the guest applies: :mod:`.rules`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import errors
from tripleo_elements.menu import rules
from tripleo_elements.menu.model import Menu

#: The metadata key the menu-driver element reads.
METADATA_KEY = "menu"
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _load_yaml(path: Path, what: str) -> Any:
    from tripleo_elements.check import formats
    try:
        return formats.yaml_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.from_os_error(path, exc, what)
    except Exception as exc:  # any parser failure is a broken file
        raise errors.MenuError(
            f"{path}: does not parse: {formats.first_line(exc)}",
            f"fix the YAML of the {what}")


def check_project(menu: Menu, project: Any, where: str) -> dict[str, Any]:
    """``project`` (parsed) checked against ``menu``; normalised: every
    entry present, sorted.  Raises MenuRefused naming each bad key."""
    project = {} if project is None else project
    problems = rules.project_problems(menu.to_json(), project)
    if problems:
        raise errors.MenuRefused(
            [f"{where}: {p}" for p in problems],
            "states are unavailable, available or default; defaults "
            "must have the variable's type")
    features = project.get("features") or {}
    variables = project.get("variables") or {}
    return {
        "features": {n: features.get(n, rules.UNAVAILABLE)
                     for n in sorted(menu.features)},
        "variables": {n: dict(sorted(variables[n].items()))
                      for n in sorted(variables)},
    }


def load_project(menu: Menu, path: Path) -> dict[str, Any]:
    return check_project(menu, _load_yaml(path, "project file"), str(path))


def project_menu(menu: Menu, project: Mapping[str, Any] | None
                 ) -> dict[str, Any]:
    """The menu as JSON; with a project, each entry gets its ``state``
    and variables the project's ``default`` where it gives one."""
    data = menu.to_json()
    if project is None:
        return data
    for name, entry in data["features"].items():
        entry["state"] = rules.feature_state(project, name)
    for name, entry in data["variables"].items():
        state, has_default, default = rules.variable_policy(project, name)
        entry["state"] = state
        if has_default:
            entry["default"] = default
    return data


def parse_value(spec: Mapping[str, Any], text: str, name: str) -> Any:
    """A ``--set VAR=VALUE`` value typed as variable ``name`` wants."""
    kind = spec.get("type")
    if kind == "integer":
        try:
            return int(text, 10)
        except ValueError:
            raise errors.MenuRefused(
                [f"--set {name}: {text!r} is not an integer"])
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise errors.MenuRefused([f"--set {name}: {text!r} is not true or "
                                  "false"])
    if kind == "list":
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise errors.MenuRefused(
                    [f"--set {name}: {text!r} is not a JSON list"])
        return [item for item in text.split(",") if item] if text else []
    return text


def selection(menu: Menu, *, file: Path | None = None,
              enable: Sequence[str] = (), disable: Sequence[str] = (),
              assignments: Sequence[str] = ()) -> dict[str, Any]:
    """The instance's choices: the selection file (``enable``,
    ``disable``, ``set``) with the command line's added on top."""
    data: dict[str, Any] = {}
    if file is not None:
        loaded = _load_yaml(file, "selection file")
        if loaded is not None and not isinstance(loaded, dict):
            raise errors.MenuRefused(
                [f"{file}: expected a mapping with enable, disable, set"])
        data = dict(loaded or {})
    on = [n for n in list(data.get("enable") or []) + list(enable)]
    off = [n for n in list(data.get("disable") or []) + list(disable)]
    values = dict(data.get("set") or {})
    for item in assignments:
        name, sep, text = item.partition("=")
        if not sep:
            raise errors.MenuRefused(
                [f"--set {item!r}: expected VARIABLE=VALUE"])
        spec = menu.variables.get(name)
        if spec is None:
            raise errors.MenuRefused(
                [f"--set {name}: no such variable in the menu"],
                "build-image menu lists the variables")
        values[name] = parse_value(spec, text, name)
    result = dict(data)
    result.update({"enable": list(dict.fromkeys(on)),
                   "disable": list(dict.fromkeys(off)),
                   "set": dict(sorted(values.items()))})
    return result


def _split_direct(menu: Menu, chosen: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(menu-driver values, values read straight from a metadata key)."""
    direct = {n: v for n, v in chosen.items()
              if n in menu.variables
              and menu.variables[n].get("metadata_key")}
    rest = {n: v for n, v in chosen.items() if n not in direct}
    return rest, direct


def _direct_problems(menu: Menu, project: Mapping[str, Any],
                     direct: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, value in sorted(direct.items()):
        spec = menu.variables[name]
        if rules.variable_policy(project, name)[0] == rules.UNAVAILABLE:
            problems.append(f"{spec['metadata_key']}: variable {name} is "
                            "Unavailable to this project")
            continue
        problem = rules.value_problem(name, spec, value)
        if problem:
            problems.append(f"{spec['metadata_key']}: {problem}")
    return problems


def _put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _get(doc: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def metadata(menu: Menu, project: Mapping[str, Any],
             chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata document for an instance, checked by the guest's own
    rules; raises MenuRefused with every problem."""
    values, direct = _split_direct(menu, chosen.get("set") or {})
    instance = dict(chosen)
    instance["set"] = values
    _, _, problems = rules.effective(menu.to_json(), dict(project),
                                     instance)
    problems += _direct_problems(menu, project, direct)
    if problems:
        raise errors.MenuRefused(
            problems, "build-image menu --project FILE shows what this "
            "project may turn on and set")
    doc: dict[str, Any] = {METADATA_KEY: {"project": dict(project),
                                          "instance": instance}}
    for name, value in sorted(direct.items()):
        _put(doc, menu.variables[name]["metadata_key"], value)
    return doc


def metadata_problems(menu: Menu, doc: Any,
                      project: Mapping[str, Any] | None) -> list[str]:
    """Every problem of a metadata document written by hand (what the
    guest would refuse), and where its project part differs from
    ``project``."""
    if not isinstance(doc, dict):
        return ["metadata: expected a JSON object"]
    section = doc.get(METADATA_KEY)
    if section is None:
        return [f"metadata: no '{METADATA_KEY}' key (every feature is off)"]
    if not isinstance(section, dict):
        return [f"{METADATA_KEY}: expected a mapping with project and "
                "instance"]
    problems = [f"{METADATA_KEY}: unknown key {k!r} (known: instance, "
                "project)" for k in sorted(set(section) - {"project",
                                                           "instance"})]
    given = section.get("project") or {}
    _, _, found = rules.effective(menu.to_json(), given,
                                  section.get("instance") or {})
    problems += [f"{METADATA_KEY}.{p}" for p in found]
    if project is not None and isinstance(given, dict) and not found:
        normal = check_project(menu, given, f"{METADATA_KEY}.project")
        for kind in ("features", "variables"):
            for name in sorted(set(normal[kind]) | set(project[kind])):
                if normal[kind].get(name) != project[kind].get(name):
                    problems.append(
                        f"{METADATA_KEY}.project.{kind}.{name}: differs "
                        "from the project file")
    direct = {}
    for name, spec in menu.variables.items():
        key = spec.get("metadata_key")
        if key:
            present, value = _get(doc, key)
            if present:
                direct[name] = value
    if isinstance(given, dict):
        problems += _direct_problems(menu, given, direct)
    return problems
