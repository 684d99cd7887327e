"""os-collect-config: its configuration template, unit and install."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.scripts import run_script
from tripleo_elements.testing.templates import RenderError
from tripleo_elements.testing.templates import render_templates

CONF = "/etc/os-collect-config.conf"


def options(text: str) -> dict[str, list[str]]:
    """``section.option -> [values]`` of an oslo.config file."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition(" = ")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


class TemplateTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("os-collect-config")
        self.defaults = Path(self.useFixture(fixtures.TempDir()).path,
                             "defaults.json")
        self.env = {"OS_COLLECT_CONFIG_DEFAULTS": str(self.defaults)}

    def render(self, metadata: dict) -> tuple[str, int]:
        return render_templates(self.element, metadata, env=self.env)[CONF]

    def test_bootstrap_without_metadata(self) -> None:
        text, mode = self.render({})
        self.assertEqual(0o600, mode)
        got = options(text)
        self.assertEqual(["os-refresh-config"], got["DEFAULT.command"])
        self.assertEqual(["heat_local", "ec2", "local"],
                         got["DEFAULT.collectors"])
        self.assertEqual(["30"], got["DEFAULT.polling_interval"])

    def test_build_time_defaults_are_honoured(self) -> None:
        self.defaults.write_text(json.dumps(
            {"collectors": ["heat_local"], "polling_interval": 7}))
        got = options(self.render({})[0])
        self.assertEqual(["heat_local"], got["DEFAULT.collectors"])
        self.assertEqual(["7"], got["DEFAULT.polling_interval"])

    def test_request_transport(self) -> None:
        url = "http://192.0.2.1:8080/v1/AUTH_x/c/o?temp_url_sig=ab&e=1"
        got = options(self.render({"os-collect-config": {
            "request": {"metadata_url": url}, "polling_interval": 5}})[0])
        self.assertEqual([url], got["request.metadata_url"])
        self.assertEqual(["5"], got["DEFAULT.polling_interval"])
        self.assertEqual(["heat_local", "ec2", "local", "request"],
                         got["DEFAULT.collectors"])

    def test_heat_transport_escapes_dollar(self) -> None:
        got = options(self.render({"os-collect-config": {
            "collectors": ["ec2", "heat", "local"],
            "heat": {"auth_url": "http://192.0.2.1:5000/v3",
                     "user_id": "u1", "password": "pa$$w$rd",
                     "project_id": "p1", "stack_id": "s/1",
                     "resource_name": "server"}}})[0])
        self.assertEqual(["pa$$$$w$$rd"], got["heat.password"])
        self.assertEqual(["ec2", "heat", "local"], got["DEFAULT.collectors"])
        self.assertEqual(["server"], got["heat.resource_name"])

    def test_cfn_transport(self) -> None:
        got = options(self.render({"os-collect-config": {"cfn": {
            "metadata_url": "http://192.0.2.1:8000/v1/",
            "stack_name": "st", "path": "server.Metadata",
            "access_key_id": "AK", "secret_access_key": "S$K"}}})[0])
        self.assertEqual(["S$$K"], got["cfn.secret_access_key"])
        self.assertEqual(["server.Metadata"], got["cfn.path"])
        self.assertIn("cfn", got["DEFAULT.collectors"])

    def test_ec2_and_local_sections(self) -> None:
        got = options(self.render({"os-collect-config": {
            "collectors": ["ec2", "local"],
            "ec2": {"metadata_url": "http://169.254.169.254/"},
            "local": {"path": ["/var/lib/a", "/var/lib/b"]}}})[0])
        self.assertEqual(["/var/lib/a", "/var/lib/b"], got["local.path"])
        self.assertEqual(["http://169.254.169.254/"], got["ec2.metadata_url"])

    def test_unknown_options_are_not_written(self) -> None:
        text = self.render({"os-collect-config": {
            "request": {"metadata_url": "http://x/", "evil": "1"},
            "bogus_section": {"a": "b"}}})[0]
        self.assertNotIn("evil", text)
        self.assertNotIn("bogus", text)

    def test_unknown_collector_is_refused(self) -> None:
        error = self.assertRaises(RenderError, self.render, {
            "os-collect-config": {"collectors": ["ec2", "nope"]}})
        self.assertIn("unknown nope", error.stderr)

    def test_line_break_is_refused(self) -> None:
        error = self.assertRaises(RenderError, self.render, {
            "os-collect-config": {"request": {
                "metadata_url": "http://x/\ncommand = touch /tmp/x"}}})
        self.assertIn("line break", error.stderr)

    def test_hostile_values_stay_data(self) -> None:
        canary = Path(self.useFixture(fixtures.TempDir()).path, "canary")
        for value in (f"$(touch {canary})", f"`touch {canary}`",
                      f"'; touch {canary}; '"):
            got = options(self.render({"os-collect-config": {
                "request": {"metadata_url": value}}})[0])
            self.assertEqual([value.replace("$", "$$")],
                             got["request.metadata_url"])
        self.assertFalse(canary.exists())

    def test_non_mapping_is_refused(self) -> None:
        self.assertRaises(RenderError, render_templates, self.element,
                          {"os-collect-config": ["not", "a", "mapping"]},
                          env=self.env, existing={CONF: "old\n"})


class InstallTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.element = element_path("os-collect-config")
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.env = {
            "DIB_OCC_UNIT_DIR": str(self.root / "usr/lib/systemd/system"),
            "DIB_OCC_DEFAULTS_FILE": str(self.root / "usr/share/occ.json"),
            "DIB_OCC_STATE_DIR": str(self.root / "var/lib/occ"),
            "DIB_OCC_FILES": str(self.element / "os-collect-config-files"),
            "DIB_OCC_LIBEXEC_DIR": str(self.root / "usr/libexec/occ"),
        }

    def test_unit_installed_and_enabled(self) -> None:
        result = run_script(
            self.element / "install.d/60-os-collect-config-service",
            self.root, stubs=["systemctl"], env=self.env).check()
        self.assertEqual([("systemctl", "enable",
                           "os-collect-config.service")],
                         result.calls_of("systemctl"))
        unit = (self.root / "usr/lib/systemd/system/"
                "os-collect-config.service").read_text()
        self.assertIn("Environment=LC_ALL=C PYTHONCOERCECLOCALE=0", unit)
        self.assertIn("ExecStart=os-collect-config --config-file "
                      "/etc/os-collect-config.conf\n", unit)
        self.assertIn("WantedBy=multi-user.target", unit)
        self.assertIn("ExecStartPre=-/usr/libexec/os-collect-config-element/"
                      "first-boot-config\n", unit)
        first_boot = self.root / "usr/libexec/occ/first-boot-config"
        self.assertEqual(0o755, stat.S_IMODE(first_boot.stat().st_mode))
        defaults = json.loads((self.root / "usr/share/occ.json").read_text())
        self.assertEqual({"collectors": ["heat_local", "ec2", "local"],
                          "polling_interval": 30}, defaults)
        local = self.root / "var/lib/occ/local-data"
        self.assertEqual(0o700, stat.S_IMODE(local.stat().st_mode))

    def test_polling_interval_and_collectors_settable(self) -> None:
        env = dict(self.env, DIB_OS_COLLECT_CONFIG_POLLING_INTERVAL="12",
                   DIB_OS_COLLECT_CONFIG_COLLECTORS="heat_local request")
        run_script(self.element / "install.d/60-os-collect-config-service",
                   self.root, stubs=["systemctl"], env=env).check()
        defaults = json.loads((self.root / "usr/share/occ.json").read_text())
        self.assertEqual({"collectors": ["heat_local", "request"],
                          "polling_interval": 12}, defaults)

    def test_bad_settings_fail(self) -> None:
        for key, value in (("DIB_OS_COLLECT_CONFIG_POLLING_INTERVAL", "5m"),
                           ("DIB_OS_COLLECT_CONFIG_COLLECTORS", "ec2 $(x)")):
            result = run_script(
                self.element / "install.d/60-os-collect-config-service",
                self.root, stubs=["systemctl"], env=dict(self.env,
                                                         **{key: value}))
            self.assertEqual(1, result.returncode, key)
            self.assertIn(key, result.stderr)

    def test_bootstrap_config_rendered_at_build(self) -> None:
        templates = self.element / "os-apply-config"
        conf = self.root / "etc/os-collect-config.conf"
        conf.parent.mkdir(parents=True)
        result = run_script(
            self.element / "post-install.d/60-os-collect-config-bootstrap",
            self.root, stubs=["os-collect-config"], env={
                "DIB_OAC_TEMPLATE_ROOT": str(templates),
                "DIB_OCC_DEFAULTS_FILE": str(self.root / "missing.json"),
                "DIB_OCC_CONFIG_FILE": str(conf)}).check()
        self.assertEqual(0o600, stat.S_IMODE(conf.stat().st_mode))
        self.assertEqual(
            render_templates(self.element, {}, env={
                "OS_COLLECT_CONFIG_DEFAULTS": str(self.root / "m.json")})[
                    CONF][0], conf.read_text())
        self.assertEqual([("os-collect-config", "--config-file", str(conf),
                           "--print-cachedir")],
                         result.calls_of("os-collect-config"))

    def test_venv_install_is_offline(self) -> None:
        venv_python = self.root / "venv/bin/python"
        venv_python.parent.mkdir(parents=True)
        # The venv's python is the stub "venv-python", found on PATH.
        venv_python.write_text('#!/bin/sh\nexec venv-python "$@"\n')
        venv_python.chmod(0o755)
        site = self.root / "venv/lib/python3.11/site-packages"
        (site / "lib1/tests").mkdir(parents=True)
        (site / "lib1/tests/test_x.py").write_text("")
        (site / "lib1/core.py").write_text("")
        result = run_script(
            self.element / "install.d/50-os-collect-config-venv",
            self.root, stubs=["python3", "venv-python"], allow=["rm"], env={
                "DIB_OCC_VENV": str(self.root / "venv"),
                "DIB_OCC_BIN_DIR": str(self.root / "usr/local/bin"),
                "DIB_OCC_WHEEL_DIR": "/wheels"}).check()
        self.assertEqual([("python3", "-m", "venv", str(self.root / "venv"))],
                         result.calls_of("python3"))
        install, uninstall, imports = result.calls_of("venv-python")
        self.assertIn("--no-index", install)
        # the heat and zaqar collectors' clients must import
        self.assertEqual("-c", imports[1])
        modules = [m.strip() for m in
                   imports[2].removeprefix("import ").split(",")]
        for module in ("os_collect_config.heat", "os_collect_config.zaqar",
                       "heatclient.client", "keystoneauth1.session",
                       "zaqarclient.queues.client"):
            self.assertIn(module, modules)
        self.assertEqual(["--find-links", "/wheels"],
                         list(install[install.index("--find-links"):][:2]))
        self.assertEqual(("pip", "uninstall"), uninstall[2:4])
        self.assertFalse((site / "lib1/tests").exists())
        self.assertTrue((site / "lib1/core.py").exists())
        link = self.root / "usr/local/bin/os-collect-config"
        self.assertEqual(str(self.root / "venv/bin/os-collect-config"),
                         str(link.readlink()))

    def test_package_install_skips_venv(self) -> None:
        result = run_script(
            self.element / "install.d/50-os-collect-config-venv", self.root,
            stubs=["python3"],
            env={"DIB_OS_COLLECT_CONFIG_INSTALL": "package"}).check()
        self.assertEqual((), result.calls)

    def test_wheels_downloaded_for_image_python(self) -> None:
        result = run_script(
            self.element / "extra-data.d/50-os-collect-config-wheels",
            self.root, stubs=["hostpython"], env={
                "DIB_OCC_HOST_PYTHON": "hostpython",
                "DIB_OCC_WHEEL_CACHE": "0",
                "TMP_HOOKS_PATH": str(self.root / "hooks")}).check()
        [call] = result.calls_of("hostpython")
        self.assertEqual(("-m", "pip", "download"), call[1:4])
        self.assertIn("--only-binary=:all:", call)
        self.assertEqual("3.11", call[call.index("--python-version") + 1])
        self.assertIn("manylinux2014_x86_64", call)
        self.assertEqual("os-collect-config", call[-1])
        self.assertTrue((self.root / "hooks/os-collect-config-wheels")
                        .is_dir())


