"""Load and check an image definitions file (``images.yaml``).

The file's text flows in; a :class:`Definitions` (sources and images,
frozen) flows out, or one :class:`errors.DefinitionError` line naming
the file, the line and the key path.  Checks, in order: YAML syntax,
duplicate mapping keys, the JSON Schema shipped beside this module
(``schema.json``), duplicate image and source names.  Nothing is
fetched or built here.  :func:`image_argv` turns an image into the
``build-image build`` arguments :func:`options.parse` reads, so image
fields reach :class:`~tripleo_elements.options.BuildOptions` through the
one path the command line uses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tripleo_elements import errors

SCHEMA_FILE = Path(__file__).with_name("schema.json")
#: The version of the file format (and of the source contract).
FORMAT_VERSION = 1
DEFAULT_SUBDIR = "elements/"


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One ``sources:`` entry: a git URL (+ ref) or a local path."""

    name: str
    git: str | None = None
    ref: str | None = None
    path: Path | None = None
    subdir: str = DEFAULT_SUBDIR


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One ``images:`` entry with ``defaults:`` applied."""

    name: str
    elements: tuple[str, ...] = ()
    os: str | None = None
    release: str | None = None
    arch: str | None = None
    types: tuple[str, ...] = ()
    size: str | None = None
    packages: tuple[str, ...] = ()
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    output: Path | None = None
    no_defaults: bool = False
    publish: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class Definitions:
    path: Path
    sources: tuple[SourceSpec, ...]
    images: tuple[ImageSpec, ...]

    def select(self, only: Sequence[str] = ()) -> tuple[ImageSpec, ...]:
        """The images named by ``--only`` (all without), in file order."""
        names = [i.name for i in self.images]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise errors.UsageError(
                f"{self.path}: no image named "
                + ", ".join(repr(n) for n in unknown),
                "images in the file: " + ", ".join(names))
        return tuple(i for i in self.images if not only or i.name in only)


@functools.cache
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return data


# ------------------------------------------------------ YAML with lines

def _key_path(path: Iterable[object]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else \
            (f".{part}" if text else str(part))
    return text or "(top level)"


def _node_at(root: yaml.Node, path: Sequence[object]) -> yaml.Node:
    """The deepest node along ``path`` (for its line number)."""
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _key_node(root: yaml.Node, path: Sequence[object], key: str
              ) -> yaml.Node:
    parent = _node_at(root, path)
    if isinstance(parent, yaml.MappingNode):
        for knode, _ in parent.value:
            if knode.value == key:
                return knode
    return parent


def _fail(file: Path, node: yaml.Node, path: Sequence[object],
          message: str, hint: str = "") -> errors.DefinitionError:
    line = node.start_mark.line + 1
    return errors.DefinitionError(
        f"{file}:{line}: {_key_path(path)}: {message}",
        hint or "see README 'Image definitions'")


def _duplicate_keys(file: Path, node: yaml.Node,
                    path: tuple[object, ...] = ()) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key, value in node.value:
            if key.value in seen:
                raise _fail(file, key, path + (key.value,),
                            "duplicate key", "keep one of them")
            seen.add(key.value)
            _duplicate_keys(file, value, path + (key.value,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(file, item, path + (i,))


def _schema_message(error: Any) -> str:
    if error.validator == "additionalProperties":
        return f"unknown key ({error.message.split('(')[-1].rstrip(')')})"
    if error.validator == "type":
        return f"wrong type: {error.message}"
    if error.validator == "oneOf" and error.schema_path and \
            "source" in str(list(error.schema_path)):
        return "a source has either 'git' (with optional 'ref') or 'path'"
    return error.message


def _check_schema(file: Path, root: yaml.Node, data: object) -> None:
    import jsonschema
    validator = jsonschema.Draft202012Validator(schema())
    found = sorted(validator.iter_errors(data),
                   key=lambda e: (len(e.absolute_path), list(
                       map(str, e.absolute_path))))
    if not found:
        return
    # The error nearest the top is the one the user wrote wrong; within
    # it, the most specific cause.
    error = found[0]
    best = jsonschema.exceptions.best_match([error])
    path = list(best.absolute_path)
    node = _node_at(root, path)
    if best.validator == "additionalProperties":
        extra = sorted(set(best.instance) - set(
            best.schema.get("properties", {})))
        if extra:
            path = path + [extra[0]]
            node = _key_node(root, path[:-1], extra[0])
            return_msg = f"unknown key '{extra[0]}'"
            raise _fail(file, node, path, return_msg,
                        "allowed: " + ", ".join(
                            sorted(best.schema.get("properties", {}))))
    raise _fail(file, node, path, _schema_message(best))


# ------------------------------------------------------------- loading

def _string_env(env: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in env.items():
        if isinstance(value, bool):
            value = "1" if value else "0"
        out[str(key)] = str(value)
    return out


def _image(entry: Mapping[str, Any], defaults: Mapping[str, Any],
           base: Path) -> ImageSpec:
    merged = dict(defaults)
    merged.update(entry)
    env = dict(_string_env(defaults.get("environment", {})))
    env.update(_string_env(entry.get("environment", {})))
    output = merged.get("output")
    name = str(entry["name"])
    out_path = base / (output if output else name)
    if output and str(output).endswith("/"):
        out_path = out_path / name
    size = merged.get("size")
    return ImageSpec(
        name=name, elements=tuple(merged.get("elements", ())),
        os=merged.get("os"), release=merged.get("release"),
        arch=merged.get("arch"), types=tuple(merged.get("types", ())),
        size=None if size is None else str(size),
        packages=tuple(merged.get("packages", ())),
        environment=dict(sorted(env.items())), output=out_path,
        no_defaults=bool(merged.get("no_defaults", False)),
        publish=tuple(merged.get("publish", ())))


def parse(text: str, file: Path) -> Definitions:
    """Check ``text`` (the content of ``file``) and build the
    :class:`Definitions`.  Raises :class:`errors.DefinitionError`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise errors.DefinitionError(
            f"{file}:{line}: not valid YAML: {exc.problem or exc}",
            "fix the syntax") from None
    except yaml.YAMLError as exc:
        raise errors.DefinitionError(f"{file}: not valid YAML: {exc}",
                                     "fix the syntax") from None
    if root is None or not isinstance(data, dict):
        raise errors.DefinitionError(
            f"{file}:1: (top level): expected a mapping with 'images:'",
            "see README 'Image definitions'")
    _duplicate_keys(file, root)
    _check_schema(file, root, data)
    base = file.parent
    for kind in ("sources", "images"):
        seen: set[str] = set()
        for i, entry in enumerate(data.get(kind, ())):
            if entry["name"] in seen:
                raise _fail(file, _node_at(root, [kind, i, "name"]),
                            [kind, i, "name"],
                            f"duplicate {kind[:-1]} name "
                            f"'{entry['name']}'", "names must be unique")
            seen.add(entry["name"])
    sources = []
    for i, entry in enumerate(data.get("sources", ())):
        path = entry.get("path")
        sources.append(SourceSpec(
            name=entry["name"], git=entry.get("git"), ref=entry.get("ref"),
            path=(base / path) if path is not None else None,
            subdir=entry.get("subdir", DEFAULT_SUBDIR)))
    defaults = data.get("defaults", {})
    images = tuple(_image(e, defaults, base) for e in data["images"])
    return Definitions(file, tuple(sources), images)


def load(file: Path) -> Definitions:
    try:
        text = file.read_text()
    except OSError as exc:
        raise errors.DefinitionError(
            f"{file}: cannot read ({exc.strerror or exc})",
            "give an existing images.yaml with -f") from None
    return parse(text, Path(file))


def image_argv(image: ImageSpec) -> list[str]:
    """The ``build-image build`` arguments equivalent to ``image`` (in
    ``--flag=value`` form, so a value starting with ``-`` stays a
    value)."""
    argv = [f"--element={e}" for e in image.elements]
    if image.os:
        argv.append(f"--element={image.os}")
    if image.output is not None:
        argv.append(f"--output={image.output}")
    if image.types:
        argv.append("--type=" + ",".join(image.types))
    for flag, value in (("--arch", image.arch), ("--release", image.release),
                        ("--image-size", image.size)):
        if value is not None:
            argv.append(f"{flag}={value}")
    if image.packages:
        argv.append("--package=" + ",".join(image.packages))
    if image.no_defaults:
        argv.append("--no-defaults")
    return argv
