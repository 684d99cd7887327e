"""The menu library: schema, union, project states, selections, values."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import testtools

from tests.unit.trees import make_tree
from tripleo_elements import errors, options
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover
from tripleo_elements.menu import model, policy, render, rules

ROOT = Path(__file__).resolve().parents[2]

MENU_A = """features:
  time-sync:
    description: Keep the clock in sync
    units: [chrony.service]
    packages: [chrony]
variables:
  ntp_servers: {type: list, default: [], description: NTP servers,
                pattern: '[a-z0-9.-]+'}
  admin_password: {type: string, secret: true, description: A password}
"""
MENU_B = """features:
  web-server:
    description: Serve a page
    units: [nginx.service]
variables:
  web_port: {type: integer, default: 80, minimum: 1, maximum: 65535,
             description: Port}
  web_mode: {type: enum, values: [plain, fancy], default: plain,
             description: Mode}
  web_debug: {type: boolean, default: false, description: Debug}
  keys: {type: list, default: [], description: Keys,
         metadata_key: stackuser.authorized_keys}
"""
PROJECT = {
    "features": {"time-sync": "default", "web-server": "available"},
    "variables": {"ntp_servers": {"state": "default",
                                  "default": ["ntp.example.org"]},
                  "web_port": {"state": "available"},
                  "admin_password": {"state": "available"},
                  "keys": {"state": "available"}},
}


class MenuCase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = make_tree(self.tmp / "elements", {
            "a": {"menu.yaml": MENU_A}, "b": {"menu.yaml": MENU_B},
            "c": {}})
        self.menu = model.menu_of((n, self.root / n) for n in "abc")
        self.data = self.menu.to_json()

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path


class TestSchema(MenuCase):

    def problems(self, text: str) -> list[str]:
        from tripleo_elements.check import formats
        return model.problems_of(formats.yaml_load(text))

    def test_good_menus_load_with_their_element(self) -> None:
        self.assertEqual(["time-sync", "web-server"],
                         list(self.data["features"]))
        self.assertEqual("a", self.data["features"]["time-sync"]["element"])
        self.assertEqual("b", self.data["variables"]["web_port"]["element"])

    def test_each_problem_names_its_key(self) -> None:
        cases = {
            "features: {x: {description: d, colour: red}}":
                "features.x: Additional properties",
            "features: {Bad_Name: {description: d}}": "Bad_Name",
            "features: {x: {description: d, units: [nginx]}}":
                "features.x.units.0",
            "variables: {v: {type: float, description: d}}":
                "variables.v.type",
            "variables: {v: {type: enum, description: d}}":
                "variables.v: an enum needs values",
            "variables: {v: {type: integer, default: '8', description: d}}":
                "variables.v.default: '8' is not an integer",
            "variables: {v: {type: string, pattern: '(', description: d}}":
                "variables.v.pattern: does not compile",
            "variables: {v: {type: string, secret: true, default: pw, "
            "description: d}}": "a secret variable may not have a default",
            "variables: {v: {type: boolean, minimum: 1, description: d}}":
                "only for type integer",
            "other: 1": "(top level): Additional properties",
        }
        for text, expected in cases.items():
            found = self.problems(text)
            self.assertEqual(1, len(found), (text, found))
            self.assertIn(expected, found[0], text)

    def test_empty_file_is_an_empty_menu(self) -> None:
        self.assertEqual([], self.problems(""))

    def test_bad_file_fails_the_plan_naming_the_file(self) -> None:
        root = make_tree(self.tmp / "bad", {
            "x": {"menu.yaml": "features: {x: {}}\n"}})
        err = self.assertRaises(errors.MenuError, model.menu_of,
                                [("x", root / "x")])
        self.assertIn(str(root / "x" / "menu.yaml"), err.message)
        self.assertIn("description", err.message)
        self.assertTrue(err.hint)

    def test_shipped_schema_is_package_data(self) -> None:
        self.assertEqual(model.SCHEMA_PATH.parent,
                         ROOT / "tripleo_elements" / "menu")
        self.assertIn("recursive-include tripleo_elements *.json",
                      (ROOT / "MANIFEST.in").read_text())


class TestUnion(MenuCase):

    def test_name_defined_twice_names_both_elements(self) -> None:
        root = make_tree(self.tmp / "clash", {
            "one": {"menu.yaml": MENU_A}, "two": {"menu.yaml": MENU_A}})
        err = self.assertRaises(errors.MenuClash, model.menu_of,
                                [("one", root / "one"),
                                 ("two", root / "two")])
        self.assertIn("feature 'time-sync'", err.message)
        self.assertIn("'one'", err.message)
        self.assertIn("'two'", err.message)

    def test_clash_is_an_error_at_plan_time(self) -> None:
        root = make_tree(self.tmp / "tree", {
            "base": {}, "debian-minimal": {"provides": ["operating-system"]},
            "vm": {}, "one": {"menu.yaml": MENU_B, "deps": ["two"]},
            "two": {"menu.yaml": MENU_B.replace("web-server", "w2")}})
        opts = options.BuildOptions(output=self.tmp / "out" / "img",
                                    elements=("one",))
        err = self.assertRaises(errors.MenuClash, plan_mod.make_plan, opts,
                                discover([root]), {})
        self.assertIn("variable 'web_port'", err.message)

    def test_plan_carries_the_menu_and_its_file(self) -> None:
        root = make_tree(self.tmp / "tree", {
            "base": {}, "debian-minimal": {"provides": ["operating-system"]},
            "vm": {}, "one": {"menu.yaml": MENU_B}})
        opts = options.BuildOptions(output=self.tmp / "out" / "img",
                                    elements=("one",))
        plan = plan_mod.make_plan(opts, discover([root]), {})
        self.assertEqual(["web-server"], list(plan.menu["features"]))
        self.assertEqual(str(plan.workdir / "menu.json"),
                         plan.environment[plan_mod.MENU_VAR])
        self.assertEqual(self.tmp / "out" / "img.menu.json",
                         plan.menu_output)
        self.assertIn("menu: features web-server;", plan.to_text())

    def test_json_round_trip(self) -> None:
        again = model.from_json(json.loads(json.dumps(self.data)), "x")
        self.assertEqual(self.data, again.to_json())
        self.assertRaises(errors.MenuError, model.from_json, [], "x")


class TestValues(testtools.TestCase):

    SPECS: dict[str, dict[str, Any]] = {
        "s": {"type": "string", "pattern": "[a-z]+", "max_length": 5},
        "i": {"type": "integer", "minimum": 1, "maximum": 10},
        "b": {"type": "boolean"},
        "e": {"type": "enum", "values": ["x", "y"]},
        "l": {"type": "list", "pattern": "[a-z.]+"},
        "m": {"type": "string", "multiline": True},
        "p": {"type": "string", "secret": True, "pattern": "[a-z]+"},
    }

    def check(self, name: str, value: Any) -> str | None:
        return rules.value_problem(name, self.SPECS[name], value)

    def test_good_values(self) -> None:
        for name, value in (("s", "abc"), ("i", 1), ("i", 10), ("b", False),
                            ("e", "y"), ("l", ["a.b", "c"]), ("l", []),
                            ("m", "two\nlines"), ("p", "pw"), ("s", None)):
            self.assertIsNone(self.check(name, value), (name, value))

    def test_bad_values(self) -> None:
        cases = [("s", 1, "not a string"), ("s", "ABC", "pattern"),
                 ("s", "abcdef", "longer than 5"),
                 ("i", "3", "not an integer"), ("i", True, "not an integer"),
                 ("i", 0, "below the minimum 1"),
                 ("i", 11, "above the maximum 10"),
                 ("b", "true", "not true or false"),
                 ("e", "z", "not one of x, y"),
                 ("l", "a", "not a list"), ("l", [1], "not a list"),
                 ("l", ["ok", "BAD"], "'BAD' does not match")]
        for name, value, expected in cases:
            self.assertIn(expected, self.check(name, value) or "",
                          (name, value))

    def test_hostile_strings_refused(self) -> None:
        for value in ("a\nb", "a\rb", "a\0b", "\x1b[2J"):
            self.assertIn("control character", self.check("s", value) or "")
        self.assertIn("control character", self.check("m", "a\0b") or "")
        self.assertIn("control character",
                      self.check("l", ["ok", "x\nserver evil"]) or "")

    def test_secret_value_never_in_a_message(self) -> None:
        for value in ("Hunter2", "bad\npw", 42):
            problem = self.check("p", value) or ""
            self.assertNotEqual("", problem)
            self.assertNotIn(str(value), problem)
            self.assertIn("(secret value)", problem)


class TestStates(MenuCase):

    def effective(self, instance: dict[str, Any],
                  project: dict[str, Any] | None = None
                  ) -> tuple[dict[str, bool], dict[str, Any], list[str]]:
        return rules.effective(self.data, PROJECT if project is None
                               else project, instance)

    def test_defaults_apply(self) -> None:
        features, variables, problems = self.effective({})
        self.assertEqual([], problems)
        self.assertEqual({"time-sync": True, "web-server": False}, features)
        self.assertEqual(["ntp.example.org"], variables["ntp_servers"])
        self.assertEqual(80, variables["web_port"])
        self.assertIsNone(variables["admin_password"])

    def test_instance_turns_features_on_and_off_and_sets(self) -> None:
        features, variables, problems = self.effective(
            {"enable": ["web-server"], "disable": ["time-sync"],
             "set": {"web_port": 8080, "ntp_servers": ["a.example"]}})
        self.assertEqual([], problems)
        self.assertEqual({"time-sync": False, "web-server": True}, features)
        self.assertEqual(8080, variables["web_port"])
        self.assertEqual(["a.example"], variables["ntp_servers"])

    def test_unlisted_means_unavailable(self) -> None:
        project = {"features": {"time-sync": "available"}}
        features, _, problems = self.effective({}, project)
        self.assertEqual({"time-sync": False, "web-server": False}, features)
        _, _, problems = self.effective({"enable": ["web-server"]}, project)
        self.assertEqual(["instance.enable: web-server: the feature is "
                          "Unavailable to this project"], problems)
        _, _, problems = self.effective({"set": {"web_port": 1}}, project)
        self.assertIn("Unavailable to this project", problems[0])

    def test_every_problem_reported_and_nothing_applied(self) -> None:
        features, variables, problems = self.effective(
            {"enable": ["ghost", "web-server"], "disable": ["web-server"],
             "set": {"web_port": 0, "nope": 1, "keys": []}, "extra": 1})
        self.assertEqual(({}, {}), (features, variables))
        self.assertEqual(6, len(problems), problems)
        text = "\n".join(problems)
        for expected in ("'extra'", "ghost: no such feature",
                         "both enabled and disabled",
                         "web_port: 0 is below the minimum 1",
                         "nope: no such variable",
                         "read from the metadata key"):
            self.assertIn(expected, text)

    def test_project_problems_name_the_key(self) -> None:
        project = {"features": {"time-sync": "on", "ghost": "default"},
                   "variables": {"web_port": {"state": "default",
                                              "default": "80"},
                                 "ntp_servers": {"stat": "default"}}}
        problems = rules.project_problems(self.data, project)
        self.assertEqual([
            "project.features.ghost: no such feature in the menu",
            "project.features.time-sync: state 'on' is not one of "
            "unavailable, available, default",
            "project.variables.ntp_servers: unknown key 'stat' (known: "
            "state, default)",
            "project.variables.web_port.default: '80' is not an integer "
            "(type integer)"], problems)

    def test_garbage_shapes_do_not_crash(self) -> None:
        for project, instance in ((None, None), ([], {}), ({}, []),
                                  ({"features": []}, {}),
                                  ({}, {"enable": "web-server"}),
                                  ({}, {"set": ["x"]})):
            features, _, problems = rules.effective(self.data, project,
                                                    instance)
            if project is None and instance is None:
                self.assertEqual([], problems)
            else:
                self.assertNotEqual([], problems, (project, instance))


class TestPolicyFiles(MenuCase):

    def test_project_file_errors_are_one_line_each(self) -> None:
        path = self.write("p.yaml", "features: {time-sync: on}\n"
                          "variables: {web_port: {state: default, "
                          "default: x}}\n")
        err = self.assertRaises(errors.MenuRefused, policy.load_project,
                                self.menu, path)
        lines = err.render().splitlines()
        self.assertEqual(2, len(lines))
        self.assertTrue(all(str(path) in line for line in lines))
        self.assertIn("project.variables.web_port.default", lines[1])

    def test_project_menu_states(self) -> None:
        project = policy.check_project(self.menu, PROJECT, "p")
        data = policy.project_menu(self.menu, project)
        self.assertEqual("default", data["features"]["time-sync"]["state"])
        self.assertEqual("unavailable",
                         data["variables"]["web_mode"]["state"])
        self.assertEqual(["ntp.example.org"],
                         data["variables"]["ntp_servers"]["default"])

    def test_selection_file_and_flags(self) -> None:
        path = self.write("s.yaml", "enable: [web-server]\n"
                          "set: {web_port: 8080}\n")
        chosen = policy.selection(
            self.menu, file=path, disable=["time-sync"],
            assignments=["ntp_servers=a.example,b.example",
                         "web_debug=yes", "web_port=81"])
        self.assertEqual(["web-server"], chosen["enable"])
        self.assertEqual(["time-sync"], chosen["disable"])
        self.assertEqual({"ntp_servers": ["a.example", "b.example"],
                          "web_debug": True, "web_port": 81}, chosen["set"])
        for bad in ("web_port=eighty", "web_debug=maybe", "ghost=1",
                    "novalue"):
            self.assertRaises(errors.MenuRefused, policy.selection,
                              self.menu, assignments=[bad])

    def test_metadata_document(self) -> None:
        project = policy.check_project(self.menu, PROJECT, "p")
        key = "ssh-ed25519 AAAAC3Nza tie@example"
        doc = policy.metadata(self.menu, project, policy.selection(
            self.menu, enable=["web-server"],
            assignments=["web_port=8080", f"keys=[\"{key}\"]"]))
        self.assertEqual({"enable": ["web-server"], "disable": [],
                          "set": {"web_port": 8080}},
                         doc["menu"]["instance"])
        self.assertEqual(project, doc["menu"]["project"])
        self.assertEqual({"authorized_keys": [key]}, doc["stackuser"])
        self.assertEqual([], policy.metadata_problems(self.menu, doc,
                                                      project))
        err = self.assertRaises(
            errors.MenuRefused, policy.metadata, self.menu, project,
            {"enable": ["ghost"], "set": {"web_mode": "fancy"}})
        self.assertEqual(2, len(err.problems))

    def test_hand_written_document_checked(self) -> None:
        project = policy.check_project(self.menu, PROJECT, "p")
        widened = json.loads(json.dumps(project))
        widened["features"]["web-server"] = "default"
        doc = {"menu": {"project": widened, "instance": {}},
               "stackuser": {"authorized_keys": "not a list"}}
        problems = policy.metadata_problems(self.menu, doc, project)
        self.assertEqual([
            "menu.project.features.web-server: differs from the project "
            "file",
            "stackuser.authorized_keys: 'not a list' is not a list of "
            "strings (type list)"], problems)
        self.assertIn("no 'menu' key",
                      policy.metadata_problems(self.menu, {}, None)[0])


class TestRender(MenuCase):

    def test_formats(self) -> None:
        project = policy.check_project(self.menu, {
            **PROJECT, "variables": {"admin_password": {
                "state": "default", "default": "Sw0rdfish"}}}, "p")
        data = policy.project_menu(self.menu, project)
        as_json = json.loads(render.render(data, "json"))
        self.assertEqual({"features", "variables"}, set(as_json))
        self.assertEqual("default",
                         as_json["features"]["time-sync"]["state"])
        for fmt in render.FORMATS:
            text = render.render(data, fmt)
            self.assertNotIn("Sw0rdfish", text, fmt)
            self.assertIn("web-server", text)
        self.assertIn("| `web_port` | unavailable | integer | 80 |",
                      render.render(data, "markdown"))
        self.assertIn("  time-sync   [default]      Keep",
                      render.render(data, "text"))


class TestGuestCopy(testtools.TestCase):

    def test_the_image_runs_the_same_rules(self) -> None:
        copy = ROOT / "elements/menu-driver/tie-menu-lib/tie_menu_rules.py"
        self.assertEqual((ROOT / "tripleo_elements/menu/rules.py")
                         .read_bytes(), copy.read_bytes())


class TestBuildWritesTheMenu(MenuCase):
    """Against the fake disk-image-create of test_plan: the build hands
    the menu to the image (TIE_MENU_FILE) and publishes NAME.menu.json."""

    def test_menu_for_the_image_and_next_to_it(self) -> None:
        import os

        from tests.unit.test_plan import FAKE_DIB, SOURCES
        from tripleo_elements import build
        root = make_tree(self.tmp / "tree", {
            "base": {}, "debian-minimal": {"provides": ["operating-system"]},
            "vm": {}, "one": {"menu.yaml": MENU_B}})
        fake = self.tmp / "fake-dib"
        fake.write_text(FAKE_DIB.replace(
            'env > "$FAKE_DIB_RECORD.env"\n',
            'env > "$FAKE_DIB_RECORD.env"\n'
            'cp "$TIE_MENU_FILE" "$FAKE_DIB_RECORD.menu"\n'))
        fake.chmod(0o755)
        (self.tmp / "out").mkdir()
        record = self.tmp / "argv"
        env = {"DIB_IMAGE_CACHE": str(self.tmp / "cache")}
        plan = plan_mod.make_plan(
            options.BuildOptions(output=self.tmp / "out" / "img",
                                 elements=("one",)),
            discover([root]), env, apt_sources=SOURCES,
            dib_command=str(fake))
        result = build.execute(plan, dict(os.environ, FAKE_DIB_MODE="ok",
                                          FAKE_DIB_RECORD=str(record),
                                          **env), lambda p, s: None)
        seen = json.loads(record.with_suffix(".menu").read_text())
        self.assertEqual(["web-server"], list(seen["features"]))
        published = json.loads(
            (self.tmp / "out" / "img.menu.json").read_text())
        self.assertEqual(seen, published)
        manifest = json.loads(result.manifest.read_text())
        self.assertIn("img.menu.json", manifest["outputs"])
        self.assertEqual({"file": "img.menu.json",
                          "features": ["web-server"],
                          "variables": ["keys", "web_debug", "web_mode",
                                        "web_port"]}, manifest["menu"])
        self.assertNotIn("img.menu.json",
                         [a.path.name for a in result.artifacts])


class TestImageCacheKey(testtools.TestCase):

    def test_key_covers_the_menu_package(self) -> None:
        # The menu the build writes into the image is computed there.
        from tripleo_elements import buildcache
        package = ROOT / "tripleo_elements"
        names = [str(p.relative_to(package))
                 for p in buildcache.build_code_files(package)]
        for name in ("plan.py", "menu/model.py", "menu/rules.py",
                     "menu/menu.schema.json"):
            self.assertIn(name, names)
        self.assertNotIn("errors.py", names)
