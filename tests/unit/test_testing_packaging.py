"""The testing helpers say what to install, and find the author's
elements."""

from __future__ import annotations

import configparser
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import errors
from tripleo_elements.testing import elements, templates

TOP = Path(__file__).resolve().parents[2]


class PackagingTest(testtools.TestCase):

    def test_testing_extra_brings_os_apply_config(self) -> None:
        config = configparser.ConfigParser()
        config.read(TOP / "setup.cfg")
        extra = config["extras"]["testing"].split()
        self.assertIn("os-apply-config>=14.0", extra)

    def test_bubblewrap_in_test_profile_only(self) -> None:
        lines = [line.split() for line in
                 (TOP / "bindep.txt").read_text().splitlines()
                 if line.startswith("bubblewrap")]
        self.assertEqual([["bubblewrap", "[platform:dpkg", "test]"]], lines)

    def test_render_without_os_apply_config_names_the_package(self) -> None:
        # Bug: a bare FileNotFoundError("os-apply-config is not installed").
        tmp = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            "sys.executable", f"{tmp}/bin/python"))
        self.useFixture(fixtures.EnvironmentVariable("PATH", tmp))
        error = self.assertRaises(errors.PackageMissing,
                                  templates.os_apply_config_command)
        self.assertIn("os-apply-config is not installed", error.message)
        self.assertIn("tripleo-image-elements[testing]", error.hint)


class ElementPathTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        elements.build_element_tree(self.tmp / "mine", {
            "ntp": {"README.rst": "mine\n"},
            "os-apply-config": {"README.rst": "override\n"}})
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))

    def test_finds_the_authors_elements(self) -> None:
        # Bug: only this project's elements were searched.
        self.assertEqual(self.tmp / "mine/ntp",
                         elements.element_path("ntp", [self.tmp / "mine"]))

    def test_elements_path_variable_and_string(self) -> None:
        self.useFixture(fixtures.EnvironmentVariable(
            "ELEMENTS_PATH", f"/nonexistent:{self.tmp / 'mine'}"))
        self.assertEqual(self.tmp / "mine/ntp", elements.element_path("ntp"))
        self.assertEqual(self.tmp / "mine/ntp", elements.element_path(
            "ntp", f"{self.tmp / 'mine'}"))

    def test_earlier_directories_win_then_ours(self) -> None:
        self.assertEqual(
            self.tmp / "mine/os-apply-config",
            elements.element_path("os-apply-config", [self.tmp / "mine"]))
        self.assertEqual(elements.elements_root() / "os-apply-config",
                         elements.element_path("os-apply-config"))

    def test_missing_names_every_directory(self) -> None:
        error = self.assertRaises(FileNotFoundError, elements.element_path,
                                  "nope", [self.tmp / "mine"])
        self.assertIn(str(self.tmp / "mine"), str(error))
        self.assertIn(str(elements.elements_root()), str(error))
        self.assertIn("ELEMENTS_PATH", str(error))
