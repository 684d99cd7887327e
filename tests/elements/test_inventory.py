"""Every element keeps diskimage-builder's contract and our conventions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import testtools
import yaml

from tripleo_elements.testing.elements import elements_root, list_elements

PHASES = ("root.d", "extra-data.d", "pre-install.d", "install.d",
          "post-install.d", "post-root.d", "block-device.d",
          "pre-finalise.d", "finalise.d", "cleanup.d")
ORC_PHASES = ("pre-configure.d", "configure.d", "post-configure.d",
              "migration.d")
NAME = re.compile(r"^[0-9A-Za-z_-]+$")
#: heat-agents' layout: a hook element's install.d carries its hook as
#: data (``hook-GROUP.py``, run-parts skips it) for its install script.
HOOK_DATA = re.compile(r"^hook-[a-z-]+\.py$")
DISTROS = {"debian": "debian", "ubuntu": "debian", "centos": "redhat"}


def element_scripts(element: Path) -> list[Path]:
    scripts = []
    for phase in PHASES:
        if (element / phase).is_dir():
            scripts += sorted(p for p in (element / phase).iterdir()
                              if not (phase == "install.d"
                                      and HOOK_DATA.match(p.name)))
    for phase in ORC_PHASES:
        if (element / "os-refresh-config" / phase).is_dir():
            scripts += sorted((element / "os-refresh-config" / phase)
                              .iterdir())
    return scripts


def map_package(pkg_map: dict, distro: str, name: str) -> str | None:
    """DIB's pkg-map lookup order: default, family, distro."""
    names = dict(pkg_map.get("default", {}))
    names.update(pkg_map.get("family", {}).get(DISTROS[distro], {}))
    names.update(pkg_map.get("distro", {}).get(distro, {}))
    return names.get(name)


class InventoryTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = elements_root()
        self.names = list_elements(self.root)

    def test_elements_found(self) -> None:
        self.assertNotEqual([], self.names)
        for expected in ("heat-cfntools", "heat-config", "os-apply-config",
                         "os-collect-config", "os-refresh-config",
                         "stackuser", "lvm-udev-lvextend-fix"):
            self.assertIn(expected, self.names)

    def test_every_element_has_a_readme(self) -> None:
        for name in self.names:
            readme = self.root / name / "README.rst"
            self.assertTrue(readme.is_file(), f"{name}: no README.rst")
            text = readme.read_text()
            self.assertTrue(text.startswith(name), f"{name}: title")

    def test_element_deps_sorted_without_comments(self) -> None:
        for name in self.names:
            deps_file = self.root / name / "element-deps"
            self.assertTrue(deps_file.is_file(), f"{name}: no element-deps")
            deps = deps_file.read_text().split()
            self.assertEqual(sorted(deps), deps, name)
            for dep in deps:
                self.assertTrue(NAME.match(dep), f"{name}: {dep!r}")

    def test_packages_map_on_every_distribution(self) -> None:
        for name in self.names:
            element = self.root / name
            installs = yaml.safe_load(
                (element / "package-installs.yaml").read_text())
            self.assertIsInstance(installs, dict, name)
            pkg_map_file = element / "pkg-map"
            pkg_map = (json.loads(pkg_map_file.read_text())
                       if pkg_map_file.exists() else {})
            for package in installs:
                for distro in DISTROS:
                    mapped = map_package(pkg_map, distro, package)
                    if package == "python3" and mapped is None:
                        continue
                    self.assertIsNotNone(
                        mapped, f"{name}: {package} on {distro}")

    def test_scripts_follow_dib_conventions(self) -> None:
        scripts = [s for name in self.names
                   for s in element_scripts(self.root / name)]
        self.assertNotEqual([], scripts)
        for script in scripts:
            self.assertTrue(NAME.match(script.name), script)
            self.assertTrue(os.access(script, os.X_OK), script)
            text = script.read_text()
            if not text.startswith("#!/bin/bash\n"):
                self.assertTrue(text.startswith("#!/usr/bin/python3\n"),
                                script)
                continue
            for needed in ("set -eu\n", "set -o pipefail\n",
                           'if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then\n'
                           "    set -x\n"):
                self.assertIn(needed, text, script)
            self.assertNotIn("eval ", text, script)
            self.assertNotIn("\t", text, script)

    def test_templates_have_mode_controls_where_private(self) -> None:
        templates = [p for name in self.names
                     for p in (self.root / name / "os-apply-config").rglob(
                         "*") if p.is_file()]
        self.assertNotEqual([], templates)
        for path in templates:
            if path.suffix == ".oac":
                control = yaml.safe_load(path.read_text())
                self.assertIsInstance(control, dict, path)
                self.assertTrue(path.with_suffix("").exists(), path)

    def test_shellcheck(self) -> None:
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            self.skipTest("shellcheck is not installed")
        scripts = [str(s) for name in self.names
                   for s in element_scripts(self.root / name)
                   if s.read_text().startswith("#!/bin/bash")]
        scripts += [str(p) for p in self.root.glob("*/environment.d/*")]
        self.assertNotEqual([], scripts)
        proc = subprocess.run([shellcheck, "-s", "bash", *scripts],
                              capture_output=True, text=True, check=False)
        self.assertEqual(0, proc.returncode, proc.stdout)

    def test_python_scripts_compile(self) -> None:
        found = 0
        for name in self.names:
            for path in (self.root / name).rglob("*"):
                if (path.is_file() and path.suffix not in (".oac",)
                        and path.read_bytes().startswith(
                            b"#!/usr/bin/python3")):
                    found += 1
                    compile(path.read_text(), str(path), "exec")
        self.assertGreater(found, 0)
