"""heat-config: deployments run once, results signalled, failures too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import fixtures
import testtools

from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.heatconfig import make_deployment
from tripleo_elements.testing.heatconfig import run_heat_config
from tripleo_elements.testing.http import HeatServer

SCRIPT = """#!/bin/bash
set -eu
echo "hello $greeting"
echo "to stderr" >&2
printf '%s' "$greeting" > "$heat_outputs_path.result"
printf 'second' > "$heat_outputs_path.other"
"""


class HeatConfigTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.server = HeatServer().start()
        self.addCleanup(self.server.stop)

    def deployment(self, config: str, path: str = "/signal/1",
                   **kwargs: object) -> dict:
        return make_deployment(config, signal_url=self.server.url(path),
                               **kwargs)  # type: ignore[arg-type]

    def test_script_runs_with_inputs_and_signals_outputs(self) -> None:
        dep = self.deployment(SCRIPT, inputs={"greeting": "world"},
                              outputs=["result", "other"])
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        [req] = self.server.requests("/signal/1")
        self.assertEqual("POST", req.method)
        headers = {k.lower(): v for k, v in req.headers.items()}
        self.assertEqual("application/json", headers["content-type"])
        body = req.json()
        self.assertEqual("hello world\n", body["deploy_stdout"])
        self.assertEqual("to stderr\n", body["deploy_stderr"])
        self.assertEqual(0, body["deploy_status_code"])
        self.assertEqual("world", body["result"])
        self.assertEqual("second", body["other"])
        self.assertEqual(
            sorted([f"{dep['id']}.json", f"{dep['id']}.notify.json",
                    f"{dep['id']}.signalled"]), run.records())

    def test_runner_cannot_write_outside_its_root(self) -> None:
        # A deployment writing to a host path outside the scratch root (a
        # /tmp path: in the sandbox /tmp is private): the write succeeds
        # in there and the host path stays untouched.
        host = Path(self.useFixture(fixtures.TempDir()).path) / "escaped"
        dep = self.deployment(
            f"#!/bin/sh\necho pwned > {host}\necho done\n")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual(0, body["deploy_status_code"], body)
        self.assertFalse(host.exists(), "the hook wrote on the host")

    def test_records_and_deployments_file_are_private(self) -> None:
        dep = self.deployment("#!/bin/sh\ntrue\n")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertEqual(0o700, stat.S_IMODE(run.deployed_dir.stat().st_mode))
        for name in run.records():
            mode = stat.S_IMODE((run.deployed_dir / name).stat().st_mode)
            self.assertEqual(0o600, mode, name)
        script = (self.root / "var/lib/heat-config/heat-config-script"
                  / dep["id"])
        self.assertEqual(0o700, stat.S_IMODE(script.stat().st_mode))

    def test_second_run_does_nothing(self) -> None:
        marker = self.root / "ran"
        dep = self.deployment(f"#!/bin/sh\necho x >> {marker}\n")
        first = run_heat_config([dep], self.root)
        self.assertEqual(0, first.returncode, first.stderr)
        second = run_heat_config(None, self.root)
        self.assertEqual(0, second.returncode, second.stderr)
        self.assertEqual("x\n", marker.read_text())
        self.assertEqual(1, len(self.server.requests("/signal/1")))

    def test_new_deployment_runs_old_one_does_not(self) -> None:
        marker = self.root / "ran"
        one = self.deployment(f"#!/bin/sh\necho one >> {marker}\n")
        two = self.deployment(f"#!/bin/sh\necho two >> {marker}\n",
                              path="/signal/2")
        run_heat_config([one], self.root)
        run = run_heat_config([one, two], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertEqual("one\ntwo\n", marker.read_text())
        self.assertEqual(1, len(self.server.requests("/signal/2")))

    def test_failing_script_is_signalled_as_failure(self) -> None:
        dep = self.deployment("#!/bin/sh\necho broken >&2\nexit 3\n")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual(3, body["deploy_status_code"])
        self.assertIn("broken", body["deploy_stderr"])

    def test_missing_hook_leaves_deployment_pending_until_installed(
            self) -> None:
        dep = self.deployment("#!/bin/sh\necho late\n", group="late")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertIn("no hook for group 'late'", run.stderr)
        self.assertEqual([], run.records())
        self.assertEqual([], self.server.requests())
        script_hook = (self.root / "usr/libexec/heat-config/hooks/script")
        run = run_heat_config(None, self.root,
                              hooks={"late": script_hook.read_text()})
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual("late\n", body["deploy_stdout"])

    def test_hook_found_in_upstream_hooks_dir(self) -> None:
        upstream = self.root / "var/lib/heat-config/hooks"
        upstream.mkdir(parents=True)
        (upstream / "custom").write_text(
            "#!/bin/sh\necho '{\"deploy_stdout\": \"custom\"}'\n")
        (upstream / "custom").chmod(0o755)
        dep = self.deployment("x", group="custom")
        run = run_heat_config([dep], self.root, env={
            "HEAT_CONFIG_HOOKS": str(self.root / "none"),
            "HEAT_CONFIG_HOOK_DIRS": f"{self.root}/empty:{upstream}"})
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual("custom", body["deploy_stdout"])

    def test_crashing_hook_is_signalled_as_failure(self) -> None:
        dep = self.deployment("x", group="broken")
        run = run_heat_config([dep], self.root, hooks={
            "broken": "#!/bin/sh\necho 'not json'\nexit 2\n"})
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual(2, body["deploy_status_code"])
        self.assertEqual("not json\n", body["deploy_stdout"])

    def test_signal_retried_after_transient_failures(self) -> None:
        self.server.fail("/signal/1", times=2, status=503)
        dep = self.deployment("#!/bin/sh\necho ok\n")
        run = run_heat_config([dep], self.root, attempts=3)
        self.assertEqual(0, run.returncode, run.stderr)
        requests = self.server.requests("/signal/1")
        self.assertEqual(3, len(requests))
        self.assertEqual(requests[0].body, requests[2].body)
        self.assertEqual("ok\n", requests[2].json()["deploy_stdout"])

    def test_undelivered_signal_is_sent_next_run_without_rerun(self) -> None:
        marker = self.root / "ran"
        self.server.fail("/signal/1", times=2, status=503)
        dep = self.deployment(f"#!/bin/sh\necho x >> {marker}\n")
        first = run_heat_config([dep], self.root, attempts=2)
        self.assertEqual(1, first.returncode)
        self.assertNotIn(f"{dep['id']}.signalled", first.records())
        second = run_heat_config(None, self.root, attempts=2)
        self.assertEqual(0, second.returncode, second.stderr)
        self.assertEqual("x\n", marker.read_text())
        self.assertEqual(3, len(self.server.requests("/signal/1")))

    def test_put_verb_is_honoured(self) -> None:
        dep = self.deployment("#!/bin/sh\ntrue\n", signal_verb="PUT")
        run_heat_config([dep], self.root)
        self.assertEqual(1, len(self.server.requests("/signal/1", "PUT")))

    def test_no_signal_transport_records_only(self) -> None:
        dep = make_deployment("#!/bin/sh\ntrue\n")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertIn(f"{dep['id']}.signalled", run.records())
        self.assertEqual([], self.server.requests())

    def test_hostile_inputs_never_execute(self) -> None:
        canary = self.root / "canary"
        hostile = [f"$(touch {canary})", f"`touch {canary}`",
                   f"'; touch {canary}; '", f"\"\ntouch {canary}\n"]
        inputs = {f"v{i}": value for i, value in enumerate(hostile)}
        script = "#!/bin/bash\n" + "".join(
            f'printf "%s" "$v{i}" > "$heat_outputs_path.o{i}"\n'
            for i in range(len(hostile)))
        dep = self.deployment(script, inputs=inputs,
                              outputs=[f"o{i}" for i in range(len(hostile))],
                              deployment_id=f"$(touch {canary})")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual(hostile, [body[f"o{i}"] for i in range(len(hostile))])
        self.assertFalse(canary.exists())
        for name in run.records():
            self.assertNotIn("/", name)
            self.assertTrue(name.startswith("id-"), name)

    def test_apply_config_hook_renders_with_all_metadata(self) -> None:
        args_file = self.root / "args.json"
        fake = ("#!/usr/bin/python3\nimport json, sys\n"
                f"json.dump(sys.argv[1:], open({str(args_file)!r}, 'w'))\n"
                "print('rendered')\n")
        fake_path = self.root / "fake-oac"
        fake_path.write_text(fake)
        fake_path.chmod(0o755)
        cached = self.root / "cached.json"
        cached.write_text(json.dumps({"other": "value"}))
        dep = self.deployment({"foo": {"bar": "baz"}},
                              group="os-apply-config")
        run = run_heat_config([dep], self.root, env={
            "HEAT_APPLY_CONFIG_COMMAND": str(fake_path),
            "OS_CONFIG_FILES": str(cached)})
        self.assertEqual(0, run.returncode, run.stderr)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual(0, body["deploy_status_code"])
        self.assertEqual("rendered\n", body["deploy_stdout"])
        argv = json.loads(args_file.read_text())
        self.assertEqual("--metadata", argv[0])
        self.assertEqual(str(cached), argv[1])
        config_file = Path(argv[2])
        self.assertEqual({"foo": {"bar": "baz"}},
                         json.loads(config_file.read_text()))
        self.assertEqual(0o600, stat.S_IMODE(config_file.stat().st_mode))

    def test_component_group_picks_config_for_action(self) -> None:
        config = {"configs": [
            {"actions": ["DELETE"], "tool": "script",
             "config": "#!/bin/sh\necho delete\n"},
            {"actions": ["CREATE", "UPDATE"], "tool": "script",
             "config": "#!/bin/sh\necho create\n"}]}
        dep = self.deployment(config, group="component")
        run_heat_config([dep], self.root)
        body = self.server.requests("/signal/1")[0].json()
        self.assertEqual("create\n", body["deploy_stdout"])

    def test_no_deployments_file_is_not_an_error(self) -> None:
        run = run_heat_config(None, self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertEqual([], run.records())

    def test_unreadable_deployments_fail(self) -> None:
        path = self.root / "run/heat-config/heat-config"
        path.parent.mkdir(parents=True)
        path.write_text("{not json")
        run = run_heat_config(None, self.root)
        self.assertEqual(1, run.returncode)
        self.assertIn("cannot read", run.stderr)

    def test_rejected_signal_is_not_retried_forever(self) -> None:
        self.server.fail("/signal/1", times=10, status=403)
        dep = self.deployment("#!/bin/sh\ntrue\n")
        first = run_heat_config([dep], self.root, attempts=3)
        self.assertEqual(1, first.returncode)
        self.assertEqual(1, len(self.server.requests("/signal/1")))
        second = run_heat_config(None, self.root, attempts=3)
        self.assertEqual(0, second.returncode, second.stderr)
        self.assertEqual(1, len(self.server.requests("/signal/1")))

    def test_records_move_from_old_directory_and_do_not_rerun(self) -> None:
        marker = self.root / "ran"
        dep = self.deployment(f"#!/bin/sh\necho x >> {marker}\n")
        old = self.root / "run/heat-config/deployed"
        old.mkdir(parents=True)
        (old / f"{dep['id']}.json").write_text(json.dumps(dep))
        (old / f"{dep['id']}.notify.json").write_text("{}")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertFalse(marker.exists())
        self.assertFalse(old.exists())
        self.assertIn(f"{dep['id']}.json", run.records())
        self.assertEqual([], self.server.requests())

    def test_rebuild_deployed_marks_all_but_os_apply_config(self) -> None:
        deps = [make_deployment("x", deployment_id="a/../b"),
                make_deployment("y", deployment_id="plain"),
                make_deployment({}, group="os-apply-config",
                                deployment_id="oac")]
        fake = self.root / "fake-oac"
        fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(deps)
                        + "\nEOF\n")
        fake.chmod(0o755)
        deployed = self.root / "deployed"
        tool = element_path("heat-config") / "bin/heat-config-rebuild-deployed"
        proc = subprocess.run(
            [sys.executable, str(tool)], capture_output=True, text=True,
            env={"PATH": os.environ["PATH"], "HEAT_CONFIG_OAC": str(fake),
                 "HEAT_CONFIG_DEPLOYED": str(deployed)}, check=False)
        self.assertEqual(0, proc.returncode, proc.stderr)
        names = sorted(p.name for p in deployed.iterdir())
        self.assertEqual(2, len(names))
        self.assertIn("plain.json", names)
        self.assertTrue([n for n in names if n.startswith("id-")])
        run = run_heat_config([deps[1]], self.root, env={
            "HEAT_CONFIG_DEPLOYED": str(deployed)})
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertFalse((deployed / "plain.notify.json").exists())
        self.assertNotIn("running hook", run.stderr)
