"""The Heat stack resolves with DIB on Debian, Ubuntu and CentOS Stream."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import diskimage_builder
import testtools
import yaml
from diskimage_builder import element_dependencies

from tripleo_elements.testing.elements import elements_root, list_elements

DIB_ELEMENTS = Path(diskimage_builder.__file__).parent / "elements"
PKG_MAP = DIB_ELEMENTS / "pkg-map/bin/pkg-map"
STACK = {"cloud-init", "heat-cfntools", "heat-config",
         "lvm-udev-lvextend-fix", "menu-driver", "openssh-server",
         "os-apply-config", "os-collect-config", "os-refresh-config",
         "runtime-ssh-host-keys", "stackuser"}


class ResolutionTest(testtools.TestCase):

    def resolve(self, os_element: str) -> set[str]:
        paths = f"{elements_root()}:{DIB_ELEMENTS}"
        return {name for name, _ in element_dependencies.get_elements(
            [os_element, "heat-cfntools"], paths)}

    def test_heat_stack_resolves_everywhere(self) -> None:
        for os_element in ("debian-minimal", "ubuntu-minimal", "centos"):
            resolved = self.resolve(os_element)
            self.assertTrue(STACK <= resolved,
                            f"{os_element}: missing {STACK - resolved}")

    def test_packages_map_with_dib_pkg_map(self) -> None:
        checked = 0
        for name in list_elements():
            element = elements_root() / name
            pkg_map = element / "pkg-map"
            installs = yaml.safe_load(
                (element / "package-installs.yaml").read_text())
            if not pkg_map.exists():
                continue
            for distro, release in (("debian", "bookworm"),
                                    ("ubuntu", "jammy"),
                                    ("centos", "9-stream")):
                proc = subprocess.run(
                    [sys.executable, str(PKG_MAP), "--pkg-map", str(pkg_map),
                     "--distro", distro, "--release", release, *installs],
                    capture_output=True, text=True, check=False,
                    env=dict(os.environ, LANG="C.UTF-8"))
                self.assertEqual(0, proc.returncode,
                                 f"{name} {distro}: {proc.stderr}")
                mapped = proc.stdout.split()
                # An empty mapping skips a package on purpose (ifupdown
                # outside Debian); on Debian every package is installed.
                if distro == "debian":
                    self.assertEqual(len(installs), len(mapped), name)
                else:
                    self.assertNotEqual([], mapped, f"{name} {distro}")
                checked += 1
        self.assertGreater(checked, 0)
