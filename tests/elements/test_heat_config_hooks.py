"""The heat-config-GROUP hooks, each run as a subprocess the way
55-heat-config runs it (one deployment on stdin, one JSON object out),
with the tool it drives replaced by a fake named in its environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import fixtures
import testtools

from tripleo_elements.testing.heatconfig import hook_source

#: Records its argv, environment and working directory to $FAKE_RECORD,
#: writes the files named in $FAKE_FILES (JSON path -> text) and answers
#: with $FAKE_STDOUT, $FAKE_STDERR and exit status $FAKE_STATUS.
FAKE_TOOL = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_RECORD"], "w") as f:
    json.dump({{"argv": sys.argv, "env": dict(os.environ),
               "cwd": os.getcwd()}}, f)
for path, text in json.loads(os.environ.get("FAKE_FILES", "{{}}")).items():
    with open(path, "w") as f:
        f.write(text)
sys.stdout.write(os.environ.get("FAKE_STDOUT", ""))
sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
"""


class HookTestCase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.fake = self.root / "fake-tool"
        self.fake.write_text(FAKE_TOOL)
        self.fake.chmod(0o755)
        self.record = self.root / "record.json"
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "FAKE_RECORD": str(self.record)}

    def run_hook(self, group: str, deployment: dict[str, Any],
                 **env: str) -> dict[str, Any]:
        run_env = dict(self.env)
        run_env.update(env)
        proc = subprocess.run([str(hook_source(group))],
                              input=json.dumps(deployment), text=True,
                              capture_output=True, env=run_env, timeout=60,
                              check=False)
        self.assertEqual(0, proc.returncode, proc.stderr)
        result = json.loads(proc.stdout)
        self.assertIsInstance(result, dict)
        return result

    def recorded(self) -> dict[str, Any]:
        return json.loads(self.record.read_text())

    def mode(self, path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)


def deployment(group: str, config: Any, **extra: Any) -> dict[str, Any]:
    dep = {"id": "dep-1", "name": "res", "group": group, "config": config,
           "inputs": [{"name": "greeting", "value": "hi"},
                      {"name": "count", "value": 3}],
           "outputs": [{"name": "result"}], "options": {}}
    dep.update(extra)
    return dep


class AnsibleHookTest(HookTestCase):

    def test_runs_playbook_with_variables_and_outputs(self) -> None:
        outputs = self.root / "out"
        result = self.run_hook(
            "ansible",
            deployment("ansible", "- hosts: all\n",
                       options={"tags": "a,b", "modulepath": "/m"}),
            HEAT_ANSIBLE_CMD=str(self.fake),
            HEAT_ANSIBLE_WORKING=str(self.root / "work"),
            HEAT_ANSIBLE_OUTPUTS=str(outputs),
            FAKE_FILES=json.dumps({str(outputs / "dep-1.result"): "done"}),
            FAKE_STDOUT="PLAY RECAP", FAKE_STDERR="warn", FAKE_STATUS="2")
        self.assertEqual({"result": "done", "deploy_stdout": "PLAY RECAP",
                          "deploy_stderr": "warn", "deploy_status_code": 2},
                         result)
        argv = self.recorded()["argv"]
        playbook = self.root / "work/dep-1_playbook.yaml"
        variables = self.root / "work/dep-1_variables.json"
        self.assertEqual([str(self.fake), "-i", "localhost,",
                          "--module-path", "/m", "--tags", "a,b",
                          str(playbook), "--extra-vars", f"@{variables}"],
                         argv)
        self.assertEqual("- hosts: all\n", playbook.read_text())
        self.assertEqual({"greeting": "hi", "count": 3,
                          "heat_config_id": "dep-1",
                          "heat_outputs_path": str(outputs / "dep-1")},
                         json.loads(variables.read_text()))
        self.assertEqual(0o600, self.mode(variables))

    def test_runs_with_utf8_locale_under_os_collect_config(self) -> None:
        # os-collect-config's unit sets LC_ALL=C PYTHONCOERCECLOCALE=0;
        # ansible-playbook exits 1 under it (seen in the functional boot).
        self.run_hook(
            "ansible", deployment("ansible", "x"),
            HEAT_ANSIBLE_CMD=str(self.fake), LC_ALL="C",
            PYTHONCOERCECLOCALE="0",
            HEAT_ANSIBLE_WORKING=str(self.root / "w"),
            HEAT_ANSIBLE_OUTPUTS=str(self.root / "o"))
        env = self.recorded()["env"]
        self.assertEqual("C.UTF-8", env["LC_ALL"])
        self.assertNotIn("PYTHONCOERCECLOCALE", env)

    def test_missing_ansible_is_status_127(self) -> None:
        result = self.run_hook(
            "ansible", deployment("ansible", "x"),
            HEAT_ANSIBLE_CMD=str(self.root / "absent"),
            HEAT_ANSIBLE_WORKING=str(self.root / "w"),
            HEAT_ANSIBLE_OUTPUTS=str(self.root / "o"))
        self.assertEqual(127, result["deploy_status_code"])
        self.assertIn("cannot run", result["deploy_stderr"])


