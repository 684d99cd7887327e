"""The faster qemu-img of a build: run for real against a fake qemu-img
that records its argv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import testtools

from tests.unit.test_check import CheckTestCase
from tests.unit.test_plan import SOURCES, TREE
from tests.unit.trees import make_tree
from tripleo_elements import build, options, speedups, stagecache
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover

FAKE = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_RECORD"
"""


class QemuImgTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        real_dir = self.tmp / "real"
        real_dir.mkdir()
        (real_dir / "qemu-img").write_text(FAKE)
        (real_dir / "qemu-img").chmod(0o755)
        self.env = {"PATH": f"{real_dir}:/usr/bin:/bin",
                    "TIE_QEMU_IMG_JOBS": "4"}
        self.work = self.tmp / "work"
        self.work.mkdir()

    def run_wrapped(self, *argv: str, **extra: str) -> list[str]:
        env = speedups.prepare(self.work, dict(self.env, **extra))
        record = self.tmp / "argv"
        subprocess.run(["qemu-img", *argv], check=True,
                       env=dict(env, FAKE_RECORD=str(record)))
        return record.read_text().splitlines()

    def test_compressed_convert_gets_coroutines_and_out_of_order(self
                                                                 ) -> None:
        self.assertEqual(
            ["convert", "-m", "4", "-W", "-c", "-f", "raw", "-O", "qcow2",
             "in img", "out"],
            self.run_wrapped("convert", "-c", "-f", "raw", "-O", "qcow2",
                             "in img", "out"))

    def test_everything_else_is_passed_unchanged(self) -> None:
        for argv in (["convert", "-f", "raw", "-O", "qcow2", "a", "b"],
                     ["convert", "-c", "-m", "2", "a", "b"],
                     ["convert", "-c", "-W", "a", "b"],
                     ["info", "--output=json", "a"]):
            self.assertEqual(argv, self.run_wrapped(*argv))

    def test_one_job_or_no_qemu_img_leaves_path_alone(self) -> None:
        env = dict(self.env, TIE_QEMU_IMG_JOBS="1")
        self.assertEqual(env, speedups.prepare(self.work, env))
        env = {"PATH": str(self.tmp / "nowhere")}
        self.assertEqual(env, speedups.prepare(self.work, env))
        self.assertFalse((self.work / "bin").exists())

    def test_default_jobs_follow_the_cpus(self) -> None:
        self.assertEqual(min(2 * (os.cpu_count() or 1), 16),
                         speedups.qemu_img_jobs({}))
        self.assertEqual(16, speedups.qemu_img_jobs(
            {"TIE_QEMU_IMG_JOBS": "99"}))

    def test_zstd_build_gets_compression_type_on_qcow2_only(self) -> None:
        zstd = {"TIE_QCOW2_COMPRESSION": "zstd"}
        self.assertEqual(
            ["convert", "-m", "4", "-W", "-o", "compression_type=zstd",
             "-c", "-f", "raw", "-O", "qcow2", "a", "b"],
            self.run_wrapped("convert", "-c", "-f", "raw", "-O", "qcow2",
                             "a", "b", **zstd))
        # With one job: only the compression type.
        self.assertEqual(
            ["convert", "-o", "compression_type=zstd", "-c", "-Oqcow2",
             "a", "b"],
            self.run_wrapped("convert", "-c", "-Oqcow2", "a", "b",
                             TIE_QEMU_IMG_JOBS="1", **zstd))
        # The user's own compression_type, another format, no -c, zlib.
        for argv, env in (
                (["convert", "-c", "-O", "qcow2", "-o",
                  "compat=1.1,compression_type=zlib", "a", "b"], zstd),
                (["convert", "-c", "-O", "vmdk", "a", "b"], zstd),
                (["convert", "-O", "qcow2", "a", "b"], zstd),
                (["convert", "-c", "-O", "qcow2", "a", "b"],
                 {"TIE_QCOW2_COMPRESSION": "zlib"})):
            jobs = ["-m", "4", "-W"] if "-c" in argv else []
            self.assertEqual(argv[:1] + jobs + argv[1:],
                             self.run_wrapped(*argv, **env), argv)

    def test_zlib_and_one_job_leave_path_alone(self) -> None:
        env = dict(self.env, TIE_QEMU_IMG_JOBS="1",
                   TIE_QCOW2_COMPRESSION="zlib")
        self.assertEqual(env, speedups.prepare(self.work, env))
        self.assertNotEqual(env, speedups.prepare(
            self.work, dict(env, TIE_QCOW2_COMPRESSION="zstd")))


