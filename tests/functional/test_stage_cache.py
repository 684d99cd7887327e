"""The stage cache in a real build: a rebuild after one changed
os-refresh-config script starts from the captured OS tree and yields
the same content as the cold build.

Two small builds (``--no-defaults -e debian-minimal -e tie-test-orc -t
tar``, a fresh stage cache in the test's work directory): the first
captures the stage, the second, with the element's one
os-refresh-config script changed (a copy first on ``--elements-path``),
must hit it.  Then both root tarballs are compared: same packages at the
same versions (DIB's dpkg manifests) and every path with the same type,
mode, owner and sha256 except what differs in every build
(``stagecompare.EVERY_BUILD``) and the changed script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from testtools import content

from tests.functional import base, stagecompare

ELEMENTS = Path(__file__).resolve().parent / "elements"
ARGS = ["--no-defaults", "-e", "debian-minimal", "-e", "tie-test-orc",
        "-t", "tar"]
SCRIPT = "os-refresh-config/configure.d/50-tie-test-orc"
IMAGE = "stage-test"
INSTALLED = "usr/libexec/os-refresh-config/configure.d/50-tie-test-orc"


class TestStageCache(base.FunctionalTestCase):

    def build(self, name: str, elements: Path) -> tuple[str, float]:
        # Both builds name their image the same (in their own directory):
        # DIB names files in the image after it (dib-manifest-dpkg-NAME).
        (self.workdir / name).mkdir()
        log = self.workdir / f"{name}.build.log"
        argv = [str(base.console_script("build-image")), "-o",
                str(self.workdir / name / IMAGE),
                "--elements-path", str(elements), *ARGS]
        # The stage cache is on by default: the variable left unset.
        env = {k: v for k, v in os.environ.items() if k != "TIE_STAGE_CACHE"}
        env["XDG_CACHE_HOME"] = str(self.workdir / "xdg")
        self.attach_log(f"{name}.build.log", log, 60)
        started = time.monotonic()
        with open(log, "wb") as handle:
            code = subprocess.call(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   timeout=base.BUILD_TIMEOUT)
        self.assertEqual(0, code, f"{' '.join(argv)} failed")
        return log.read_text(errors="replace"), time.monotonic() - started

    def test_rebuild_from_stage_equals_cold_build(self) -> None:
        cold_log, cold_s = self.build("cold", ELEMENTS)
        self.assertIn("stored in the stage cache", cold_log)
        overlay = self.workdir / "overlay"
        shutil.copytree(ELEMENTS / "tie-test-orc", overlay / "tie-test-orc")
        with open(overlay / "tie-test-orc" / SCRIPT, "a") as handle:
            handle.write("echo changed\n")
        warm_log, warm_s = self.build("warm", overlay)
        self.assertIn("stage cache hit", warm_log)
        self.addDetail("seconds", content.text_content(
            f"cold {cold_s:.0f} s, from the stage {warm_s:.0f} s"))
        manifests = f"{IMAGE}.d/dib-manifests"
        self.assertEqual(
            stagecompare.packages(self.workdir / "cold" / manifests),
            stagecompare.packages(self.workdir / "warm" / manifests))
        cold = stagecompare.tar_listing(self.workdir / "cold" / f"{IMAGE}.tar")
        warm = stagecompare.tar_listing(self.workdir / "warm" / f"{IMAGE}.tar")
        self.assertNotEqual(cold[INSTALLED], warm[INSTALLED])
        self.assertEqual(
            [], stagecompare.differences(cold, warm, extra=[INSTALLED]))