class PuppetHookTest(HookTestCase):

    def env_for(self) -> dict[str, str]:
        return {"HEAT_PUPPET_CMD": str(self.fake),
                "HEAT_PUPPET_WORKING": str(self.root / "work"),
                "HEAT_PUPPET_OUTPUTS": str(self.root / "out"),
                "HEAT_PUPPET_LOGDIR": str(self.root / "log"),
                "HEAT_PUPPET_HIERA_DATADIR": str(self.root / "hiera")}

    def test_changes_applied_is_success_and_facts_set(self) -> None:
        out = self.root / "out/dep-1.result"
        result = self.run_hook(
            "puppet", deployment("puppet", "notice('x')",
                                 options={"enable_hiera": True}),
            FAKE_STATUS="2", FAKE_STDOUT="Notice: applied",
            FAKE_FILES=json.dumps({str(out): "ok"}), **self.env_for())
        self.assertEqual(0, result["deploy_status_code"])
        self.assertEqual("ok", result["result"])
        rec = self.recorded()
        self.assertEqual([str(self.fake), "apply", "--color", "false",
                          "--detailed-exitcodes", "--logdest", "console",
                          str(self.root / "work/dep-1.pp")], rec["argv"])
        self.assertEqual("hi", rec["env"]["FACTER_greeting"])
        self.assertEqual("3", rec["env"]["FACTER_count"])
        self.assertEqual(str(self.root / "out/dep-1"),
                         rec["env"]["FACTER_heat_outputs_path"])
        hiera = self.root / "hiera/heat_config_res.json"
        self.assertEqual({"greeting": "hi", "count": 3},
                         json.loads(hiera.read_text()))
        self.assertEqual(0o600, self.mode(hiera))

    def test_failure_status_is_kept(self) -> None:
        result = self.run_hook("puppet", deployment("puppet", "x"),
                               FAKE_STATUS="4", FAKE_STDERR="Error: bad",
                               **self.env_for())
        self.assertEqual(4, result["deploy_status_code"])
        self.assertEqual("Error: bad", result["deploy_stderr"])


class DockerComposeHookTest(HookTestCase):

    def test_writes_project_and_env_files_then_up(self) -> None:
        config = {"services": {"web": {"image": "nginx",
                                       "env_file": ["./web.env"]}}}
        env_files = json.dumps([{"file_name": "./web.env",
                                 "content": "A=1\n"}])
        dep = deployment("docker-compose", config)
        dep["inputs"].append({"name": "env_files", "value": env_files})
        result = self.run_hook(
            "docker-compose", dep,
            HEAT_DOCKER_COMPOSE_CMD=str(self.fake),
            HEAT_DOCKER_COMPOSE_WORKING=str(self.root / "work"),
            FAKE_STDERR="Creating res_web_1")
        self.assertEqual({"deploy_stdout": "",
                          "deploy_stderr": "Creating res_web_1",
                          "deploy_status_code": 0}, result)
        project = self.root / "work/res"
        rec = self.recorded()
        self.assertEqual([str(self.fake), "up", "-d", "--no-build"],
                         rec["argv"])
        self.assertEqual(str(project), rec["cwd"])
        self.assertEqual(config, json.loads(
            (project / "docker-compose.yml").read_text()))
        self.assertEqual("A=1\n", (project / "web.env").read_text())
        self.assertEqual(0o600, self.mode(project / "web.env"))

    def test_env_file_outside_project_is_refused(self) -> None:
        config = {"services": {"web": {"env_file": "../../evil"}}}
        dep = deployment("docker-compose", config)
        dep["inputs"].append({"name": "env_files", "value": json.dumps(
            [{"file_name": "../../evil", "content": "x"}])})
        result = self.run_hook(
            "docker-compose", dep, HEAT_DOCKER_COMPOSE_CMD=str(self.fake),
            HEAT_DOCKER_COMPOSE_WORKING=str(self.root / "work"))
        self.assertEqual(1, result["deploy_status_code"])
        self.assertFalse((self.root / "evil").exists())
        self.assertFalse(self.record.exists())

    def test_delete_action_does_nothing(self) -> None:
        dep = deployment("docker-compose", {"services": {}})
        dep["inputs"].append({"name": "deploy_action", "value": "DELETE"})
        result = self.run_hook(
            "docker-compose", dep, HEAT_DOCKER_COMPOSE_CMD=str(self.fake),
            HEAT_DOCKER_COMPOSE_WORKING=str(self.root / "work"))
        self.assertEqual(0, result["deploy_status_code"])
        self.assertFalse(self.record.exists())