@testtools.skipUnless(shutil.which("qemu-img"), "needs qemu-img")
class RealQemuImgTest(testtools.TestCase):
    """diskimage-builder's conversion through the wrapper, for real: a
    zstd qcow2 whose guest content equals the raw disk."""

    def test_zstd_qcow2_holds_the_same_guest_bytes(self) -> None:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp, True)
        raw = tmp / "disk.raw"
        with open(raw, "wb") as handle:
            for i in range(64):
                handle.write(bytes([i]) * 4096 + os.urandom(4096)
                             + b"\0" * 8192)
        env = speedups.prepare(tmp, dict(os.environ,
                                         TIE_QCOW2_COMPRESSION="zstd"))
        qcow2 = tmp / "disk.qcow2"
        subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O",
                        "qcow2", str(raw), str(qcow2)], check=True,
                       env=env, capture_output=True)
        info = json.loads(subprocess.check_output(
            ["qemu-img", "info", "--output=json", str(qcow2)]))
        self.assertEqual("zstd",
                         info["format-specific"]["data"]["compression-type"])
        compare = subprocess.run(
            ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw),
             str(qcow2)], capture_output=True, text=True)
        self.assertEqual(0, compare.returncode, compare.stdout)


FAKE_REAL = """#!/bin/sh
echo "$*" >> "$TIE_INITRAMFS_ONCE_ROOT/real-calls"
"""

FAKE_TRIGGER = """#!/bin/sh
echo "$*" >> "$TIE_INITRAMFS_ONCE_ROOT/triggers"
"""


