"""The functional tier's work directory: kept after a failure, removed
after a pass or a skip."""

from __future__ import annotations

from pathlib import Path

import testtools

from tests.functional import base


def probe_class(seen: list[Path]) -> type[base.FunctionalTestCase]:
    """A functional test case made here, so that no loader finds it."""

    class Probe(base.FunctionalTestCase):

        def setUp(self) -> None:
            super().setUp()
            seen.append(self.workdir)

        def test_passes(self) -> None:
            (self.workdir / "log").write_text("x")

        def test_skips(self) -> None:
            self.skipTest("opt-in")

        def test_fails(self) -> None:
            self.fail("kept for reading")

    return Probe


class WorkdirTest(testtools.TestCase):

    def run_probe(self, name: str) -> tuple[testtools.TestResult, Path]:
        if base.missing_build_capability() is not None:
            self.skipTest("the functional base skips before making a "
                          "work directory on this host")
        seen: list[Path] = []
        result = testtools.TestResult()
        probe_class(seen)(name).run(result)
        self.assertEqual(1, len(seen), str(result.errors))
        return result, seen[0]

    def test_removed_after_a_pass(self) -> None:
        result, workdir = self.run_probe("test_passes")
        self.assertTrue(result.wasSuccessful())
        self.assertFalse(workdir.exists())

    def test_removed_after_a_skip(self) -> None:
        result, workdir = self.run_probe("test_skips")
        self.assertEqual(["opt-in"], list(result.skip_reasons))
        self.assertFalse(workdir.exists())

    def test_kept_after_a_failure(self) -> None:
        result, workdir = self.run_probe("test_fails")
        self.addCleanup(lambda: workdir.rmdir() if workdir.exists()
                        else None)
        self.assertEqual(1, len(result.failures))
        self.assertTrue(workdir.is_dir())
