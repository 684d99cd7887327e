"""stackuser: locked user, validated sudoers, keys from build and metadata."""

from __future__ import annotations

import stat
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import run_script
from tripleo_elements.testing.scripts import Stub
from tripleo_elements.testing.templates import render_templates

KEYS = "/var/lib/stackuser/authorized_keys"
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3cUQ9u8dx alice@example"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@example"
# 50-stackuser removes its temporary file: allowed in the sandbox.
RM = ["rm"]
ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= carol"


class TemplateTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("stackuser")

    def test_keys_from_all_sources(self) -> None:
        rendered = render_templates(self.element, {
            "stackuser": {"authorized_keys": [ED]},
            "public_keys": {"bob": RSA},
            "public-keys": {"0": {"openssh-key": ECDSA}}})
        content, mode = rendered[KEYS]
        self.assertEqual(f"{ED}\n{RSA}\n{ECDSA}\n", content)
        self.assertEqual(0o600, mode)

    def test_keys_as_lines_and_duplicates(self) -> None:
        content, _ = render_templates(self.element, {
            "stackuser": {"authorized_keys": f"{ED}\n\n# comment\n{ED}\n"},
            "public_keys": {"a": ED}})[KEYS]
        self.assertEqual(f"{ED}\n", content)

    def test_no_keys_writes_empty_file(self) -> None:
        self.assertEqual({KEYS: ("", 0o600)},
                         render_templates(self.element, {}))

    def test_hostile_values_dropped(self) -> None:
        canary = Path(self.useFixture(fixtures.TempDir()).path, "canary")
        hostile = [f"$(touch {canary})", f"`touch {canary}`",
                   f"{ED}\ncommand=\"touch {canary}\" {RSA}",
                   "-----BEGIN OPENSSH PRIVATE KEY-----"]
        content, _ = render_templates(self.element, {
            "stackuser": {"authorized_keys": hostile + [ED]}})[KEYS]
        self.assertEqual(f"{ED}\n", content)
        self.assertFalse(canary.exists())
        self.assertNotIn("touch", content)


class InstallTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("stackuser")
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.sudoers = self.root / "etc/sudoers.d/stackuser"
        self.keys = self.root / "usr/share/stackuser/authorized_keys"
        self.sshd_conf = self.root / "etc/ssh/sshd_config.d/50-stackuser.conf"
        self.env = {"DIB_STACKUSER_SUDOERS": str(self.sudoers),
                    "DIB_STACKUSER_KEYS_FILE": str(self.keys),
                    "DIB_STACKUSER_SSHD_CONF": str(self.sshd_conf),
                    "DIB_STACKUSER_FILES": str(self.root / "files")}
        self.stubs = [Stub("getent", exit_code=2), "useradd", "usermod",
                      "visudo"]

    def test_user_locked_and_sudo_validated(self) -> None:
        result = run_script(self.element / "install.d/50-stackuser",
                            self.root, stubs=self.stubs, env=self.env,
                            allow=RM).check()
        [useradd] = result.calls_of("useradd")
        self.assertEqual("stack", useradd[-1])
        self.assertIn("--create-home", useradd)
        self.assertEqual([("usermod", "--password", "!", "stack")],
                         result.calls_of("usermod"))
        [visudo] = result.calls_of("visudo")
        self.assertEqual(("visudo", "-c", "-q", "-f"), visudo[:4])
        self.assertEqual("stack ALL=(ALL) NOPASSWD:ALL\n",
                         self.sudoers.read_text())
        self.assertEqual(0o440, stat.S_IMODE(self.sudoers.stat().st_mode))
        self.assertEqual("", self.keys.read_text())
        sshd = self.sshd_conf.read_text().splitlines()
        self.assertIn("PasswordAuthentication no", sshd)
        self.assertIn("KbdInteractiveAuthentication no", sshd)
        self.assertEqual(["getent", "useradd", "usermod", "visudo"],
                         [c[0] for c in result.calls])

    def test_invalid_sudoers_fails_the_build(self) -> None:
        stubs = self.stubs[:-1] + [Stub("visudo", exit_code=1)]
        result = run_script(self.element / "install.d/50-stackuser",
                            self.root, stubs=stubs, env=self.env,
                            allow=RM)
        self.assertEqual(1, result.returncode)
        self.assertFalse(self.sudoers.exists())

    def test_existing_user_not_recreated(self) -> None:
        stubs = [Stub("getent", stdout="stack:x:1000:1000::/home/stack:\n"),
                 "useradd", "usermod", "visudo"]
        result = run_script(self.element / "install.d/50-stackuser",
                            self.root, stubs=stubs, env=self.env,
                            allow=RM).check()
        self.assertEqual([], result.calls_of("useradd"))

    def test_build_time_keys(self) -> None:
        given = self.root / "given_keys"
        given.write_text(f"{ED}\n")
        hooks = self.root / "hooks"
        run_script(self.element / "extra-data.d/50-stackuser-authorized-keys",
                   self.root, env={"DIB_STACKUSER_AUTHORIZED_KEYS": str(given),
                                   "TMP_HOOKS_PATH": str(hooks)}).check()
        env = dict(self.env,
                   DIB_STACKUSER_FILES=str(hooks / "stackuser-files"))
        run_script(self.element / "install.d/50-stackuser", self.root,
                   stubs=self.stubs, env=env, allow=RM).check()
        self.assertEqual(f"{ED}\n", self.keys.read_text())

    def test_private_key_refused(self) -> None:
        given = self.root / "id_rsa"
        given.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n")
        result = run_script(
            self.element / "extra-data.d/50-stackuser-authorized-keys",
            self.root, env={"DIB_STACKUSER_AUTHORIZED_KEYS": str(given),
                            "TMP_HOOKS_PATH": str(self.root / "hooks")})
        self.assertEqual(1, result.returncode)
        self.assertIn("private key", result.stderr)

    def test_authorized_keys_installed_at_refresh(self) -> None:
        home = self.root / "home/stack"
        home.mkdir(parents=True)
        build_keys = self.root / "build_keys"
        build_keys.write_text(f"{RSA}\n")
        metadata_keys = self.root / "metadata_keys"
        metadata_keys.write_text(f"{ED}\n")
        result = run_script(
            self.element /
            "os-refresh-config/configure.d/60-stackuser-authorized-keys",
            self.root, stubs=["chown"], env={
                "STACKUSER_HOME": str(home),
                "STACKUSER_BUILD_KEYS": str(build_keys),
                "STACKUSER_METADATA_KEYS": str(metadata_keys)}).check()
        keys = home / ".ssh/authorized_keys"
        self.assertEqual(f"{RSA}\n{ED}\n", keys.read_text())
        self.assertEqual(0o600, stat.S_IMODE(keys.stat().st_mode))
        self.assertEqual(0o700,
                         stat.S_IMODE((home / ".ssh").stat().st_mode))
        [chown] = result.calls_of("chown")
        self.assertEqual("stack:", chown[1])

    def test_no_home_is_not_an_error(self) -> None:
        result = run_script(
            self.element /
            "os-refresh-config/configure.d/60-stackuser-authorized-keys",
            self.root, stubs=["chown"],
            env={"STACKUSER_HOME": str(self.root / "nope")}).check()
        self.assertIn("nothing to do", result.stdout)
