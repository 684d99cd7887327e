"""The element-file rules ``plan`` shares with ``check``
(tripleo_elements.tree): diskimage-builder's duplicate-file rule and copy
order, the package-installs schema, and which skipped files are hooks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import fixtures
import testtools

from tests.unit.checktrees import element, script
from tripleo_elements import check, errors, host, options, tree
from tripleo_elements import plan as planning
from tripleo_elements.discovery import dib_elements_dir, discover
from tripleo_elements.element import load_element

OS = {"element-provides": "operating-system\n"}


class PlanTestCase(testtools.TestCase):
    """Plans over a tree of throwaway elements."""

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path) / "els"
        element(self.root, "my-os", OS)

    def plan(self, *names: str) -> planning.BuildPlan:
        opts = options.BuildOptions(elements=(*names, "my-os"),
                                    output=self.root.parent / "img",
                                    no_defaults=True)
        return planning.make_plan(opts, discover([self.root]), {},
                                  apt_sources=[host.AptSource(
                                      "http://mirror.example/debian",
                                      ("bookworm",))])


class TestDuplicateFiles(PlanTestCase):
    """diskimage-builder aborts on a file name shipped by two elements
    directly below one of their directories, and merges deeper files."""

    def test_environment_d_duplicate_stops_the_plan(self) -> None:
        for name in ("a", "b"):
            element(self.root, name, {"environment.d/10-x.bash":
                                      f"export X={name}\n"})
        err = self.assertRaises(errors.HookCollision, self.plan, "a", "b")
        self.assertIn("environment.d/10-x.bash is shipped by 2 elements",
                      err.message)

    def test_bin_duplicate_stops_the_plan(self) -> None:
        for name in ("a", "b"):
            element(self.root, name, {"bin/tool": script()})
        err = self.assertRaises(errors.HookCollision, self.plan, "a", "b")
        self.assertIn("bin/tool is shipped by 2 elements", err.message)

    def test_file_against_directory_stops_the_plan(self) -> None:
        element(self.root, "a", {"static/etc": "a file\n"})
        element(self.root, "b", {"static/etc/motd": "hi\n"})
        self.assertRaises(errors.HookCollision, self.plan, "a", "b")

    def test_nested_overwrite_is_a_warning_naming_both(self) -> None:
        # heat-agents' heat-config-script and heat-config-ansible both
        # ship os-refresh-config/configure.d/20-os-apply-config.
        rel = "os-refresh-config/configure.d/20-os-apply-config"
        for name in ("heat-config-script", "heat-config-ansible"):
            element(self.root, name, {rel: script(f"echo {name}\n")})
        plan = self.plan("heat-config-script", "heat-config-ansible")
        warnings = [w for w in plan.warnings if rel in w]
        self.assertEqual(1, len(warnings), plan.warnings)
        for name in ("heat-config-script", "heat-config-ansible"):
            self.assertIn(str(self.root / name / rel), warnings[0])
        # bash lists heat-config-ansible's key first: script's copy wins.
        self.assertIn("the copy of heat-config-script wins", warnings[0])

    def test_merged_directories_are_not_collisions(self) -> None:
        element(self.root, "a", {"static/etc/a.conf": "a\n"})
        element(self.root, "b", {"static/etc/b.conf": "b\n"})
        plan = self.plan("a", "b")
        self.assertEqual((), plan.warnings)

    def test_tests_directory_is_not_copied(self) -> None:
        for name in ("a", "b"):
            element(self.root, name, {"tests/test.sh": script()})
        self.assertEqual([], tree.hook_collisions(
            [load_element(self.root / n) for n in ("a", "b")]))

    def test_symlink_to_a_file_collides(self) -> None:
        # `[ -f ]` follows the link.
        element(self.root, "a", {"bin/tool": script()})
        element(self.root, "b", {"data": "x\n"})
        (self.root / "b" / "bin").mkdir()
        (self.root / "b" / "bin" / "tool").symlink_to("../data")
        self.assertRaises(errors.HookCollision, self.plan, "a", "b")


class TestCopyOrder(testtools.TestCase):

    def bash_order(self, names: list[str]) -> list[str]:
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("no bash")
        body = " ".join(f"[{n}]=1" for n in names)
        out = subprocess.run(
            [bash, "-c", f'declare -A a=({body}); printf "%s\\n" '
             f'"${{!a[@]}}"'], capture_output=True, text=True, check=True)
        return out.stdout.split()

    def test_matches_bash(self) -> None:
        # diskimage-builder's generate_hooks walks an associative array.
        names = sorted(e.name for e in discover(
            [dib_elements_dir()]).elements.values())
        self.assertGreater(len(names), 50)
        by_bash = self.bash_order(names)
        buckets = {}
        for name in names:
            buckets.setdefault(tree._bucket(name), []).append(name)
        unique = [n for n in by_bash if len(buckets[tree._bucket(n)]) == 1]
        self.assertEqual(unique, [n for n in tree.dib_copy_order(names)
                                  if n in unique])

    def test_winner(self) -> None:
        pair = ["heat-config-script", "heat-config-ansible"]
        self.assertEqual(self.bash_order(pair)[-1], tree.copy_winner(pair))

    def test_same_bucket_is_undecided(self) -> None:
        names = [f"e{i}" for i in range(3000)]
        first = tree._bucket(names[0])
        twin = next(n for n in names[1:] if tree._bucket(n) == first)
        self.assertIsNone(tree.copy_winner([names[0], twin]))


class TestPackageInstallsInPlan(PlanTestCase):

    def test_top_level_list_is_refused(self) -> None:
        element(self.root, "app", {"package-installs.yaml":
                                   "- curl\n- git\n"})
        err = self.assertRaises(errors.ElementFormatError, self.plan, "app")
        self.assertIn("package-installs.yaml", err.message)
        self.assertIn("the top level is a list", err.message)
        self.assertIn("build-image check", err.hint)

    def test_schema_violation_is_refused_with_line(self) -> None:
        element(self.root, "app", {"package-installs.yaml":
                                   "curl:\ngit:\n  phase: root.d\n"})
        err = self.assertRaises(errors.ElementFormatError, self.plan, "app")
        self.assertIn("package-installs.yaml:2: git/phase", err.message)

    def test_unparsable_file_is_refused(self) -> None:
        element(self.root, "app", {"package-installs.yaml": "a: [b\n"})
        err = self.assertRaises(errors.ElementFormatError, self.plan, "app")
        self.assertIn("does not parse", err.message)

    def test_valid_file_passes(self) -> None:
        element(self.root, "app", {"package-installs.yaml":
                                   "curl:\ngit:\n  phase: install.d\n"})
        self.assertIn("app", self.plan("app").elements)

    def test_diskimage_builders_own_files_pass(self) -> None:
        # plan must never refuse diskimage-builder's own elements.
        index = discover([dib_elements_dir()])
        files = [p for e in index.elements.values()
                 for p in check.package_installs.files_of(e)]
        self.assertGreater(len(files), 20)
        for path in files:
            self.assertEqual([], check.package_installs.problems(path),
                             str(path))

    def test_same_schema_as_check(self) -> None:
        path = Path(check.package_installs.__file__).with_name(
            "package_installs.schema.json")
        self.assertEqual(path, check.package_installs.SCHEMA_PATH)
        self.assertEqual("object", check.package_installs.schema()["type"])


class TestSkippedScripts(testtools.TestCase):

    def test_dhcp_all_interfaces_has_no_skipped_hooks(self) -> None:
        # Its install.d holds the data files its install script copies.
        path = dib_elements_dir() / "dhcp-all-interfaces"
        self.assertTrue((path / "install.d").is_dir())
        self.assertGreater(len(list((path / "install.d").iterdir())), 3)
        self.assertEqual([], tree.skipped_scripts(load_element(path)))

    def test_plan_and_check_agree(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        path = element(root, "one", {
            "install.d/10-a.sh": script(),
            "install.d/foo.conf": "key=value\n",
            "install.d/tool": ("#!/bin/bash\n", 0o644),
            "install.d/50-copy": script("cp foo.conf /etc\n")})
        skipped = sorted(s.path.name for s in
                         tree.skipped_scripts(load_element(path)))
        self.assertEqual(["10-a.sh", "tool"], skipped)
        found = check.check_elements(
            check.targets_from_paths([path]), index=discover([root]),
            select=["TIE050"], shellcheck=False)
        self.assertEqual(skipped, sorted(f.path.name for f in found))


class TestLister(testtools.TestCase):

    def test_one_lister(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        path = element(root, "one", {
            "install.d/10-a": script(), "static/etc/x": "x\n",
            "__pycache__/m.pyc": "x", "bin/m.pyc": "x"})
        (path / "static" / "loop").symlink_to("loop")
        (path / "static" / "dirlink").symlink_to("etc")
        listing = tree.element_files(load_element(path))
        self.assertEqual(["README.rst", "install.d/10-a", "static/etc/x",
                          "static/loop"], [f.rel for f in listing.files])
        self.assertFalse(listing.files[-1].regular)
        self.assertEqual((), listing.unreadable)


class TestAgainstDiskimageBuilder(testtools.TestCase):
    """Our model of the copy against diskimage-builder's own
    ``generate_hooks`` (from its ``lib/common-functions``), run by bash on
    throwaway trees."""

    CASES: dict[str, dict[str, dict[str, object]]] = {
        "nested": {"heat-config": {"os-refresh-config/configure.d/20-x":
                                   "heat-config\n"},
                   "os-apply-config": {"os-refresh-config/configure.d/20-x":
                                       "os-apply-config\n"}},
        "nested-other-order": {
            "heat-config-script": {"static/etc/motd":
                                   "heat-config-script\n"},
            "heat-config-ansible": {"static/etc/motd":
                                    "heat-config-ansible\n"}},
        "bin": {"a": {"bin/tool": "a\n"}, "b": {"bin/tool": "b\n"}},
        "environment": {"a": {"environment.d/10-x.bash": "a\n"},
                        "b": {"environment.d/10-x.bash": "b\n"}},
        "phase": {"a": {"install.d/10-x": "a\n"},
                  "b": {"install.d/10-x": "b\n"}},
        "merged-dirs": {"a": {"static/etc/a": "a\n"},
                        "b": {"static/etc/b": "b\n"}},
        "file-then-dir": {"a": {"static/etc": "a\n"},
                          "b": {"static/etc/motd": "b\n"}},
        "tests-dir": {"a": {"tests/t": "a\n"}, "b": {"tests/t": "b\n"}},
        "different-dirs": {"a": {"install.d/10-x": "a\n"},
                           "b": {"post-install.d/10-x": "b\n"}},
    }

    def setUp(self) -> None:
        super().setUp()
        self.lib = dib_elements_dir().parent / "lib" / "common-functions"
        self.bash = shutil.which("bash")
        if not self.lib.is_file() or self.bash is None:
            self.skipTest("diskimage-builder's lib or bash not found")
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)

    def generate_hooks(self, root: Path, names: list[str]
                       ) -> tuple[int, Path]:
        hooks = root.parent / f"{root.name}-hooks"
        hooks.mkdir()
        array = " ".join(f"[{n}]={root / n}" for n in names)
        proc = subprocess.run(
            [self.bash, "-c", f"set -e; source {self.lib}; "
             f"get_image_element_array() {{ echo '{array}'; }}; "
             "generate_hooks"],
            env={"TMP_HOOKS_PATH": str(hooks), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True)
        return proc.returncode, hooks

    def test_model_agrees(self) -> None:
        for case, spec in sorted(self.CASES.items()):
            root = self.tmp / case
            for name, files in spec.items():
                element(root, name, {k: str(v) for k, v in files.items()},
                        readme=False)
            names = sorted(spec)
            elements = [load_element(root / n) for n in names]
            code, hooks = self.generate_hooks(root, names)
            collisions = tree.hook_collisions(elements)
            self.assertEqual(code != 0, bool(collisions), case)
            if code != 0:
                continue
            overwrites = tree.nested_overwrites(elements)
            self.assertEqual(case.startswith("nested"), bool(overwrites),
                             case)
            for overwrite in overwrites:
                kept = (hooks / overwrite.rel).read_text()
                self.assertEqual(f"{overwrite.winner}\n", kept, case)
