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
LATE_KEYS = ELEMENT / "fast-boot-files/late-ssh-host-keys"
LATE_KEYS_UNIT = "fast-boot-ssh-host-keys.service"
GENKEYTYPES_CFG = "01_fast_boot_ssh_genkeytypes.cfg"
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


class EnvironmentCheckTest(testtools.TestCase):

    def test_bad_late_key_type_refused_before_the_build(self) -> None:
        for value, ok in (("rsa", True), ("", True), ("rsa ecdsa", True),
                          ("dsa", False), ("rsa $(touch /canary)", False)):
            proc = subprocess.run(
                ["bash", "-c", f"set -eu; source {ENV_FILE}; echo sourced"],
                env={"PATH": "/usr/bin:/bin",
                     "DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES": value},
                capture_output=True, text=True)
            self.assertEqual(ok, proc.returncode == 0, (value, proc.stderr))
            self.assertEqual(ok, proc.stdout == "sourced\n", value)
            if not ok:
                self.assertIn("is not rsa, ecdsa or ed25519", proc.stderr)
                self.assertEqual(1, len(proc.stderr.splitlines()))


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
                    "DIB_FAST_BOOT_UNIT_PATH": "/lib-units /etc-units",
                    "DIB_FAST_BOOT_CLOUD_DIR": "/cloud",
                    "DIB_FAST_BOOT_LIBEXEC_DIR": "/libexec/fast-boot",
                    "DIB_FAST_BOOT_FILES": str(ELEMENT / "fast-boot-files")}
        for name in ("lib-units", "etc-units", "cloud"):
            (self.root / name).mkdir()
        # cloud-init is installed (its package's configuration).
        (self.root / "cloud/cloud.cfg").write_text("users: [default]\n")

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
        self.assertEqual([("systemctl", "disable", "e2scrub_reap.service"),
                          ("systemctl", "enable", LATE_KEYS_UNIT)],
                         result.calls_of("systemctl"))
        self.assertEqual({"ssh_genkeytypes": ["ecdsa", "ed25519"]},
                         yaml.safe_load(
                             (self.root / "cloud/cloud.cfg.d" /
                              GENKEYTYPES_CFG).read_text()))
        unit = (self.root / "units" / LATE_KEYS_UNIT).read_text()
        self.assertIn("\nExecStart=/libexec/fast-boot/late-ssh-host-keys "
                      "rsa\n", unit)
        for line in ("After=cloud-init.service ssh-keygen.service",
                     "Before=ssh.service cloud-final.service",
                     "WantedBy=multi-user.target"):
            self.assertIn(f"\n{line}\n", unit)
        helper = self.root / "libexec/fast-boot/late-ssh-host-keys"
        self.assertEqual(LATE_KEYS.read_bytes(), helper.read_bytes())
        self.assertEqual(0o755, helper.stat().st_mode & 0o7777)
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
        self.assertEqual([("systemctl", "enable", LATE_KEYS_UNIT)],
                         result.calls_of("systemctl"))

    def test_nothing_to_blacklist(self) -> None:
        result = self.run_it(DIB_FAST_BOOT_BLACKLIST_MODULES="",
                             DIB_FAST_BOOT_DISABLE_UNITS="",
                             DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES="")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertFalse((self.root / "modprobe.conf").exists())
        self.assertEqual([], result.calls_of("systemctl"))
        self.assertFalse((self.root / "cloud/cloud.cfg.d").exists())
        self.assertFalse((self.root / "units" / LATE_KEYS_UNIT).exists())

    def test_without_cloud_init_no_late_keys(self) -> None:
        (self.root / "cloud/cloud.cfg").unlink()
        result = self.run_it(present=())
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], result.calls_of("systemctl"))
        self.assertFalse((self.root / "units" / LATE_KEYS_UNIT).exists())
        self.assertFalse((self.root / "libexec").exists())

    def test_other_late_key_types(self) -> None:
        result = self.run_it(
            DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES="rsa ecdsa")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual({"ssh_genkeytypes": ["ed25519"]}, yaml.safe_load(
            (self.root / "cloud/cloud.cfg.d" / GENKEYTYPES_CFG).read_text()))
        self.assertIn("late-ssh-host-keys rsa ecdsa\n",
                      (self.root / "units" / LATE_KEYS_UNIT).read_text())

    def test_bad_late_key_type_is_refused(self) -> None:
        for bad in ("dsa", "rsa $(touch /canary)"):
            result = self.run_it(DIB_FAST_BOOT_LATE_SSH_HOST_KEY_TYPES=bad)
            self.assertEqual(1, result.returncode, bad)
            self.assertIn("is not rsa, ecdsa or ed25519", result.stderr)
            self.assertFalse((self.root / "canary").exists())
            self.assertFalse((self.root / "units" / LATE_KEYS_UNIT).exists())

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


