"""Running a plan against a fake disk-image-create (on the far side of
our subprocess boundary): what is published, what is never touched, and
two builds at once."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path

import testtools

from tests.unit.test_plan import FAKE_DIB, SOURCES, TREE
from tests.unit.trees import make_tree
from tripleo_elements import build, errors, options, outputs
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover


class BuildTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.index = discover([make_tree(self.tmp / "elements", TREE)])
        self.fake = self.tmp / "fake-dib"
        self.fake.write_text(FAKE_DIB)
        self.fake.chmod(0o755)
        self.out = self.tmp / "out"
        self.out.mkdir()
        self.cache = self.tmp / "cache"
        self.env = {"DIB_IMAGE_CACHE": str(self.cache)}

    def make(self, name: str = "img", **kw: object) -> plan_mod.BuildPlan:
        opts = options.BuildOptions(output=self.out / name, **kw)
        return plan_mod.make_plan(opts, self.index, self.env,
                                  apt_sources=SOURCES,
                                  dib_command=str(self.fake))

    def run_plan(self, plan: plan_mod.BuildPlan, write: str = ".qcow2",
                 **extra: str) -> build.BuildResult:
        env = dict(os.environ, FAKE_DIB_MODE="ok",
                   FAKE_DIB_RECORD=str(self.tmp / f"argv-{plan.output.name}"),
                   FAKE_DIB_WRITE=write, **self.env, **extra)
        return build.execute(plan, env, lambda p, s: None)

    # ---- issue 8 #1: the output name never reaches user data

    def test_output_named_like_work_files_leaves_user_data(self) -> None:
        for entry in ("elements", "tmp", "out"):
            (self.out / entry).mkdir()
            (self.out / entry / "mine").write_text("user data\n")
        (self.out / "block-device.yaml").write_text("user data\n")
        for name in ("e", "t", "el", "o", "b"):
            self.run_plan(self.make(name))
            self.assertTrue((self.out / f"{name}.qcow2").is_file())
        for entry in ("elements", "tmp", "out"):
            self.assertEqual("user data\n",
                             (self.out / entry / "mine").read_text())
        self.assertEqual("user data\n",
                         (self.out / "block-device.yaml").read_text())

    def test_existing_entry_not_ours_is_moved_aside(self) -> None:
        (self.out / "img.d").mkdir()
        (self.out / "img.d" / "mine").write_text("user data\n")
        result = self.run_plan(self.make())
        aside = [p for p in self.out.iterdir()
                 if p.name.startswith("img.d.orig-")]
        self.assertEqual(1, len(aside))
        self.assertEqual("user data\n", (aside[0] / "mine").read_text())
        self.assertTrue(any("moved to" in n for n in result.notices))
        # A second build replaces what the first one made, quietly.
        result = self.run_plan(self.make())
        self.assertEqual((), result.notices)
        self.assertEqual(1, len([p for p in self.out.iterdir()
                                 if p.name.startswith("img.d.orig-")]))

    def test_output_dir_under_a_file_is_a_one_line_error(self) -> None:
        (self.tmp / "afile").write_text("x")
        opts = options.BuildOptions(output=self.tmp / "afile" / "sub" / "i")
        plan = plan_mod.make_plan(opts, self.index, self.env,
                                  apt_sources=SOURCES,
                                  dib_command=str(self.fake))
        err = self.assertRaises(errors.OutputNotWritable, build.execute,
                                plan, self.env, lambda p, s: None)
        self.assertEqual(1, len(err.render().splitlines()))
        self.assertIn("not writable", err.message)

    def test_read_only_output_dir_is_a_one_line_error(self) -> None:
        self.out.chmod(stat.S_IRUSR | stat.S_IXUSR)
        self.addCleanup(self.out.chmod, 0o755)
        try:
            (self.out / "probe").write_text("")
        except OSError:
            pass
        else:
            self.skipTest("this user writes into read-only directories")
        err = self.assertRaises(errors.OutputNotWritable, build.execute,
                                self.make(), self.env, lambda p, s: None)
        self.assertIn(str(self.out), err.message)
        self.assertFalse(self.make().workdir.exists())

    def test_unwritable_download_cache_is_a_one_line_error(self) -> None:
        (self.tmp / "afile").write_text("x")
        self.env["DIB_IMAGE_CACHE"] = str(self.tmp / "afile" / "cache")
        err = self.assertRaises(errors.OutputNotWritable, build.execute,
                                self.make(), self.env, lambda p, s: None)
        self.assertIn("download cache", err.message)

    # ---- issue 8 #2: what the elements write is what is published

    def test_ramdisk_outputs_published_with_checksums(self) -> None:
        plan = self.make(elements=("ipa-ramdisk",))
        result = self.run_plan(plan, write=".kernel .initramfs")
        self.assertEqual([self.out / "img.initramfs", self.out / "img.kernel"],
                         [a.path for a in result.artifacts])
        manifest = json.loads(result.manifest.read_text())
        recorded = {Path(i["path"]).name: i["sha256"]
                    for i in manifest["images"]}
        self.assertEqual(
            {"img.kernel": outputs.sha256_of(self.out / "img.kernel"),
             "img.initramfs": outputs.sha256_of(self.out / "img.initramfs")},
            recorded)
        self.assertFalse(manifest["final_image"])
        self.assertFalse((self.out / "img.qcow2").exists())
        self.assertFalse(plan.workdir.exists())

    def test_missing_output_fails_but_keeps_what_was_written(self) -> None:
        plan = self.make(elements=("ipa-ramdisk",))
        err = self.assertRaises(errors.BuildFailed, self.run_plan, plan,
                                write=".kernel .extra")
        self.assertIn("img.initramfs", err.message)
        self.assertIn("img.kernel", err.message)
        self.assertTrue((self.out / "img.kernel").is_file())
        self.assertTrue((self.out / "img.extra").is_file())
        manifest = json.loads((self.out / "img.manifest.json").read_text())
        self.assertIn("img.extra", manifest["outputs"])

    def test_checksum_writes_md5_too(self) -> None:
        self.run_plan(self.make(checksum=True), write=".qcow2")
        self.assertTrue((self.out / "img.qcow2.md5").is_file())
        self.assertTrue((self.out / "img.qcow2.sha256").is_file())

    def test_manifest_records_host_dib_variables_without_secrets(self
                                                                 ) -> None:
        self.env["DIB_DEV_USER_PASSWORD"] = "hunter2"
        self.env["DIB_NOTE"] = "visible"
        result = self.run_plan(self.make())
        manifest = result.manifest.read_text()
        self.assertNotIn("hunter2", manifest)
        data = json.loads(manifest)["host_environment"]
        self.assertEqual("(set)", data["DIB_DEV_USER_PASSWORD"])
        self.assertEqual("visible", data["DIB_NOTE"])

    def test_user_tmp_dir_is_used_and_cleaned(self) -> None:
        self.env["TMP_DIR"] = str(self.tmp / "big")
        plan = self.make()
        self.run_plan(plan)
        env = (self.tmp / "argv-img.env").read_text()
        self.assertIn(f"TMP_DIR={plan.tmp_dir}\n", env)
        self.assertTrue(plan.tmp_dir.is_relative_to(self.tmp / "big"))
        self.assertEqual([], list((self.tmp / "big").iterdir()))

    # ---- issue 8 #3: builds at once share the download cache safely

    def test_two_builds_at_once_both_succeed(self) -> None:
        (self.cache / "apt").mkdir(parents=True)
        (self.cache / "apt" / "old.deb").write_text("cached\n")
        plans = [self.make("one"), self.make("two")]
        errors_seen: list[BaseException] = []

        def run(plan: plan_mod.BuildPlan) -> None:
            try:
                self.run_plan(plan, FAKE_DIB_SLEEP="2")
            except BaseException as exc:  # reported below
                errors_seen.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual([], [str(e) for e in errors_seen])
        for name in ("one", "two"):
            self.assertTrue((self.out / f"{name}.qcow2").is_file())
        # Both builds' downloads are back in the shared cache, the old
        # file is still there, and no private copy is left.
        names = sorted(p.name for p in (self.cache / "apt").iterdir())
        self.assertEqual(["new-one", "new-two", "old.deb"],
                         [n.rsplit("-", 1)[0] if n.startswith("new-") else n
                          for n in names])
        self.assertEqual([], list(self.cache.glob(".tie-build-*")))

    def test_same_output_twice_at_once_is_refused(self) -> None:
        plan = self.make()
        from tripleo_elements import downloads
        with downloads.output_lock(plan.image_cache, plan.output) as held:
            self.assertTrue(held)
            err = self.assertRaises(errors.BuildLocked, self.run_plan, plan)
        self.assertIn(str(plan.output), err.message)
