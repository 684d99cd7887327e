"""The build cache against a fake disk-image-create (the far side of our
subprocess boundary): hits, misses and why, corrupt and partial entries,
every NAME.* output, two builds at once, list and prune."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import testtools

from tests.unit.test_plan import FAKE_DIB, SOURCES, TREE
from tests.unit.trees import make_tree
from tripleo_elements import buildcache, buildcache_cli, errors, options
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover


class BuildCacheTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.elements = make_tree(self.tmp / "elements", TREE)
        self.fake = self.tmp / "fake-dib"
        self.fake.write_text(FAKE_DIB)
        self.fake.chmod(0o755)
        self.out = self.tmp / "out"
        self.out.mkdir()
        self.root = self.tmp / "xdg" / "tripleo-image-elements" / "builds"
        self.env = {"DIB_IMAGE_CACHE": str(self.tmp / "dl"),
                    "XDG_CACHE_HOME": str(self.tmp / "xdg")}
        self.runs = 0

    def make(self, name: str = "img", out: Path | None = None,
             **kw: object) -> plan_mod.BuildPlan:
        index = discover([self.elements])
        opts = options.BuildOptions(output=(out or self.out) / name, **kw)
        return plan_mod.make_plan(opts, index, self.env,
                                  apt_sources=SOURCES,
                                  dib_command=str(self.fake))

    def build(self, plan: plan_mod.BuildPlan, write: str = ".qcow2",
              use_cache: bool = True, **extra: str):
        self.runs += 1
        record = self.tmp / f"argv-{self.runs}"
        env = dict(os.environ, FAKE_DIB_MODE="ok",
                   FAKE_DIB_RECORD=str(record),
                   FAKE_DIB_WRITE=write, **self.env, **extra)
        result = buildcache.execute(plan, env, lambda p, s: None,
                                    use_cache=use_cache)
        return result, record.exists()

    # ---- hit and miss

    def test_unchanged_build_is_a_hit_with_every_output(self) -> None:
        plan = self.make()
        first, ran = self.build(plan, write=".qcow2 .vmlinuz .whatever")
        self.assertTrue(ran)
        before = {p.name: p.read_bytes() for p in self.out.iterdir()
                  if p.is_file()}
        self.assertIn("img.whatever", before)
        self.assertIn("img.log", before)
        for path in self.out.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        second, ran = self.build(self.make(), write=".qcow2 .vmlinuz")
        self.assertFalse(ran, "a hit must not run disk-image-create")
        after = {p.name: p.read_bytes() for p in self.out.iterdir()
                 if p.is_file()}
        self.assertEqual(before, after)
        self.assertTrue((self.out / "img.d/dib-manifests").is_dir())
        self.assertEqual(
            sorted((a.path.name, a.sha256) for a in first.artifacts),
            sorted((a.path.name, a.sha256) for a in second.artifacts))
        self.assertIn("build cache hit", second.notices[0])

    def test_changed_element_is_a_miss_that_names_it(self) -> None:
        self.build(self.make())
        script = self.elements / "os-collect-config" / "install.d" / "10-occ"
        script.write_text("#!/bin/bash\necho changed\n")
        answer = buildcache.describe(self.make(), self.env, self.root)
        self.assertEqual("miss", answer["status"])
        self.assertEqual(["element os-collect-config: changed"],
                         answer["changed"])
        _, ran = self.build(self.make())
        self.assertTrue(ran)
        self.assertEqual("hit", buildcache.describe(
            self.make(), self.env, self.root)["status"])

    def test_release_and_mirror_are_inputs(self) -> None:
        self.build(self.make())
        answer = buildcache.describe(self.make(release="trixie"), self.env,
                                     self.root)
        self.assertIn("env DIB_RELEASE: bookworm -> trixie",
                      answer["changed"])
        self.env["DIB_DISTRIBUTION_MIRROR"] = "http://other.example/debian"
        answer = buildcache.describe(self.make(), self.env, self.root)
        self.assertEqual("miss", answer["status"])
        self.assertTrue(any(c.startswith("env DIB_DISTRIBUTION_MIRROR")
                            for c in answer["changed"]), answer["changed"])

    def test_qcow2_compression_is_an_input(self) -> None:
        self.build(self.make())
        answer = buildcache.describe(self.make(qcow2_compression="zlib"),
                                     self.env, self.root)
        self.assertEqual("miss", answer["status"])
        self.assertIn("env TIE_QCOW2_COMPRESSION: zstd -> zlib",
                      answer["changed"])

    def test_host_secret_is_recorded_as_a_digest(self) -> None:
        self.env["DIB_DEV_USER_PASSWORD"] = "hunter2"
        self.build(self.make())
        (entry,) = buildcache.entries(self.root)
        text = (entry.path / "inputs.json").read_text()
        self.assertNotIn("hunter2", text)
        self.assertIn("host DIB_DEV_USER_PASSWORD", text)

    def test_plan_says_miss_without_earlier_build(self) -> None:
        answer = buildcache.describe(self.make(), self.env, self.root)
        self.assertEqual("miss", answer["status"])
        self.assertIn("no earlier build of img",
                      buildcache.describe_text(answer))

    def test_no_cache_neither_uses_nor_fills(self) -> None:
        _, ran = self.build(self.make(), use_cache=False)
        self.assertTrue(ran)
        self.assertEqual([], buildcache.entries(self.root))
        self.build(self.make())
        _, ran = self.build(self.make(), use_cache=False)
        self.assertTrue(ran)

    def test_hit_in_another_directory_rewrites_paths(self) -> None:
        self.build(self.make())
        other = self.tmp / "elsewhere"
        other.mkdir()
        result, ran = self.build(self.make(out=other))
        self.assertFalse(ran)
        manifest = json.loads((other / "img.manifest.json").read_text())
        self.assertEqual(str(other / "img.qcow2"),
                         manifest["images"][0]["path"])
        self.assertEqual(other / "img.qcow2", result.artifacts[0].path)

    # ---- corrupt and partial entries

    def test_corrupt_entry_is_discarded_and_rebuilt(self) -> None:
        self.build(self.make())
        (entry,) = buildcache.entries(self.root)
        image = entry.path / "files" / ".qcow2"
        image.write_text("new imagE\n")     # same size, other content
        (self.out / "img.qcow2").unlink()
        result, ran = self.build(self.make())
        self.assertTrue(ran, "a corrupt entry must never be used")
        self.assertEqual("new image\n",
                         (self.out / "img.qcow2").read_text())
        (entry,) = buildcache.entries(self.root)
        self.assertEqual("new image\n",
                         (entry.path / "files" / ".qcow2").read_text())

    def test_truncated_file_is_detected(self) -> None:
        self.build(self.make())
        (entry,) = buildcache.entries(self.root)
        (entry.path / "files" / ".manifest.json").write_text("{")
        _, ran = self.build(self.make())
        self.assertTrue(ran)

    def test_partial_entry_is_discarded(self) -> None:
        self.build(self.make())
        (entry,) = buildcache.entries(self.root)
        (entry.path / "entry.json").unlink()
        self.assertEqual([], buildcache.entries(self.root))
        _, ran = self.build(self.make())
        self.assertTrue(ran)
        self.assertEqual(1, len(buildcache.entries(self.root)))

    def test_corrupt_entry_leaves_previous_outputs(self) -> None:
        self.build(self.make())
        (entry,) = buildcache.entries(self.root)
        (entry.path / "files" / ".qcow2").write_text("broken!!!\n")
        self.assertIsNone(buildcache.lookup(self.root, entry.key,
                                            self.make()))
        self.assertEqual("new image\n",
                         (self.out / "img.qcow2").read_text())
        self.assertFalse((self.root / entry.key).exists())
        self.assertEqual([], [p for p in self.out.iterdir()
                              if "tie-restore" in p.name])

    # ---- two at once

    def test_two_builds_of_one_key_build_once(self) -> None:
        dirs = [self.tmp / "a", self.tmp / "b"]
        ran: list[bool] = []

        def go(out: Path) -> None:
            out.mkdir()
            ran.append(self.build(self.make(out=out),
                                  FAKE_DIB_SLEEP="1")[1])

        threads = [threading.Thread(target=go, args=(d,)) for d in dirs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([False, True], sorted(ran))
        for d in dirs:
            self.assertEqual("new image\n", (d / "img.qcow2").read_text())

    # ---- list and prune

    def _entries(self, count: int) -> list[buildcache.Entry]:
        for i in range(count):
            self.build(self.make(f"img{i}"))
        return buildcache.entries(self.root)

    def test_prune_by_age_and_size(self) -> None:
        known = self._entries(3)
        now = time.time()
        oldest = known[-1]
        os.utime(oldest.path / "entry.json", (now - 40 * 86400,) * 2)
        removed = buildcache.prune(self.root, max_age=30 * 86400)
        self.assertEqual([oldest.key], [e.key for e in removed])
        left = buildcache.entries(self.root)
        removed = buildcache.prune(self.root, max_bytes=left[0].size)
        self.assertEqual([left[1].key], [e.key for e in removed])
        self.assertEqual([left[0].key],
                         [e.key for e in buildcache.entries(self.root)])

    def test_prune_skips_an_entry_in_use(self) -> None:
        (entry,) = self._entries(1)
        import fcntl
        with buildcache._lock(self.root, entry.key, fcntl.LOCK_SH):
            self.assertEqual([], buildcache.prune(self.root, max_bytes=0))
        self.assertEqual(1, len(buildcache.prune(self.root, max_bytes=0)))

    def test_cli_list_and_prune(self) -> None:
        known = self._entries(2)
        out = io.StringIO()
        buildcache_cli.run(buildcache_cli.build_parser().parse_args(
            ["list"]), self.env, out)
        text = out.getvalue()
        self.assertIn("2 entries", text)
        for e in known:
            self.assertIn(e.key[:16], text)
        out = io.StringIO()
        buildcache_cli.run(buildcache_cli.build_parser().parse_args(
            ["prune", "--all"]), self.env, out)
        self.assertIn("2 removed", out.getvalue())
        self.assertEqual([], buildcache.entries(self.root))
        self.assertRaises(errors.UsageError, buildcache_cli.run,
                          buildcache_cli.build_parser().parse_args(
                              ["prune"]), self.env, io.StringIO())

    def test_sizes_and_ages(self) -> None:
        self.assertEqual(500 << 20, buildcache.parse_size("500M"))
        self.assertEqual(10 << 30, buildcache.parse_size("10GiB"))
        self.assertEqual(1024, buildcache.parse_size("1024"))
        self.assertEqual(2 * 86400, buildcache.parse_age("2d"))
        self.assertEqual(7200, buildcache.parse_age("2h"))
        self.assertRaises(errors.UsageError, buildcache.parse_size, "big")
        self.assertRaises(errors.UsageError, buildcache.parse_age, "-1d")

    def test_cache_dir_follows_xdg(self) -> None:
        self.assertEqual(Path("/x/tripleo-image-elements/builds"),
                         buildcache.cache_dir({"XDG_CACHE_HOME": "/x"}))
        self.assertEqual(Path("/h/.cache/tripleo-image-elements/builds"),
                         buildcache.cache_dir({"HOME": "/h"}))

    def test_build_image_cache_and_plan_commands(self) -> None:
        import contextlib

        import fixtures

        from tripleo_elements import cli
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.tmp / "xdg")))
        self._entries(1)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(0, cli.main(["cache", "list"]))
        self.assertIn("1 entries", out.getvalue())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(0, cli.main(
                ["plan", "--no-defaults", "--elements-path",
                 str(self.elements), "-e", "debian-minimal", "-e", "base",
                 "-o", str(self.out / "fresh")]))
        self.assertIn("build cache: miss", out.getvalue())
        self.assertIn("no earlier build of fresh", out.getvalue())

    def test_where_the_build_works_is_not_an_input(self) -> None:
        self.build(self.make())
        self.env["TMP_DIR"] = str(self.tmp / "elsewhere-tmp")
        (self.tmp / "elsewhere-tmp").mkdir()
        self.assertEqual("hit", buildcache.describe(
            self.make(), self.env, self.root)["status"])

    def test_unusable_cache_only_makes_the_build_slower(self) -> None:
        blocker = self.tmp / "xdg"
        blocker.write_text("a file where the cache directory would be\n")
        result, ran = self.build(self.make())
        self.assertTrue(ran)
        self.assertEqual("new image\n", (self.out / "img.qcow2").read_text())
        self.assertIn("not usable", result.notices[-1])
        answer = buildcache.describe(self.make(), self.env, self.root)
        self.assertEqual("miss", answer["status"])

    def test_bad_size_limit_is_refused_before_the_build(self) -> None:
        self.assertRaises(errors.UsageError, self.build, self.make(),
                          TIE_BUILD_CACHE_MAX_SIZE="lots")
        self.assertFalse((self.out / "img.qcow2").exists())
