"""``build-image check`` scoping: findings limited to the author's paths
with ``-e``, build-time rules kept to build-time files, data files not
shellchecked."""

from __future__ import annotations

import contextlib
import io
import os

import fixtures

from tests.unit.checktrees import FakeShellcheck, element
from tests.unit.test_check import CheckTestCase
from tripleo_elements import check

BARE = "#!/bin/bash\nset -eu\nset -o pipefail\necho hi\n"
NFT = ("#!/bin/sh\ntable inet amphora {\n    chain input {\n"
       "        tcp dport { 22, 9443 } accept\n    }\n}\n")


class ScopingTest(CheckTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.mine = self.root.parent / "mine"
        self.mine.mkdir()

    def main(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.root.parent)))
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(io.StringIO()):
            code = check.main(list(argv))
        return code, out.getvalue()

    def _set(self) -> None:
        # Another author's element (no README, a script without set -e)
        # that ours depends on.
        element(self.root, "theirs", {"install.d/10-x": (
            "#!/bin/bash\necho\n", 0o755)}, readme=False)
        element(self.root, "my-os", {"element-provides":
                                     "operating-system\n"})
        element(self.mine, "ntp", {
            "element-deps": "my-os\ntheirs\n",
            "install.d/10-ntp": ("#!/bin/bash\necho\n", 0o755)})

    def test_findings_limited_to_the_paths_given_with_e(self) -> None:
        # Bug: -e reported every resolved element's findings.
        self._set()
        code, out = self.main(str(self.mine), "-e", "ntp",
                              "--elements-path", str(self.root),
                              "--no-shellcheck")
        self.assertEqual(1, code)
        self.assertIn(f"{self.mine}/ntp/install.d/10-ntp:0: TIE012", out)
        self.assertNotIn(str(self.root), out)
        _, everything = self.main(str(self.mine), "-e", "ntp",
                                  "--elements-path", str(self.root),
                                  "--no-shellcheck", "--all-findings")
        self.assertIn(f"{self.root}/theirs/install.d/10-x:0: TIE012",
                      everything)

    def test_only(self) -> None:
        self._set()
        _, out = self.main("-e", "ntp", "--elements-path", str(self.root),
                           "--elements-path", str(self.mine),
                           "--no-shellcheck", "--only",
                           str(self.mine / "ntp"))
        lines = out.splitlines()
        self.assertNotEqual([], lines)
        for line in lines:
            self.assertTrue(line.startswith(f"{self.mine}/ntp/"), line)

    def test_build_time_rules_skip_instance_files(self) -> None:
        # Bug: TIE015 fired on static/ and os-refresh-config scripts.
        element(self.root, "one", {
            "install.d/10-a": (BARE, 0o755),
            "static/usr/local/bin/tool": (BARE + "set -x\n", 0o755),
            "os-refresh-config/configure.d/20-a": (BARE, 0o755),
            "os-apply-config/usr/local/bin/gen": (BARE, 0o755),
        })
        found = [(os.path.relpath(f.path, self.root), f.code)
                 for f in self.run_check(select=["TIE01"])]
        self.assertEqual([("one/install.d/10-a", "TIE015")], found)

    def test_nft_files_and_templates_not_shellchecked(self) -> None:
        # Bug: shellcheck's SC1083 on an nft rule file's braces.
        fake = self.useFixture(FakeShellcheck())
        element(self.root, "one", {
            "install.d/10-a": (BARE, 0o755),
            "static/etc/nftables/amphora.nft": (NFT, 0o755),
            "os-apply-config/usr/local/bin/gen": (
                BARE + "echo {{a.b}}\n", 0o755),
        })
        self.run_check(shellcheck=True)
        checked = sorted(p.name for _, paths in fake.calls for p in paths)
        self.assertEqual(["10-a"], checked)
