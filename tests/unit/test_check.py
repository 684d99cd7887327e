"""Tests for tripleo_elements.check: every registered code fires on a bad
tree and stays silent on a good one, plus the driver, output and CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import check, errors, graph
from tripleo_elements.discovery import discover
from tripleo_elements.element import load_element

GOOD_SCRIPT = """#!/bin/bash

if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail

echo hello
"""

GOOD_PYTHON = """#!/usr/bin/env python3
import sys


print(sys.argv)
"""


def write(root: Path, rel: str, text: str | bytes, mode: int = 0o644
          ) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)
    return path


def element(root: Path, name: str, files: dict[str, str | tuple[str, int]]
            | None = None, readme: bool = True) -> Path:
    """An element directory under ``root``: README.rst (unless told not
    to), then ``files`` (rel -> text, or (text, mode))."""
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    if readme:
        write(path, "README.rst", f"{name}\n{'=' * len(name)}\n")
    for rel, spec in (files or {}).items():
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        write(path, rel, text, mode)
    return path


def script(body: str = "echo hello\n") -> tuple[str, int]:
    return GOOD_SCRIPT.replace("echo hello\n", body), 0o755


Builder = Callable[[Path], None]


def single(files: dict[str, str | tuple[str, int]],
           readme: bool = True) -> Builder:
    return lambda root: [element(root, "one", files, readme)] and None


# code -> (bad tree, good tree).  Every code of check.CHECKS must be here
# (test_every_code_has_cases).
CASES: dict[str, tuple[Builder, Builder]] = {
    "TIE001": (single({"install.d/10-a": script()}, readme=False),
               single({"install.d/10-a": script()})),
    "TIE002": (single({"NOTES.md": "# notes\n"}),
               single({"NOTES.txt": "notes\n"})),
    "TIE010": (single({"bin/tool": (GOOD_SCRIPT, 0o644)}),
               single({"bin/tool": (GOOD_SCRIPT, 0o755)})),
    "TIE011": (single({"install.d/10-a": (
        GOOD_SCRIPT.replace("#!/bin/bash", "#!/usr/bin/env bash"),
        0o755)}),
        single({"install.d/10-a": script()})),
    "TIE012": (single({"install.d/10-a": (
        GOOD_SCRIPT.replace("set -eu", "set -u"), 0o755)}),
        single({"install.d/10-a": script()})),
    "TIE013": (single({"install.d/10-a": (
        GOOD_SCRIPT.replace("set -eu", "set -e"), 0o755)}),
        single({"install.d/10-a": script()})),
    "TIE014": (single({"install.d/10-a": (
        GOOD_SCRIPT.replace("set -o pipefail\n", ""), 0o755)}),
        single({"install.d/10-a": script()})),
    "TIE015": (single({"install.d/10-a": (
        "#!/bin/bash\nset -eux\nset -o pipefail\n", 0o755)}),
        single({"install.d/10-a": script()})),
    "TIE016": (single({"install.d/10-a": script("set -x\necho hi\n")}),
               single({"install.d/10-a": script()})),
    "TIE020": (single({"install.d/10-a": script(
        "if true; then\n  echo two\nfi\n")}),
        single({"install.d/10-a": script(
            "if true; then\n    echo four\nfi\n")})),
    "TIE021": (single({"install.d/10-a": script(
        "if true; then\n\techo tab\nfi\n")}),
        single({"install.d/10-a": script()})),
    "TIE022": (single({"install.d/10-a": (GOOD_SCRIPT.rstrip("\n"),
                                          0o755)}),
               single({"install.d/10-a": script()})),
    "TIE024": (single({"element-deps": "zzz\naaa\n"}),
               lambda root: [element(root, "one",
                                     {"element-deps": "aaa\nzzz\n"}),
                             element(root, "aaa"), element(root, "zzz")]
               and None),
    "TIE025": (single({"environment.d/10-a.bash": "set -x\nexport A=1\n"}),
               single({"environment.d/10-a.bash": "export A=1\n"})),
    "TIE026": (single({"environment.d/10-a.bash": ("export A=1\n",
                                                   0o755)}),
               single({"environment.d/10-a.bash": "export A=1\n"})),
    "TIE027": (single({"install.d/10-a": script("export A=$(date)\n")}),
               single({"install.d/10-a": script(
                   "A=$(date)\nexport A\n")})),
    "TIE028": (single({"root.d/10-a": script("sudo rm -rf /tmp/x\n")}),
               single({"root.d/10-a": script(
                   "sudo rm -rf $TARGET_ROOT/tmp/x\n")})),
    "TIE029": (single({"install.d/10-a": script("which ls\n")}),
               single({"install.d/10-a": script("type -p ls\n")})),
    "TIE030": (single({"package-installs.yaml": "a: [b\n"}),
               single({"package-installs.yaml": "a:\n"})),
    "TIE031": (single({"pkg-map": "{'a': 1}\n"}),
               single({"pkg-map": '{"family": {}}\n'})),
    "TIE032": (single({"bin/tool": (GOOD_PYTHON.replace(
        "import sys\n", "import os\nimport sys\n"), 0o755)}),
        single({"bin/tool": (GOOD_PYTHON, 0o755)})),
    "TIE040": (single({"element-deps": "no-such-element\n"}),
               lambda root: [element(root, "one",
                                     {"element-deps": "two\n"}),
                             element(root, "two")] and None),
    "TIE041": (single({"element-deps": "# a comment\n"}),
               single({"element-deps": ""})),
    "TIE050": (single({"install.d/10-a.sh": script()}),
               single({"install.d/10-a": script()})),
    "TIE051": (lambda root: [element(root, n, {"install.d/10-a": script()})
                             for n in ("one", "two")] and None,
               lambda root: [element(root, n, {f"install.d/10-{n}":
                                               script()})
                             for n in ("one", "two")] and None),
    "TIE060": (single({"package-installs.yaml":
                       "a:\n  phase: root.d\nb:\n  arch: x86\n"
                       "  colour: red\n"}),
               single({"package-installs.yaml":
                       "a:\n  phase: pre-install.d\nb:\n  arch: amd64\n"
                       "c:\n  - not-arch: ppc64, arm64\n    uninstall: true"
                       "\n"})),
    "TIE061": (single({"package-installs.yaml":
                       "a:\n  when: NOBODY_SETS_THIS = 1\n"}),
               single({"package-installs.yaml":
                       "a:\n  when: MY_FLAG = 1\n",
                       "environment.d/10-flag.bash":
                       "export MY_FLAG=${MY_FLAG:-0}\n"})),
    "TIE070": (single({"os-apply-config/etc/a.conf": "x\n",
                       "os-apply-config/etc/a.conf.oac":
                       "mode: '0600'\ncolour: red\n"}),
               single({"os-apply-config/etc/a.conf": "x\n",
                       "os-apply-config/etc/a.conf.oac":
                       "mode: 0600\nowner: root\n"})),
    "TIE071": (single({"os-apply-config/etc/a.conf":
                       "{{#a}}\nvalue\n{{/b}}\n"}),
               single({"os-apply-config/etc/a.conf":
                       "{{#a}}\nvalue {{b}}\n{{/a}}\n"})),
    "TIE080": (single({"install.d/10-a": script()}),
               single({"install.d/10-a": script()})),
}


class FakeShellcheck(fixtures.Fixture):
    """Replace the shellcheck wrapper: ``binary`` None means not
    installed; ``comments`` maps a file name to the json1 comments the
    fake reports for it.  ``calls`` records each run's paths."""

    def __init__(self, binary: str | None = "/usr/bin/shellcheck",
                 comments: dict[str, list[dict]] | None = None) -> None:
        super().__init__()
        self.binary = binary
        self.comments = comments or {}
        self.calls: list[list[Path]] = []

    def _setUp(self) -> None:
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.shellcheck_binary",
            lambda: self.binary))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check.run_shellcheck", self._run))

    def _run(self, paths, severity="warning", binary="shellcheck"):
        self.calls.append(list(paths))
        out = []
        for path in paths:
            for comment in self.comments.get(Path(path).name, []):
                out.append(dict(comment, file=str(path)))
        return out


