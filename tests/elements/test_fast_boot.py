"""fast-boot: the boot defaults it sets and the files its script writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fixtures
import testtools
import yaml

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import Stub, When, run_script

ELEMENT = element_path("fast-boot")
SCRIPT = ELEMENT / "post-install.d/60-fast-boot"
ENV_FILE = ELEMENT / "environment.d/05-fast-boot.bash"
PACKAGES = ELEMENT / "package-installs.yaml"
STARTUP_WEIGHT_DROPIN = "fast-boot-startup-weight.conf"
CLOUD_INIT_CONDITION = ("ConditionPathExists=!/run/systemd/generator.early/"
                        "multi-user.target.wants/cloud-init.target")


def sourced(**env: str) -> dict[str, str]:
    """The variables the environment file exports, sourced under
    ``set -eu`` as diskimage-builder does, with ``env`` set before."""
    script = (f"set -eu; source {ENV_FILE}; "
              "for v in DIB_GRUB_TIMEOUT DIB_BOOTLOADER_DEFAULT_CMDLINE "
              "DIB_FAST_BOOT_BLACKLIST_MODULES DIB_FAST_BOOT_DISABLE_UNITS; "
              "do printf '%s=%s\\n' \"$v\" \"${!v}\"; done")
    proc = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin",
                                                       **env},
                          capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


class EnvironmentTest(testtools.TestCase):

    def test_defaults(self) -> None:
        got = sourced()
        self.assertEqual("0", got["DIB_GRUB_TIMEOUT"])
        self.assertEqual("nofb nomodeset gfxpayload=text "
                         "modprobe.blacklist=floppy",
                         got["DIB_BOOTLOADER_DEFAULT_CMDLINE"])
        self.assertEqual("e2scrub_reap.service",
                         got["DIB_FAST_BOOT_DISABLE_UNITS"])

    def test_sorts_before_the_bootloader_defaults(self) -> None:
        # diskimage-builder sources environment.d in LANG=C sort -n order;
        # the bootloader element's file would otherwise set the cmdline.
        names = [ENV_FILE.name, "10-bootloader-default-cmdline"]
        proc = subprocess.run(["sort", "-n"], input="\n".join(names) + "\n",
                              env={"LANG": "C", "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True)
        self.assertEqual(names, proc.stdout.split())

    def test_caller_values_win(self) -> None:
        got = sourced(DIB_GRUB_TIMEOUT="5",
                      DIB_BOOTLOADER_DEFAULT_CMDLINE="quiet",
                      DIB_FAST_BOOT_DISABLE_UNITS="")
        self.assertEqual("5", got["DIB_GRUB_TIMEOUT"])
        self.assertEqual("quiet", got["DIB_BOOTLOADER_DEFAULT_CMDLINE"])
        self.assertEqual("", got["DIB_FAST_BOOT_DISABLE_UNITS"])

    def test_several_modules_and_none(self) -> None:
        got = sourced(DIB_FAST_BOOT_BLACKLIST_MODULES="floppy pcspkr")
        self.assertTrue(got["DIB_BOOTLOADER_DEFAULT_CMDLINE"].endswith(
            " modprobe.blacklist=floppy,pcspkr"))
        got = sourced(DIB_FAST_BOOT_BLACKLIST_MODULES="")
        self.assertEqual("nofb nomodeset gfxpayload=text",
                         got["DIB_BOOTLOADER_DEFAULT_CMDLINE"])


class PackagesTest(testtools.TestCase):

    def test_zstd_for_the_initramfs(self) -> None:
        # initramfs-tools' default COMPRESS=zstd falls back to gzip when
        # the command is missing (a larger, slower-to-unpack initramfs).
        self.assertIn("zstd", yaml.safe_load(PACKAGES.read_text()))
        self.assertIn("package-installs",
                      (ELEMENT / "element-deps").read_text().split())


class ScriptTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        # The sandbox shows the scratch root as /.
        self.env = {"DIB_FAST_BOOT_MODPROBE_FILE": "/modprobe.conf",
                    "DIB_FAST_BOOT_UNIT_DIR": "/units",
                    "DIB_FAST_BOOT_UNIT_PATH": "/lib-units /etc-units"}
        for name in ("lib-units", "etc-units"):
            (self.root / name).mkdir()

    def run_it(self, present: tuple[str, ...] = ("e2scrub_reap.service",),
               **env: str):
        for unit in present:
            (self.root / "lib-units" / unit).write_text("[Unit]\n")
        # As in the build's chroot: systemctl can enable and disable, but
        # asks a running systemd for anything else, and fails.
        systemctl = Stub("systemctl", exit_code=1, when=[
            When(prefix=["disable"], exit_code=0),
            When(prefix=["enable"], exit_code=0)])
        return run_script(SCRIPT, self.root, stubs=[systemctl],
                          env={**self.env, **env})

    def test_defaults(self) -> None:
        result = self.run_it()
        self.assertEqual(0, result.returncode, result.stderr)
        lines = (self.root / "modprobe.conf").read_text().splitlines()
        self.assertEqual(["blacklist floppy"],
                         [x for x in lines if not x.startswith("#")])
        self.assertEqual([("systemctl", "disable", "e2scrub_reap.service")],
                         result.calls_of("systemctl"))
        dropin = (self.root / "units/ssh-keygen.service.d/"
                  "fast-boot-cloud-init.conf").read_text()
        self.assertEqual(["[Unit]", CLOUD_INIT_CONDITION],
                         dropin.splitlines())
        for unit in ("cloud-config.service", "cloud-final.service"):
            weight = (self.root / "units" / f"{unit}.d" /
                      STARTUP_WEIGHT_DROPIN).read_text()
            self.assertEqual(["[Service]", "StartupCPUWeight=10"],
                             weight.splitlines())

    def test_missing_unit_is_skipped(self) -> None:
        result = self.run_it(present=())
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], result.calls_of("systemctl"))

    def test_nothing_to_blacklist(self) -> None:
        result = self.run_it(DIB_FAST_BOOT_BLACKLIST_MODULES="",
                             DIB_FAST_BOOT_DISABLE_UNITS="")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertFalse((self.root / "modprobe.conf").exists())
        self.assertEqual([], result.calls_of("systemctl"))

    def test_bad_module_name_is_refused(self) -> None:
        canary = self.root / "canary"
        result = self.run_it(
            DIB_FAST_BOOT_BLACKLIST_MODULES="floppy $(touch /canary)")
        self.assertEqual(1, result.returncode)
        self.assertIn("bad module name", result.stderr)
        self.assertFalse(canary.exists())

    def test_no_background_units(self) -> None:
        result = self.run_it(DIB_FAST_BOOT_BACKGROUND_UNITS="")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], sorted(p.name for p in
                                    (self.root / "units").glob("cloud-*")))

    def test_background_weight_and_units_are_checked(self) -> None:
        for env, message in (
                ({"DIB_FAST_BOOT_BACKGROUND_WEIGHT": "0"}, "must be 1-10000"),
                ({"DIB_FAST_BOOT_BACKGROUND_WEIGHT": "x"}, "must be 1-10000"),
                ({"DIB_FAST_BOOT_BACKGROUND_UNITS": "../etc.service"},
                 "bad unit name"),
                ({"DIB_FAST_BOOT_BACKGROUND_UNITS": "cron"},
                 "bad unit name")):
            result = self.run_it(**env)
            self.assertEqual(1, result.returncode, env)
            self.assertIn(message, result.stderr)

    def test_other_weight(self) -> None:
        result = self.run_it(DIB_FAST_BOOT_BACKGROUND_UNITS="x.service",
                             DIB_FAST_BOOT_BACKGROUND_WEIGHT="50")
        self.assertEqual(0, result.returncode, result.stderr)
        weight = (self.root / "units/x.service.d" /
                  STARTUP_WEIGHT_DROPIN).read_text()
        self.assertIn("StartupCPUWeight=50\n", weight)
