"""tools/compare-images' initramfs reader: real cpio archives (made by
cpio itself), gzip- and zstd-compressed, after an uncompressed early
one; member times are not content."""

from __future__ import annotations

import gzip
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

import testtools

TOOL = Path(__file__).resolve().parents[2] / "tools" / "compare-images"


def _tool() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("compare_images",
                                                  str(TOOL))
    spec = importlib.util.spec_from_loader("compare_images", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@testtools.skipUnless(shutil.which("cpio"), "needs cpio")
class InitramfsMembersTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.tool = _tool()

    def archive(self, files: dict[str, bytes], mtime: int) -> bytes:
        root = self.tmp / f"tree-{len(os.listdir(self.tmp))}"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            os.utime(root / rel, (mtime, mtime))
        names = "\n".join(sorted(files)) + "\n"
        return subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"],
                              input=names.encode(), cwd=root,
                              capture_output=True, check=True).stdout

    def test_early_and_gzip_parts_are_read_times_left_out(self) -> None:
        early = self.archive({"kernel/x86/microcode/a.bin": b"ucode"}, 1)
        main = {"init": b"#!/bin/sh\n", "etc/modprobe.d/b.conf": b"x\n"}
        one = early + gzip.compress(self.archive(main, 100))
        two = early + gzip.compress(self.archive(main, 200))
        members = self.tool.initramfs_members(one)
        self.assertEqual({"kernel/x86/microcode/a.bin", "init",
                          "etc/modprobe.d/b.conf"}, set(members))
        self.assertEqual(members, self.tool.initramfs_members(two))
        changed = early + gzip.compress(self.archive(
            {**main, "init": b"#!/bin/sh -e\n"}, 100))
        self.assertNotEqual(members["init"],
                            self.tool.initramfs_members(changed)["init"])

    @testtools.skipUnless(shutil.which("zstd"), "needs zstd")
    def test_zstd_part(self) -> None:
        raw = self.archive({"init": b"i\n"}, 5)
        packed = subprocess.run(["zstd", "-q", "-c"], input=raw,
                                capture_output=True, check=True).stdout
        self.assertEqual(self.tool.initramfs_members(raw),
                         self.tool.initramfs_members(packed))

    def test_unknown_data_is_an_error(self) -> None:
        self.assertRaises(ValueError, self.tool.initramfs_members,
                          b"not an initramfs")