class CheckTestCase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path) / "els"
        self.root.mkdir()

    def run_check(self, **kwargs) -> list[check.Finding]:
        targets = check.targets_from_paths([self.root])
        kwargs.setdefault("shellcheck", False)
        return check.check_elements(
            targets, index=discover([self.root]), **kwargs)

    def codes(self, findings: list[check.Finding]) -> list[str]:
        return [f.code for f in findings]


class TestRegistryCases(CheckTestCase):

    def test_every_code_has_cases(self) -> None:
        self.assertNotEqual([], list(check.CHECKS))
        self.assertEqual(sorted(check.CHECKS), sorted(CASES))

    def test_registry_entries(self) -> None:
        for code, entry in check.CHECKS.items():
            self.assertRegex(code, r"^TIE\d{3}$")
            self.assertIn(entry.scope, (check.FILE, check.ELEMENT,
                                        check.SET))
            self.assertTrue(entry.description)
            self.assertNotIn("\n", entry.description)

    def _case(self, code: str, which: int) -> list[check.Finding]:
        root = Path(tempfile.mkdtemp(dir=self.root.parent))
        CASES[code][which](root)
        if code == check.SHELLCHECK_MISSING:
            self.useFixture(FakeShellcheck(binary=None if which == 0
                                           else "/usr/bin/shellcheck"))
        return check.check_elements(
            check.targets_from_paths([root]), index=discover([root]),
            select=[code, "SC"] if code == check.SHELLCHECK_MISSING
            else [code], shellcheck=code == check.SHELLCHECK_MISSING)

    def test_bad_trees_fire(self) -> None:
        for code in sorted(CASES):
            found = self._case(code, 0)
            self.assertIn(code, self.codes(found), code)

    def test_good_trees_are_silent(self) -> None:
        for code in sorted(CASES):
            found = self._case(code, 1)
            self.assertEqual([], found, code)

    def test_good_trees_are_clean_for_every_check(self) -> None:
        # A good example must not trip some other check either (the
        # missing-shellcheck notice aside).
        for code in sorted(CASES):
            root = Path(tempfile.mkdtemp(dir=self.root.parent))
            CASES[code][1](root)
            found = check.check_elements(
                check.targets_from_paths([root]), index=discover([root]),
                shellcheck=False)
            self.assertEqual([], found, code)


