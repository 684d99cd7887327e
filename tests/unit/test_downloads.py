"""The shared download cache: private copies by hard link, merged back."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

import testtools

from tripleo_elements import downloads


class DownloadCacheTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.shared = self.tmp / "cache"
        apt = self.shared / "apt" / "debian"
        (apt / "partial").mkdir(parents=True)
        (apt / "a.deb").write_text("a\n")
        (apt / "lock").write_text("")
        (apt / "partial" / "half.deb").write_text("ha")
        (self.shared / "debootstrap.tar.gz").write_text("tar\n")

    def test_private_copy_links_files_and_leaves_out_locks(self) -> None:
        with downloads.private_cache(self.shared) as private:
            self.assertEqual(self.shared, private.parent)
            apt = private / "apt" / "debian"
            self.assertTrue(os.path.samefile(
                apt / "a.deb", self.shared / "apt" / "debian" / "a.deb"))
            self.assertFalse((apt / "lock").exists())
            self.assertFalse((apt / "partial").exists())
            self.assertTrue((private / "debootstrap.tar.gz").is_file())
            # A second private copy does not see the first.
            with downloads.private_cache(self.shared) as other:
                self.assertNotEqual(private, other)
                self.assertFalse((other / private.name).exists())
        self.assertEqual([], list(self.shared.glob(".tie-build-*")))

    def test_new_and_replaced_files_merge_back(self) -> None:
        with downloads.private_cache(self.shared) as private:
            (private / "apt" / "debian" / "b.deb").write_text("b\n")
            (private / "pip").mkdir()
            (private / "pip" / "wheel").write_text("w\n")
            tarball = private / "debootstrap.tar.gz"
            tarball.unlink()
            tarball.write_text("newer tar\n")
            (private / "apt" / "debian" / "a.deb").unlink()
            (private / "apt" / "debian" / "lock").write_text("")
        self.assertEqual("b\n",
                         (self.shared / "apt/debian/b.deb").read_text())
        self.assertEqual("w\n", (self.shared / "pip/wheel").read_text())
        self.assertEqual("newer tar\n",
                         (self.shared / "debootstrap.tar.gz").read_text())
        # What a build deleted stays shared.
        self.assertEqual("a\n",
                         (self.shared / "apt/debian/a.deb").read_text())

    def test_downloads_kept_when_the_build_fails(self) -> None:
        def failing() -> None:
            with downloads.private_cache(self.shared) as private:
                (private / "c.deb").write_text("c\n")
                raise RuntimeError("build broke")
        self.assertRaises(RuntimeError, failing)
        self.assertEqual("c\n", (self.shared / "c.deb").read_text())

    def test_stale_private_copy_removed_live_one_kept(self) -> None:
        stale = self.shared / ".tie-build-stale"
        live = self.shared / ".tie-build-live"
        for path in (stale, live):
            path.mkdir()
            (path / downloads.OWNER_FILE).write_text("")
        old = time.time() - 3600
        for path in (stale, live):
            os.utime(path, (old, old))
        with open(live / downloads.OWNER_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            removed = downloads.remove_stale(self.shared)
        self.assertEqual([stale], removed)
        self.assertTrue(live.is_dir())

    def test_tarball_rewritten_in_place_is_not_linked(self) -> None:
        # debootstrap's "tar -zcf" would truncate the shared file through
        # a hard link while another build reads it.
        tarball = self.shared / "debootstrap-debian-bookworm-amd64.tar.gz"
        tarball.write_text("shared\n")
        env = {"DIB_DEBOOTSTRAP_CACHE": "1"}
        with downloads.private_cache(self.shared, env) as private:
            mine = private / tarball.name
            self.assertFalse(mine.exists())
            mine.write_text("rebuilt\n")
            self.assertEqual("shared\n", tarball.read_text())
        self.assertEqual("rebuilt\n", tarball.read_text())
        env["DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE"] = "1"
        with downloads.private_cache(self.shared, env) as private:
            self.assertTrue(os.path.samefile(private / tarball.name,
                                             tarball))
