"""The control plane's pieces that need no services: the hosts line, the
guest's name resolution, the pin file, its state and configuration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.publish import venvs
from tripleo_elements.testing import controlplane as cp_module
from tripleo_elements.testing.controlplane import (
    GUEST_HOST_IP, HOST, SERVICE_HOST, ControlPlane, ControlPlaneError,
    Ports, add_hosts_line, guest_hosts_part, remove_hosts_line, services)

TOP = Path(__file__).resolve().parents[2]


class HostsLineTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.hosts = Path(self.useFixture(fixtures.TempDir()).path) / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n10.1.1.1 other")

    def test_added_once_and_removed_alone(self) -> None:
        self.assertTrue(add_hosts_line(self.hosts, SERVICE_HOST, HOST,
                                       "# tie /a"))
        self.assertFalse(add_hosts_line(self.hosts, SERVICE_HOST, HOST,
                                        "# tie /a"))
        add_hosts_line(self.hosts, SERVICE_HOST, HOST, "# tie /b")
        self.assertEqual(
            "127.0.0.1 localhost\n10.1.1.1 other\n"
            f"127.0.0.1 {SERVICE_HOST} # tie /a\n"
            f"127.0.0.1 {SERVICE_HOST} # tie /b\n", self.hosts.read_text())
        self.assertTrue(remove_hosts_line(self.hosts, "# tie /a"))
        self.assertFalse(remove_hosts_line(self.hosts, "# tie /a"))
        self.assertEqual(
            "127.0.0.1 localhost\n10.1.1.1 other\n"
            f"127.0.0.1 {SERVICE_HOST} # tie /b\n", self.hosts.read_text())

    def test_written_in_place(self) -> None:
        # A container's /etc/hosts is a bind mount: never replaced.
        inode = os.stat(self.hosts).st_ino
        add_hosts_line(self.hosts, SERVICE_HOST, HOST, "# m")
        remove_hosts_line(self.hosts, "# m")
        self.assertEqual(inode, os.stat(self.hosts).st_ino)

    def test_guest_resolves_the_name_to_the_hosts_loopback(self) -> None:
        part = guest_hosts_part()
        self.assertTrue(part.startswith("#cloud-config\n"))
        command = re.search(r"\[sh, -c, '(.*)'\]", part)
        assert command is not None
        guest_hosts = self.hosts.parent / "guest-hosts"
        guest_hosts.write_text("127.0.0.1 localhost\n")
        script = command.group(1).replace("/etc/hosts", str(guest_hosts))
        for _ in range(2):  # bootcmd runs on every boot
            subprocess.run(["sh", "-c", script], check=True)
        self.assertEqual(
            f"127.0.0.1 localhost\n{GUEST_HOST_IP} {SERVICE_HOST}\n",
            guest_hosts.read_text())


class ControlPlaneStateTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.hosts = self.tmp / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n")
        self.cp = ControlPlane(self.tmp / "cp",
                               {"TIE_HOSTS_FILE": str(self.hosts),
                                "HOME": str(self.tmp)})

    def test_no_state_is_a_tie_error(self) -> None:
        error = self.assertRaises(ControlPlaneError, self.cp.status)
        self.assertIn("tools/control-plane start", error.hint)

    def test_stop_ends_its_pids_only_and_drops_the_line(self) -> None:
        self.cp.workdir.mkdir()
        self.cp.logs.mkdir()
        self.cp._write_state({"ports": {f: 1 for f in (
            "mysql", "epmd", "rabbit", "rabbit_dist", "keystone", "heat",
            "nova")},
            "pids": {}, "initialised": True})
        self.cp._add_hosts()
        self.assertIn(SERVICE_HOST, self.hosts.read_text())
        # A process of ours (its own session) and a stale record whose
        # pid now belongs to this test runner (start time differs).
        self.cp._spawn("epmd", [sys.executable, "-c",
                                "import time; time.sleep(60)"])
        state = self.cp._state()
        state["pids"]["mariadb"] = [os.getpid(), "1"]
        self.cp._write_state(state)
        status = self.cp.status()
        self.assertEqual("not answering", status["epmd"])
        self.assertEqual("down", status["mariadb"])
        proc = self.cp._procs["epmd"]
        self.cp.stop()
        self.assertIsNotNone(proc.poll())
        self.assertEqual({}, self.cp._state()["pids"])
        self.assertEqual("127.0.0.1 localhost\n", self.hosts.read_text())
        # The same object can start again: what it ended is not taken
        # for a service that died.
        self.cp._check_alive()

    def test_openrc_and_secrets_are_private(self) -> None:
        self.cp.workdir.mkdir()
        self.cp._write_state({"ports": {f: 5 for f in (
            "mysql", "epmd", "rabbit", "rabbit_dist", "keystone", "heat",
            "nova")},
            "pids": {}})
        self.cp._make_secrets()
        self.cp._write_openrc()
        for path in (self.cp.openrc, self.cp.workdir / "secrets.json"):
            self.assertEqual(0o600, path.stat().st_mode & 0o777, path)
        rc = self.cp.openrc.read_text()
        self.assertIn(f"OS_AUTH_URL=http://{SERVICE_HOST}:5/v3", rc)
        self.assertIn(self.cp._secrets()["admin"], rc)
        self.assertEqual(8, len(set(self.cp.secret_values())))

    def test_secrets_kept_and_completed(self) -> None:
        # A directory made before Nova was added: its passwords stay,
        # Nova's are added.
        self.cp.workdir.mkdir()
        path = self.cp.workdir / "secrets.json"
        path.write_text(json.dumps({"admin": "a1", "heat": "h1"}))
        self.cp._make_secrets()
        values = self.cp._secrets()
        self.assertEqual(("a1", "h1"), (values["admin"], values["heat"]))
        self.assertEqual(sorted(cp_module.SECRETS), sorted(values))
        self.assertEqual(0o600, path.stat().st_mode & 0o777)

    def test_old_state_is_completed(self) -> None:
        self.cp.workdir.mkdir()
        old_ports = {f: 7 for f in ("mysql", "epmd", "rabbit",
                                    "rabbit_dist", "keystone", "heat")}
        self.cp._write_state({"ports": old_ports, "pids": {},
                              "initialised": True})
        self.cp._complete_state("all")
        state = self.cp._state()
        self.assertEqual(["heat", "keystone", "mariadb"],
                         sorted(state["initialised"]))
        self.assertEqual(7, state["ports"]["heat"])
        self.assertNotEqual(7, state["ports"]["nova"])
        self.assertEqual(list(cp_module.SERVICES), state["services"])

    def test_keystone_mode_reports_its_services_only(self) -> None:
        self.cp.workdir.mkdir()
        self.cp._write_state({"ports": {}, "pids": {}, "initialised": []})
        self.cp._complete_state("keystone")
        self.assertEqual(("mariadb", "keystone"), self.cp.services)
        self.assertEqual({"mariadb": "down", "keystone": "down"},
                         self.cp.status())
        self.cp._make_secrets()
        self.assertNotIn("rabbitmq", self.cp.describe())
        self.assertNotIn("heat-api", self.cp.describe())
        self.assertIn("keystone  http://", self.cp.describe())

    def test_unknown_mode_is_refused_before_anything_starts(self) -> None:
        error = self.assertRaises(ControlPlaneError, self.cp.start,
                                  mode="heat")
        self.assertIn("all, keystone", error.hint)
        self.assertFalse(self.cp.workdir.exists())


class ConfigurationTest(testtools.TestCase):

    def test_pin_file_pins_everything_and_keys_the_venv(self) -> None:
        text = cp_module.REQUIREMENTS_FILE.read_text()
        pins = [line for line in text.splitlines()
                if line and not line.startswith("#")]
        self.assertEqual([], [p for p in pins if "==" not in p])
        names = {p.split("==")[0].lower() for p in pins}
        self.assertLessEqual({"keystone", "openstack-heat", "nova",
                              "gunicorn",
                              "pymysql", "python-openstackclient",
                              "python-heatclient"}, names)
        key = venvs.venv_key(cp_module.VENV_NAME, text)
        self.assertEqual(key, venvs.venv_key(cp_module.VENV_NAME, text))

    def test_heat_listens_on_loopback_and_names_the_service_host(
            self) -> None:
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        venv = tmp / "venv"
        (venv / "etc" / "heat").mkdir(parents=True)
        (venv / "etc" / "heat" / "api-paste.ini").write_text("")
        cp = ControlPlane(tmp / "cp", {})
        ports = Ports(1, 2, 3, 4, 5000, 8004, 8774)
        conf = services.heat_conf(cp, venv, ports, {
            "heat": "h", "domain_admin": "d", "db_heat": "x",
            "auth_encryption_key": "k" * 32})
        self.assertIn("bind_host = 127.0.0.1", conf)
        self.assertIn(f"auth_uri = http://{SERVICE_HOST}:5000/v3", conf)
        self.assertIn("auth_url = http://127.0.0.1:5000/v3", conf)
        self.assertIn("stack_user_domain_name = heat", conf)
        self.assertIn("@127.0.0.1:1/heat", conf)
        self.assertNotIn("0.0.0.0", conf)

    def test_nova_listens_on_loopback_and_authenticates(self) -> None:
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        cp = ControlPlane(tmp / "cp", {})
        ports = Ports(1, 2, 3, 4, 5000, 8004, 8774)
        conf = services.nova_conf(cp, ports, {"nova": "n", "db_nova": "x"})
        self.assertIn("auth_strategy = keystone", conf)
        self.assertIn("@127.0.0.1:1/nova_api?", conf)
        self.assertIn("@127.0.0.1:1/nova?", conf)
        self.assertIn(
            f"www_authenticate_uri = http://{SERVICE_HOST}:5000/v3", conf)
        self.assertIn("auth_url = http://127.0.0.1:5000/v3", conf)
        self.assertIn("username = nova", conf)
        self.assertNotIn("0.0.0.0", conf)

    def test_databases_and_users_are_loopback_only(self) -> None:
        secret = {f"db_{user}": f"pw-{user}" for user in services.DATABASES}
        sql = services.database_sql(secret)
        for db in ("keystone", "heat", "nova_api", "nova_cell0", "nova"):
            self.assertIn(f"CREATE DATABASE IF NOT EXISTS {db};", sql)
        self.assertIn("GRANT ALL PRIVILEGES ON nova_cell0.* TO "
                      "'nova'@'127.0.0.1';", sql)
        self.assertIn("'nova'@'127.0.0.1' IDENTIFIED BY 'pw-nova'", sql)
        self.assertNotIn("%", sql)

    def test_tasks_file_compiles(self) -> None:
        compile(cp_module.TASKS_FILE.read_text(), str(cp_module.TASKS_FILE),
                "exec")

    def test_bindep_lists_the_services_for_tests(self) -> None:
        lines = (TOP / "bindep.txt").read_text().splitlines()
        for package in ("mariadb-server", "rabbitmq-server"):
            self.assertIn(f"{package} [platform:dpkg test]", lines)


class ScriptTest(testtools.TestCase):

    def test_status_without_a_control_plane_fails_with_a_hint(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        proc = subprocess.run(
            [sys.executable, str(TOP / "tools" / "control-plane"), "status",
             "--workdir", tmp], capture_output=True, text=True, timeout=60)
        self.assertEqual(1, proc.returncode)
        self.assertIn("no control plane state", proc.stderr)
        self.assertEqual("", proc.stdout)
        json.dumps(proc.stderr)  # one line, printable
