"""The cold check's work: each distinct script content goes to
shellcheck once, and the processes get about equal shares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fixtures
import testtools

from tests.unit.checktrees import FakeShellcheck, element, script
from tests.unit.test_check import MENU, CheckTestCase
from tripleo_elements import tree
from tripleo_elements.check import tools
from tripleo_elements.check.model import SourceFile
from tripleo_elements.element import Element, load_element

REPO = Path(__file__).resolve().parents[2]


class TestShellcheckWork(CheckTestCase):

    def test_same_content_checked_once_reported_for_each(self) -> None:
        element(self.root, "one", {"install.d/10-a": script(),
                                   "README.rst": "one\n===\n"})
        element(self.root, "two", {"install.d/10-a": script(),
                                   "README.rst": "two\n===\n"})
        fake = self.useFixture(FakeShellcheck(comments={
            "10-a": [{"line": 9, "code": 2086, "level": "info",
                      "message": "Double quote."}]}))
        found = self.run_check(shellcheck=True)
        self.assertEqual(1, sum(len(paths) for _, paths in fake.calls))
        self.assertEqual(
            [("one", "SC2086"), ("two", "SC2086")],
            sorted((f.path.parent.parent.name, f.code) for f in found
                   if f.code.startswith("SC")))

    def test_each_element_listed_once(self) -> None:
        for name in ("one", "two"):
            element(self.root, name, {
                "install.d/10-" + name: script(),
                "os-refresh-config/configure.d/20-x": script(),
                "README.rst": f"{name}\n===\n"})
        walked: list[str] = []
        real = tree._walk

        def counting(item: Element) -> tree.Listing:
            walked.append(item.name)
            return real(item)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.tree._walk", counting))
        found = self.run_check()
        # The run-parts, collision and overwrite rules ran, and saw the
        # files: the shared nested file is reported.
        self.assertIn("TIE052", [f.code for f in found])
        self.assertEqual(["one", "two"], sorted(walked))
        # Outside a check every call walks again.
        walked.clear()
        one = load_element(self.root / "one", self.root)
        tree.element_files(one)
        tree.element_files(one)
        self.assertEqual(["one", "one"], walked)

    def test_groups_share_one_queue_of_chunks(self) -> None:
        fake = self.useFixture(FakeShellcheck(comments={
            "s3": [{"line": 2, "code": 2086, "level": "info",
                    "message": "Double quote."}]}))
        files = {"bash": [SourceFile(None, Path(f"b{i}"), f"b{i}", 0o755,
                                     b"x" * (100 + i))
                          for i in range(100)],
                 "sh": [SourceFile(None, Path(f"s{i}"), f"s{i}", 0o755,
                                   b"y") for i in range(5)]}
        comments = tools.run_groups(files, "warning", "shellcheck", cpus=2)
        self.assertEqual([("s3", 2086)],
                         [(c["file"], c["code"]) for c in comments])
        by_shell: dict[str, list[list[Path]]] = {}
        for shell, paths in fake.calls:
            by_shell.setdefault(shell, []).append(paths)
        # Four chunks per CPU for the large group, one for the small;
        # every file exactly once, as the shell of its group.
        self.assertEqual(8, len(by_shell["bash"]))
        self.assertEqual([[src.path for src in files["sh"]]],
                         by_shell["sh"])
        self.assertEqual(sorted(src.path for src in files["bash"]),
                         sorted(p for c in by_shell["bash"] for p in c))
        # One CPU: one process per shell, largest group first.
        fake.calls.clear()
        tools.run_groups(files, "warning", "shellcheck", cpus=1)
        self.assertEqual(["bash", "sh"], [shell for shell, _ in fake.calls])

    def test_chunks_balance_bytes_and_keep_order(self) -> None:
        paths = [Path(f"f{i}") for i in range(6)]
        sizes = [9000, 100, 100, 100, 8000, 1000]
        got = tools.chunks(paths, sizes, 2)
        self.assertEqual(sorted(paths), sorted(p for c in got for p in c))
        loads = [sum(sizes[paths.index(p)] for p in c) for c in got]
        self.assertLess(max(loads) - min(loads), 2000, got)
        for chunk in got:
            self.assertEqual(chunk, sorted(chunk, key=paths.index))
        self.assertEqual([[paths[0]]], tools.chunks(paths[:1], [5], 4))


class TestFlake8Codes(testtools.TestCase):

    def test_table_is_flake8s(self) -> None:
        from flake8.plugins.pyflakes import FLAKE8_PYFLAKES_CODES
        self.assertIn("UnusedImport", FLAKE8_PYFLAKES_CODES)
        self.assertEqual(FLAKE8_PYFLAKES_CODES, tools.pyflakes_codes())

    def test_pyflakes_code_without_importing_flake8(self) -> None:
        # Importing flake8 costs more than checking a few scripts: a
        # cold check finds the F codes without it.
        code = (
            "import sys\n"
            "from pathlib import Path\n"
            "from tripleo_elements.check import tools\n"
            "from tripleo_elements.check.model import SourceFile\n"
            "src = SourceFile(None, Path('t'), 'bin/t', 0o755,\n"
            "                 b'#!/usr/bin/python3\\nimport os\\n')\n"
            "print([c for _, _, c, _ in tools.flake8([src])])\n"
            "print(sorted(m for m in sys.modules\n"
            "             if m == 'flake8' or m.startswith('flake8.')))\n")
        out = subprocess.run([sys.executable, "-c", code], check=True,
                             capture_output=True, text=True,
                             cwd=REPO, env=dict(os.environ,
                                                PYTHONPATH=str(REPO)))
        self.assertEqual("['F401']\n[]\n", out.stdout)


class TestMenuCache(CheckTestCase):

    def test_menu_validation_cached_by_content(self) -> None:
        element(self.root, "good", {
            "menu.yaml": MENU, "package-installs.yaml": "nginx:\n",
            "tie-menu-templates/wbe/etc/a": "x\n"})
        element(self.root, "bad", {
            "menu.yaml": "features:\n  a:\n    units: [x]\n"})
        cache = Path(self.useFixture(fixtures.TempDir()).path)
        first = self.run_check(cache_dir=cache,
                               select=["TIE090", "TIE093"])
        self.assertEqual(["TIE090", "TIE090", "TIE093"],
                         [f.code for f in first])
        # A warm run does not validate again (no jsonschema import)...
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.menu.model.problems_of", None))
        self.assertEqual(first, self.run_check(
            cache_dir=cache, select=["TIE090", "TIE093"]))
        # ...but a changed file is validated.
        (self.root / "bad" / "menu.yaml").write_text(MENU + "# new\n")
        self.assertRaises(TypeError, self.run_check, cache_dir=cache,
                          select=["TIE090"])
