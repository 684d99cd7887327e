"""build-image menu / instance-config / validate-metadata: formats, exit
codes, one line per problem."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import fixtures
import testtools

from tests.unit.test_menu import MENU_A, MENU_B
from tests.unit.trees import make_tree
from tripleo_elements import cli

PROJECT = """features:
  time-sync: default
  web-server: available
variables:
  ntp_servers: {state: default, default: [ntp.example.org]}
  web_port: {state: available}
  keys: {state: available}
"""


class _MenuCliBase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.root = make_tree(self.tmp / "els", {
            "my-os": {"provides": ["operating-system"]},
            "a": {"menu.yaml": MENU_A, "deps": ["b"]},
            "b": {"menu.yaml": MENU_B},
            "clash": {"menu.yaml": MENU_B, "deps": ["b"]}})
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))
        self.project = self.tmp / "project.yaml"
        self.project.write_text(PROJECT)

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as exc:
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()

    def request(self) -> list[str]:
        return ["--elements-path", str(self.root), "--no-defaults",
                "-e", "my-os", "-e", "a"]

    def menu_file(self) -> Path:
        code, out, err = self.run_cli("menu", *self.request(),
                                      "--format", "json")
        self.assertEqual(0, code, err)
        path = self.tmp / "img.menu.json"
        path.write_text(out)
        return path


class MenuCliTest(_MenuCliBase):

    def test_menu_json_shape(self) -> None:
        data = json.loads(self.menu_file().read_text())
        self.assertEqual({"features", "variables"}, set(data))
        self.assertEqual(["time-sync", "web-server"], list(data["features"]))
        self.assertNotIn("state", data["features"]["time-sync"])
        code, out, _ = self.run_cli("menu", *self.request(), "--format",
                                    "json", "--project", str(self.project))
        self.assertEqual(0, code)
        data = json.loads(out)
        self.assertEqual("available", data["features"]["web-server"]["state"])
        self.assertEqual(["ntp.example.org"],
                         data["variables"]["ntp_servers"]["default"])

    def test_from_a_built_image_menu(self) -> None:
        path = self.menu_file()
        for fmt, expected in (("text", "features (2):"),
                              ("markdown", "## Features"),
                              ("json", '"features"')):
            code, out, err = self.run_cli("menu", "--from", str(path),
                                          "--format", fmt)
            self.assertEqual(0, code, err)
            self.assertIn(expected, out)

    def test_clash_is_exit_2_naming_both(self) -> None:
        code, out, err = self.run_cli(
            "menu", "--elements-path", str(self.root), "--no-defaults",
            "-e", "my-os", "-e", "clash")
        self.assertEqual(2, code)
        self.assertEqual("", out)
        self.assertEqual(1, len(err.splitlines()), err)
        self.assertIn("error[menu-clash]", err)
        self.assertIn("'b'", err)
        self.assertIn("'clash'", err)

    def test_bad_project_one_line_per_key(self) -> None:
        bad = self.tmp / "bad.yaml"
        bad.write_text("features: {ghost: default, time-sync: on}\n"
                       "variables: {web_port: {state: default, "
                       "default: eighty}}\n")
        code, _, err = self.run_cli("menu", "--from", str(self.menu_file()),
                                    "--project", str(bad))
        self.assertEqual(2, code)
        lines = err.splitlines()
        self.assertEqual(3, len(lines), err)
        self.assertIn("project.features.ghost", lines[0])
        self.assertIn("project.features.time-sync", lines[1])
        self.assertIn("project.variables.web_port.default", lines[2])

    def test_instance_config_then_validate(self) -> None:
        menu = str(self.menu_file())
        selection = self.tmp / "sel.yaml"
        selection.write_text("enable: [web-server]\nset: {web_port: 8080}\n")
        code, out, err = self.run_cli(
            "instance-config", "--menu", menu, "--project",
            str(self.project), "--file", str(selection), "--set",
            "keys=ssh-ed25519 AAAA tie@example", "--disable", "time-sync")
        self.assertEqual(0, code, err)
        doc = json.loads(out)
        self.assertEqual({"enable": ["web-server"], "disable": ["time-sync"],
                          "set": {"web_port": 8080}},
                         doc["menu"]["instance"])
        self.assertEqual(["ssh-ed25519 AAAA tie@example"],
                         doc["stackuser"]["authorized_keys"])
        path = self.tmp / "doc.json"
        path.write_text(out)
        code, out, err = self.run_cli(
            "validate-metadata", "--menu", menu, "--project",
            str(self.project), str(path))
        self.assertEqual((0, f"{path}: ok\n"), (code, out), err)

    def test_instance_config_refusals(self) -> None:
        code, out, err = self.run_cli(
            "instance-config", "--menu", str(self.menu_file()),
            "--project", str(self.project), "--enable", "ghost",
            "--set", "web_port=70000", "--set", "web_mode=fancy")
        self.assertEqual((2, ""), (code, out))
        lines = err.splitlines()
        self.assertEqual(3, len(lines), err)
        self.assertTrue(all(line.startswith("error[menu-refused]: ")
                            for line in lines))
        self.assertIn("hint:", lines[-1])

    def test_validate_refuses_hand_written(self) -> None:
        path = self.tmp / "doc.json"
        path.write_text(json.dumps({"menu": {
            "project": {"features": {"web-server": "unavailable"}},
            "instance": {"enable": ["web-server"],
                         "set": {"web_port": "80\nlisten 9"}}}}))
        code, _, err = self.run_cli("validate-metadata", "--menu",
                                    str(self.menu_file()), str(path))
        self.assertEqual(2, code)
        lines = err.splitlines()
        self.assertEqual(2, len(lines), err)
        self.assertIn("web-server: the feature is Unavailable", lines[0])
        self.assertIn("web_port: the variable is Unavailable", lines[1])
        path.write_text("{not json: [")
        code, _, err = self.run_cli("validate-metadata", "--menu",
                                    str(self.menu_file()), str(path))
        self.assertEqual(2, code)
        self.assertIn("neither JSON nor YAML", err)


class MenuFromImagesFileTest(_MenuCliBase):
    """``menu -f images.yaml``: the menu of one image of the file."""

    def images_file(self) -> Path:
        path = self.tmp / "images.yaml"
        path.write_text(
            "sources:\n"
            f"  - {{name: local, path: {self.root}, subdir: .}}\n"
            "images:\n"
            "  - {name: one, elements: [my-os, a], no_defaults: true}\n"
            "  - {name: two, elements: [my-os, b], no_defaults: true}\n")
        return path

    def test_menu_of_one_image(self) -> None:
        code, out, err = self.run_cli("menu", "-f", str(self.images_file()),
                                      "--only", "one", "--format", "json")
        self.assertEqual(0, code, err)
        from_request = json.loads(self.menu_file().read_text())
        self.assertEqual(from_request, json.loads(out))

    def test_several_images_need_only(self) -> None:
        code, out, err = self.run_cli("menu", "-f", str(self.images_file()))
        self.assertEqual(2, code)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertIn("--only", err)

    def test_selection_file_is_not_an_images_file(self) -> None:
        # instance-config's --file is a selection, not -f images.yaml.
        selection = self.tmp / "sel.yaml"
        selection.write_text("enable: [web-server]\n")
        code, out, err = self.run_cli(
            "instance-config", "--menu", str(self.menu_file()),
            "--project", str(self.project), "--file", str(selection))
        self.assertEqual(0, code, err)
        self.assertIn("web-server", out)
