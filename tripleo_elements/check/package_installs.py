"""``package-installs.yaml`` / ``.json``: the schema and its validation,
shared by ``build-image check`` (TIE060, TIE061) and ``plan``
(:func:`tripleo_elements.tree.validate_element_files`).

In: a package-installs file.  Out: its problems as (line, message)
pairs, worded for a user; the schema itself is the sibling file
``package_installs.schema.json`` (:data:`SCHEMA_PATH`), and
:func:`schema_version` is its content hash (part of every cache key that
depends on it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tripleo_elements.check import formats
from tripleo_elements.element import Element

SCHEMA_PATH = Path(__file__).with_name("package_installs.schema.json")
FILE_NAMES = ("package-installs.json", "package-installs.yaml")
WHEN = re.compile(r"(?P<var>\w+)\s*(?:=|!=)")


@functools.cache
def _schema_bytes() -> bytes:
    return SCHEMA_PATH.read_bytes()


def schema() -> dict[str, Any]:
    """The JSON schema of a package-installs file."""
    return dict(json.loads(_schema_bytes()))


def schema_version() -> str:
    """The schema file's SHA-256 (changes whenever the schema does)."""
    return hashlib.sha256(_schema_bytes()).hexdigest()


def files_of(element: Element) -> list[Path]:
    """The element's package-installs files (JSON first, as
    package-installs-squash reads them)."""
    return [element.path / name for name in FILE_NAMES
            if (element.path / name).is_file()]


def load(path: Path) -> Any:
    """The parsed file: JSON first, then YAML (package-installs-squash's
    order).  Raises ``OSError`` or the parser's error."""
    text = path.read_bytes().decode("utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return formats.yaml_load(text)


@functools.cache
def _validator() -> Any:
    import jsonschema
    return jsonschema.Draft7Validator(schema())


def _leaf_errors(error: Any) -> list[Any]:
    """Replace an ``anyOf`` failure by the errors of the one branch whose
    type fits the value (a mapping: the params branch...)."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    branches: dict[int, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [subs for subs in branches.values()
               if not any(e.validator == "type"
                          and not e.path for e in subs)]
    if len(fitting) != 1:
        return [error]
    return [leaf for sub in fitting[0] for leaf in _leaf_errors(sub)]


def _message(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    prefix = f"{where}: " if where else ""
    params = schema()["definitions"]["params"]["properties"]
    if not where and error.validator == "type":
        kind = type(error.instance).__name__
        return (f"the top level is a {kind}, not a mapping of package "
                f"names (package-installs-squash fails on it)")
    if error.validator == "additionalProperties" and where:
        unknown = sorted(set(error.instance) - set(params))
        return (f"{prefix}unknown key(s) {', '.join(unknown)} (known: "
                + ", ".join(sorted(params)) + ")")
    if error.validator == "not":
        return f"{prefix}arch and not-arch are exclusive"
    if error.validator == "const":
        return (f"{prefix}{error.instance!r}: only the key's presence "
                f"counts; write 'true' or drop the key")
    if error.validator == "pattern" and where.endswith("when") or \
            where.rpartition("/")[0].endswith("when"):
        return (f"{prefix}{error.instance!r} is not 'VARIABLE = value' or "
                f"'VARIABLE != value'")
    if error.validator == "anyOf":
        return (f"{prefix}{error.instance!r} is neither empty, a mapping "
                f"of settings nor a list of them")
    return f"{prefix}{error.message}"


@functools.cache
def _fast_rules() -> tuple[frozenset[str], Any, Any, tuple[Any, ...]]:
    """What :func:`plainly_valid` tests, taken from the schema itself:
    the phases, the arch-list and ``when`` patterns and the Python
    versions."""
    props = schema()["definitions"]["params"]["properties"]
    definitions = schema()["definitions"]
    return (frozenset(props["phase"]["enum"]),
            re.compile(definitions["archlist"]["pattern"]),
            re.compile(definitions["when"]["pattern"]),
            tuple(props["dib_python_version"]["enum"]))


def _plain_params(params: Any) -> bool:
    if type(params) is not dict:
        return False
    phases, archlist, when, versions = _fast_rules()
    for key, value in params.items():
        if key == "phase":
            ok = type(value) is str and value in phases
        elif key in ("uninstall", "build-only"):
            ok = value is True
        elif key == "installtype":
            ok = type(value) is str and value != ""
        elif key in ("arch", "not-arch"):
            ok = type(value) is str and archlist.search(value) is not None
        elif key == "dib_python_version":
            ok = type(value) in (int, str) and value in versions
        elif key == "when":
            tests = value if type(value) is list else [value]
            ok = bool(tests) and all(
                type(t) is str and when.search(t) is not None
                for t in tests)
        else:
            ok = False
        if not ok:
            return False
    return not ("arch" in params and "not-arch" in params)


def plainly_valid(data: Any) -> bool:
    """True only for data the schema accepts, in the plain shapes real
    files use (string keys; a setting of the exact type the schema
    names).  False means "ask jsonschema", which also words the
    problems: importing it costs more than the rest of a warm check."""
    if type(data) is not dict:
        return False
    for package, value in data.items():
        if type(package) is not str:
            return False
        if value is None:
            continue
        entries = value if type(value) is list else [value]
        if not all(_plain_params(entry) for entry in entries):
            return False
    return True


def problems(path: Path, parse_errors: bool = True
             ) -> list[tuple[int, str]]:
    """(line, message) for each way ``path`` breaks the schema, sorted by
    where they are.  A file that cannot be read or parsed is one problem
    (none when ``parse_errors`` is False: ``check`` reports those as
    TIE030)."""
    try:
        data = load(path)
    except OSError as exc:
        return [(0, f"cannot be read: {exc.strerror or exc}")] \
            if parse_errors else []
    except Exception as exc:  # any parser failure is a broken file
        return [(formats.yaml_error_line(exc),
                 f"does not parse: {formats.first_line(exc)}")] \
            if parse_errors else []
    if data is None or plainly_valid(data):
        return []
    leaves = [leaf for error in _validator().iter_errors(data)
              for leaf in _leaf_errors(error)]
    found = []
    for error in sorted(leaves,
                        key=lambda e: list(map(str, e.absolute_path))):
        package = next(iter(error.absolute_path), "")
        found.append((formats.line_of_key(path, str(package)),
                      _message(error)))
    return found


def when_variables(data: Any) -> list[tuple[str, str]]:
    """(package, variable) for each ``when`` test in parsed ``data``."""
    found: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return found
    for package, params in data.items():
        entries = params if isinstance(params, list) else [params]
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            when = entry.get("when")
            for test in when if isinstance(when, list) else [when]:
                match = WHEN.match(test) if isinstance(test, str) else None
                if match:
                    found.append((str(package), match["var"]))
    return found
