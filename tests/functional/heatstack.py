"""Boot a Heat image the way Nova and Heat would, and play Heat's side.

:class:`HeatGuest` serves the server's metadata from a loopback
:class:`HeatServer` (``POLL_TEMP_URL``: os-collect-config's ``request``
collector polls ``http://10.0.2.2:PORT/metadata/<uuid>``), gives the
guest a ``config-2`` config drive whose user data is Heat's multipart
MIME with the ``cfn-init-data`` part pointing os-collect-config there, and
boots the image in qemu with SSH forwarded to loopback and a blank data
disk.  Two SSH keys: the ``nova`` key goes on the config drive (as Nova
would), the ``deploy`` key reaches the ``stack`` user only through an
``os-apply-config`` deployment, so a working login with it proves that
deployment was applied.

Used by tests/functional/test_heat_image.py and tools/bench-build.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.functional import guest
from tripleo_elements.testing import configdrive, qemu
from tripleo_elements.testing.http import HeatServer, Request

#: Heat's API refuses request bodies over 1 MiB (max_json_body_size).
MAX_SIGNAL_BODY = 1024 * 1024


class LimitedHeatServer(HeatServer):
    """A HeatServer that, like Heat, answers 413 to bodies over 1 MiB
    (recorded in ``refused``; the request is still listed)."""

    def __init__(self, *args: Any, max_body: int = MAX_SIGNAL_BODY,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_body = max_body
        self.refused: list[tuple[str, int]] = []

    def _respond(self, req: Request) -> tuple[int, bytes, dict[str, str]]:
        if len(req.body) <= self.max_body:
            return super()._respond(req)
        with self._lock:
            self._requests.append(req)
            self.refused.append((req.path, len(req.body)))
            self._lock.notify_all()
        return 413, b'{"error": "request body too large"}', {
            "Content-Type": "application/json"}


HOSTNAME = "tie-heat-guest"
#: Set to 1 to have the user data start DHCP on the first NIC (a test-side
#: stand-in while an image brings no network configuration of its own).
DHCP_WORKAROUND_ENV = "TIE_GUEST_DHCP_WORKAROUND"
DHCP_WORKAROUND = configdrive.UserPart(
    "#cloud-config\n"
    "bootcmd:\n"
    "  - [sh, -c, 'for n in /sys/class/net/e*; do "
    "dhclient -1 \"${n##*/}\" && break; done']\n",
    "tie-dhcp-workaround", "cloud-config")
SSH_PORT = 22
CLOUD_INIT_DONE = re.compile(r"Cloud-init v\. \S+ finished")
DATA_DISK_SIZE = "2G"

SCRIPT_ONE = r"""#!/bin/sh
# Deployment 1: outputs, stdout/stderr, and a cfn-style WaitCondition signal.
state=/var/lib/tie-test
mkdir -p "$state"
echo run >> "$state/$deploy_resource_name.runs"
echo "hello from $deploy_resource_name: $greeting"
echo "a line on stderr" >&2
printf '%s world' "$greeting" > "$heat_outputs_path.result"
cat /proc/sys/kernel/random/boot_id > "$heat_outputs_path.boot_id"
wc -l < "$state/$deploy_resource_name.runs" > "$heat_outputs_path.runs"
cfn-signal -e 0 -r "$wc_reason" -d "$wc_data" -i "$wc_id" "$wc_url" \
    > "$state/cfn-signal.log" 2>&1
echo $? > "$heat_outputs_path.cfn_signal_rc"
exit 0
"""

SCRIPT_TWO = r"""#!/bin/sh
# Deployment 2, added later: the guest must converge again, without a reboot.
state=/var/lib/tie-test
mkdir -p "$state"
echo run >> "$state/$deploy_resource_name.runs"
echo "second deployment: $colour"
printf '%s' "$colour" > "$heat_outputs_path.colour"
cat /proc/sys/kernel/random/boot_id > "$heat_outputs_path.boot_id"
"""

#: The lvextend check, run as root in the guest.  Prints one
#: ``round N: mounted|NOT MOUNTED`` line per lvextend.
LVEXTEND_CHECK = r"""
set -u
disk=/dev/vdb
pvcreate -q -y "$disk"
vgcreate -q tievg "$disk"
lvcreate -q -y -n data -L 256M tievg
udevadm settle
mkfs.ext4 -q /dev/tievg/data
mkdir -p /mnt/tiedata
cat > /etc/systemd/system/mnt-tiedata.mount <<'EOF'
[Unit]
Description=lvextend check volume

