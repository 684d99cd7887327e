"""shellcheck (faked at its process boundary) and the shell rules by
dialect: bash, sh, dash."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import fixtures
import testtools

from tests.unit.checktrees import (GOOD_SH, FakeShellcheck, element, script,
                                   sh_script)
from tests.unit.test_check import CheckTestCase
from tripleo_elements import check
from tripleo_elements.check import cache, tools
from tripleo_elements.check.model import SourceFile


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

    def test_results_cached_before_content_only_not_reused(self) -> None:
        # A result stored under the key of before (binary, severity,
        # shell, content) may hold what shellcheck read from another
        # input or a .shellcheckrc: it must be checked again.
        text, mode = script()
        element(self.root, "one", {"install.d/10-a": (text, mode)})
        fake = self.useFixture(FakeShellcheck())
        cache_dir = Path(self.useFixture(fixtures.TempDir()).path)
        version = tools._binary_version(fake.binary or "")
        old_key = hashlib.sha256(
            f"{version}\0warning\0bash\0".encode()
            + text.encode()).hexdigest()
        cache.put(cache_dir, old_key, [{"line": 1, "code": 1000,
                                        "level": "error",
                                        "message": "stale"}])
        found = self.run_check(shellcheck=True, cache_dir=cache_dir)
        self.assertEqual(1, len(fake.calls))
        self.assertNotIn("SC1000", self.codes(found))

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


@testtools.skipUnless(shutil.which("shellcheck"), "shellcheck not installed")
class TestShellcheckSeesContentOnly(CheckTestCase):
    """With the real shellcheck: a script's findings depend on its
    content only (what the cache and checking each content once rely
    on), not on which other files are checked beside it, nor on a
    ``.shellcheckrc`` or ``SHELLCHECK_OPTS``."""

    def sc_codes(self, found: list[check.Finding], name: str) -> list[str]:
        return sorted(f.code for f in found
                      if f.path.name == name and f.code.startswith("SC"))

    def test_sourced_input_is_not_followed(self) -> None:
        lib = self.root / "one" / "install.d" / "05-lib"
        user = script(f"# shellcheck source={lib}\nsource {lib}\n"
                      "echo \"$foo\"\n")
        element(self.root, "one", {"install.d/05-lib": script("foo=1\n"),
                                   "install.d/10-a": user})
        beside = self.run_check(shellcheck=True)
        # shellcheck follows a sourced file that is another of its
        # inputs even without -x: checked beside 05-lib, $foo would be
        # assigned there.  Alone, it is not: the same content must give
        # the same findings either way.
        self.assertIn("SC2154", self.sc_codes(beside, "10-a"))
        lib.unlink()
        alone = self.run_check(shellcheck=True)
        self.assertEqual(self.sc_codes(alone, "10-a"),
                         self.sc_codes(beside, "10-a"))

    def test_sourced_from_script_dir_is_not_followed(self) -> None:
        user = script("# shellcheck source-path=SCRIPTDIR\n"
                      "source 05-lib\necho \"$foo\"\n")
        element(self.root, "one", {"install.d/05-lib": script("foo=1\n"),
                                   "install.d/10-a": user})
        self.assertIn("SC2154",
                      self.sc_codes(self.run_check(shellcheck=True), "10-a"))

    def test_rc_file_and_environment_ignored(self) -> None:
        element(self.root, "one", {
            "install.d/10-a": script("echo \"$bar\"\n"),
            ".shellcheckrc": "disable=SC2154\n"})
        self.useFixture(fixtures.EnvironmentVariable(
            "SHELLCHECK_OPTS", "--exclude=SC2154"))
        self.useFixture(fixtures.EnvironmentVariable(
            "HOME", str(self.root)))
        (self.root / ".shellcheckrc").write_text("disable=SC2154\n")
        self.assertEqual(["SC2154"],
                         self.sc_codes(self.run_check(shellcheck=True),
                                       "10-a"))


class TestMaySource(testtools.TestCase):
    """Which scripts shellcheck could make read another file: those are
    checked as lone copies, the rest in place."""

    def src(self, body: str) -> SourceFile:
        return SourceFile(None, Path("x"), "x", 0o755,
                          script(body)[0].encode())

    def test_commands_and_directives(self) -> None:
        for body in ("source ./lib\n", ". ./lib\n", "x=1; . lib\n",
                     "if true; then\n\t.\tlib\nfi\n", "true && . lib\n",
                     "\\. lib\n", "\".\" lib\n", "s\\ource lib\n",
                     "$(. lib)\n", "# shellcheck source=lib\n",
                     "# shellcheck source-path=SCRIPTDIR\n"):
            self.assertTrue(tools.may_source(self.src(body)), body)

    def test_plain_scripts(self) -> None:
        for body in ("echo hello\n", "cp a.b c.d\n", "cd ..\n",
                     "echo 1.5 .x\n", "ls ./x\n"):
            self.assertFalse(tools.may_source(self.src(body)), body)
        self.assertFalse(tools.may_source(SourceFile(
            None, Path("x"), "x", 0o755, GOOD_SH.encode())))
