"""os-apply-config and os-refresh-config: install and runtime scripts."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import build_element_tree
from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import run_orc_phase
from tripleo_elements.testing.scripts import run_parts_order
from tripleo_elements.testing.scripts import run_script
from tripleo_elements.testing.scripts import Stub

PHASES = ["configure.d", "migration.d", "post-configure.d",
          "pre-configure.d"]


class OsApplyConfigTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("os-apply-config")
        self.root = Path(self.useFixture(fixtures.TempDir()).path)

    def test_template_root_created(self) -> None:
        target = self.root / "usr/libexec/os-apply-config/templates"
        run_script(self.element / "install.d/11-os-apply-config-template-root",
                   self.root, env={"DIB_OAC_TEMPLATE_ROOT": str(target)}
                   ).check()
        self.assertTrue(target.is_dir())

    def test_templates_of_all_elements_installed(self) -> None:
        merged = build_element_tree(self.root / "hooks", {"os-apply-config": {
            "etc/a.conf": "a={{a}}\n",
            "etc/a.conf.oac": "mode: 0600\n",
            "etc/b/run": ("#!/usr/bin/python3\nprint('b')\n", 0o755),
            "var/lib/c": "{{c}}",
        }}) / "os-apply-config"
        target = self.root / "templates"
        run_script(self.element / "install.d/99-os-apply-config-templates",
                   self.root, env={"DIB_OAC_TEMPLATE_ROOT": str(target),
                                   "DIB_OAC_TEMPLATE_SOURCE": str(merged)}
                   ).check()
        found = sorted(str(p.relative_to(target))
                       for p in target.rglob("*") if p.is_file())
        self.assertEqual(["etc/a.conf", "etc/a.conf.oac", "etc/b/run",
                          "var/lib/c"], found)
        self.assertTrue(os.access(target / "etc/b/run", os.X_OK))
        self.assertFalse(os.access(target / "etc/a.conf", os.X_OK))
        self.assertEqual("a={{a}}\n", (target / "etc/a.conf").read_text())

    def test_no_templates_is_fine(self) -> None:
        result = run_script(
            self.element / "install.d/99-os-apply-config-templates",
            self.root, env={"DIB_OAC_TEMPLATE_ROOT": str(self.root / "t"),
                            "DIB_OAC_TEMPLATE_SOURCE": str(self.root / "x")}
        ).check()
        self.assertIn("No os-apply-config templates", result.stdout)

    def test_configure_script_runs_os_apply_config(self) -> None:
        result = run_script(
            self.element / "os-refresh-config/configure.d/20-os-apply-config",
            self.root, stubs=["os-apply-config"]).check()
        self.assertEqual([("os-apply-config",)],
                         result.calls_of("os-apply-config"))

    def test_configure_script_failure_propagates(self) -> None:
        result = run_script(
            self.element / "os-refresh-config/configure.d/20-os-apply-config",
            self.root, stubs=[Stub("os-apply-config", exit_code=4)])
        self.assertEqual(4, result.returncode)


class OsRefreshConfigTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("os-refresh-config")
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.base = self.root / "usr/libexec/os-refresh-config"

    def test_phase_directories_created(self) -> None:
        run_script(self.element / "install.d/11-os-refresh-config-dirs",
                   self.root, env={"DIB_ORC_BASE_DIR": str(self.base)}
                   ).check()
        self.assertEqual(PHASES, sorted(p.name for p in self.base.iterdir()))

    def test_scripts_of_all_elements_installed(self) -> None:
        merged = build_element_tree(self.root / "hooks", {
            "os-refresh-config": {
                "configure.d/20-a": "#!/bin/sh\n",
                "configure.d/55-b": ("#!/bin/sh\n", 0o644),
                "post-configure.d/99-c": "#!/bin/sh\n",
            }}) / "os-refresh-config"
        run_script(self.element / "install.d/99-os-refresh-config-scripts",
                   self.root, env={"DIB_ORC_BASE_DIR": str(self.base),
                                   "DIB_ORC_SCRIPT_SOURCE": str(merged)}
                   ).check()
        for name in ("configure.d/20-a", "configure.d/55-b",
                     "post-configure.d/99-c"):
            mode = stat.S_IMODE((self.base / name).stat().st_mode)
            self.assertEqual(0o755, mode, name)

    def test_script_name_dib_run_parts_would_skip_fails(self) -> None:
        merged = build_element_tree(self.root / "hooks", {
            "os-refresh-config": {"configure.d/20-a.sh": "#!/bin/sh\n"},
        }) / "os-refresh-config"
        result = run_script(
            self.element / "install.d/99-os-refresh-config-scripts",
            self.root, env={"DIB_ORC_BASE_DIR": str(self.base),
                            "DIB_ORC_SCRIPT_SOURCE": str(merged)})
        self.assertEqual(1, result.returncode)
        self.assertIn("20-a.sh", result.stderr)

    def test_completion_recorded(self) -> None:
        state = self.root / "var/lib/os-refresh-config"
        run_script(self.element /
                   "os-refresh-config/post-configure.d/99-refresh-completed",
                   self.root, env={"OS_REFRESH_CONFIG_STATE_DIR": str(state)}
                   ).check()
        stamp = (state / "completed").read_text()
        self.assertTrue(re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", stamp), stamp)
        self.assertEqual(["completed"], os.listdir(state))

    def test_phase_runs_like_dib_run_parts(self) -> None:
        log = self.root / "order"
        phase = build_element_tree(self.root / "e", {"x": {
            "configure.d/100-late": f"#!/bin/sh\necho 100 >> {log}\n",
            "configure.d/20-os-apply-config": f"#!/bin/sh\necho 20 >> {log}\n",
            "configure.d/9-early": f"#!/bin/sh\necho 9 >> {log}\n",
            "configure.d/55-skip.sh": f"#!/bin/sh\necho bad >> {log}\n",
            "configure.d/56-not-exec": (f"#!/bin/sh\necho bad >> {log}\n",
                                        0o644),
        }}) / "x/configure.d"
        result = run_orc_phase(phase, self.root)
        self.assertEqual(0, result.returncode)
        self.assertEqual(["9-early", "20-os-apply-config", "100-late"],
                         result.ran)
        self.assertEqual("9\n20\n100\n", log.read_text())
        self.assertEqual(["55-skip.sh", "56-not-exec"],
                         sorted(result.skipped))

    def test_phase_stops_at_first_failure(self) -> None:
        phase = build_element_tree(self.root / "e", {"x": {
            "configure.d/10-fail": "#!/bin/sh\nexit 5\n",
            "configure.d/20-never": "#!/bin/sh\ntouch never\n",
        }}) / "x/configure.d"
        result = run_orc_phase(phase, self.root)
        self.assertEqual(5, result.returncode)
        self.assertEqual(["10-fail"], result.ran)
        self.assertFalse((self.root / "never").exists())

    def test_element_configure_scripts_in_order(self) -> None:
        merged = self.root / "configure.d"
        merged.mkdir()
        for element in ("os-apply-config", "heat-config", "stackuser"):
            source = element_path(element) / "os-refresh-config/configure.d"
            for script in source.iterdir():
                (merged / script.name).symlink_to(script)
        order = [p.name for p in run_parts_order(merged)[0]]
        self.assertEqual(["20-os-apply-config", "55-heat-config",
                          "60-stackuser-authorized-keys"], order)