# Plays the host's python: "pip download --dest DIR" writes two wheels,
# one of them different on every call; every call is logged.
FAKE_PIP = """#!/bin/bash
echo "$*" >> "$FAKE_LOG"
sleep "${FAKE_SLEEP:-0}"
while [ $# -gt 0 ]; do
    [ "$1" = --dest ] && dest=$2
    shift
done
date +%s%N > "$dest/a-1.0-py3-none-any.whl"
echo b > "$dest/b-2.0-py3-none-any.whl"
"""


class WheelCacheTest(testtools.TestCase):
    """The wheels come from a host-side download cache keyed by what
    decides them; a bad or old entry is fetched again."""

    def setUp(self) -> None:
        super().setUp()
        self.script = element_path("os-collect-config") / \
            "extra-data.d/50-os-collect-config-wheels"
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.python = self.tmp / "fake-python"
        self.python.write_text(FAKE_PIP)
        self.python.chmod(0o755)
        self.log = self.tmp / "pip.log"
        self.cache = self.tmp / "xdg/tripleo-image-elements/wheels"
        self.runs = 0

    def run_hook(self, **extra: str) -> Path:
        """One build's run of the hook; its wheel directory."""
        self.runs += 1
        hooks = self.tmp / f"hooks-{self.runs}"
        env = {"DIB_OCC_HOST_PYTHON": str(self.python),
               "TMP_HOOKS_PATH": str(hooks), "FAKE_LOG": str(self.log),
               "XDG_CACHE_HOME": str(self.tmp / "xdg")}
        env.update(extra)
        run_script(self.script, self.tmp / f"root-{self.runs}", env=env,
                   sandbox=False).check()
        return hooks / "os-collect-config-wheels"

    def fetches(self) -> int:
        return len(self.log.read_text().splitlines()) \
            if self.log.exists() else 0

    def wheels(self, directory: Path) -> dict[str, str]:
        return {p.name: p.read_text() for p in directory.iterdir()}

    def entry(self) -> Path:
        [entry] = [p for p in self.cache.iterdir()
                   if not p.name.startswith(".")]
        return entry

    def test_second_build_copies_the_cached_wheels(self) -> None:
        first = self.wheels(self.run_hook())
        self.assertEqual(["a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"],
                         sorted(first))
        self.assertEqual(first, self.wheels(self.run_hook()))
        self.assertEqual(1, self.fetches())
        self.assertEqual(first, {k: v for k, v in self.wheels(
            self.entry()).items() if k.endswith(".whl")})
        # Settings that do not decide the wheels share the entry.
        self.run_hook(PIP_CACHE_DIR=str(self.tmp / "elsewhere"))
        self.assertEqual(1, self.fetches())

    def test_what_decides_the_wheels_keys_the_entry(self) -> None:
        self.run_hook()
        for n, extra in enumerate((
                {"DIB_OS_COLLECT_CONFIG_PYTHON_VERSION": "3.12"},
                {"ARCH": "arm64"},
                {"DIB_OS_COLLECT_CONFIG_REQUIREMENT": "os-collect-config==1"},
                {"PIP_INDEX_URL": "http://127.0.0.1:1/simple"},
                {"PIP_EXTRA_INDEX_URL": "http://127.0.0.1:2/simple"}), 2):
            self.run_hook(**extra)
            self.assertEqual(n, self.fetches(), extra)
        conf = self.tmp / "pip.conf"
        conf.write_text("[global]\nindex-url = http://127.0.0.1:3/\n")
        self.run_hook(PIP_CONFIG_FILE=str(conf))
        conf.write_text("[global]\nindex-url = http://127.0.0.1:4/\n")
        self.run_hook(PIP_CONFIG_FILE=str(conf))
        self.assertEqual(8, self.fetches())
        self.assertEqual(8, len([p for p in self.cache.iterdir()
                                 if not p.name.startswith(".")]))

    def test_corrupt_partial_or_old_entry_is_fetched_again(self) -> None:
        self.run_hook()
        entry = self.entry()
        wheel = entry / "b-2.0-py3-none-any.whl"
        wheel.write_text("c\n")
        self.assertEqual("b\n", (self.run_hook() / wheel.name).read_text())
        self.assertEqual(2, self.fetches())
        (entry / "a-1.0-py3-none-any.whl").unlink()
        self.assertEqual(2, len(list(self.run_hook().iterdir())))
        self.assertEqual(3, self.fetches())
        (entry / "SHA256SUMS").unlink()
        self.run_hook()
        self.assertEqual(4, self.fetches())
        (entry / "x-1-py3-none-any.whl").write_text("not recorded\n")
        self.assertNotIn("x-1-py3-none-any.whl", self.wheels(self.run_hook()))
        self.assertEqual(5, self.fetches())
        # A download that died left its temporary directory: removed.
        left = self.cache / f".tmp-{entry.name}-dead"
        left.mkdir()
        (entry / "fetched").write_text("1000\n")
        self.run_hook()
        self.assertEqual(6, self.fetches())
        self.assertFalse(left.exists())
        self.run_hook(DIB_OCC_WHEEL_CACHE_MAX_AGE="0")
        self.assertEqual(7, self.fetches())
        self.run_hook()
        self.assertEqual(7, self.fetches())

    def test_two_builds_at_once_fetch_once(self) -> None:
        import threading
        dirs: list[Path] = []
        threads = [threading.Thread(target=lambda: dirs.append(
            self.run_hook(FAKE_SLEEP="1"))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(1, self.fetches())
        self.assertEqual(2, len(dirs))
        self.assertEqual(self.wheels(dirs[0]), self.wheels(dirs[1]))

    def test_cache_off_downloads_every_time(self) -> None:
        self.run_hook(DIB_OCC_WHEEL_CACHE="0")
        self.assertEqual(2, len(list(self.run_hook(
            DIB_OCC_WHEEL_CACHE="0").iterdir())))
        self.assertEqual(2, self.fetches())
        self.assertFalse(self.cache.exists())

    def test_cache_list_and_prune_see_the_hooks_entries(self) -> None:
        """``build-image cache`` lists what the hook stored and prunes it
        by age, but not while a build holds the entry."""
        import fcntl
        import io
        import os
        from unittest import mock

        from tripleo_elements import buildcache_cli, wheelcache
        self.run_hook()
        entry = self.entry()
        env = {"XDG_CACHE_HOME": str(self.tmp / "xdg")}
        out = io.StringIO()
        with mock.patch("sys.stdout", out):
            self.assertEqual(0, buildcache_cli.main(
                ["list", "--format", "json"], env))
        [listed] = [e for e in json.loads(out.getvalue())
                    if e["kind"] == "wheels"]
        self.assertEqual(entry.name, listed["key"])
        self.assertEqual("os-collect-config", listed["output"])
        self.assertEqual(sum(p.stat().st_size for p in entry.iterdir()),
                         listed["size"])
        # A stale download left by a killed build goes too.
        stale = self.cache / f".tmp-{entry.name}-dead"
        stale.mkdir()
        os.utime(stale, (0, 0))
        with open(self.cache / ".locks" / entry.name, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            self.assertEqual([], wheelcache.prune(self.cache, max_age=0,
                                                  now=2e9))
        self.assertTrue(entry.is_dir())
        self.assertFalse(stale.exists())
        self.assertEqual([], wheelcache.prune(self.cache, max_age=86400))
        out = io.StringIO()
        with mock.patch("sys.stdout", out):
            self.assertEqual(0, buildcache_cli.main(
                ["prune", "--all"], env))
        self.assertIn("wheels", out.getvalue())
        self.assertFalse(entry.exists())
        # The next build fetches again.
        self.run_hook()
        self.assertEqual(2, self.fetches())


class FirstBootConfigTest(testtools.TestCase):
    """first-boot-config renders the configuration from cfn-init-data
    before the first collection, and only then."""

    BOOTSTRAP = "[DEFAULT]\ncollectors = heat_local\n"

    def setUp(self) -> None:
        super().setUp()
        element = self.element = element_path("os-collect-config")
        self.script = element / "os-collect-config-files/first-boot-config"
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.conf = self.root / "etc/os-collect-config.conf"
        self.conf.parent.mkdir()
        self.conf.write_text(self.BOOTSTRAP)
        self.data = self.root / "cfn-init-data"
        self.cache = self.root / "cache"
        self.cache.mkdir()
        self.env = {
            "OCC_CONFIG_FILE": str(self.conf),
            "OCC_CFN_INIT_DATA": str(self.data),
            "OCC_CACHE_DIR": str(self.cache),
            "OCC_TEMPLATE": str(element / "os-apply-config" / CONF[1:]),
            "OCC_DEFAULTS_FILE": str(self.root / "missing.json"),
        }

    def run_it(self) -> int:
        return run_script(self.script, self.root, env=self.env,
                          binds=[self.element], allow=["rm"]).returncode

    def heat_data(self, **occ: object) -> None:
        self.data.write_text(json.dumps({"os-collect-config": {
            "request": {"metadata_url": "http://10.0.2.2:8000/md/x"},
            "collectors": ["request"], "polling_interval": 5, **occ}}))

    def test_first_boot_polls_the_transport_at_once(self) -> None:
        self.heat_data()
        self.assertEqual(0, self.run_it())
        got = options(self.conf.read_text())
        self.assertEqual(["request"], got["DEFAULT.collectors"])
        self.assertEqual(["5"], got["DEFAULT.polling_interval"])
        self.assertEqual(["http://10.0.2.2:8000/md/x"],
                         got["request.metadata_url"])
        self.assertEqual(0o600, stat.S_IMODE(self.conf.stat().st_mode))
        # The same text os-apply-config renders from that metadata, so
        # the first pass does not make os-collect-config re-execute.
        self.assertEqual(render_templates(
            element_path("os-collect-config"), json.loads(
                self.data.read_text()), env={
                "OS_COLLECT_CONFIG_DEFAULTS": str(self.root / "m.json")})[
                    CONF][0], self.conf.read_text())
        self.assertEqual(["etc/os-collect-config.conf"],
                         [str(p.relative_to(self.root))
                          for p in self.conf.parent.parent.rglob("*.conf*")])

    def test_later_boots_keep_what_os_apply_config_wrote(self) -> None:
        self.heat_data()
        (self.cache / "os_config_files.json").write_text("[]")
        self.assertEqual(0, self.run_it())
        self.assertEqual(self.BOOTSTRAP, self.conf.read_text())

    def test_no_user_data_keeps_the_bootstrap(self) -> None:
        self.assertEqual(0, self.run_it())
        self.assertEqual(self.BOOTSTRAP, self.conf.read_text())

    def test_refused_metadata_keeps_the_bootstrap(self) -> None:
        for bad in ('{"os-collect-config": {"polling_interval": "1\\n'
                    '[x]"}}', "not json"):
            self.data.write_text(bad)
            self.assertEqual(1, self.run_it(), bad)
            self.assertEqual(self.BOOTSTRAP, self.conf.read_text())
            self.assertEqual([self.conf.name],
                             [p.name for p in self.conf.parent.iterdir()])
