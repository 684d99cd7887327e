"""tools/setup-host: the virtualenv is installed once for alternating
./build-image (build profile) and ./run-tests (build and test)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import fixtures
import testtools

TOP = Path(__file__).resolve().parents[2]
SCRIPT = TOP / "tools" / "setup-host"


class SetupHostTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        fake_bin = self.tmp / "bin"
        fake_bin.mkdir()
        # Every Debian package counts as installed: no apt-get here.
        self.write(fake_bin / "dpkg-query",
                   "#!/bin/sh\nprintf 'install ok installed'\n")
        self.venv = self.tmp / "venv"
        (self.venv / "bin").mkdir(parents=True)
        self.write(self.venv / "bin" / "python", "#!/bin/sh\nexit 0\n")
        self.pip_log = self.tmp / "pip.log"
        self.write(self.venv / "bin" / "pip",
                   f"#!/bin/sh\necho \"$*\" >> {self.pip_log}\n")
        self.env = dict(os.environ, TIE_VENV=str(self.venv),
                        PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")

    @staticmethod
    def write(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def setup_host(self, *args: str) -> None:
        proc = subprocess.run([str(SCRIPT), *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)

    def installs(self) -> list[str]:
        if not self.pip_log.exists():
            return []
        return self.pip_log.read_text().splitlines()

    def test_test_venv_serves_build_without_reinstalling(self) -> None:
        self.setup_host("--test")
        self.assertEqual(1, len(self.installs()))
        self.assertIn("test-requirements.txt", self.installs()[0])
        self.setup_host()
        self.setup_host("--test")
        self.setup_host()
        self.assertEqual(1, len(self.installs()), self.installs())

    def test_build_venv_is_extended_for_tests(self) -> None:
        self.setup_host()
        self.assertNotIn("test-requirements", self.installs()[0])
        self.setup_host("--test")
        self.assertEqual(2, len(self.installs()))
        self.assertIn("test-requirements.txt", self.installs()[1])
        self.setup_host()
        self.assertEqual(2, len(self.installs()))
