"""Tests for tripleo_elements.check's registry: every registered code
fires on a bad tree and stays silent on a good one, the README documents
exactly the registered codes, and the messages say what they should."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import fixtures
import testtools

from tests.unit.checktrees import (GOOD_PYTHON, GOOD_SCRIPT, Builder,
                                   FakeShellcheck, Unreadable, element,
                                   script, several, single)
from tripleo_elements import check, graph
from tripleo_elements.discovery import discover

README = Path(__file__).resolve().parents[2] / "README.rst"

MENU = """features:
  web: {description: A web server, units: [nginx.service],
        packages: [nginx]}
variables:
  web_password: {type: string, secret: true, description: A password}
"""

# code -> (bad tree, good tree).  Every code of check.CHECKS must be here
# (test_every_code_has_cases).
CASES: dict[str, tuple[Builder, Builder]] = {
    "TIE001": (single({"install.d/10-a": script()}, readme=False),
               single({"install.d/10-a": script()})),
    "TIE002": (single({"NOTES.md": "# notes\n"}),
               single({"NOTES.txt": "notes\n"})),
    "TIE003": (single({"static/secret": "x\n"}),
               single({"static/public": "x\n"})),
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
               several({"one": {"element-deps": "aaa\nzzz\n"},
                        "aaa": {}, "zzz": {}})),
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
               several({"one": {"element-deps": "two\n"}, "two": {}})),
    "TIE041": (single({"element-deps": "# a comment\n"}),
               single({"element-deps": ""})),
    "TIE050": (single({"install.d/10-a.sh": script()}),
               single({"install.d/10-a": script()})),
    "TIE051": (several({n: {"install.d/10-a": script()}
                        for n in ("one", "two")}),
               several({n: {f"install.d/10-{n}": script()}
                        for n in ("one", "two")})),
    "TIE052": (several({n: {"os-refresh-config/configure.d/20-x":
                            script(f"echo {n}\n")}
                        for n in ("one", "two")}),
               several({n: {f"os-refresh-config/configure.d/20-{n}":
                            script()} for n in ("one", "two")})),
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
    "TIE090": (single({"menu.yaml": "features:\n  a:\n    units: [x]\n"}),
               single({"menu.yaml": MENU,
                       "package-installs.yaml": "nginx:\n"})),
    "TIE091": (single({"menu.yaml": MENU}),
               single({"menu.yaml": MENU,
                       "package-installs.yaml": "nginx:\n"})),
    "TIE092": (single({"menu.yaml": MENU, "package-installs.yaml":
                       "nginx:\n", "tie-menu-templates/web/etc/pw":
                       "{{web_password}}\n"}),
               single({"menu.yaml": MENU, "package-installs.yaml":
                       "nginx:\n", "tie-menu-templates/web/etc/pw":
                       "{{web_password}}\n",
                       "tie-menu-templates/web/etc/pw.oac":
                       "mode: 0600\n"})),
    "TIE093": (single({"menu.yaml": MENU, "package-installs.yaml":
                       "nginx:\n", "tie-menu-templates/wbe/etc/a": "x\n"}),
               single({"menu.yaml": MENU, "package-installs.yaml":
                       "nginx:\n", "tie-menu-templates/web/etc/a": "x\n"})),
    "TIE080": (single({"install.d/10-a": script()}),
               single({"install.d/10-a": script()})),
}


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
            self.assertIn(entry.severity, (check.ERROR, check.WARNING,
                                           check.NOTICE))
            self.assertTrue(entry.description)
            self.assertNotIn("\n", entry.description)

    def test_rule_bodies_name_no_code(self) -> None:
        # The registry stamps the code: a rule module repeats a code only
        # in its @register line.
        package = Path(check.__file__).parent
        sources = sorted(package.glob("*.py"))
        self.assertNotEqual([], sources)
        for source in sources:
            text = source.read_text()
            for code in set(re.findall(r'"(TIE\d{3})"', text)):
                self.assertEqual(
                    1, text.count(f'"{code}"'), f"{source.name}: {code}")
                self.assertIn(f'@register("{code}"', text, source.name)

    def _case(self, code: str, which: int) -> list[check.Finding]:
        root = Path(tempfile.mkdtemp(dir=self.root.parent))
        CASES[code][which](root)
        if code == check.SHELLCHECK_MISSING:
            self.useFixture(FakeShellcheck(binary=None if which == 0
                                           else "/usr/bin/shellcheck"))
        if code == "TIE003":
            self.useFixture(Unreadable("secret"))
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


class TestReadmeTable(testtools.TestCase):
    """The README's code table lists exactly the registered codes, each
    with its registered description's severity made clear."""

    def _documented(self) -> dict[str, str]:
        text = README.read_text()
        section = text.split("\nCodes\n-----\n", 1)[1].split("\nSpeed\n")[0]
        return dict(re.findall(r"^``(TIE\d{3})`` (.*)$", section, re.M))

    def test_every_code_documented_once(self) -> None:
        documented = self._documented()
        self.assertNotEqual({}, documented)
        self.assertEqual(sorted(check.CHECKS), sorted(documented))
        section = README.read_text().split("\nCodes\n-----\n", 1)[1]
        for code in check.CHECKS:
            self.assertEqual(1, len(re.findall(rf"^``{code}`` ", section,
                                               re.M)), code)

    def test_non_failing_codes_say_so(self) -> None:
        for code, text in self._documented().items():
            severity = check.CHECKS[code].severity
            if severity != check.ERROR:
                self.assertIn(f"({severity})", text, code)
            else:
                self.assertNotIn("(warning)", text, code)
                self.assertNotIn("(notice)", text, code)


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
        self.assertEqual([], self.run_check(select=["TIE05"]))

    def test_elements_bringing_different_oses_do_not_collide(self) -> None:
        for name in ("os-a", "os-b"):
            element(self.root, name, {
                "element-provides": "operating-system\n"})
            element(self.root, f"{name}-tools", {
                "element-deps": f"{name}\n",
                "environment.d/10-pkg.bash": f"export PKG={name}\n"})
        self.assertEqual([], self.run_check(select=["TIE05"]))
        # Without the OS dependency they could meet: DIB would abort.
        (self.root / "os-b-tools" / "element-deps").write_text("")
        self.assertEqual(["TIE051"],
                         self.codes(self.run_check(select=["TIE05"])))

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

    def test_package_installs_top_level_list(self) -> None:
        element(self.root, "one", {"package-installs.yaml":
                                   "- curl\n- git\n"})
        found = self.run_check(select=["TIE060"])
        self.assertEqual(["the top level is a list, not a mapping of "
                          "package names (package-installs-squash fails "
                          "on it)"], [f.message for f in found])

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
            "tripleo_elements.check.tools.flake8", None))
        self.assertEqual(first, self.run_check(select=["TIE032"],
                                               cache_dir=cache))
        self.assertEqual(1, len(first))

    def test_flake8_codes_in_message(self) -> None:
        element(self.root, "one", {"bin/tool": (
            GOOD_PYTHON + "x=1\n", 0o755)})
        found = self.run_check(select=["TIE032"])
        self.assertEqual(["flake8 E225 missing whitespace around operator"],
                         [f.message for f in found])