[Mount]
What=/dev/tievg/data
Where=/mnt/tiedata
Type=ext4
EOF
systemctl daemon-reload
systemctl start mnt-tiedata.mount
findmnt -n -o SOURCE,TARGET /mnt/tiedata || echo "NOT MOUNTED at start"
echo data > /mnt/tiedata/file
for round in 1 2 3 4; do
    lvextend -q -r -L +64M tievg/data > /tmp/lvextend.$round.log 2>&1 \
        || { echo "round $round: lvextend failed"; \
             cat /tmp/lvextend.$round.log; }
    udevadm settle
    sleep 4
    if findmnt -n /mnt/tiedata > /dev/null; then
        echo "round $round: mounted"
    else
        echo "round $round: NOT MOUNTED"
    fi
done
echo "unit: $(systemctl is-active mnt-tiedata.mount)"
echo "size: $(lvs --noheadings --units m -o lv_size tievg/data)"
echo "systemd: $(systemctl --version | head -1)"
echo "lvm2: $(dpkg-query -W -f='${Version}' lvm2)"
echo "rules: $(grep -l DM_NOSCAN /etc/udev/rules.d/*.rules 2>/dev/null)"
journalctl -b --no-pager -o short-monotonic -u mnt-tiedata.mount | tail -n 15
"""


def lvextend_rounds(output: str) -> tuple[int, int]:
    """(rounds still mounted, rounds unmounted) from LVEXTEND_CHECK."""
    mounted = unmounted = 0
    for line in output.splitlines():
        if line.startswith("round ") and line.endswith(": mounted"):
            mounted += 1
        elif line.startswith("round ") and "NOT MOUNTED" in line:
            unmounted += 1
    return mounted, unmounted


class HeatGuest:
    """One booted Heat image and the loopback 'Heat' it talks to."""

    def __init__(self, image: Path, workdir: Path, *,
                 time_limit: float = 1800.0, memory_mb: int = 1024,
                 accel: str | None = None,
                 dhcp_workaround: bool | None = None,
                 cpus: int = 1) -> None:
        self.image = image
        self.cpus = cpus
        if dhcp_workaround is None:
            dhcp_workaround = os.environ.get(DHCP_WORKAROUND_ENV) == "1"
        self.dhcp_workaround = dhcp_workaround
        self.workdir = workdir
        self.server_id = str(uuid.uuid4())
        self.server = LimitedHeatServer()
        self.metadata_path = f"/metadata/{self.server_id}"
        self.time_limit = time_limit
        self.memory_mb = memory_mb
        self.accel = accel
        self.deployments: list[dict[str, Any]] = []
        self.extra_metadata: dict[str, Any] = {}
        self.vm: qemu.VirtualMachine | None = None
        self.started_at = 0.0
        self._stack = contextlib.ExitStack()

    # -- lifecycle --------------------------------------------------------
    def __enter__(self) -> "HeatGuest":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(self.server)
        self.nova_key = guest.make_keypair(self.workdir / "nova_key", "nova")
        self.deploy_key = guest.make_keypair(self.workdir / "deploy_key",
                                             "deploy")
        self.publish()
        bootstrap = configdrive.os_collect_config_request(
            self.server.guest_url(self.metadata_path), polling_interval=5)
        instance = configdrive.Instance(
            uuid=self.server_id, hostname=HOSTNAME,
            public_keys={"nova": self.nova_key.public})
        self.config_drive = configdrive.build_config_drive(
            self.workdir / "config-drive.iso", instance,
            configdrive.heat_user_data(
                bootstrap,
                [DHCP_WORKAROUND] if self.dhcp_workaround else []))
        data_disk = qemu.create_disk(self.workdir / "data.qcow2",
                                     DATA_DISK_SIZE)
        self.vm = qemu.VirtualMachine(
            self.image, self.workdir / "vm", memory_mb=self.memory_mb,
            cpus=self.cpus, forwards=[SSH_PORT], accel=self.accel,
            time_limit=self.time_limit,
            drives=[qemu.Drive(data_disk, snapshot=False),
                    qemu.Drive.iso(self.config_drive)])
        self.started_at = time.monotonic()
        self._stack.enter_context(self.vm)

    # -- Heat's side --------------------------------------------------------
    def signal_path(self, dep_id: str) -> str:
        return f"/signal/{dep_id}"

    def metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(configdrive.os_collect_config_request(
            self.server.guest_url(self.metadata_path), polling_interval=5))
        doc.update(self.extra_metadata)
        doc["deployments"] = list(self.deployments)
        return doc

    def publish(self) -> None:
        self.server.set_document(self.metadata_path, self.metadata())

    def add_deployment(self, dep_id: str, group: str, config: Any, *,
                       inputs: dict[str, Any] | None = None,
                       outputs: Sequence[str] = ()) -> str:
        """Add a deployment and publish the new metadata; returns the
        path its signal will arrive on."""
        path = self.signal_path(dep_id)
        self.deployments.append(guest.deployment(
            dep_id, group, config, server_id=self.server_id,
            signal_url=self.server.guest_url(path), inputs=inputs,
            outputs=outputs))
        self.publish()
        return path

    def add_authenticated_deployment(
            self, dep_id: str, group: str, config: Any,
            signal_inputs: dict[str, Any], *,
            inputs: dict[str, Any] | None = None,
            outputs: Sequence[str] = ()) -> None:
        """A deployment signalled through Keystone (HEAT_SIGNAL,
        ZAQAR_SIGNAL): ``signal_inputs`` replace the URL transport's."""
        dep = guest.deployment(
            dep_id, group, config, server_id=self.server_id,
            signal_url="unused", inputs=inputs, outputs=outputs)
        url_inputs = ("deploy_signal_id", "deploy_signal_verb",
                      "deploy_signal_transport")
        dep["inputs"] = [i for i in dep["inputs"]
                         if i["name"] not in url_inputs]
        dep["inputs"] += [{"name": k, "value": v, "type": "String"}
                          for k, v in signal_inputs.items()]
        self.deployments.append(dep)
        self.publish()

    def add_key_deployment(self, dep_id: str = "apply-keys") -> str:
        """An os-apply-config deployment carrying the deploy key."""
        return self.add_deployment(
            dep_id, "os-apply-config",
            {"stackuser": {"authorized_keys": [self.deploy_key.public]}})

    def alive(self, waiting_for: str = "") -> None:
        """Raise VmExited (qemu's status and log tails) unless the guest
        runs; every wait below calls it at least once a second."""
        if self.vm is None:
            raise AssertionError("the guest was never started")
        self.vm.check_alive(waiting_for)

    def wait_signal(self, path: str, timeout: float) -> Request:
        try:
            return self.server.wait_for(
                path, 1, timeout=timeout,
                alive=lambda: self.alive(f"a signal on {path}"))[0]
        except TimeoutError as exc:
            polls = self.polls()
            hint = ("the guest never fetched its metadata URL: no network, "
                    "or os-collect-config never switched to the request "
                    "collector" if polls == 0 else
                    f"the guest fetched the metadata {polls} time(s)")
            raise AssertionError(f"{exc}; {hint}") from None

    def wait_first_signal(self, path: str, timeout: float,
                          grace: float = 300.0) -> Request:
        """Like :meth:`wait_signal`, but gives up early when cloud-init
        finished more than ``grace`` seconds ago and the guest has still
        not fetched its metadata URL once (it never will)."""
        assert self.vm is not None
        deadline = time.monotonic() + timeout
        finished_at: float | None = None
        while True:
            got = self.signals(path)
            if got:
                return got[0]
            self.alive(f"the first signal on {path}")
            now = time.monotonic()
            if finished_at is None and CLOUD_INIT_DONE.search(
                    self.vm.console_text()):
                finished_at = now
            if finished_at is not None and self.polls() == 0 \
                    and now - finished_at > grace:
                raise AssertionError(
                    f"cloud-init finished {now - finished_at:.0f} s ago "
                    "and the guest has not fetched its metadata URL once: "
                    "no network in the guest, or os-collect-config never "
                    "switched to the request collector")
            if now >= deadline:
                return self.wait_signal(path, 1)
            time.sleep(1)

    def signals(self, path: str) -> list[Request]:
        return [r for r in self.server.requests(path) if r.method != "GET"]

    def polls(self) -> int:
        return len(self.server.requests(self.metadata_path, "GET"))

    # -- access -------------------------------------------------------------
    @property
    def ssh_port(self) -> int:
        assert self.vm is not None
        return self.vm.host_port(SSH_PORT)

    def ssh(self, key: guest.KeyPair | None = None) -> guest.Ssh:
        return guest.Ssh(self.ssh_port, (key or self.deploy_key).private,
                         alive=self.alive)

    def debug_report(self) -> str:
        """What the guest says about its agents (best effort, for
        failure details)."""
        for key in (self.deploy_key, self.nova_key):
            try:
                proc = self.ssh(key).run(
                    "sudo -n sh -c 'systemctl --no-pager status "
                    "os-collect-config cloud-init | head -40; "
                    "journalctl -b --no-pager -u os-collect-config | "
                    "tail -n 120; ls -la /var/lib/heat-cfntools "
                    "/var/lib/heat-config/deployed; "
                    "cat /etc/os-collect-config.conf; "
                    "tail -n 40 /var/log/cloud-init.log'",
                    timeout=60, check=False)
            except Exception as exc:  # noqa: BLE001 - best effort only
                return f"(no SSH: {exc})"
            if proc.returncode == 0:
                return proc.stdout + proc.stderr
        return "(no SSH login possible)"


