"""Checks of a mounted image (tripleo_elements.testing.image)."""

from __future__ import annotations

import gzip
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing import image


class InitramfsZstdTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        (self.root / "boot").mkdir()

    def test_zstd_passes(self) -> None:
        (self.root / "boot/initrd.img-6.1.0-1-amd64").write_bytes(
            image.ZSTD_MAGIC + b"\0" * 16)
        self.assertEqual([], image.initramfs_zstd(self.root))

    def test_gzip_and_missing_are_problems(self) -> None:
        self.assertEqual(["no /boot/initrd.img-*"],
                         image.initramfs_zstd(self.root))
        (self.root / "boot/initrd.img-6.1.0-1-amd64").write_bytes(
            gzip.compress(b"070701"))
        problems = image.initramfs_zstd(self.root)
        self.assertEqual(1, len(problems))
        self.assertIn("initrd.img-6.1.0-1-amd64 is not zstd-compressed "
                      "(starts with 1f8b", problems[0])
