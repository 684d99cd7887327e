"""The menu's rules: value types, project states, the effective selection.

Standard library only: this file also runs inside the image, where the
``menu-driver`` element installs a byte-identical copy
(``elements/menu-driver/tie-menu-lib/tie_menu_rules.py``; a unit test keeps
the two equal).  Everything here is pure: data in, data and problems out.

In: a global menu (``{"features": {NAME: {...}}, "variables": {NAME:
{...}}}``), a project policy (``{"features": {NAME: STATE}, "variables":
{NAME: {"state": STATE, "default": VALUE}}}``) and an instance selection
(``{"enable": [F...], "disable": [F...], "set": {VAR: VALUE}}``).  Out:
which features are on, every variable's value, and the problems found,
one line each, never quoting a secret variable's value.
"""

from __future__ import annotations

import re
from typing import Any

Data = Any

UNAVAILABLE = "unavailable"
AVAILABLE = "available"
DEFAULT = "default"
STATES = (UNAVAILABLE, AVAILABLE, DEFAULT)
TYPES = ("string", "integer", "boolean", "enum", "list")
SELECTION_KEYS = ("enable", "disable", "set")
PROJECT_KEYS = ("features", "variables")
#: Control characters: refused in strings unless the variable is multiline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NEWLINE = re.compile(r"[\n\r]")


def _get(data: Data, key: str, default: Any) -> Any:
    """``data[key]``, or ``default`` when missing or null."""
    value = data.get(key)
    return default if value is None else value


def _show(spec: Data, value: Any) -> str:
    """``value`` for a message: never a secret's."""
    if spec.get("secret"):
        return "(secret value)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string_problem(spec: Data, text: str) -> str | None:
    if _CONTROL.search(text) or (
            not spec.get("multiline") and _NEWLINE.search(text)):
        return "holds a control character or line break"
    pattern = spec.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, text):
        return "does not match the pattern %s" % pattern
    limit = spec.get("max_length")
    if limit is not None and len(text) > limit:
        return "is longer than %d characters" % limit
    return None


