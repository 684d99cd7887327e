"""``build-image check`` as a command: output, exit codes, targets,
``-e`` resolution, ``--strict``."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import fixtures
import testtools

from tests.unit.checktrees import FakeShellcheck, element, script
from tests.unit.test_check import CheckTestCase
from tripleo_elements import check, errors
from tripleo_elements.discovery import discover
from tripleo_elements.element import load_element


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

    def test_missing_shellcheck_passes_unless_strict(self) -> None:
        element(self.root, "one", {"install.d/10-a": script()})
        self.useFixture(FakeShellcheck(binary=None))
        code, out, _ = self.main(str(self.root))
        self.assertEqual(0, code)
        self.assertIn("TIE080 shellcheck not found on PATH", out)
        code, out, _ = self.main(str(self.root), "--strict")
        self.assertEqual(1, code)
        self.assertIn("TIE080", out)

    def test_warning_passes_unless_strict(self) -> None:
        for name in ("a", "b"):
            element(self.root, name, {"static/etc/motd": f"{name}\n"})
        code, out, _ = self.main(str(self.root), "--no-shellcheck")
        self.assertEqual(0, code)
        self.assertIn("TIE052", out)
        self.assertEqual(1, self.main(str(self.root), "--no-shellcheck",
                                      "--strict")[0])

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

    def test_resolves_for_the_host_arch_or_arch_option(self) -> None:
        element(self.root, "my-os", {"element-provides":
                                     "operating-system\n"})
        element(self.root, "app", {"element-deps": "my-os\n"})
        seen: list[str] = []

        def fake_resolve(index, requested, arch="amd64"):
            seen.append(arch)
            raise errors.MissingOperatingSystem("stop here")
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.graph.resolve", fake_resolve))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.host.host_arch", lambda: "arm64"))
        self.main("-e", "app", "--elements-path", str(self.root),
                  "--no-shellcheck")
        self.main("-e", "app", "-a", "ppc64le", "--elements-path",
                  str(self.root), "--no-shellcheck")
        self.assertEqual(["arm64", "ppc64le"], seen)

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

    def test_check_uses_the_index_it_is_given(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        element(root, "one", {"element-deps": "two\n"})
        element(root, "two")
        self.assertEqual([], check.check_elements(
            check.targets_from_paths([root / "one"]),
            index=discover([root]), shellcheck=False))