class TestMessages(CheckTestCase):

    def test_missing_dep_names_chain_and_line(self) -> None:
        element(self.root, "top", {"element-deps": "middle\n"})
        element(self.root, "middle", {"element-deps": "aaa\nghost\n"})
        element(self.root, "aaa")
        index = discover([self.root])
        found = check.check_elements(
            [index["middle"], index["top"]], index=index,
            requested=["top"], select=["TIE040"], shellcheck=False)
        self.assertEqual(1, len(found))
        self.assertEqual(self.root / "middle" / "element-deps",
                         found[0].path)
        self.assertEqual(2, found[0].line)
        self.assertIn("top -> middle -> ghost", found[0].message)

    def test_provided_name_satisfies_dependency(self) -> None:
        element(self.root, "one", {"element-deps": "virtual\n"})
        element(self.root, "two", {"element-provides": "virtual\n"})
        self.assertEqual([], self.run_check(select=["TIE040"]))

    def test_skipped_script_in_os_refresh_config(self) -> None:
        element(self.root, "one", {
            "os-refresh-config/configure.d/20-a": ("#!/bin/bash\n", 0o644),
            "os-refresh-config/configure.d/30-b.sh": script()})
        found = self.run_check(select=["TIE050"])
        self.assertEqual(["20-a", "30-b.sh"], [f.path.name for f in found])
        self.assertIn("not executable", found[0].message)
        self.assertIn("name must match", found[1].message)

    def test_data_files_next_to_hooks_are_not_hooks(self) -> None:
        element(self.root, "one", {
            "install.d/50-install-conf": script("cp foo.conf /etc\n"),
            "install.d/foo.conf": "key=value\n",
            "install.d/helper.sh": script(),
            "install.d/foo@.service": "[Unit]\n",
            "cleanup.d/99-no-shebang": "set -eu\n",
            "cleanup.d/tool": ("#!/bin/bash\n", 0o644)})
        found = self.run_check(select=["TIE050"])
        self.assertEqual(["99-no-shebang", "tool"],
                         [f.path.name for f in found])

    def test_collision_in_resolved_set(self) -> None:
        element(self.root, "os", {"element-provides": "operating-system\n",
                                  "install.d/10-a": script()})
        element(self.root, "app", {"element-deps": "os\n",
                                   "install.d/10-a": script()})
        index = discover([self.root])
        resolution = graph.resolve(index, ["app"])
        found = check.check_elements(
            [index["app"]], index=index, resolution=resolution,
            select=["TIE051"], shellcheck=False)
        self.assertEqual(["TIE051"], self.codes(found))
        self.assertIn("install.d/10-a is also shipped by", found[0].message)

    def test_exclusive_elements_do_not_collide(self) -> None:
        # Two operating systems never meet in one image.
        for name in ("os-a", "os-b"):
            element(self.root, name, {
                "element-provides": "operating-system\n",
                "root.d/10-base": script()})
        self.assertEqual([], self.run_check(select=["TIE051"]))

    def test_package_installs_messages(self) -> None:
        element(self.root, "one", {"package-installs.yaml": (
            "a:\n  colour: red\n"
            "b:\n  phase: root.d\n"
            "c:\n  uninstall: false\n"
            "d:\n  arch: amd64\n  not-arch: arm64\n"
            "e:\n  when: NO OPERATOR\n")})
        found = self.run_check(select=["TIE060"])
        text = "\n".join(f.format() for f in found)
        self.assertIn("a: unknown key(s) colour", text)
        self.assertIn("b/phase: 'root.d' is not one of", text)
        self.assertIn("c/uninstall: False: only the key's presence", text)
        self.assertIn("d: arch and not-arch are exclusive", text)
        self.assertIn("e/when", text)
        self.assertEqual([1, 3, 5, 7, 10], [f.line for f in found])

    def test_package_installs_list_form_and_json(self) -> None:
        element(self.root, "one", {"package-installs.json": json.dumps(
            {"a": [{"arch": "amd64"}, {"phase": "nope"}], "b": None})})
        found = self.run_check(select=["TIE060"])
        self.assertEqual(1, len(found))
        self.assertIn("a/1/phase", found[0].message)

    def test_oac_messages(self) -> None:
        element(self.root, "one", {
            "os-apply-config/etc/a.oac": "mode: 01777\n",
            "os-apply-config/etc/b": "x\n",
            "os-apply-config/etc/b.oac": "allow_empty: 'no'\n"})
        found = self.run_check(select=["TIE070"])
        text = "\n".join(f.message for f in found)
        self.assertIn("does not exist", text)
        self.assertIn("out of range", text)
        self.assertIn("allow_empty must be true or false", text)

    def test_executable_template_not_parsed(self) -> None:
        element(self.root, "one", {
            "os-apply-config/etc/gen": ("#!/bin/sh\necho {{#x}}\n",
                                        0o755)})
        self.assertEqual([], self.run_check(select=["TIE071"]))

    def test_template_error_line(self) -> None:
        element(self.root, "one", {
            "os-apply-config/etc/a": "one\ntwo {{#x}}\nthree\n"})
        found = self.run_check(select=["TIE071"])
        self.assertEqual(1, len(found))
        self.assertEqual(2, found[0].line)

    def test_sudo_continuation_line_is_joined(self) -> None:
        # dib-lint reads lines with `read`, which joins a trailing \.
        element(self.root, "one", {"root.d/10-a": script(
            "sudo cp a \\\n    $TARGET_ROOT/b\n")})
        self.assertEqual([], self.run_check(select=["TIE028"]))

    def test_dib_lint_disable_comment(self) -> None:
        text, mode = script("# dib-lint: disable=safe_sudo setu TIE029\n"
                            "sudo rm /x\nwhich ls\n")
        element(self.root, "one", {
            "root.d/10-a": (text.replace("set -eu", "set -e"), mode)})
        self.assertEqual([], self.run_check())

    def test_flake8_results_cached_by_content(self) -> None:
        element(self.root, "one", {"bin/tool": (
            GOOD_PYTHON + "x=1\n", 0o755)})
        cache = Path(self.useFixture(fixtures.TempDir()).path)
        first = self.run_check(select=["TIE032"], cache_dir=cache)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.check._flake8", None))
        self.assertEqual(first, self.run_check(select=["TIE032"],
                                               cache_dir=cache))
        self.assertEqual(1, len(first))

    def test_flake8_codes_in_message(self) -> None:
        element(self.root, "one", {"bin/tool": (
            GOOD_PYTHON + "x=1\n", 0o755)})
        found = self.run_check(select=["TIE032"])
        self.assertEqual(["flake8 E225 missing whitespace around operator"],
                         [f.message for f in found])