class JsonFileHookTest(HookTestCase):

    def test_writes_documents_privately(self) -> None:
        target = self.root / "etc/app/conf.json"
        result = self.run_hook("json-file", deployment(
            "json-file", {str(target): {"b": 1, "a": [1, 2]}}))
        self.assertEqual(0, result["deploy_status_code"], result)
        self.assertEqual({"a": [1, 2], "b": 1},
                         json.loads(target.read_text()))
        self.assertTrue(target.read_text().startswith('{\n    "a"'))
        self.assertEqual(0o600, self.mode(target))

    def test_relative_path_fails_others_written(self) -> None:
        target = self.root / "ok.json"
        result = self.run_hook("json-file", deployment(
            "json-file", {"relative.json": {}, str(target): {"x": 1}}))
        self.assertEqual(1, result["deploy_status_code"])
        self.assertIn("relative.json", result["deploy_stderr"])
        self.assertEqual({"x": 1}, json.loads(target.read_text()))


class HieraHookTest(HookTestCase):

    def env_for(self, check: str = "echo empty") -> dict[str, str]:
        return {"HEAT_HIERA_CONFIG": str(self.root / "hiera.yaml"),
                "HEAT_PUPPET_HIERA_DATADIR": str(self.root / "data"),
                "HEAT_HIERA_ELEMENT_CHECK_CMD": check}

    def test_writes_config_and_data(self) -> None:
        result = self.run_hook("hiera", deployment("hiera", {
            "hierarchy": ["node", "common"],
            "datafiles": {"common": {"k": "v"}}}), **self.env_for())
        self.assertEqual(0, result["deploy_status_code"], result)
        text = (self.root / "hiera.yaml").read_text()
        self.assertIn(f"  :datadir: {self.root / 'data'}\n", text)
        self.assertTrue(text.endswith(":hierarchy:\n  - node\n  - common\n"))
        data = self.root / "data/common.json"
        self.assertEqual({"k": "v"}, json.loads(data.read_text()))
        self.assertEqual(0o600, self.mode(data))

    def test_legacy_data_fails_without_writing(self) -> None:
        result = self.run_hook("hiera", deployment("hiera", {
            "datafiles": {"common": {"k": "v"}}}),
            **self.env_for("echo '{\"old\": 1}'"))
        self.assertEqual(1, result["deploy_status_code"])
        self.assertIn("os-apply-config", result["deploy_stderr"])
        self.assertFalse((self.root / "data/common.json").exists())

    def test_name_leaving_datadir_is_refused(self) -> None:
        result = self.run_hook("hiera", deployment("hiera", {
            "datafiles": {"../escape": {"k": "v"}}}), **self.env_for())
        self.assertEqual(1, result["deploy_status_code"])
        self.assertFalse((self.root / "escape.json").exists())


class ApplyConfigHookTest(HookTestCase):

    def test_upstream_command_variable_and_alias(self) -> None:
        result = self.run_hook(
            "apply-config", deployment("apply-config", {"k": "v"}),
            HEAT_APPLY_CONFIG_CMD=str(self.fake),
            HEAT_APPLY_CONFIG_STATE=str(self.root / "state"),
            OS_CONFIG_FILES="", FAKE_STDOUT="rendered")
        self.assertEqual({"deploy_stdout": "rendered", "deploy_stderr": "",
                          "deploy_status_code": 0}, result)
        argv = self.recorded()["argv"]
        self.assertEqual([str(self.fake), "--metadata",
                          str(self.root / "state/dep-1.json")], argv)
        alias = (hook_source("apply-config").parents[1]
                 / "install.d/50-heat-config-hook-apply-config")
        self.assertIn('ln -sf apply-config "$HEAT_CONFIG_HOOKS/'
                      'os-apply-config"', alias.read_text())
