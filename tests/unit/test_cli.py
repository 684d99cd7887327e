"""The command line: output formats and exit codes (no builds here)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import fixtures
import testtools

from tests.unit.trees import make_tree
from tripleo_elements import cli

TREE = {
    "my-os": {"provides": ["operating-system"]},
    "app": {"deps": ["lib"]},
    "lib": {"deps": ["app"]},
    "broken": {"deps": ["nowhere"]},
    "dup-a": {"install.d/50-same": "#!/bin/bash\n"},
    "dup-b": {"install.d/50-same": "#!/bin/bash\n"},
}


class CliTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.root = make_tree(self.tmp / "els", TREE)
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()

    def test_plan_json(self) -> None:
        code, out, err = self.run_cli(
            "plan", "--elements-path", str(self.root), "-e", "app",
            "-e", "my-os", "--no-defaults", "--format", "json",
            "-o", str(self.tmp / "x"))
        self.assertEqual(0, code, err)
        data = json.loads(out)
        self.assertEqual(["app", "lib", "my-os"], data["elements"])
        self.assertEqual(str(self.root / "app"), data["sources"]["app"])
        self.assertEqual(["app", "lib", "my-os"], data["command"][-3:])

    def test_dry_run_is_the_plan(self) -> None:
        args = ["--elements-path", str(self.root), "-e", "app", "-e",
                "my-os", "--no-defaults", "-o", str(self.tmp / "x")]
        self.assertEqual(self.run_cli("plan", *args)[1],
                         self.run_cli(*args, "--dry-run")[1])
        self.assertFalse((self.tmp / "x.qcow2").exists())

    def test_missing_element_one_line_exit_2(self) -> None:
        code, out, err = self.run_cli(
            "plan", "--elements-path", str(self.root), "-e", "broken",
            "-e", "my-os", "--no-defaults")
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.strip().splitlines()))
        self.assertIn("broken -> nowhere: element 'nowhere' not found", err)
        self.assertIn("hint:", err)

    def test_collision_exit_2_before_anything_runs(self) -> None:
        code, _, err = self.run_cli(
            "--elements-path", str(self.root), "-e", "dup-a", "-e",
            "dup-b", "-e", "my-os", "--no-defaults",
            "-o", str(self.tmp / "img"))
        self.assertEqual(2, code)
        self.assertIn("install.d/50-same is shipped by 2 elements", err)
        self.assertEqual([], [p for p in self.tmp.iterdir()
                              if p.name != "els"])

    def test_bad_elements_path(self) -> None:
        code, _, err = self.run_cli("list", "--elements-path",
                                    str(self.tmp / "nope"))
        self.assertEqual(2, code)
        self.assertIn("is not a directory", err)

    def test_graph_formats_show_cycles(self) -> None:
        args = ["--elements-path", str(self.root), "-e", "app", "-e",
                "my-os", "--no-defaults"]
        code, out, _ = self.run_cli("graph", *args)
        self.assertEqual(0, code)
        self.assertIn("cycle: app -> lib -> app", out)
        code, out, _ = self.run_cli("graph", *args, "--format", "dot")
        self.assertIn('"app" -> "lib";', out)
        self.assertIn('"lib" -> "app";', out)
        if shutil.which("dot"):
            code, out, _ = self.run_cli("graph", *args, "--format", "svg")
            self.assertEqual(0, code)
            self.assertIn("<svg", out)

    def test_why(self) -> None:
        code, out, _ = self.run_cli(
            "why", "lib", "--elements-path", str(self.root), "-e", "app",
            "-e", "my-os", "--no-defaults")
        self.assertEqual((0, "app -> lib\n"), (code, out))
        code, _, err = self.run_cli(
            "why", "dup-a", "--elements-path", str(self.root), "-e", "app",
            "-e", "my-os", "--no-defaults")
        self.assertEqual(2, code)
        self.assertIn("not part of the image", err)

    def test_list_shows_shadowed_copies(self) -> None:
        other = make_tree(self.tmp / "other", {"app": {}})
        code, out, _ = self.run_cli("list", "--elements-path",
                                    str(self.root), "--elements-path",
                                    str(other))
        self.assertEqual(0, code)
        self.assertIn(f"shadows {other / 'app'}", out)
        # diskimage-builder's own elements are on the path too.
        self.assertIn("debian-minimal", out)

    def test_default_plan_resolves_real_elements(self) -> None:
        code, out, err = self.run_cli("plan", "--format", "json",
                                      "-o", str(self.tmp / "img"))
        self.assertEqual(0, code, err)
        data = json.loads(out)
        for name in ("base", "debian-minimal", "vm", "block-device-mbr"):
            self.assertIn(name, data["elements"])
        self.assertEqual("bookworm", data["environment"]["DIB_RELEASE"])
        self.assertNotIn("ELEMENTS_PATH", os.environ)

    # ---- users coming from disk-image-create (issue 8)

    def plan_args(self) -> list[str]:
        return ["plan", "--elements-path", str(self.root), "-e", "app",
                "-e", "my-os", "--no-defaults", "-o", str(self.tmp / "x")]

    def test_unknown_arch_refused_with_the_known_ones(self) -> None:
        for command in ("plan", "graph"):
            args = self.plan_args()
            args[0] = command
            if command == "graph":
                args = args[:-2]
            code, _, err = self.run_cli(*args, "-a", "bogus")
            self.assertEqual(2, code, command)
            self.assertEqual(1, len(err.strip().splitlines()), err)
            self.assertIn("unknown architecture 'bogus'", err)
            self.assertIn("amd64, arm64", err)

    def test_empty_type_list_is_a_one_line_error(self) -> None:
        for types in (",", ""):
            code, _, err = self.run_cli(*self.plan_args(), "-t", types)
            self.assertEqual(2, code)
            self.assertEqual(1, len(err.strip().splitlines()), err)
            self.assertIn("names no image type", err)

    def test_dib_style_positional_elements_get_a_hint(self) -> None:
        code, _, err = self.run_cli("vm", "debian-minimal")
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertIn("build-image -e vm -e debian-minimal", err)

    def test_help_shows_build_options_and_defaults(self) -> None:
        for argv in (["--help"], ["-h"], ["build", "--help"]):
            code, out, _ = self.run_cli(*argv)
            self.assertEqual(0, code)
            flat = " ".join(out.split())
            for flag in ("--image-size", "--checksum", "--image-cache",
                         "--max-online-resize", "--qemu-img-options",
                         "--mkfs-options", "--root-label", "--offline",
                         "-x", "-u", "-p PKG"):
                self.assertIn(flag, flat, argv)
            self.assertIn("'base' is added", flat)
            self.assertIn("no-final-image", flat)

    def test_version(self) -> None:
        code, out, _ = self.run_cli("--version")
        self.assertEqual(0, code)
        self.assertIn("diskimage-builder 3.", out)
        self.assertIn("tripleo-image-elements", out)

    def test_plan_shows_passed_through_dib_variables(self) -> None:
        self.useFixture(fixtures.EnvironmentVariable("DIB_EXTRA", "on"))
        self.useFixture(fixtures.EnvironmentVariable("DIB_ROOT_PASSWORD",
                                                     "hunter2"))
        code, out, _ = self.run_cli(*self.plan_args())
        self.assertEqual(0, code)
        self.assertIn("DIB_EXTRA=on", out)
        self.assertIn("DIB_ROOT_PASSWORD='(set)'", out)
        self.assertNotIn("hunter2", out)
        code, out, _ = self.run_cli(*self.plan_args(), "--format", "json")
        self.assertEqual("(set)",
                         json.loads(out)["host_environment"]
                         ["DIB_ROOT_PASSWORD"])

    def test_output_with_the_type_extension(self) -> None:
        code, out, _ = self.run_cli(*self.plan_args()[:-1],
                                    str(self.tmp / "x.qcow2"),
                                    "--format", "json")
        self.assertEqual(0, code)
        self.assertEqual([str(self.tmp / "x.qcow2")],
                         json.loads(out)["outputs"])

    def test_read_only_output_refused_before_building(self) -> None:
        (self.tmp / "afile").write_text("")
        code, _, err = self.run_cli(
            "--elements-path", str(self.root), "-e", "app", "-e", "my-os",
            "--no-defaults", "-o", str(self.tmp / "afile" / "img"))
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertIn("not writable", err)


class BrokenPipeTest(testtools.TestCase):

    def test_reader_going_away_is_not_a_traceback(self) -> None:
        # ``build-image list | head -1``: the second write hits a closed
        # pipe.
        import subprocess
        import sys
        reader = subprocess.Popen(["head", "-n", "1"],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        writer = subprocess.run(
            [sys.executable, "-c",
             "import sys; from tripleo_elements import cli; "
             "sys.exit(cli.main(['list']))"],
            stdout=reader.stdin, stderr=subprocess.PIPE, text=True,
            timeout=120)
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.close()
        first = reader.stdout.read()
        reader.wait(timeout=30)
        self.assertEqual(1, len(first.splitlines()))
        self.assertEqual("", writer.stderr)
        self.assertEqual(0, writer.returncode)