class TestShellcheck(CheckTestCase):

    def test_passes_codes_through_in_one_run(self) -> None:
        element(self.root, "one", {
            "install.d/10-a": script(),
            "install.d/20-b": script(),
            "environment.d/10-x.bash": "FOO=1\n",
            "README.rst": "one\n===\n"})
        fake = self.useFixture(FakeShellcheck(comments={
            "10-a": [{"line": 9, "code": 2086, "level": "info",
                      "message": "Double quote."}],
            "10-x.bash": [{"line": 1, "code": 2034, "level": "warning",
                           "message": "FOO appears unused."}]}))
        found = self.run_check(shellcheck=True)
        self.assertEqual(1, len(fake.calls))
        self.assertEqual(["10-x.bash", "10-a", "20-b"],
                         [p.name for p in fake.calls[0]])
        self.assertEqual(["SC2086"], self.codes(found))
        self.assertEqual("info: Double quote.", found[0].message)
        self.assertEqual(9, found[0].line)

    def test_missing_shellcheck_is_one_notice(self) -> None:
        element(self.root, "one", {"install.d/10-a": script(),
                                   "install.d/20-b": script()})
        self.useFixture(FakeShellcheck(binary=None))
        found = self.run_check(shellcheck=True)
        self.assertEqual([check.SHELLCHECK_MISSING], self.codes(found))
        self.assertIn("2 bash script(s) not checked", found[0].message)
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


