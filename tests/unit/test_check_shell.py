"""shellcheck (faked at its process boundary) and the shell rules by
dialect: bash, sh, dash."""

from __future__ import annotations

from pathlib import Path

import fixtures

from tests.unit.checktrees import (GOOD_SH, FakeShellcheck, element, script,
                                   sh_script)
from tests.unit.test_check import CheckTestCase
from tripleo_elements import check


class TestShellcheck(CheckTestCase):

    def test_passes_codes_through_in_one_run(self) -> None:
        element(self.root, "one", {
            "install.d/10-a": script(),
            "install.d/20-b": script("echo other\n"),
            "environment.d/10-x.bash": "FOO=1\n",
            "README.rst": "one\n===\n"})
        fake = self.useFixture(FakeShellcheck(comments={
            "10-a": [{"line": 9, "code": 2086, "level": "info",
                      "message": "Double quote."}],
            "10-x.bash": [{"line": 1, "code": 2034, "level": "warning",
                           "message": "FOO appears unused."}]}))
        found = self.run_check(shellcheck=True)
        self.assertEqual(1, len(fake.calls))
        self.assertEqual("bash", fake.calls[0][0])
        self.assertEqual(["10-x.bash", "10-a", "20-b"],
                         [p.name for p in fake.calls[0][1]])
        self.assertEqual(["SC2086"], self.codes(found))
        self.assertEqual("info: Double quote.", found[0].message)
        self.assertEqual(9, found[0].line)

    def test_each_shell_checked_as_itself(self) -> None:
        element(self.root, "one", {
            "install.d/10-a": script(),
            "install.d/20-b": sh_script(),
            "install.d/30-c": (GOOD_SH.replace("#!/bin/sh",
                                               "#!/usr/bin/env sh"), 0o755),
            "install.d/40-d": (GOOD_SH.replace("#!/bin/sh", "#!/bin/dash"),
                               0o755),
            "bin/tool.py": "#!/usr/bin/python3\n"})
        fake = self.useFixture(FakeShellcheck())
        self.run_check(shellcheck=True)
        self.assertEqual(
            [("bash", ["10-a"]), ("dash", ["40-d"]),
             ("sh", ["20-b", "30-c"])],
            [(shell, [p.name for p in paths])
             for shell, paths in sorted(fake.calls)])

    def test_missing_shellcheck_is_a_notice(self) -> None:
        element(self.root, "one", {"install.d/10-a": script(),
                                   "install.d/20-b": sh_script()})
        self.useFixture(FakeShellcheck(binary=None))
        found = self.run_check(shellcheck=True)
        self.assertEqual([check.SHELLCHECK_MISSING], self.codes(found))
        self.assertIn("2 shell script(s) not checked", found[0].message)
        self.assertEqual(check.NOTICE,
                         check.severity_of(check.SHELLCHECK_MISSING))
        self.assertEqual([], check.failing(found))
        self.assertEqual(found, check.failing(found, strict=True))
        self.assertEqual([check.SHELLCHECK_MISSING], self.codes(
            self.run_check(shellcheck=True, select=["SC2086"])))
        self.assertEqual([], self.run_check(shellcheck=True,
                                            ignore=["TIE080"]))

    def test_cache_by_content(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()})
        fake = self.useFixture(FakeShellcheck(comments={
            "10-a": [{"line": 2, "code": 2034, "level": "warning",
                      "message": "x"}]}))
        cache = Path(self.useFixture(fixtures.TempDir()).path)
        first = self.run_check(shellcheck=True, cache_dir=cache)
        second = self.run_check(shellcheck=True, cache_dir=cache)
        self.assertEqual(1, len(fake.calls))
        self.assertEqual(["SC2034"], self.codes(first))
        self.assertEqual(first, second)

    def test_ignore_sc_skips_the_run(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()})
        fake = self.useFixture(FakeShellcheck())
        self.run_check(shellcheck=True, ignore=["SC"])
        self.run_check(shellcheck=True, select=["TIE0"])
        self.assertEqual([], fake.calls)


class TestShellDialects(CheckTestCase):

    def test_sh_hook_without_set_e(self) -> None:
        text, mode = sh_script()
        element(self.root, "one", {
            "install.d/10-a": (text.replace("set -eu", "set -u"), mode)})
        self.assertEqual(["TIE012"], self.codes(self.run_check()))

    def test_env_sh_and_dash_hooks_get_the_rules(self) -> None:
        for shebang in ("#!/usr/bin/env sh", "#!/bin/dash",
                        "#!/usr/bin/env dash"):
            root = self.root / shebang.replace("/", "_")
            element(root, "one", {"install.d/10-a": (
                f"{shebang}\necho no set at all\n", 0o755)})
            found = check.check_elements(check.targets_from_paths([root]),
                                         shellcheck=False)
            self.assertEqual(["TIE012", "TIE013", "TIE015"],
                             self.codes(found), shebang)

    def test_pipefail_not_asked_of_sh(self) -> None:
        element(self.root, "one", {"install.d/10-a": sh_script(),
                                   "os-refresh-config/configure.d/20-b":
                                   sh_script()})
        self.assertEqual([], self.run_check())

    def test_sh_data_files_are_not_hooks(self) -> None:
        # An init script an install script copies is not a hook.
        element(self.root, "one", {
            "install.d/50-copy": script("cp foo.init /etc/init.d\n"),
            "install.d/foo.init": ("#!/bin/sh\necho start\n", 0o755)})
        self.assertEqual([], self.run_check(select=["TIE01"]))

    def test_bash_through_env_is_checked(self) -> None:
        element(self.root, "one", {"bin/tool": (
            "#!/usr/bin/env bash\necho hi\n", 0o755)})
        self.assertEqual(["TIE011", "TIE012", "TIE013", "TIE014",
                          "TIE015"], sorted(self.codes(self.run_check())))
