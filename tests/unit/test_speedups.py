"""The faster qemu-img of a build: run for real against a fake qemu-img
that records its argv."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import testtools

from tripleo_elements import speedups

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

    def run_wrapped(self, *argv: str) -> list[str]:
        env = speedups.prepare(self.work, self.env)
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
