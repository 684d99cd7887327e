"""``build-image check`` on trees that used to crash it, and the smaller
fixes: never a traceback, one finding or one line of error."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import fixtures

from tests.unit.checktrees import Unreadable, element, script, single
from tests.unit.test_check import CheckTestCase
from tripleo_elements import check
from tripleo_elements.check import package_installs


class TestNoTraceback(CheckTestCase):

    def main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.root.parent)))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check.main([*argv, "--no-shellcheck"])
        return code, out.getvalue(), err.getvalue()

    def test_unsorted_crlf_element_deps(self) -> None:
        element(self.root, "one", {"element-deps": "zzz\r\naaa\r\n"})
        element(self.root, "aaa")
        element(self.root, "zzz")
        found = self.run_check(select=["TIE024"])
        self.assertEqual(["TIE024"], self.codes(found))
        self.assertEqual(1, found[0].line)
        self.assertIn("expected 'aaa' here", found[0].message)

    def test_sorted_crlf_element_deps_is_clean(self) -> None:
        element(self.root, "one", {"element-deps": "aaa\r\nzzz\r\n"})
        element(self.root, "aaa")
        element(self.root, "zzz")
        self.assertEqual([], self.run_check())

    def test_unreadable_file_is_one_finding(self) -> None:
        element(self.root, "one", {"install.d/10-a": script(),
                                   "static/secret": "x\n"})
        self.useFixture(Unreadable("secret"))
        found = self.run_check()
        self.assertEqual(["TIE003"], self.codes(found))
        self.assertEqual(self.root / "one" / "static" / "secret",
                         found[0].path)
        self.assertEqual("cannot be read: Permission denied",
                         found[0].message)

    def test_unreadable_directory_is_one_finding(self) -> None:
        element(self.root, "one", {"static/private/x": "x\n"})
        real = os.scandir

        def scandir(path: Any = ".") -> Any:
            if str(path).endswith("private"):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)
        self.useFixture(fixtures.MonkeyPatch("os.scandir", scandir))
        found = self.run_check()
        self.assertEqual(["TIE003"], self.codes(found))
        self.assertEqual(self.root / "one" / "static" / "private",
                         found[0].path)

    def test_unreadable_element_deps_is_one_line(self) -> None:
        element(self.root, "one", {"element-deps": "two\n"})
        element(self.root, "two")
        real = open

        def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).endswith("element-deps"):
                raise PermissionError(13, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.element.open", fake_open))
        code, out, err = self.main(str(self.root))
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.splitlines()), err)
        self.assertIn("element-deps (element-deps): permission denied", err)

    def test_undecodable_bytes(self) -> None:
        element(self.root, "one", {
            "install.d/10-a": (b"#!/bin/bash\n\xff\xfe\n", 0o755),
            "package-installs.yaml": b"\xff: 1\n",
            "pkg-map": b"\xff\n",
            "os-apply-config/etc/x": b"{{\xff}}\n",
            "os-apply-config/etc/x.oac": b"\xff\n"})
        code, out, err = self.main(str(self.root))
        self.assertEqual(1, code)
        self.assertEqual("", err)
        for code_ in ("TIE030", "TIE031", "TIE012"):
            self.assertIn(code_, out)

    def test_symlink_loops_inside_an_element(self) -> None:
        one = element(self.root, "one", {"install.d/10-a": script()})
        (one / "static").mkdir()
        (one / "static" / "self").symlink_to("self")
        (one / "static" / "a").symlink_to("b")
        (one / "static" / "b").symlink_to("a")
        (one / "install.d" / "20-loop").symlink_to("20-loop")
        (one / "environment.d").mkdir()
        (one / "environment.d" / "10-loop.bash").symlink_to("10-loop.bash")
        code, out, err = self.main(str(self.root))
        self.assertEqual("", err)
        self.assertIn(code, (0, 1))

    def test_symlink_loop_in_the_elements_directory(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()})
        (self.root / "loop").symlink_to("loop")
        code, out, err = self.main(str(self.root))
        self.assertIn(code, (0, 1, 2))
        self.assertLessEqual(len(err.splitlines()), 1, err)
        self.assertNotIn("Traceback", err)


class TestSmallerFixes(CheckTestCase):

    def test_element_named_environment_defaults(self) -> None:
        # Its hooks are not environment.d files: the DIB_DEBUG_TRACE
        # block's `set -x` is fine there.
        element(self.root, "environment-defaults",
                {"install.d/10-a": script()})
        self.assertEqual([], self.run_check())

    def test_environment_d_still_matched(self) -> None:
        element(self.root, "one", {"environment.d/10-a.bash":
                                   "set -x\n"})
        self.assertEqual(["TIE025"], self.codes(self.run_check()))

    def test_package_installs_cache_keyed_by_schema(self) -> None:
        single({"package-installs.yaml": "a:\n  colour: red\n"})(self.root)
        cache = Path(self.useFixture(fixtures.TempDir()).path)
        first = self.run_check(select=["TIE060"], cache_dir=cache)
        self.assertEqual(["TIE060"], self.codes(first))
        # A new schema (one that allows the key) must not reuse the old
        # verdict.
        schema = package_installs.schema()
        schema["definitions"]["params"]["properties"]["colour"] = {}
        new = Path(self.useFixture(fixtures.TempDir()).path) / "s.json"
        new.write_text(json.dumps(schema))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.package_installs.SCHEMA_PATH", new))
        package_installs._schema_bytes.cache_clear()
        package_installs._validator.cache_clear()
        self.addCleanup(package_installs._validator.cache_clear)
        self.addCleanup(package_installs._schema_bytes.cache_clear)
        self.assertEqual([], self.run_check(select=["TIE060"],
                                            cache_dir=cache))
