"""heat-cfntools: release gate, stateless checks; the LVM udev fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import run_script

ENV_FILE = (element_path("heat-cfntools")
            / "environment.d/10-heat-cfntools.bash")
EXPECTED = 'ENV{DM_SUSPENDED}=="1", ENV{DM_UDEV_DISABLE_OTHER_RULES_FLAG}="1"'
RULE = f"""# a shortened device-mapper rule for the test
SUBSYSTEM!="block", GOTO="dm_end"
ENV{{DM_UDEV_RULES_VSN}}="2"
{EXPECTED}
GOTO="dm_end"
LABEL="dm_end"
"""


class ReleaseCheckTest(testtools.TestCase):

    def check(self, distro: str, release: str, **env: str) -> int:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        script = (element_path("heat-cfntools")
                  / "root.d/05-heat-cfntools-release-check")
        result = run_script(script, root, env=dict(
            DISTRO_NAME=distro, DIB_RELEASE=release, **env))
        if result.returncode:
            self.assertIn("boto 2", result.stderr)
        return result.returncode

    def test_supported_releases(self) -> None:
        for distro, release in (("debian", "bookworm"), ("debian", "12"),
                                ("ubuntu", "jammy"), ("centos", "9-stream"),
                                ("centos", "9")):
            self.assertEqual(0, self.check(distro, release), release)

    def test_unsupported_releases_fail_early(self) -> None:
        for distro, release in (("debian", "trixie"), ("debian", "sid"),
                                ("ubuntu", "noble"), ("centos", "10-stream"),
                                ("fedora", "40")):
            self.assertEqual(1, self.check(distro, release), release)

    def test_override(self) -> None:
        self.assertEqual(0, self.check(
            "debian", "trixie", DIB_HEAT_CFNTOOLS_SKIP_RELEASE_CHECK="1"))


class StatelessCheckTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.target = self.root / "target"
        for directory in ("etc/ssh", "etc/apt/apt.conf.d",
                          "var/lib/os-collect-config/local-data",
                          "var/lib/heat-config/deployed"):
            (self.target / directory).mkdir(parents=True)
        (self.target / "etc/machine-id").write_text("")
        (self.target / "etc/ssh/sshd_config").write_text("\n")
        (self.target / "etc/os-collect-config.conf").write_text(
            "[DEFAULT]\ncommand = os-refresh-config\n")

    def check(self) -> tuple[int, str]:
        script = (element_path("heat-cfntools")
                  / "cleanup.d/99-heat-stateless-check")
        result = run_script(script, self.root,
                            env={"TARGET_ROOT": str(self.target)})
        return result.returncode, result.stderr

    def test_clean_image_passes(self) -> None:
        self.assertEqual((0, ""), self.check())

    def test_state_is_refused(self) -> None:
        cases = {
            "etc/ssh/ssh_host_ed25519_key": "key",
            "etc/machine-id": "0123456789abcdef\n",
            "var/lib/heat-config/deployed/x.json": "{}",
            "var/lib/os-collect-config/heat_local.json": "{}",
            "etc/apt/apt.conf.d/60img-create-proxy": "Acquire::http::Proxy",
            "etc/os-collect-config.conf": "[heat]\npassword = x\n",
        }
        for path, content in cases.items():
            target = self.target / path
            before = target.read_text() if target.exists() else None
            target.write_text(content)
            code, stderr = self.check()
            self.assertEqual(1, code, path)
            self.assertIn("not stateless", stderr)
            if before is None:
                target.unlink()
            else:
                target.write_text(before)
        self.assertEqual(0, self.check()[0])


class MachineIdTest(testtools.TestCase):

    def test_machine_ids_emptied_links_kept(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        etc_id = root / "etc/machine-id"
        etc_id.parent.mkdir()
        etc_id.write_text("uninitialized\n")
        dbus_id = root / "dbus-machine-id"
        dbus_id.symlink_to(etc_id)
        script = (element_path("heat-cfntools")
                  / "finalise.d/99-stateless-machine-id")
        run_script(script, root, env={
            "DIB_MACHINE_ID_FILES": f"{etc_id} {dbus_id} {root}/absent"}
        ).check()
        self.assertEqual("", etc_id.read_text())
        self.assertTrue(dbus_id.is_symlink())


class LvmUdevFixTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.rules = self.root / "lib/udev/rules.d"
        self.rules.mkdir(parents=True)
        self.out = self.root / "etc/udev/rules.d"
        self.script = (element_path("lvm-udev-lvextend-fix")
                       / "post-install.d/50-lvm-udev-lvextend-fix")
        self.env = {"DIB_LVM_UDEV_RULES_DIRS": str(self.rules),
                    "DIB_LVM_UDEV_OUTPUT_DIR": str(self.out)}

    def test_rule_copied_with_targeted_edit(self) -> None:
        (self.rules / "55-dm.rules").write_text(RULE)
        run_script(self.script, self.root, env=self.env).check()
        lines = (self.out / "55-dm.rules").read_text().splitlines()
        index = lines.index(EXPECTED)
        self.assertEqual(
            'ENV{DM_SUSPENDED}=="1", ACTION=="change", '
            'ENV{DM_UDEV_PRIMARY_SOURCE_FLAG}=="1", ENV{DM_NOSCAN}="1", '
            'GOTO="dm_end"', lines[index - 1])
        original = [line for line in lines
                    if not line.startswith("# lvm-udev-lvextend-fix:")]
        del original[original.index(EXPECTED) - 1]
        self.assertEqual(RULE.splitlines(), original)
        self.assertNotIn("SYSTEMD_READY", "\n".join(original))

    def test_red_hat_rule_name(self) -> None:
        (self.rules / "10-dm.rules").write_text(RULE)
        run_script(self.script, self.root, env=self.env).check()
        self.assertTrue((self.out / "10-dm.rules").exists())

    def test_changed_rule_fails_loudly(self) -> None:
        (self.rules / "55-dm.rules").write_text(RULE.replace(EXPECTED, ""))
        result = run_script(self.script, self.root, env=self.env)
        self.assertEqual(1, result.returncode)
        self.assertIn("expected exactly 1", result.stderr)
        self.assertFalse(self.out.exists())

    def test_missing_lvm2_fails(self) -> None:
        result = run_script(self.script, self.root, env=self.env)
        self.assertEqual(1, result.returncode)
        self.assertIn("is lvm2 installed", result.stderr)


class EnvironmentTest(testtools.TestCase):
    """heat-cfntools' environment.d, sourced as diskimage-builder does."""

    def sourced(self, **env: str) -> str:
        script = (f"set -eu; source {ENV_FILE}; "
                  "printf '%s' \"${DIB_CLOUD_INIT_ETC_HOSTS-unset}\"")
        return subprocess.run(
            ["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True, text=True, check=True).stdout

    def test_etc_hosts_managed_for_the_host_name(self) -> None:
        # Read by diskimage-builder's base element (manage_etc_hosts).
        self.assertEqual("localhost", self.sourced())
        self.assertEqual("true", self.sourced(DIB_CLOUD_INIT_ETC_HOSTS="true"))
        self.assertEqual("", self.sourced(DIB_CLOUD_INIT_ETC_HOSTS=""))