class TestDriver(CheckTestCase):

    def test_finding_format_and_json(self) -> None:
        finding = check.Finding(Path("a/b"), 3, "TIE012", "is not set -e")
        self.assertEqual("a/b:3: TIE012 is not set -e", finding.format())
        out = check.format_findings([finding, finding], "json")
        self.assertEqual([{"path": "a/b", "line": 3, "code": "TIE012",
                           "message": "is not set -e"}] * 2,
                         json.loads(out))
        self.assertEqual("a/b:3: TIE012 is not set -e\n",
                         check.format_findings([finding], "text"))
        self.assertRaises(errors.UsageError, check.format_findings,
                          [finding], "xml")

    def test_output_is_sorted_and_deterministic(self) -> None:
        element(self.root, "b", {"install.d/10-b": ("#!/bin/bash\n",
                                                    0o755)})
        element(self.root, "a", {"install.d/10-a": ("#!/bin/bash\n",
                                                    0o755)})
        found = self.run_check()
        self.assertNotEqual([], found)
        self.assertEqual(sorted(found), found)
        self.assertEqual(found, self.run_check())

    def test_select_and_ignore_prefixes(self) -> None:
        element(self.root, "one", {"install.d/10-a": ("#!/bin/bash\n",
                                                      0o755)},
                readme=False)
        everything = set(self.codes(self.run_check()))
        self.assertEqual({"TIE001", "TIE012", "TIE013", "TIE014",
                          "TIE015"}, everything)
        self.assertEqual(["TIE012", "TIE013"], sorted(set(self.codes(
            self.run_check(select=["TIE01"], ignore=["TIE014",
                                                     "TIE015"])))))
        self.assertRaises(errors.UsageError, check.validate_codes,
                          ["XYZ"])
        check.validate_codes(["TIE0", "SC2086", "S"])

    def test_targets_from_paths(self) -> None:
        one = element(self.root, "one", {"install.d/10-a": script()})
        element(self.root, "two", {"element-deps": "one\n"}, readme=False)
        (self.root / "not-an-element").mkdir()
        self.assertEqual(["one", "two"], [
            e.name for e in check.targets_from_paths([self.root])])
        self.assertEqual([one], [
            e.path for e in check.targets_from_paths([one])])
        error = self.assertRaises(errors.UsageError,
                                  check.targets_from_paths,
                                  [self.root / "nope"])
        self.assertIn("no such file or directory", error.message)
        self.assertTrue(error.hint)
        self.assertRaises(errors.UsageError, check.targets_from_paths,
                          [self.root / "not-an-element"])

    def test_element_named_like_a_marker_file(self) -> None:
        # diskimage-builder has elements called pkg-map and svc-map.
        element(self.root, "pkg-map", {"bin/map": script()})
        self.assertEqual(["pkg-map"], [
            e.name for e in check.targets_from_paths([self.root])])

    def test_binary_and_symlinked_files(self) -> None:
        one = element(self.root, "one", {
            "static/blob": (b"\0\x01which \n", 0o755)})
        (one / "static" / "link").symlink_to("/etc/passwd")
        self.assertEqual([], self.run_check())

    def test_default_index_includes_dib_elements(self) -> None:
        element(self.root, "one", {"element-deps": "package-installs\n"})
        targets = check.targets_from_paths([self.root])
        self.assertEqual([], check.check_elements(
            targets, select=["TIE040"], shellcheck=False))