# -- one deployment of every hook group, converged in the same boot -------
ANSIBLE_PLAYBOOK = """- hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: write the output
      copy:
        content: "{{ greeting }} from ansible"
        dest: "{{ heat_outputs_path }}.result"
"""
PUPPET_MANIFEST = """file { "${facts['heat_outputs_path']}.result":
  ensure  => file,
  content => "${facts['greeting']} from puppet",
}
"""
JSON_FILE = "/var/lib/tie-test/json-file/doc.json"
#: Runs after json-file and hiera: reports what they wrote.
VERIFY_SCRIPT = f"""#!/bin/sh
cat {JSON_FILE} > "$heat_outputs_path.json_file"
cat /etc/puppet/hieradata/tie.json > "$heat_outputs_path.hiera_data"
cat /etc/puppet/hiera.yaml > "$heat_outputs_path.hiera_yaml"
"""
#: 2 MB of stdout: the signal must be trimmed under Heat's 1 MiB limit.
BIG_STDOUT_SCRIPT = """#!/bin/sh
head -c 2000000 /dev/zero | tr '\\0' x
echo END
"""
AUTH_SCRIPT = """#!/bin/sh
printf '%s' "$greeting" > "$heat_outputs_path.result"
"""


def add_group_deployments(stack: HeatGuest, heat_signal: dict[str, Any],
                          zaqar_signal: dict[str, Any]) -> dict[str, str]:
    """Add one deployment per hook group (plus the big-stdout and the
    Keystone-signalled ones); returns name -> signal path for the URL
    ones.  The heavy groups go last so the light ones signal first."""
    paths = {
        "apply-config": stack.add_deployment(
            "group-apply-config", "apply-config",
            {"tie": {"apply_config": "yes"}}),
        "json-file": stack.add_deployment(
            "group-json-file", "json-file",
            {JSON_FILE: {"colour": "green", "n": 1}}),
        "hiera": stack.add_deployment(
            "group-hiera", "hiera",
            {"hierarchy": ["tie", "common"],
             "datafiles": {"tie": {"tie::colour": "green"}}}),
        "verify": stack.add_deployment(
            "group-verify", "script", VERIFY_SCRIPT,
            outputs=["json_file", "hiera_data", "hiera_yaml"]),
        "big-stdout": stack.add_deployment(
            "big-stdout", "script", BIG_STDOUT_SCRIPT),
    }
    stack.add_authenticated_deployment(
        "heat-signal", "script", AUTH_SCRIPT, heat_signal,
        inputs={"greeting": "via heat"}, outputs=["result"])
    stack.add_authenticated_deployment(
        "zaqar-signal", "script", AUTH_SCRIPT, zaqar_signal,
        inputs={"greeting": "via zaqar"}, outputs=["result"])
    paths["ansible"] = stack.add_deployment(
        "group-ansible", "ansible", ANSIBLE_PLAYBOOK,
        inputs={"greeting": "hello"}, outputs=["result"])
    paths["puppet"] = stack.add_deployment(
        "group-puppet", "puppet", PUPPET_MANIFEST,
        inputs={"greeting": "hello"}, outputs=["result"])
    return paths
