"""The cold check's work: each distinct script content goes to
shellcheck once, and the processes get about equal shares."""

from __future__ import annotations

from pathlib import Path

from tests.unit.checktrees import FakeShellcheck, element, script
from tests.unit.test_check import CheckTestCase
from tripleo_elements.check import tools


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
