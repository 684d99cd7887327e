"""The Heat image under a real Heat: Keystone, nova-api, heat-api and
heat-engine.

Root-only tier.  A control plane (tripleo_elements/testing/controlplane/:
MariaDB, RabbitMQ, Keystone, nova-api, heat-api, heat-engine on
127.0.0.1) drives
the Heat test image (the one test_heat_image builds, from the image
cache) booted once in qemu:

0. stack ``server`` (templates/real-heat-server.yaml): an
   ``OS::Heat::DeployedServer`` with ``POLL_SERVER_HEAT``; its
   ``os_collect_config`` goes on the guest's config drive (as the
   user data's cfn-init-data), with a cloud-config line resolving
   ``tie-control.test`` to 10.0.2.2;
1. stacks ``keys`` (templates/real-heat-keys.yaml: an ``os-apply-config``
   deployment, an SSH key for ``stack``, through the apply-config hook)
   and ``deploy`` (templates/real-heat-deploy.yaml: a ``script``
   deployment with an input and outputs), both ``HEAT_SIGNAL``:
   CREATE_COMPLETE, and the outputs read back through the Heat API were
   computed in the guest;
2. an update changing the input: UPDATE_COMPLETE, new outputs, same boot;
3. stack ``fail`` (templates/real-heat-fail.yaml): CREATE_FAILED with the
   script's stderr in the resource's status reason;
4. deleting ``deploy``: DELETE_COMPLETE.  Heat hands the guest the
   script's DELETE action, then asks Nova whether the deployment's
   server exists; Nova answers 404 for a DeployedServer, so Heat deletes
   the deployment without waiting for the guest's signal (see the
   README, "Testing against a real Heat").  Whether the guest ran the
   DELETE action in that window is recorded; over SSH (with the key the
   ``keys`` stack delivered) CREATE and UPDATE ran exactly once, DELETE
   at most once, all in this boot.
Finally no password of the control plane (nor the server's) is in its
logs or in this test's details.

``TIE_CONTROL_PLANE=DIR`` uses the control plane already running in DIR
(``tools/control-plane start --workdir DIR``) instead of starting one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from testtools import content

from tests.functional import guest
from tests.functional.test_heat_image import HEAT_IMAGE, HeatTestCase
from tripleo_elements.testing import configdrive, qemu
from tripleo_elements.testing.controlplane import (
    ControlPlane, guest_hosts_part)
from tripleo_elements.testing.controlplane.heatapi import HeatApi

TEMPLATES = Path(__file__).resolve().parent / "templates"
GUEST_NAME = "tie-real-heat"
SSH_PORT = 22
CREATE_TIMEOUT = 1200.0
STEP_TIMEOUT = 300.0
VM_TIME_LIMIT = 2400.0
POLLING_INTERVAL = 5
#: How long the test looks for the guest's DELETE run after Heat's
#: DELETE_COMPLETE (three of the guest's polls).
DELETE_SEEN_WAIT = 3 * POLLING_INTERVAL + 30
#: The work directory of a running control plane to use instead of
#: starting one (to iterate on the checks).
CONTROL_PLANE_ENV = "TIE_CONTROL_PLANE"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TestRealHeat(HeatTestCase):

    def test_create_update_fail_delete(self) -> None:
        image = self.image(HEAT_IMAGE)
        timings: dict[str, float] = {}
        self.addCleanup(lambda: self.detail_json("timings", timings))

        running = os.environ.get(CONTROL_PLANE_ENV)
        if running:
            # A control plane already up (tools/control-plane start):
            # used as it is, left running.
            cp = ControlPlane(Path(running))
            self.assertEqual({}, {k: v for k, v in cp.status().items()
                                  if v != "up"})
        else:
            cp = ControlPlane(self.workdir / "control-plane")
            self.addCleanup(cp.stop)
            cp.start()
        self.addOnException(lambda exc_info: self.attach_logs(cp))
        timings.update({f"control_plane_{k}": v
                        for k, v in cp.timings.items()})
        api = HeatApi(cp.keystone_url, "admin", cp.admin_env()["OS_PASSWORD"])
        self.addDetail("control-plane", content.text_content(cp.describe()))

        # 0: the deployed server and its os-collect-config.  Stack names
        # are unique per run (a reused control plane keeps old stacks).
        tag = uuid.uuid4().hex[:8]
        server = api.create(
            f"server-{tag}", (TEMPLATES / "real-heat-server.yaml")
            .read_text(), {"server_name": GUEST_NAME})
        self.addCleanup(self.delete_quietly, api, server)
        self.assertEqual("CREATE_COMPLETE", api.wait(
            server, "CREATE", STEP_TIMEOUT)["stack_status"])
        outputs = api.outputs(server)
        occ: dict[str, Any] = dict(outputs["os_collect_config"])
        occ["polling_interval"] = POLLING_INTERVAL
        self.assertEqual(["heat", "local"], occ["collectors"])
        self.assertTrue(occ["heat"]["auth_url"].startswith(
            f"http://{cp.keystone_url.split('//')[1].split('/')[0]}"))
        server_password = str(occ["heat"]["password"])

        vm = self.boot_deployed_server(image, occ)
        started = time.monotonic()

        # 1: create the deployments; outputs computed in the guest.
        key = guest.make_keypair(self.workdir / "deploy_key", "deploy")
        keys = api.create(f"keys-{tag}", (TEMPLATES / "real-heat-keys.yaml")
                          .read_text(), {"server": outputs["server_id"],
                                         "ssh_key": key.public})
        self.addCleanup(self.delete_quietly, api, keys)
        # One stack at a time: a stack stored (its trust created) while
        # another stack's deployment makes its user in the stack domain
        # can fail in heat-engine with "identity:create_trust ...
        # requires a scope of ['project'], request was made with domain
        # scope" (measured here).
        doc = api.wait(keys, "CREATE", CREATE_TIMEOUT, vm.check_alive)
        timings["vm_start_to_keys_complete_s"] = time.monotonic() - started
        self.assertEqual("CREATE_COMPLETE", doc["stack_status"],
                         str(doc.get("stack_status_reason")))
        deploy_template = (TEMPLATES / "real-heat-deploy.yaml").read_text()
        deploy = api.create(f"deploy-{tag}", deploy_template, {
            "server": outputs["server_id"], "greeting": "hello"})
        self.addCleanup(self.delete_quietly, api, deploy)
        doc = api.wait(deploy, "CREATE", STEP_TIMEOUT, vm.check_alive)
        timings["vm_start_to_create_complete_s"] = time.monotonic() - started
        self.assertEqual("CREATE_COMPLETE", doc["stack_status"],
                         str(doc.get("stack_status_reason")))
        first = api.outputs(deploy)
        self.detail_json("create-outputs", first)
        self.assertEqual(0, first["status_code"])
        self.assertEqual(0, api.outputs(keys)["keys_status_code"])
        self.assertEqual(f"hello from {GUEST_NAME}", first["result"])
        self.assertEqual(digest("hello"), first["digest"])
        boot_id = first["boot_id"]
        self.assertRegex(boot_id, r"^[0-9a-f-]{36}$")
        sd = api.deployment(first["script_deployment_id"])
        self.assertEqual("COMPLETE", sd["status"])
        self.assertIn("computing for hello",
                      sd["output_values"]["deploy_stdout"])

        # 2: update the input: new outputs, same boot.
        changed = time.monotonic()
        api.update(deploy, {"greeting": "bonjour"})
        doc = api.wait(deploy, "UPDATE", STEP_TIMEOUT, vm.check_alive)
        timings["update_s"] = time.monotonic() - changed
        self.assertEqual("UPDATE_COMPLETE", doc["stack_status"],
                         str(doc.get("stack_status_reason")))
        second = api.outputs(deploy)
        self.detail_json("update-outputs", second)
        self.assertEqual(f"bonjour from {GUEST_NAME}", second["result"])
        self.assertEqual(digest("bonjour"), second["digest"])
        self.assertEqual(boot_id, second["boot_id"], "the guest rebooted")

        # 3: a failing script: CREATE_FAILED, its stderr in the reason.
        failing = time.monotonic()
        fail = api.create(f"fail-{tag}", (TEMPLATES / "real-heat-fail.yaml")
                          .read_text(), {"server": outputs["server_id"]})
        self.addCleanup(self.delete_quietly, api, fail)
        doc = api.wait(fail, "CREATE", STEP_TIMEOUT, vm.check_alive)
        timings["failing_create_s"] = time.monotonic() - failing
        self.assertEqual("CREATE_FAILED", doc["stack_status"])
        resource = api.resource(fail, "fail_deployment")
        self.detail_json("failed-resource", {
            k: resource.get(k) for k in ("resource_status",
                                         "resource_status_reason")})
        self.assertEqual("CREATE_FAILED", resource["resource_status"])
        reason = resource["resource_status_reason"]
        self.assertIn("tie: deliberate failure on stderr", reason)
        self.assertIn("non-zero status code: 3", reason)

        # 4: delete: DELETE_COMPLETE (Nova answers 404 for the deployed
        # server, so Heat does not wait for the guest's DELETE signal).
        deleting = time.monotonic()
        api.delete(deploy)
        doc = api.wait(deploy, "DELETE", STEP_TIMEOUT, vm.check_alive)
        timings["delete_s"] = time.monotonic() - deleting
        timings["vm_start_to_delete_complete_s"] = (
            time.monotonic() - started)
        self.detail_json("delete", {
            "status": doc["stack_status"],
            "reason": doc.get("stack_status_reason")})
        self.assertEqual("DELETE_COMPLETE", doc["stack_status"],
                         str(doc.get("stack_status_reason")))

        # Over SSH with the key the os-apply-config deployment delivered:
        # what ran in the guest, once each, in this boot.
        ssh = guest.Ssh(vm.host_port(SSH_PORT), key.private,
                        alive=vm.check_alive)
        ssh.wait(300)
        seen = ssh.run(
            f"for i in $(seq {DELETE_SEEN_WAIT}); do "
            "test -e /var/lib/tie-real-heat/deleted && exit 0; "
            "sleep 1; done; exit 1", timeout=DELETE_SEEN_WAIT + 60,
            check=False).returncode == 0
        timings["delete_ran_in_guest"] = float(seen)
        runs = ssh.run("cat /var/lib/tie-real-heat/runs; "
                       "tr -d '\\n' < /proc/sys/kernel/random/boot_id",
                       timeout=60).stdout.splitlines()
        self.detail_json("guest-runs", runs)
        expected = ["CREATE hello", "UPDATE bonjour"]
        if seen:
            expected.append("DELETE bonjour")
        self.assertEqual(expected + [boot_id], runs)

        # No password in the control plane's logs or in our details.
        secret_values = cp.secret_values() + [server_password]
        leaks = [str(p) for p in sorted(cp.logs.iterdir())
                 if any(s in p.read_text(errors="replace")
                        for s in secret_values)]
        leaks += [name for name, detail in self.getDetails().items()
                  if any(s in detail.as_text() for s in secret_values)]
        self.assertEqual([], leaks)

    # -- helpers --------------------------------------------------------------
    def boot_deployed_server(self, image: Path, occ: dict[str, Any]
                             ) -> qemu.VirtualMachine:
        """Boot the image with ``occ`` on its config drive, as the
        user data's cfn-init-data (os-collect-config's bootstrap)."""
        work = self.workdir / "guest"
        work.mkdir(parents=True, exist_ok=True)
        nova_key = guest.make_keypair(work / "nova_key", "nova")
        instance = configdrive.Instance(
            uuid="6d1c0e43-7a47-4a4e-9f0c-7c1a0f1e2a11", hostname=GUEST_NAME,
            public_keys={"nova": nova_key.public})
        user_data = configdrive.heat_user_data(
            {"os-collect-config": occ},
            [configdrive.UserPart(guest_hosts_part(), "tie-control-hosts",
                                  "cloud-config")])
        drive = configdrive.build_config_drive(
            work / "config-drive.iso", instance, user_data)
        vm = qemu.VirtualMachine(
            image, work / "vm", memory_mb=1024,
            forwards=[SSH_PORT], time_limit=VM_TIME_LIMIT,
            drives=[qemu.Drive.iso(drive)])
        vm.__enter__()
        self.addCleanup(vm.__exit__, None, None, None)
        self.addOnException(lambda exc_info: self.attach_log(
            "console", vm.console_log, 300))
        self.addDetail("accel", content.text_content(
            f"{vm.accel} ({vm.accel_reason})"))
        return vm

    def delete_quietly(self, api: HeatApi, stack: str) -> None:
        try:
            api.delete(stack)
            api.wait(stack, "DELETE", STEP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - cleanup, reported only
            self.addDetail(f"cleanup-{stack.split('/')[0]}",
                           content.text_content(str(exc)))

    def attach_logs(self, cp: ControlPlane) -> None:
        for name in ("heat-engine", "heat", "heat-api", "keystone"):
            for log in sorted(cp.logs.glob(f"{name}*.log")):
                self.attach_log(f"log-{log.stem}", log, 80)

    def detail_json(self, name: str, value: Any) -> None:
        self.addDetail(name, content.text_content(
            json.dumps(value, indent=2, sort_keys=True, default=str)))
