"""images.yaml: schema errors with file, line and key path; defaults;
the mapping of image fields onto BuildOptions; validate's exit codes."""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import textwrap
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import cli, errors
from tripleo_elements.images import definitions, project

GOOD = """\
sources:
  - name: mine
    path: ./els
    subdir: .
defaults:
  types: [tar]
  environment: {DIB_A: "1"}
images:
  - name: one
    elements: [a, b]
    os: debian-minimal
    release: bookworm
    arch: amd64
    size: 3
    packages: [vim, curl]
    environment: {DIB_B: two}
  - name: two
    types: [qcow2, tar]
    output: out/
    no_defaults: true
    publish:
      - dir:///srv/images
      - {provider: dir, path: /srv/other}
"""


class DefinitionsTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.file = self.tmp / "images.yaml"

    def error(self, text: str) -> str:
        exc = self.assertRaises(errors.DefinitionError, definitions.parse,
                                textwrap.dedent(text), self.file)
        self.assertEqual(2, exc.exit_code)
        rendered = exc.render()
        self.assertNotIn("\n", rendered)
        return exc.message

    def test_schema_ships_and_is_valid(self) -> None:
        import jsonschema
        self.assertEqual("tripleo_elements",
                         definitions.SCHEMA_FILE.parent.parent.name)
        jsonschema.Draft202012Validator.check_schema(definitions.schema())
        manifest = (definitions.SCHEMA_FILE.parents[2] / "MANIFEST.in")
        self.assertIn("recursive-include tripleo_elements *.json",
                      manifest.read_text())

    def test_good_file(self) -> None:
        defs = definitions.parse(GOOD, self.file)
        self.assertEqual(["one", "two"], [i.name for i in defs.images])
        one, two = defs.images
        self.assertEqual(("tar",), one.types)
        self.assertEqual({"DIB_A": "1", "DIB_B": "two"}, one.environment)
        self.assertEqual("3", one.size)
        self.assertEqual(self.tmp / "one", one.output)
        self.assertEqual(self.tmp / "out" / "two", two.output)
        self.assertEqual(self.tmp / "els", defs.sources[0].path)
        self.assertEqual(".", defs.sources[0].subdir)
        self.assertEqual(2, len(two.publish))
        self.assertEqual(["two"], [i.name for i in defs.select(["two"])])
        self.assertRaises(errors.UsageError, defs.select, ["nope"])

    def test_unknown_key_names_line_and_path(self) -> None:
        message = self.error("""\
            images:
              - name: one
                elements: [a]
                colour: blue
            """)
        self.assertEqual(f"{self.file}:4: images[0].colour: unknown key "
                         "'colour'", message)

    def test_wrong_type(self) -> None:
        message = self.error("""\
            images:
              - name: one
                elements: a
            """)
        self.assertTrue(message.startswith(
            f"{self.file}:3: images[0].elements: wrong type"), message)

    def test_wrong_type_in_defaults(self) -> None:
        message = self.error("""\
            defaults:
              no_defaults: "yes"
            images:
              - name: one
            """)
        self.assertIn(":2: defaults.no_defaults: wrong type", message)

    def test_duplicate_image_name(self) -> None:
        message = self.error("""\
            images:
              - name: one
              - name: two
              - name: one
            """)
        self.assertEqual(f"{self.file}:4: images[2].name: duplicate image "
                         "name 'one'", message)

    def test_duplicate_key(self) -> None:
        message = self.error("""\
            images:
              - name: one
                name: two
            """)
        self.assertIn(":3: images[0].name: duplicate key", message)

    def test_source_needs_git_or_path(self) -> None:
        message = self.error("""\
            sources:
              - name: s
                git: https://example.invalid/x
                path: here
            images:
              - name: one
            """)
        self.assertIn(":2: sources[0]:", message)
        self.assertIn("either 'git'", message)

    def test_yaml_syntax(self) -> None:
        message = self.error("images: [\n  - name: one\n")
        self.assertIn("not valid YAML", message)
        self.assertTrue(message.startswith(f"{self.file}:"))

    def test_missing_images(self) -> None:
        message = self.error("sources: []\n")
        self.assertIn(":1: (top level): 'images' is a required", message)

    def test_image_argv_reaches_build_options(self) -> None:
        defs = definitions.parse(GOOD, self.file)
        opts = project.image_options(defs.images[0], argparse.Namespace())
        self.assertEqual(("a", "b", "debian-minimal"), opts.elements)
        self.assertEqual(("tar",), opts.types)
        self.assertEqual("bookworm", opts.release)
        self.assertEqual("3", opts.image_size)
        self.assertEqual(("vim", "curl"), opts.packages)
        self.assertEqual(self.tmp / "one", opts.output)
        self.assertTrue(project.image_options(
            defs.images[1], argparse.Namespace()).no_defaults)

    def test_element_starting_with_dash_stays_an_element(self) -> None:
        image = definitions.ImageSpec(name="x", elements=("-x",))
        opts = project.image_options(image, argparse.Namespace())
        self.assertEqual(("-x",), opts.elements)

    def test_cli_options_apply_to_every_image(self) -> None:
        defs = definitions.parse(GOOD, self.file)
        args = argparse.Namespace(elements=[], offline=True, trace=2,
                                  types="qcow2")
        opts = project.image_options(defs.images[0], args)
        self.assertTrue(opts.offline)
        self.assertEqual(2, opts.trace)
        # -t qcow2 is the default: the image's own types stay.
        self.assertEqual(("tar",), opts.types)

    def test_e_and_f_do_not_mix(self) -> None:
        defs = definitions.parse(GOOD, self.file)
        self.assertRaises(errors.UsageError, project.image_options,
                          defs.images[0],
                          argparse.Namespace(elements=["x"]))


class ValidateCliTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.tmp / "cache")))

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_validate_ok_and_bad(self) -> None:
        (self.tmp / "els").mkdir()
        good = self.tmp / "images.yaml"
        good.write_text(GOOD)
        code, out, _ = self.run_cli("validate", "-f", str(good))
        self.assertEqual(0, code)
        self.assertEqual(f"{good}: valid (2 images, 1 sources)\n", out)
        bad = self.tmp / "bad.yaml"
        bad.write_text("images:\n  - name: x\n    size: [1]\n")
        code, out, err = self.run_cli("validate", "-f", str(bad))
        self.assertEqual(2, code)
        self.assertEqual("", out)
        self.assertIn(f"{bad}:3: images[0].size: wrong type", err)
        self.assertEqual(1, len(err.splitlines()))

    def test_bad_option_value_before_fetch(self) -> None:
        bad = self.tmp / "bad.yaml"
        bad.write_text("sources:\n  - name: s\n    git: https://x.invalid/r\n"
                       "images:\n  - name: x\n    types: [floppy]\n")
        code, _, err = self.run_cli("plan", "-f", str(bad))
        self.assertEqual(2, code)
        self.assertIn("image 'x': unknown image type 'floppy'", err)
        # Nothing was fetched.
        self.assertFalse((self.tmp / "cache").exists())

    def test_bad_publish_target_before_fetch(self) -> None:
        bad = self.tmp / "bad.yaml"
        bad.write_text("sources:\n  - name: s\n    git: https://x.invalid/r\n"
                       "images:\n  - name: x\n    publish:\n"
                       "      - {provider: dir}\n")
        code, _, err = self.run_cli("plan", "-f", str(bad))
        self.assertEqual(2, code, err)
        self.assertIn("path", err)
        self.assertFalse((self.tmp / "cache").exists())

    def test_file_flags_need_a_file(self) -> None:
        for argv in (["build", "--parallel", "2"], ["plan", "--locked"],
                     ["graph", "--only", "x"]):
            code, out, err = self.run_cli(*argv)
            self.assertEqual(2, code)
            self.assertIn("needs -f FILE", err)

    def test_unknown_only(self) -> None:
        good = self.tmp / "images.yaml"
        good.write_text("images:\n  - name: a\n")
        code, _, err = self.run_cli("plan", "-f", str(good), "--only", "b")
        self.assertEqual(2, code)
        self.assertIn("no image named 'b'", err)
