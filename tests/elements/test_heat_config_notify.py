"""heat-config-notify: every signal transport, delivered or refused.

The runner (55-heat-config) runs each deployment and heat-config-notify
signals it, against real loopback servers: HeatServer for the URL
transports, a Keystone/Heat/Zaqar stand-in that checks tokens for the
authenticated ones.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
from pathlib import Path
from types import ModuleType

import fixtures
import testtools

from tests.elements.openstack_standin import OpenStackStandIn
from tripleo_elements.testing.elements import element_path
from tripleo_elements.testing.heatconfig import make_deployment
from tripleo_elements.testing.heatconfig import run_heat_config
from tripleo_elements.testing.http import HeatServer

SCRIPT = ("#!/bin/sh\necho \"out $greeting\"\n"
          "printf '%s' \"$greeting\" > \"$heat_outputs_path.result\"\n")


def load_notify() -> ModuleType:
    path = element_path("heat-config") / "bin/heat-config-notify"
    loader = importlib.machinery.SourceFileLoader("heat_config_notify_t",
                                                  str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def authenticated(cloud: OpenStackStandIn, transport: str,
                  **kwargs: object) -> dict:
    dep = make_deployment(SCRIPT, inputs={"greeting": "world"},
                          outputs=["result"])
    extra = cloud.inputs(transport, **kwargs)  # type: ignore[arg-type]
    dep["inputs"] = [i for i in dep["inputs"]
                     if i["name"] != "deploy_signal_transport"]
    dep["inputs"] += [{"name": k, "value": v} for k, v in extra.items()]
    return dep


class TrimTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.notify = load_notify()

    def test_small_body_is_untouched(self) -> None:
        data = {"deploy_stdout": "a", "deploy_stderr": "b", "x": "y"}
        self.assertEqual(json.dumps(dict(data)),
                         self.notify.trim_response(dict(data)))

    def test_large_output_keeps_its_end_under_the_limit(self) -> None:
        stdout = "".join(f"line {i}\n" for i in range(300000))
        stderr = "é\"\n" * 200000  # escapes make JSON longer than text
        body = self.notify.trim_response({
            "deploy_stdout": stdout, "deploy_stderr": stderr,
            "deploy_status_code": 0, "result": "kept"})
        self.assertLessEqual(len(body.encode()), 950000)
        data = json.loads(body)
        self.assertTrue(stdout.endswith(data["deploy_stdout"]))
        self.assertTrue(stderr.endswith(data["deploy_stderr"]))
        self.assertIn("line 299999\n", data["deploy_stdout"])
        self.assertGreater(len(data["deploy_stdout"]), 100000)
        self.assertEqual("kept", data["result"])

    def test_usage_errors_exit_1(self) -> None:
        self.assertEqual(1, self.notify.main(["heat-config-notify"],
                                             io.StringIO("{}")))
        self.assertEqual(1, self.notify.main(
            ["heat-config-notify", "/nonexistent/x.json"],
            io.StringIO("{}")))


class TransportTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.server = HeatServer().start()
        self.addCleanup(self.server.stop)
        self.cloud = OpenStackStandIn().start()
        self.addCleanup(self.cloud.stop)

    def records(self, dep: dict) -> dict[str, object]:
        base = self.root / "var/lib/heat-config/deployed" / dep["id"]
        out: dict[str, object] = {}
        for suffix in (".json", ".notify.json", ".pending", ".signalled"):
            path = Path(str(base) + suffix)
            if path.exists():
                text = path.read_text()
                out[suffix] = json.loads(text) if text.strip() else ""
                self.assertEqual(0o600, path.stat().st_mode & 0o777)
        return out

    # -- CFN_SIGNAL / TEMP_URL_SIGNAL -----------------------------------
    def test_cfn_signal_of_2mb_stdout_is_trimmed_and_accepted(self) -> None:
        dep = make_deployment(
            "#!/bin/sh\nhead -c 2000000 /dev/zero | tr '\\0' x\necho END\n",
            signal_url=self.server.url("/signal/big"))
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        [req] = self.server.requests("/signal/big")
        self.assertLessEqual(len(req.body), 950000)
        body = req.json()
        self.assertTrue(body["deploy_stdout"].endswith("xxEND\n"))
        self.assertEqual(0, body["deploy_status_code"])
        # the untrimmed result stays on the instance
        notify = self.records(dep)[".notify.json"]
        self.assertEqual(2000004, len(notify["deploy_stdout"]))  # type: ignore

    def test_413_is_recorded_and_not_retried(self) -> None:
        self.server.fail("/signal/1", times=5, status=413)
        dep = make_deployment("#!/bin/sh\ntrue\n",
                              signal_url=self.server.url("/signal/1"))
        run = run_heat_config([dep], self.root, attempts=4)
        self.assertEqual(1, run.returncode)
        self.assertEqual(1, len(self.server.requests("/signal/1")))
        self.assertIn("signal refused: HTTP 413", run.stderr)
        outcome = self.records(dep)[".signalled"]
        self.assertEqual({"signalled", "error"}, set(outcome))  # type: ignore
        self.assertFalse(outcome["signalled"])  # type: ignore[index]
        self.assertIn("HTTP 413", outcome["error"])  # type: ignore[index]
        records = self.records(dep)
        self.assertNotIn(".pending", records)
        again = run_heat_config(None, self.root, attempts=4)
        self.assertEqual(0, again.returncode, again.stderr)
        self.assertEqual(1, len(self.server.requests("/signal/1")))

    def test_temp_url_signal_puts(self) -> None:
        dep = make_deployment("#!/bin/sh\necho swift\n",
                              signal_url=self.server.url("/v1/AUTH/c/o"),
                              signal_verb="PUT")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        [req] = self.server.requests("/v1/AUTH/c/o", "PUT")
        self.assertEqual("swift\n", req.json()["deploy_stdout"])

    def test_unreachable_server_keeps_result_for_next_run(self) -> None:
        dep = make_deployment("#!/bin/sh\necho once >> marker\n",
                              signal_url="http://127.0.0.1:9/signal")
        run = run_heat_config([dep], self.root, attempts=2)
        self.assertEqual(1, run.returncode)
        self.assertIn("not delivered, try later", run.stderr)
        records = self.records(dep)
        self.assertIn(".pending", records)
        self.assertNotIn(".signalled", records)

    # -- HEAT_SIGNAL ----------------------------------------------------
    def test_heat_signal_with_keystone_token(self) -> None:
        dep = authenticated(self.cloud, "HEAT_SIGNAL")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        [signal] = self.cloud.signals
        self.assertEqual("heat", signal.kind)
        self.assertTrue(signal.path.endswith(
            "/stacks/stack/0001/resources/deployment/signal"), signal.path)
        self.assertEqual("out world\n", signal.body["deploy_stdout"])
        self.assertEqual("world", signal.body["result"])
        self.assertEqual({"signalled": True},
                         self.records(dep)[".signalled"])

    def test_heat_signal_bad_password_is_refused_once(self) -> None:
        dep = authenticated(self.cloud, "HEAT_SIGNAL", password="wrong")
        run = run_heat_config([dep], self.root, attempts=5)
        self.assertEqual(1, run.returncode)
        self.assertEqual([("/v3/auth/tokens", 401)], self.cloud.refused)
        self.assertEqual([], self.cloud.signals)
        self.assertIn("signal refused", run.stderr)
        outcome = self.records(dep)[".signalled"]
        self.assertFalse(outcome["signalled"])  # type: ignore[index]
        self.assertIn("401", outcome["error"])  # type: ignore[index]

    def test_heat_signal_retries_a_503_then_delivers(self) -> None:
        self.cloud.fail("/heat/", times=2, status=503)
        dep = authenticated(self.cloud, "HEAT_SIGNAL")
        run = run_heat_config([dep], self.root, attempts=3)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertEqual(1, len(self.cloud.signals))
        self.assertEqual(2, len(self.cloud.refused))

    def test_heat_signal_timeout_is_retried_next_run(self) -> None:
        self.cloud.delay = 3
        dep = authenticated(self.cloud, "HEAT_SIGNAL")
        first = run_heat_config([dep], self.root, attempts=2, env={
            "HEAT_CONFIG_SIGNAL_TIMEOUT": "0.5"})
        self.assertEqual(1, first.returncode)
        self.assertIn("attempt 2/2 failed", first.stderr)
        self.assertIn(".pending", self.records(dep))
        self.cloud.delay = 0
        second = run_heat_config(None, self.root)
        self.assertEqual(0, second.returncode, second.stderr)
        [signal] = self.cloud.signals
        self.assertEqual("out world\n", signal.body["deploy_stdout"])
        self.assertNotIn(".pending", self.records(dep))

    # -- ZAQAR_SIGNAL ---------------------------------------------------
    def test_zaqar_signal_posts_message_to_queue(self) -> None:
        dep = authenticated(self.cloud, "ZAQAR_SIGNAL", queue="q-1")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        [signal] = self.cloud.signals
        self.assertEqual("zaqar", signal.kind)
        self.assertEqual("/zaqar/v2/queues/q-1/messages", signal.path)
        messages = signal.body.get("messages", signal.body)
        self.assertEqual(600, messages[0]["ttl"])
        self.assertEqual("world", messages[0]["body"]["result"])

    def test_zaqar_signal_bad_credentials(self) -> None:
        dep = authenticated(self.cloud, "ZAQAR_SIGNAL", password="nope")
        run = run_heat_config([dep], self.root, attempts=4)
        self.assertEqual(1, run.returncode)
        self.assertEqual(1, len(self.cloud.refused))
        self.assertFalse(self.records(dep)[".signalled"][  # type: ignore
            "signalled"])

    # -- NO_SIGNAL ------------------------------------------------------
    def test_no_signal_sends_nothing(self) -> None:
        dep = make_deployment("#!/bin/sh\ntrue\n")
        run = run_heat_config([dep], self.root)
        self.assertEqual(0, run.returncode, run.stderr)
        self.assertEqual([], self.server.requests())
        self.assertEqual([], self.cloud.signals)
        self.assertEqual({"signalled": True},
                         self.records(dep)[".signalled"])
        self.assertNotIn("HEAT_CONFIG", os.environ.get("TIE_UNUSED", ""))
