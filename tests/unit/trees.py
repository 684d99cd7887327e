"""Throwaway element trees for the driver's unit tests.

A thin shorthand over :func:`tripleo_elements.testing.elements.
build_element_tree`, the one tree builder of the project.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tripleo_elements.testing.elements import (FileSpec, build_element_tree,
                                               element_files)

__all__ = ["build_element_tree", "element_files", "make_tree"]

Spec = Mapping[str, object]


def make_tree(root: Path, elements: Mapping[str, Spec]) -> Path:
    """Create ``root/<name>/...`` for each element.

    A spec maps file names to content: ``deps``/``provides`` (lists) become
    ``element-deps``/``element-provides``; any other key is a relative file
    path whose value is its text (executable when it starts with ``#!``).
    """
    converted: dict[str, dict[str, FileSpec]] = {}
    for name, spec in elements.items():
        converted[name] = element_files(
            deps=_names(spec["deps"]) if "deps" in spec else None,
            provides=(_names(spec["provides"]) if "provides" in spec
                      else None),
            files={key: _file(value) for key, value in spec.items()
                   if key not in ("deps", "provides")})
    return build_element_tree(root, converted)


def _names(value: object) -> list[str]:
    assert isinstance(value, (list, tuple)), value
    return [str(v) for v in value]


def _file(value: object) -> FileSpec:
    text = str(value)
    return (text, 0o755 if text.startswith("#!") else 0o644)
