"""Host facts: apt sources, mirrors, bindep, missing tools; cleanup scans."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import cleanup, errors, host


class AptSourcesTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        (self.tmp / "d").mkdir()

    def test_deb822_and_one_line_formats(self) -> None:
        (self.tmp / "d" / "debian.sources").write_text(
            "Types: deb\n# comment\nURIs: http://m.example/debian/\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n\n"
            "Types: deb-src\nURIs: http://src.example/debian\n"
            "Suites: bookworm-security\n\n"
            "Types: deb\nURIs: http://m.example/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n")
        (self.tmp / "list").write_text(
            "deb [arch=amd64 signed-by=/k.gpg] http://other.example/x "
            "nodistro main\n# deb http://commented.example/ bookworm\n")
        sources = host.apt_sources(self.tmp / "d", self.tmp / "list")
        self.assertEqual(["http://other.example/x",
                          "http://m.example/debian",
                          "http://m.example/debian-security"],
                         [s.uri for s in sources])
        mirrors = host.debian_mirrors("bookworm", sources)
        self.assertEqual(host.DebianMirrors(
            "http://m.example/debian", "http://m.example/debian-security"),
            mirrors)

    def test_security_derived_from_archive(self) -> None:
        mirrors = host.debian_mirrors(
            "bookworm", [host.AptSource("http://m/debian", ("bookworm",))])
        self.assertEqual("http://m/debian-security", mirrors.security)

    def test_no_matching_release(self) -> None:
        mirrors = host.debian_mirrors(
            "trixie", [host.AptSource("http://m/debian", ("bookworm",))])
        self.assertEqual(host.DebianMirrors(None, None), mirrors)


class BindepTest(testtools.TestCase):

    def test_every_build_command_has_a_package(self) -> None:
        packages = host.read_bindep(host.bindep_file())
        provided = {c for p in packages for c in p.commands}
        self.assertTrue(packages)
        for command in host.BUILD_COMMANDS:
            self.assertIn(command, provided)

    def test_missing_tool_names_the_package(self) -> None:
        err = self.assertRaises(
            errors.HostToolsMissing, host.check_host_tools,
            ["debootstrap", "qemu-img", "sh"],
            which=lambda c: "/bin/sh" if c == "sh" else None)
        self.assertIn("debootstrap (debootstrap)", err.message)
        self.assertIn("qemu-img (qemu-utils)", err.message)
        self.assertEqual("apt-get install debootstrap qemu-utils", err.hint)
        self.assertEqual(2, err.exit_code)

    def test_installed_copy_found_outside_a_source_tree(self) -> None:
        # A non-editable install: the package sits in site-packages, with
        # no bindep.txt next to it; setup.cfg installs one under share/.
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        package = tmp / "lib" / "site-packages" / "tripleo_elements"
        package.mkdir(parents=True)
        installed = tmp / host.SHARE_DIR / "bindep.txt"
        installed.parent.mkdir(parents=True)
        shutil.copy(host.bindep_file(), installed)
        found = host.bindep_file(package_dir=package, prefix=tmp)
        self.assertEqual(installed, found)
        err = self.assertRaises(
            errors.HostToolsMissing, host.check_host_tools, ["debootstrap"],
            bindep=found, which=lambda c: None)
        self.assertIn("debootstrap (debootstrap)", err.message)
        setup_cfg = Path(__file__).resolve().parents[2] / "setup.cfg"
        self.assertIn("= bindep.txt", setup_cfg.read_text())


class CleanupScanTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_mounts_below_deepest_first_with_escapes(self) -> None:
        info = self.tmp / "mountinfo"
        info.write_text(
            "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
            "30 22 0:5 / /w/.x.tie-build/tmp/dib_build.1 rw - tmpfs t rw\n"
            "31 30 0:6 / /w/.x.tie-build/tmp/dib_build.1/mnt/proc rw - p p\n"
            "32 22 0:7 / /w/.x.tie-build-other rw - tmpfs t rw\n"
            "33 22 0:8 / /w/.x.tie-build/a\\040b rw - tmpfs t rw\n")
        self.assertEqual(
            ["/w/.x.tie-build/tmp/dib_build.1/mnt/proc",
             "/w/.x.tie-build/tmp/dib_build.1", "/w/.x.tie-build/a b"],
            cleanup.mounts_below(Path("/w/.x.tie-build"), info))

    def test_loops_below(self) -> None:
        for name, backing in (("loop0", "/w/.x.tie-build/tmp/image.raw"),
                              ("loop1", "/elsewhere/disk.raw"),
                              ("loop2", "/w/.x.tie-build/i.raw (deleted)")):
            d = self.tmp / name / "loop"
            d.mkdir(parents=True)
            (d / "backing_file").write_text(backing + "\n")
        (self.tmp / "loop3").mkdir()
        self.assertEqual(["/dev/loop0", "/dev/loop2"],
                         cleanup.loops_below(Path("/w/.x.tie-build"),
                                             self.tmp))
