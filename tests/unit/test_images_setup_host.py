"""tools/setup-host -f FILE (what ./build-image runs first) installs the
host packages the images file's element sources need."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fixtures
import testtools

TOP = Path(__file__).resolve().parents[2]
SCRIPT = TOP / "tools" / "setup-host"


class SetupHostSourcesTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        fake_bin = self.tmp / "bin"
        fake_bin.mkdir()
        self.apt_log = self.tmp / "apt.log"
        self.write(fake_bin / "dpkg-query",
                   "#!/bin/sh\nprintf 'install ok installed'\n")
        self.write(fake_bin / "id", "#!/bin/sh\necho 0\n")
        self.write(fake_bin / "apt-get",
                   f"#!/bin/sh\necho \"$*\" >> {self.apt_log}\n")
        venv = self.tmp / "venv"
        (venv / "bin").mkdir(parents=True)
        self.write(venv / "bin" / "python", "#!/bin/sh\nexit 0\n")
        self.write(venv / "bin" / "pip", "#!/bin/sh\nexit 0\n")
        # The venv's build-image: records its argv, names two packages.
        self.argv_log = self.tmp / "argv.log"
        self.write(venv / "bin" / "build-image",
                   f"#!/bin/sh\necho \"$*\" > {self.argv_log}\n"
                   "printf 'pkg-a\\npkg-b\\n'\n")
        self.env = dict(os.environ, TIE_VENV=str(venv),
                        PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    @staticmethod
    def write(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def run_script(self, *args: str) -> None:
        proc = subprocess.run([str(SCRIPT), *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)

    def test_sources_packages_installed(self) -> None:
        images = self.tmp / "images.yaml"
        images.write_text("images: [{name: x}]\n")
        self.run_script("build", "-f", str(images), "--parallel", "2")
        self.assertEqual(f"host-packages -f {images}",
                         self.argv_log.read_text().strip())
        installs = [line for line in self.apt_log.read_text().splitlines()
                    if line.startswith("install")]
        self.assertEqual(1, len(installs))
        self.assertTrue(installs[0].endswith("pkg-a pkg-b"), installs)

    def test_without_file_nothing_asked(self) -> None:
        self.run_script("build", "-e", "x")
        self.run_script("-f")
        self.assertFalse(self.argv_log.exists())
        self.assertFalse(self.apt_log.exists())