class InitramfsOnceTest(testtools.TestCase):
    """The helper element's hooks and shim, run for real against a
    directory standing for the chroot (fake update-initramfs and
    dpkg-trigger record their calls)."""

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = self.tmp / "root"
        for rel in ("usr/local/lib", "usr/sbin", "boot",
                    "var/lib/dpkg/triggers", "bin", "etc/apt/apt.conf.d"):
            (self.root / rel).mkdir(parents=True)
        for rel, text in (("usr/sbin/update-initramfs", FAKE_REAL),
                          ("bin/dpkg-trigger", FAKE_TRIGGER)):
            (self.root / rel).write_text(text)
            (self.root / rel).chmod(0o755)
        (self.root / "var/lib/dpkg/triggers/update-initramfs").write_text(
            "initramfs-tools\n")
        self.element = speedups.write_initramfs_element(self.tmp / "el")
        self.shim = self.root / speedups.SHIM_PATH.lstrip("/")
        self.conf = self.root / speedups.APT_CONF.lstrip("/")
        self.initrd = self.root / "boot/initrd.img-6.1.0-9-amd64"

    def run_(self, argv: list[str], **env: str) -> str:
        full = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
                speedups.ROOT_ENV: str(self.root), **env}
        return subprocess.run(argv, env=full, check=True, text=True,
                              capture_output=True).stdout

    def hook(self, rel: str) -> None:
        self.run_([str(self.element / rel)])

    def kernel_hook(self, *argv: str, package: str = "linux-image") -> str:
        return self.run_([str(self.shim), *argv],
                         DPKG_MAINTSCRIPT_PACKAGE=package)

    def calls(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().splitlines() if path.exists() else []

    def test_kernel_hook_is_deferred_to_the_trigger(self) -> None:
        self.hook(speedups.SHIM_HOOK)
        self.assertTrue(os.access(self.shim, os.X_OK))
        # apt runs maintainer scripts with its DPkg::Path: shim first.
        self.assertIn(f'DPkg::Path "{self.shim.parent}:/usr/sbin:'
                      f'/usr/bin:/sbin:/bin";'.replace(str(self.root), ""),
                      self.conf.read_text())
        out = self.kernel_hook("-c", "-k", "6.1.0-9-amd64", "-b", "/boot")
        self.assertIn("deferred to the trigger", out)
        self.assertEqual(["--no-await update-initramfs"],
                         self.calls("triggers"))
        self.assertEqual([], self.calls("real-calls"))
        self.assertEqual(b"", self.initrd.read_bytes())
        # The trigger's own run goes to the real one, which fills it.
        self.kernel_hook("-u", package="")
        self.assertEqual(["-u"], self.calls("real-calls"))
        self.initrd.write_bytes(b"initramfs")
        self.hook(speedups.DONE_HOOK)
        self.assertFalse(self.shim.parent.exists())
        self.assertFalse(self.conf.exists())
        self.assertEqual([], os.listdir(self.conf.parent))
        self.assertEqual(["-u"], self.calls("real-calls"))
        self.assertEqual(b"initramfs", self.initrd.read_bytes())

    def test_a_placeholder_left_is_generated_at_the_end(self) -> None:
        self.hook(speedups.SHIM_HOOK)
        self.kernel_hook("-c", "-k", "6.1.0-9-amd64")
        self.hook(speedups.DONE_HOOK)
        self.assertEqual(["-c -k 6.1.0-9-amd64"], self.calls("real-calls"))
        self.assertFalse(self.initrd.exists())  # the fake writes none

    def test_every_other_call_goes_to_the_real_one(self) -> None:
        self.hook(speedups.SHIM_HOOK)
        self.kernel_hook("-c", "-k", "6.1.0-9-amd64", package="")
        self.kernel_hook("-u")
        self.kernel_hook("-c", "-k", "all")
        self.kernel_hook("-d", "-k", "6.1.0-9-amd64")
        self.initrd.write_bytes(b"old")
        self.kernel_hook("-c", "-k", "6.1.0-9-amd64")
        self.assertEqual(["-c -k 6.1.0-9-amd64", "-u", "-c -k all",
                          "-d -k 6.1.0-9-amd64", "-c -k 6.1.0-9-amd64"],
                         self.calls("real-calls"))
        self.assertEqual([], self.calls("triggers"))

    def test_no_trigger_interest_means_no_deferral(self) -> None:
        (self.root / "var/lib/dpkg/triggers/update-initramfs").unlink()
        self.hook(speedups.SHIM_HOOK)
        self.kernel_hook("-c", "-k", "6.1.0-9-amd64")
        self.assertEqual(["-c -k 6.1.0-9-amd64"], self.calls("real-calls"))
        self.assertFalse(self.initrd.exists())

    def test_an_existing_apt_setting_is_left_alone(self) -> None:
        self.conf.write_text("mine\n")
        self.hook(speedups.SHIM_HOOK)
        self.assertFalse(self.shim.exists())
        self.hook(speedups.DONE_HOOK)
        self.assertEqual("mine\n", self.conf.read_text())

    def test_only_dpkg_builds_get_it_and_it_can_be_turned_off(self) -> None:
        self.assertTrue(speedups.initramfs_once(("base", "dpkg"), {}))
        self.assertFalse(speedups.initramfs_once(("base", "yum"), {}))
        self.assertFalse(speedups.initramfs_once(
            ("base", "dpkg"), {"TIE_INITRAMFS_ONCE": "0"}))


FAKE_DIB_COPY = """#!/bin/bash
# Records its argv and the staged helper element, writes the image.
printf '%s\\n' "$@" > "$FAKE_DIB_RECORD"
cp -r "$ELEMENTS_PATH/tie-initramfs-once" "$FAKE_DIB_RECORD.element" \\
    2>/dev/null || true
while [ $# -gt 0 ]; do
    case "$1" in -o) out=$2; shift;; esac
    shift
done
echo image > "$out.qcow2"
"""


class BuildGetsTheElementTest(testtools.TestCase):

    def build(self, env: dict[str, str], tree_extra: dict[str, object]
              ) -> tuple[list[str], Path]:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp, True)
        tree = dict(TREE, **tree_extra)
        index = discover([make_tree(tmp / "elements", tree)])
        fake = tmp / "fake-dib"
        fake.write_text(FAKE_DIB_COPY)
        fake.chmod(0o755)
        opts = options.BuildOptions(output=tmp / "out" / "img",
                                    elements=tuple(tree_extra))
        (tmp / "out").mkdir()
        plan = plan_mod.make_plan(opts, index, {}, apt_sources=SOURCES,
                                  dib_command=str(fake))
        record = tmp / "argv"
        build.execute(plan, dict(os.environ, FAKE_DIB_RECORD=str(record),
                                 DIB_IMAGE_CACHE=str(tmp / "cache"), **env),
                      lambda p, s: None)
        self.assertNotIn(speedups.INITRAMFS_ELEMENT, plan.command)
        return record.read_text().splitlines(), tmp / "argv.element"

    def test_dpkg_build_runs_the_helper_element(self) -> None:
        argv, element = self.build({}, {"dpkg": {}})
        self.assertEqual(speedups.INITRAMFS_ELEMENT, argv[-1])
        self.assertTrue(os.access(element / speedups.SHIM_HOOK, os.X_OK))
        self.assertTrue(os.access(element / speedups.DONE_HOOK, os.X_OK))

    def test_turned_off_or_no_dpkg_runs_none(self) -> None:
        for env, extra in (({"TIE_INITRAMFS_ONCE": "0"}, {"dpkg": {}}),
                           ({}, {"yum": {}})):
            argv, element = self.build(env, extra)
            self.assertNotIn(speedups.INITRAMFS_ELEMENT, argv)
            self.assertFalse(element.exists())


class GeneratedElementsCheckTest(CheckTestCase):
    """The elements build-image writes into a build follow the rules
    ``check --strict`` holds ``elements/`` to (set -eu, pipefail,
    DIB_DEBUG_TRACE, a README, sudo confined to the image)."""

    def test_generated_elements_have_no_findings(self) -> None:
        speedups.write_initramfs_element(self.root)
        stagecache.write_element(self.root)
        self.assertEqual(
            ["tie-initramfs-once", "tie-stage"],
            sorted(p.name for p in self.root.iterdir()))
        self.assertEqual([], [f.format() for f in self.run_check()])