class TestMain(CheckTestCase):

    def main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = {"HOME": str(self.root.parent), "PATH": os.environ["PATH"]}
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", env["HOME"]))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_clean_tree_exits_0(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()})
        self.assertEqual((0, "", ""), self.main(str(self.root),
                                                "--no-shellcheck"))

    def test_findings_exit_1_json(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()},
                readme=False)
        code, out, _ = self.main(str(self.root), "--no-shellcheck",
                                 "--format", "json")
        self.assertEqual(1, code)
        self.assertEqual(["TIE001"], [f["code"] for f in json.loads(out)])

    def test_bad_usage_exits_2(self) -> None:
        code, out, err = self.main(str(self.root / "missing"))
        self.assertEqual(2, code)
        self.assertIn("error[usage]:", err)
        self.assertIn("hint:", err)
        self.assertEqual(2, self.main("--select", "NOPE", str(self.root))[0])
        self.assertEqual(2, self.main()[0])
        self.assertEqual(2, self.main("--format", "xml", str(self.root))[0])
        code, _, err = self.main("-e", "no-such-element-anywhere",
                                 "--no-shellcheck")
        self.assertEqual(2, code)
        self.assertIn("no-such-element-anywhere", err)

    def test_resolved_set_reports_missing_dep_with_chain(self) -> None:
        element(self.root, "top", {"element-deps": "middle\n"})
        element(self.root, "middle", {"element-deps": "ghost\n"})
        code, out, _ = self.main("-e", "top", "--elements-path",
                                 str(self.root), "--no-shellcheck",
                                 "--select", "TIE040")
        self.assertEqual(1, code)
        self.assertIn("top -> middle -> ghost: element 'ghost' not found",
                      out)

    def test_list_checks(self) -> None:
        code, out, _ = self.main("--list-checks")
        self.assertEqual(0, code)
        self.assertEqual(len(check.CHECKS), len(out.splitlines()))


class TestLoadElementReuse(testtools.TestCase):
    """targets_from_paths returns ordinary Element objects."""

    def test_same_as_load_element(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        path = element(root, "one", {"element-deps": "b\na\n"})
        self.assertEqual(load_element(path, root),
                         check.targets_from_paths([path])[0])


class TestElementRule(testtools.TestCase):

    def test_directory_of_elements_named_like_marker_dirs(self) -> None:
        # This project ships elements called os-apply-config and
        # os-refresh-config: their parent is not an element.
        root = Path(self.useFixture(fixtures.TempDir()).path)
        for name in ("os-apply-config", "os-refresh-config", "static"):
            element(root, name, {"install.d/10-a": script()})
        self.assertFalse(check.is_element_dir(root))
        self.assertEqual(["os-apply-config", "os-refresh-config",
                          "static"],
                         [e.name for e in check.targets_from_paths([root])])

    def test_phase_directory_alone_makes_an_element(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        path = element(root, "bare", {"install.d/10-a": script()},
                       readme=False)
        self.assertTrue(check.is_element_dir(path))