def value_problem(name: str, spec: Data, value: Any) -> str | None:
    """Why ``value`` does not fit variable ``name`` of ``spec``, or None
    (the message does not repeat the name).

    ``None`` is accepted for every type: the variable is unset.
    """
    if value is None:
        return None
    kind = spec.get("type")
    shown = _show(spec, value)
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list) and all(
            isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        wanted = {"list": "a list of strings", "integer": "an integer",
                  "boolean": "true or false"}.get(kind, "a string")
        return "%s is not %s (type %s)" % (shown, wanted, kind)
    if kind == "integer":
        low, high = spec.get("minimum"), spec.get("maximum")
        if low is not None and value < low:
            return "%s is below the minimum %s" % (shown, low)
        if high is not None and value > high:
            return "%s is above the maximum %s" % (shown, high)
    elif kind == "enum":
        choices = spec.get("values") or []
        if value not in choices:
            return "%s is not one of %s" % (shown, ", ".join(choices))
    elif kind in ("string", "list"):
        items = value if kind == "list" else [value]
        for item in items:
            problem = _string_problem(spec, item)
            if problem:
                return "%s %s" % (_show(spec, item), problem)
    return None


def feature_state(project: Data, name: str) -> str:
    """The project's state of feature ``name`` (Unavailable unless said)."""
    state = (project.get("features") or {}).get(name, UNAVAILABLE)
    return state if state in STATES else UNAVAILABLE


def variable_policy(project: Data, name: str
                    ) -> tuple[str, bool, Any]:
    """(state, has_default, default) of variable ``name`` in the project."""
    entry = (project.get("variables") or {}).get(name)
    if not isinstance(entry, dict):
        return UNAVAILABLE, False, None
    state = entry.get("state", UNAVAILABLE)
    return state, "default" in entry, entry.get("default")


def project_problems(menu: Data, project: Data) -> list[str]:
    """Problems of a project policy against ``menu``, one line each."""
    if not isinstance(project, dict):
        return ["project: expected a mapping with features and variables"]
    problems: list[str] = []
    for key in sorted(set(project) - set(PROJECT_KEYS)):
        problems.append("project: unknown key %r (known: %s)"
                        % (key, ", ".join(PROJECT_KEYS)))
    features = _get(project, "features", {})
    variables = _get(project, "variables", {})
    if not isinstance(features, dict):
        return problems + ["project.features: expected a mapping of "
                           "feature names to states"]
    if not isinstance(variables, dict):
        return problems + ["project.variables: expected a mapping of "
                           "variable names to {state, default}"]
    known_f = menu.get("features") or {}
    known_v = menu.get("variables") or {}
    for name in sorted(features, key=str):
        where = "project.features.%s" % name
        if name not in known_f:
            problems.append("%s: no such feature in the menu" % where)
        elif features[name] not in STATES:
            problems.append("%s: state %r is not one of %s"
                            % (where, features[name], ", ".join(STATES)))
    for name in sorted(variables, key=str):
        where = "project.variables.%s" % name
        entry = variables[name]
        if name not in known_v:
            problems.append("%s: no such variable in the menu" % where)
            continue
        if not isinstance(entry, dict):
            problems.append("%s: expected {state: ..., default: ...}"
                            % where)
            continue
        for key in sorted(set(entry) - {"state", "default"}, key=str):
            problems.append("%s: unknown key %r (known: state, default)"
                            % (where, key))
        if entry.get("state", UNAVAILABLE) not in STATES:
            problems.append("%s.state: %r is not one of %s"
                            % (where, entry.get("state"),
                               ", ".join(STATES)))
        if "default" in entry:
            problem = value_problem(name, known_v[name], entry["default"])
            if problem:
                problems.append("%s.default: %s" % (where, problem))
    return problems


def selection_problems(menu: Data, project: Data, instance: Data
                       ) -> list[str]:
    """Problems of an instance selection, one line each."""
    if not isinstance(instance, dict):
        return ["instance: expected a mapping with enable, disable, set"]
    problems: list[str] = []
    for key in sorted(set(instance) - set(SELECTION_KEYS), key=str):
        problems.append("instance: unknown key %r (known: %s)"
                        % (key, ", ".join(SELECTION_KEYS)))
    known_f = menu.get("features") or {}
    known_v = menu.get("variables") or {}
    lists: dict[str, list[str]] = {}
    for key in ("enable", "disable"):
        names = _get(instance, key, [])
        if not isinstance(names, list) or not all(
                isinstance(n, str) for n in names):
            problems.append("instance.%s: expected a list of feature names"
                            % key)
            names = []
        lists[key] = names
        for name in names:
            where = "instance.%s: %s" % (key, name)
            if name not in known_f:
                problems.append("%s: no such feature in the menu" % where)
            elif feature_state(project, name) == UNAVAILABLE:
                problems.append("%s: the feature is Unavailable to this "
                                "project" % where)
    for name in sorted(set(lists["enable"]) & set(lists["disable"])):
        problems.append("instance: %s is both enabled and disabled" % name)
    values = _get(instance, "set", {})
    if not isinstance(values, dict):
        return problems + ["instance.set: expected a mapping of variable "
                           "names to values"]
    for name in sorted(values, key=str):
        where = "instance.set.%s" % name
        if name not in known_v:
            problems.append("%s: no such variable in the menu" % where)
            continue
        spec = known_v[name]
        if spec.get("metadata_key"):
            problems.append("%s: read from the metadata key %s, not "
                            "through the menu" % (where,
                                                  spec["metadata_key"]))
            continue
        if variable_policy(project, name)[0] == UNAVAILABLE:
            problems.append("%s: the variable is Unavailable to this "
                            "project (its value is fixed)" % where)
            continue
        problem = value_problem(name, spec, values[name])
        if problem:
            problems.append("%s: %s" % (where, problem))
    return problems


def effective(menu: Data, project: Data, instance: Data
              ) -> tuple[dict[str, bool], dict[str, Any], list[str]]:
    """(features on/off, variable values, problems) for an instance.

    A feature is on when the project makes it Default and the instance
    does not disable it, or the project makes it Available and the
    instance enables it; Unavailable features are off.  A variable's
    value is the instance's (when the project lets it set one), else the
    project's default, else the menu's default, else None.  With any
    problem the first two are empty: nothing is to be applied.
    """
    project = project if project is not None else {}
    instance = instance if instance is not None else {}
    problems = project_problems(menu, project)
    if not problems:
        problems = selection_problems(menu, project, instance)
    if problems:
        return {}, {}, problems
    enable = set(instance.get("enable") or [])
    disable = set(instance.get("disable") or [])
    features: dict[str, bool] = {}
    for name in sorted(menu.get("features") or {}):
        state = feature_state(project, name)
        features[name] = (state == DEFAULT and name not in disable) or (
            state == AVAILABLE and name in enable)
    values = instance.get("set") or {}
    variables: dict[str, Any] = {}
    for name, spec in sorted((menu.get("variables") or {}).items()):
        _, has_default, default = variable_policy(project, name)
        if name in values:
            variables[name] = values[name]
        elif has_default:
            variables[name] = default
        else:
            variables[name] = spec.get("default")
    return features, variables, []
