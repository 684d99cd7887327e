"""Element trees and fakes for the ``build-image check`` tests (and the
tree checks ``plan`` shares with it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fixtures

from tripleo_elements.testing.elements import FileSpec, build_element_tree

GOOD_SCRIPT = """#!/bin/bash

if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail

echo hello
"""

GOOD_SH = """#!/bin/sh

if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then
    set -x
fi
set -eu

echo hello
"""

GOOD_PYTHON = """#!/usr/bin/env python3
import sys


print(sys.argv)
"""


def element(root: Path, name: str, files: dict[str, FileSpec] | None = None,
            readme: bool = True) -> Path:
    """An element directory under ``root``: README.rst (unless told not
    to), then ``files`` (rel -> text or bytes, or (text, mode)); a file
    given without a mode gets 0644, wherever it is (the check tests say
    which scripts are executable).  Written by the one tree builder,
    :func:`tripleo_elements.testing.elements.build_element_tree`."""
    specs: dict[str, FileSpec] = {}
    if readme:
        specs["README.rst"] = f"{name}\n{'=' * len(name)}\n"
    for rel, spec in (files or {}).items():
        specs[rel] = spec if isinstance(spec, tuple) else (spec, 0o644)
    build_element_tree(root, {name: specs})
    return root / name


def script(body: str = "echo hello\n") -> tuple[str, int]:
    return GOOD_SCRIPT.replace("echo hello\n", body), 0o755


def sh_script(body: str = "echo hello\n") -> tuple[str, int]:
    return GOOD_SH.replace("echo hello\n", body), 0o755


Builder = Callable[[Path], None]


def single(files: dict[str, FileSpec], readme: bool = True) -> Builder:
    def build(root: Path) -> None:
        element(root, "one", files, readme)
    return build


def several(specs: dict[str, dict[str, FileSpec]]) -> Builder:
    def build(root: Path) -> None:
        for name, files in specs.items():
            element(root, name, files)
    return build


class FakeShellcheck(fixtures.Fixture):
    """Replace the shellcheck wrapper: ``binary`` None means not
    installed; ``comments`` maps a file name to the json1 comments the
    fake reports for it.  ``calls`` records each run's (shell, paths)."""

    def __init__(self, binary: str | None = "/usr/bin/shellcheck",
                 comments: dict[str, list[dict[str, Any]]] | None = None
                 ) -> None:
        super().__init__()
        self.binary = binary
        self.comments = comments or {}
        self.calls: list[tuple[str, list[Path]]] = []

    def _setUp(self) -> None:
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.tools.shellcheck_binary",
            lambda: self.binary))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.tools.run_shellcheck", self._run))

    def _run(self, paths: list[Path], severity: str = "warning",
             binary: str = "shellcheck", shell: str = "bash"
             ) -> list[dict[str, Any]]:
        self.calls.append((shell, list(paths)))
        out = []
        for path in paths:
            for comment in self.comments.get(Path(path).name, []):
                out.append(dict(comment, file=str(path)))
        return out


class Unreadable(fixtures.Fixture):
    """Make opening files whose name is in ``names`` fail with
    PermissionError in the check driver (tests may run as root, where
    chmod 000 does not stop a read)."""

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.names = set(names)

    def _setUp(self) -> None:
        real = open

        def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(path).name in self.names:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.driver.open", fake_open))
