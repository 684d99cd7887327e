"""The image cache key: it changes exactly when what goes into an image
changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import fixtures
import testtools

from tests.unit.trees import make_tree
from tripleo_elements import errors
from tripleo_elements.testing import imagecache


class TestImageKey(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.tree = make_tree(self.tmp / "elements", {
            "testos": {"provides": ["operating-system"],
                       "root.d/10-base": "#!/bin/bash\necho base\n"},
            "app": {"deps": ["testos"],
                    "install.d/50-app": "#!/bin/bash\necho app\n",
                    "static/etc/app.conf": "a = 1\n",
                    "README.rst": "app\n"},
            "unused": {"install.d/50-unused": "#!/bin/bash\n"},
        })
        self.cache = self.tmp / "cache"
        self.args = ["--no-defaults", "-e", "app",
                     "--elements-path", str(self.tree)]
        self.env: dict[str, str] = {}

    def key(self, cache: Path | None = None) -> str:
        return imagecache.image_key(self.args, cache or self.cache,
                                    self.env)

    def test_stable_when_nothing_changes(self) -> None:
        first = self.key()
        self.assertEqual(64, len(first))
        self.assertEqual(first, self.key())
        # Where the image goes is not part of what goes into it.
        self.assertEqual(first, self.key(self.tmp / "elsewhere"))

    def test_element_file_content(self) -> None:
        before = self.key()
        (self.tree / "app" / "static/etc/app.conf").write_text("a = 2\n")
        self.assertNotEqual(before, self.key())

    def test_dependency_file_content(self) -> None:
        before = self.key()
        (self.tree / "testos" / "root.d/10-base").write_text(
            "#!/bin/bash\necho changed\n")
        self.assertNotEqual(before, self.key())

    def test_file_mode(self) -> None:
        before = self.key()
        os.chmod(self.tree / "app" / "install.d/50-app", 0o644)
        self.assertNotEqual(before, self.key())

    def test_file_name(self) -> None:
        before = self.key()
        os.rename(self.tree / "app" / "install.d/50-app",
                  self.tree / "app" / "install.d/60-app")
        self.assertNotEqual(before, self.key())

    def test_new_file(self) -> None:
        before = self.key()
        (self.tree / "app" / "static/etc/new").write_text("")
        self.assertNotEqual(before, self.key())

    def test_element_not_in_the_image_does_not_count(self) -> None:
        before = self.key()
        (self.tree / "unused" / "install.d/50-unused").write_text("x")
        self.assertEqual(before, self.key())

    def test_python_caches_do_not_count(self) -> None:
        before = self.key()
        cache = self.tree / "app" / "__pycache__"
        cache.mkdir()
        (cache / "x.cpython-311.pyc").write_bytes(b"\0")
        (self.tree / "app" / "y.pyc").write_bytes(b"\0")
        self.assertEqual(before, self.key())

    def test_symlinked_content_is_followed(self) -> None:
        outside = self.tmp / "outside"
        outside.mkdir()
        (outside / "data").write_text("one\n")
        (self.tree / "app" / "linked").symlink_to(outside)
        (self.tree / "app" / "file-link").symlink_to(outside / "data")
        before = self.key()
        (outside / "data").write_text("two\n")
        self.assertNotEqual(before, self.key())

    def test_symlink_loop_terminates(self) -> None:
        (self.tree / "app" / "loop").symlink_to(self.tree / "app")
        self.assertEqual(self.key(), self.key())

    def test_dib_variables_count_others_do_not(self) -> None:
        before = self.key()
        self.env["TIE_CANARY_TOKEN"] = "x"
        self.env["DIB_IMAGE_CACHE"] = "/somewhere"
        self.assertEqual(before, self.key())
        self.env["DIB_FOO"] = "1"
        self.assertNotEqual(before, self.key())

    def test_request_counts(self) -> None:
        before = self.key()
        self.args += ["-e", "unused"]
        self.assertNotEqual(before, self.key())

    def test_output_may_not_be_given(self) -> None:
        self.args += ["-o", "x"]
        self.assertRaises(errors.UsageError, self.key)

    def test_arguments_are_checked_as_the_cli_checks_them(self) -> None:
        # One path from arguments to options: the CLI's checks apply.
        for bad in (["-a", "bogus"], ["-t", ","], ["vm"]):
            err = self.assertRaises(errors.UsageError,
                                    imagecache.plan_for, self.args + bad,
                                    self.cache / "name", self.env)
            self.assertEqual(1, len(err.render().splitlines()))

    def test_dib_options_change_the_key(self) -> None:
        before = self.key()
        self.args += ["--image-size", "3"]
        self.assertNotEqual(before, self.key())

    def test_plan_paths_are_normalised(self) -> None:
        plan = imagecache.plan_for(self.args, self.cache / "name", self.env)
        other = imagecache.plan_for(self.args, self.tmp / "o" / "name2",
                                    self.env)
        self.assertIn(str(self.cache), " ".join(plan.command))
        self.assertEqual(imagecache.plan_digest(plan),
                         imagecache.plan_digest(other))


class TestCachedBuild(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.tree = make_tree(self.tmp / "elements", {
            "testos": {"provides": ["operating-system"]},
            "app": {"deps": ["testos"], "README.rst": "app\n"}})
        self.args = ["--no-defaults", "-e", "app",
                     "--elements-path", str(self.tree)]
        self.cache = self.tmp / "cache"
        self.builds: list[Path] = []
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.imagecache._build", self.fake_build))

    def fake_build(self, args: list[str], output: Path,
                   env: dict[str, str]) -> None:
        self.builds.append(output)
        output.with_suffix(".qcow2").write_bytes(b"QFI\xfb")
        output.with_suffix(".manifest.json").write_text("{}")

    def test_builds_once_then_reuses(self) -> None:
        image = imagecache.cached_build(self.args, self.cache, environ={})
        self.assertTrue(image.is_file())
        self.assertEqual(self.cache.resolve(), image.parent)
        self.assertEqual(1, len(self.builds))
        again = imagecache.cached_build(self.args, self.cache, environ={})
        self.assertEqual(image, again)
        self.assertEqual(1, len(self.builds))

    def test_rebuilds_after_a_change(self) -> None:
        first = imagecache.cached_build(self.args, self.cache, environ={})
        (self.tree / "app" / "README.rst").write_text("changed\n")
        second = imagecache.cached_build(self.args, self.cache, environ={})
        self.assertNotEqual(first, second)
        self.assertEqual(2, len(self.builds))

    def test_keeps_only_the_newest(self) -> None:
        self.cache.mkdir()
        old = time.time() - 1000
        for i in range(5):
            path = self.cache / f"old{i}.qcow2"
            path.write_bytes(b"")
            (self.cache / f"old{i}.manifest.json").write_text("{}")
            os.utime(path, (old + i, old + i))
        image = imagecache.cached_build(self.args, self.cache, environ={},
                                        keep=3)
        left = sorted(p.name for p in self.cache.glob("*.qcow2"))
        self.assertEqual(sorted([image.name, "old4.qcow2", "old3.qcow2"]),
                         left)
        self.assertFalse((self.cache / "old0.manifest.json").exists())

    def test_default_cache_dir(self) -> None:
        self.assertEqual(Path("/x/y"), imagecache.default_cache_dir(
            {"TIE_IMAGE_CACHE": "/x/y"}))
        self.assertEqual(
            Path("~/.cache/tripleo-image-elements/images").expanduser(),
            imagecache.default_cache_dir({}))


class TestBuildTimeout(testtools.TestCase):

    def test_default_and_override(self) -> None:
        self.assertEqual(imagecache.DEFAULT_BUILD_TIMEOUT,
                         imagecache.build_timeout({}))
        self.assertEqual(90.0, imagecache.build_timeout(
            {imagecache.TIMEOUT_ENV: "90"}))

    def test_bad_values_are_one_line_errors(self) -> None:
        for value in ("soon", "0", "-5"):
            exc = self.assertRaises(errors.UsageError,
                                    imagecache.build_timeout,
                                    {imagecache.TIMEOUT_ENV: value})
            self.assertIn(imagecache.TIMEOUT_ENV, exc.message)