class LateHostKeysTest(testtools.TestCase):
    """The unit's program, run for real (ssh-keygen included) on scratch
    copies of /etc/ssh, /etc/cloud and cloud-init's instance directory."""

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        for name in ("ssh", "cloud/cloud.cfg.d", "instance"):
            (self.root / name).mkdir(parents=True)
        (self.root / "cloud/cloud.cfg").write_text(
            "ssh_genkeytypes:  ['rsa', 'ecdsa', 'ed25519']\n")
        (self.root / "cloud/cloud.cfg.d" / GENKEYTYPES_CFG).write_text(
            "ssh_genkeytypes: [ecdsa, ed25519]\n")

    def run_it(self, *types: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LATE_KEYS), *types,
             "--ssh-dir", str(self.root / "ssh"),
             "--cloud-dir", str(self.root / "cloud"),
             "--instance-dir", str(self.root / "instance"),
             "--run-config", str(self.root / "run-cloud.cfg")],
            capture_output=True, text=True, timeout=120)

    def test_generates_the_missing_key(self) -> None:
        ed25519 = self.root / "ssh/ssh_host_ed25519_key"
        ed25519.write_text("cloud-init's key\n")
        result = self.run_it("rsa", "ed25519")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual("late-ssh-host-keys: generated the rsa host key\n",
                         result.stdout)
        key = self.root / "ssh/ssh_host_rsa_key"
        self.assertEqual(0o600, key.stat().st_mode & 0o777)
        self.assertEqual(0o644, (self.root / "ssh/ssh_host_rsa_key.pub"
                                 ).stat().st_mode & 0o777)
        public = subprocess.run(["ssh-keygen", "-y", "-f", str(key)],
                                capture_output=True, text=True, check=True)
        self.assertEqual(
            public.stdout.split()[:2],
            (self.root / "ssh/ssh_host_rsa_key.pub").read_text().split()[:2])
        self.assertEqual("cloud-init's key\n", ed25519.read_text())
        self.assertEqual(["ssh_host_ed25519_key", "ssh_host_rsa_key",
                          "ssh_host_rsa_key.pub"],
                         sorted(p.name for p in (self.root / "ssh").iterdir()))
        again = self.run_it("rsa")
        self.assertEqual(("", 0), (again.stdout, again.returncode))

    def test_a_later_choice_of_types_wins(self) -> None:
        for where in ("cloud/cloud.cfg.d/50_mine.cfg",
                      "instance/vendor-cloud-config.txt",
                      "instance/cloud-config.txt"):
            with self.subTest(where=where):
                chosen = self.root / where
                chosen.write_text("#cloud-config\nssh_genkeytypes: [ed25519]"
                                  "\n")
                result = self.run_it("rsa")
                chosen.unlink()
                self.assertEqual(0, result.returncode, result.stderr)
                self.assertIn(f"ssh_genkeytypes is set by {chosen}",
                              result.stdout)
                self.assertEqual([], list((self.root / "ssh").iterdir()))

    def test_unparsable_or_unrelated_user_data_is_ignored(self) -> None:
        (self.root / "instance/cloud-config.txt").write_text(
            "#cloud-config\nssh_genkeytypes: [\n")
        (self.root / "instance/vendor-cloud-config.txt").write_text(
            "#cloud-config\nhostname: x\n")
        result = self.run_it("rsa")
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertTrue((self.root / "ssh/ssh_host_rsa_key").exists())

    def test_unknown_type_is_refused(self) -> None:
        result = self.run_it("dsa")
        self.assertEqual(2, result.returncode)
        self.assertIn("unknown key type 'dsa'", result.stderr)
        self.assertEqual([], list((self.root / "ssh").iterdir()))
