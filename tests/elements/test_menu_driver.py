"""menu-driver: the guest side of the menu, run in the element sandbox.

The real os-refresh-config script renders the real feature templates with
the real os-apply-config; ``systemctl`` is a stub whose ``is-enabled`` /
``is-active`` answers stand for the units' state.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import fixtures
import testtools

from tests.unit.trees import make_tree
from tripleo_elements.menu import model, policy
from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import (ScriptResult, Stub, When,
                                              run_script)
from tripleo_elements.testing.templates import os_apply_config_command

DRIVER = "os-refresh-config/configure.d/70-tie-menu"
PROJECT = {
    "features": {"time-sync": "default", "web-server": "available"},
    "variables": {"ntp_servers": {"state": "default",
                                  "default": ["ntp1.example.org"]},
                  "web_port": {"state": "available"},
                  "web_content": {"state": "available"}},
}
SITE = "etc/nginx/sites-enabled/tie-menu"
PAGE = "var/www/tie-menu/index.html"
SOURCES = "etc/chrony/sources.d/tie-menu.sources"
SECRET_MENU = """features:
  vault:
    description: Keeps a secret
    units: [vault.service]
variables:
  vault_token: {type: string, secret: true, description: A token}
"""


def systemctl(enabled: bool, active: bool) -> Stub:
    """``systemctl`` whose units all are (or are not) enabled/active."""
    return Stub("systemctl", when=[
        When(prefix=["is-enabled"], exit_code=0 if enabled else 1),
        When(prefix=["is-active"], exit_code=0 if active else 1)])


def _interpreter_binds() -> list[Path]:
    paths = {Path(sys.prefix), Path(sys.base_prefix),
             Path(os.path.realpath(sys.executable)).parent.parent}
    return sorted(p for p in paths
                  if not str(p).startswith(("/usr", "/bin", "/lib")))


class DriverCase(testtools.TestCase):

    elements = ("menu-driver", "time-sync", "web-server")

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.driver = element_path("menu-driver")
        self.sources = {n: element_path(n) for n in self.elements}
        self.install_menu(self.sources)
        (self.root / "var/lib/cloud/data").mkdir(parents=True)
        (self.root / "var/log").mkdir(parents=True)
        (self.root / "var/lib/cloud/data/instance-id").write_text("i-42\n")

    def install_menu(self, sources: dict[str, Path]) -> None:
        """What the build does: the menu and the merged template trees."""
        self.menu = model.menu_of(sources.items())
        share = self.share = self.root / "usr/share/tie-menu"
        share.mkdir(parents=True, exist_ok=True)
        (share / "menu.json").write_text(json.dumps(self.menu.to_json()))
        templates = self.templates = \
            self.root / "usr/libexec/tie-menu/templates"
        for source in sources.values():
            if (source / "tie-menu-templates").is_dir():
                shutil.copytree(source / "tie-menu-templates", templates,
                                dirs_exist_ok=True)

    def run_driver(self, selection: dict[str, Any] | None,
                   stub: Stub | None = None,
                   project: dict[str, Any] | None = None,
                   env: dict[str, str] | None = None) -> ScriptResult:
        doc: dict[str, Any] = {"other": "key"}
        if selection is not None:
            doc["menu"] = {"project": PROJECT if project is None
                           else project, "instance": selection}
        metadata = self.root / "run/metadata.json"
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(json.dumps(doc))
        run_env = {"OS_CONFIG_FILES": str(metadata),
                   "TIE_MENU_LIB": str(self.driver / "tie-menu-lib"),
                   "TIE_MENU_OAC": os_apply_config_command(),
                   # The sandbox's /usr is the host's: point at the root.
                   "TIE_MENU_FILE": str(self.share / "menu.json"),
                   "TIE_MENU_TEMPLATES": str(self.templates)}
        run_env.update(env or {})
        return run_script(
            self.driver / DRIVER, self.root,
            stubs=[stub or systemctl(False, False)], env=run_env,
            binds=[self.driver, *_interpreter_binds()], strict=False)

    def status(self) -> dict[str, Any]:
        return dict(json.loads(
            (self.root / "var/lib/tie-menu/status.json").read_text()))

    def log(self) -> str:
        return (self.root / "var/log/tie-menu.log").read_text()

    def changes(self, result: ScriptResult) -> list[tuple[str, ...]]:
        return [c[1:] for c in result.calls_of("systemctl")
                if not c[1].startswith("is-")]


class TestApply(DriverCase):

    def test_feature_on_with_variables(self) -> None:
        result = self.run_driver({"enable": ["web-server"],
                                  "set": {"web_port": 8081,
                                          "web_content": "hello\n"}})
        result.check()
        site = (self.root / SITE).read_text()
        self.assertIn("listen 8081 default_server;", site)
        self.assertEqual("hello\n", (self.root / PAGE).read_text())
        self.assertIn("server ntp1.example.org iburst",
                      (self.root / SOURCES).read_text())
        self.assertEqual([("enable", "--", "chrony.service"),
                          ("start", "--", "chrony.service"),
                          ("enable", "--", "nginx.service"),
                          ("start", "--", "nginx.service")],
                         self.changes(result))
        status = self.status()
        self.assertEqual("applied", status["status"])
        self.assertEqual("i-42", status["instance_id"])
        self.assertEqual({"time-sync": True, "web-server": True},
                         status["features"])
        variables = self.root / "var/lib/tie-menu/variables.json"
        self.assertEqual(0o600, stat.S_IMODE(variables.stat().st_mode))
        self.assertEqual(0o700, stat.S_IMODE(
            (self.root / "var/lib/tie-menu").stat().st_mode))
        self.assertFalse((self.root / "var/lib/tie-menu/staging").exists())

    def test_second_run_changes_nothing(self) -> None:
        selection = {"enable": ["web-server"], "set": {"web_port": 8081}}
        self.run_driver(selection).check()
        files = [self.root / p for p in (SITE, PAGE, SOURCES)] + [
            self.root / "var/lib/tie-menu/variables.json"]
        before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
        again = self.run_driver(selection, systemctl(True, True)).check()
        self.assertEqual([], self.changes(again))
        self.assertNotEqual([], again.calls_of("systemctl"))
        self.assertEqual(before, {p: (p.stat().st_mtime_ns, p.read_bytes())
                                  for p in files})

    def test_change_restarts_and_turning_off_stops(self) -> None:
        self.run_driver({"enable": ["web-server"]}).check()
        result = self.run_driver(
            {"enable": ["web-server"], "disable": ["time-sync"],
             "set": {"web_port": 8082}}, systemctl(True, True)).check()
        self.assertEqual([("stop", "--", "chrony.service"),
                          ("disable", "--", "chrony.service"),
                          ("restart", "--", "nginx.service")],
                         self.changes(result))
        self.assertIn("listen 8082", (self.root / SITE).read_text())

    def test_no_menu_key_turns_everything_off(self) -> None:
        result = self.run_driver(None, systemctl(True, True)).check()
        self.assertEqual([("stop", "--", "chrony.service"),
                          ("disable", "--", "chrony.service"),
                          ("stop", "--", "nginx.service"),
                          ("disable", "--", "nginx.service")],
                         self.changes(result))
        self.assertFalse((self.root / SITE).exists())


class TestRefused(DriverCase):

    def test_unavailable_feature_changes_nothing(self) -> None:
        self.run_driver({"enable": ["web-server"],
                         "set": {"web_port": 8081}}).check()
        before = (self.root / SITE).read_bytes()
        project = json.loads(json.dumps(PROJECT))
        project["features"]["web-server"] = "unavailable"
        result = self.run_driver(
            {"enable": ["web-server"], "disable": ["time-sync"],
             "set": {"web_port": 9000}}, systemctl(True, True), project)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual([], result.calls_of("systemctl"))
        self.assertEqual(before, (self.root / SITE).read_bytes())
        status = self.status()
        self.assertEqual("refused", status["status"])
        self.assertEqual(["instance.enable: web-server: the feature is "
                          "Unavailable to this project"], status["problems"])
        self.assertIn("refused: instance.enable: web-server", self.log())
        self.assertIn("nothing was changed", result.stderr)

    def test_hostile_values_reach_no_shell(self) -> None:
        canary = self.root / "canary"
        hostile = [f"$(touch {canary})", f"`touch {canary}`",
                   f"x; touch {canary}", f"x\nconfdir /tmp\ntouch {canary}"]
        result = self.run_driver({"set": {"ntp_servers": hostile}})
        self.assertEqual("refused", self.status()["status"])
        self.assertEqual([], result.calls_of("systemctl"))
        # Allowed content may hold anything; it only lands in the page.
        page = "<b>$(touch {0})</b>\n`touch {0}`; rm -rf /\n".format(canary)
        self.run_driver({"enable": ["web-server"],
                         "set": {"web_content": page}}).check()
        self.assertEqual(page, (self.root / PAGE).read_text())
        self.assertFalse(canary.exists())

    def test_garbage_metadata_is_refused(self) -> None:
        for selection in ("enable everything", ["web-server"],
                          {"enable": "web-server"}, {"set": {"web_port":
                                                             "80"}}):
            result = self.run_driver(selection)  # type: ignore[arg-type]
            self.assertEqual(0, result.returncode, result.stderr)
            self.assertEqual("refused", self.status()["status"], selection)
            self.assertEqual([], result.calls_of("systemctl"))


class TestSecrets(DriverCase):

    def test_secret_rendered_0600_and_never_logged(self) -> None:
        tree = make_tree(self.root.parent / "secret-elements", {"vault": {
            "menu.yaml": SECRET_MENU,
            "tie-menu-templates/vault/etc/vault/token": "{{vault_token}}\n",
            "tie-menu-templates/vault/etc/vault/token.oac": "mode: 0600\n"}})
        sources = dict(self.sources, vault=tree / "vault")
        self.install_menu(sources)
        project = {"features": {"vault": "available"},
                   "variables": {"vault_token": {"state": "available"}}}
        token = "s3cr3t-T0ken-value"
        result = self.run_driver({"enable": ["vault"],
                                  "set": {"vault_token": token}},
                                 project=project).check()
        path = self.root / "etc/vault/token"
        self.assertEqual(token + "\n", path.read_text())
        self.assertEqual(0o600, stat.S_IMODE(path.stat().st_mode))
        for text in (result.stdout, result.stderr, self.log(),
                     json.dumps(self.status())):
            self.assertNotIn(token, text)
        bad = self.run_driver({"enable": ["vault"],
                               "set": {"vault_token": token + "\n"}},
                              project=project)
        self.assertEqual("refused", self.status()["status"])
        self.assertIn("(secret value)", self.status()["problems"][0])
        for text in (bad.stdout, bad.stderr, self.log(),
                     json.dumps(self.status())):
            self.assertNotIn(token, text)


class TestBackend(DriverCase):

    def test_another_backend_plugs_in(self) -> None:
        backends = self.root / "opt/tie-menu/backends"
        backends.mkdir(parents=True)
        (backends / "recorder.py").write_text(
            "import json\n"
            "def configure(instance_id, features_and_variables):\n"
            "    with open('/recorded.json', 'w') as f:\n"
            "        json.dump([instance_id, features_and_variables], f)\n"
            "    return ['recorded']\n")
        result = self.run_driver(
            {"enable": ["web-server"]},
            env={"TIE_MENU_BACKEND": "recorder",
                 "TIE_MENU_BACKENDS": str(backends)}).check()
        self.assertEqual([], result.calls_of("systemctl"))
        ident, data = json.loads((self.root / "recorded.json").read_text())
        self.assertEqual("i-42", ident)
        self.assertEqual({"enabled": True, "changed": True,
                          "units": ["nginx.service"]},
                         data["features"]["web-server"])
        self.assertEqual(80, data["variables"]["web_port"])
        self.assertIn("systemctl recorded", result.stderr)


class TestMetadataFromInstanceConfig(DriverCase):

    def test_instance_config_output_is_accepted(self) -> None:
        project = policy.check_project(self.menu, PROJECT, "p")
        doc = policy.metadata(self.menu, project, policy.selection(
            self.menu, enable=["web-server"], assignments=["web_port=81"]))
        result = self.run_driver(doc["menu"]["instance"],
                                 project=doc["menu"]["project"]).check()
        self.assertEqual("applied", self.status()["status"], result.stderr)
        self.assertIn("listen 81 ", (self.root / SITE).read_text())


class TestBuildTime(testtools.TestCase):
    """The build-time scripts: the menu staged and installed, the
    features' templates installed, their units disabled."""

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.driver = element_path("menu-driver")
        self.menu = model.menu_of(
            (n, element_path(n)) for n in ("time-sync", "web-server"))
        self.menu_file = self.root / "menu.json"
        self.menu_file.write_text(json.dumps(self.menu.to_json()))

    def test_extra_data_stages_the_menu(self) -> None:
        hooks = self.root / "hooks"
        run_script(self.driver / "extra-data.d/50-tie-menu-file", self.root,
                   env={"TIE_MENU_FILE": str(self.menu_file),
                        "TMP_HOOKS_PATH": str(hooks)}).check()
        self.assertEqual(self.menu.to_json(), json.loads(
            (hooks / "tie-menu-files/menu.json").read_text()))
        result = run_script(self.driver / "extra-data.d/50-tie-menu-file",
                            self.root, env={"TMP_HOOKS_PATH": str(hooks)})
        result.check()
        self.assertIn("empty menu", result.stdout)
        self.assertEqual({"features": {}, "variables": {}}, json.loads(
            (hooks / "tie-menu-files/menu.json").read_text()))
        missing = run_script(self.driver / "extra-data.d/50-tie-menu-file",
                             self.root, env={
                                 "TIE_MENU_FILE": str(self.root / "nope"),
                                 "TMP_HOOKS_PATH": str(hooks)})
        self.assertEqual(1, missing.returncode)

    def test_install_puts_everything_in_place(self) -> None:
        hooks = self.root / "hooks"
        (hooks / "install.d").mkdir(parents=True)
        shutil.copy2(self.driver / "install.d/70-tie-menu-driver",
                     hooks / "install.d")
        shutil.copytree(self.driver / "tie-menu-lib", hooks / "tie-menu-lib")
        (hooks / "tie-menu-files").mkdir()
        shutil.copy2(self.menu_file, hooks / "tie-menu-files/menu.json")
        for name in ("time-sync", "web-server"):
            shutil.copytree(element_path(name) / "tie-menu-templates",
                            hooks / "tie-menu-templates", dirs_exist_ok=True)
        image = self.root / "image"
        env = {"TIE_MENU_LIB": str(image / "lib"),
               "TIE_MENU_SHARE": str(image / "share"),
               "TIE_MENU_TEMPLATES": str(image / "templates"),
               "TIE_MENU_STATE": str(image / "state")}
        run_script(hooks / "install.d/70-tie-menu-driver", self.root,
                   env=env, allow=["cp", "chmod", "chown", "id"]).check()
        self.assertEqual(self.menu_file.read_bytes(),
                         (image / "share/menu.json").read_bytes())
        self.assertEqual((self.driver / "tie-menu-lib/tie_menu_rules.py")
                         .read_bytes(),
                         (image / "lib/tie_menu_rules.py").read_bytes())
        self.assertTrue((image / "templates/web-server/etc/nginx/"
                         "sites-enabled/tie-menu").is_file())
        self.assertTrue((image / "templates/time-sync/etc/chrony/"
                         "sources.d/tie-menu.sources").is_file())
        self.assertEqual(0o700, stat.S_IMODE(
            (image / "state").stat().st_mode))

    def test_feature_units_disabled_in_the_image(self) -> None:
        share = self.root / "share"
        share.mkdir()
        shutil.copy2(self.menu_file, share / "menu.json")
        result = run_script(
            self.driver / "post-install.d/60-tie-menu-units", self.root,
            stubs=["systemctl"], env={"TIE_MENU_SHARE": str(share)},
            allow=["python3"]).check()
        self.assertEqual([("systemctl", "disable", "--", "chrony.service"),
                          ("systemctl", "disable", "--", "nginx.service")],
                         result.calls_of("systemctl"))
