"""A config drive as Nova writes it for a Heat server, for qemu tests.

:func:`heat_user_data` builds the multipart MIME user data in the shape
Heat's ``build_userdata`` gives a server with ``user_data_format:
SOFTWARE_CONFIG``: a ``cloud-config`` part, a ``cloud-boothook``, a
``part-handler`` that writes every ``text/x-cfninitdata`` part to
``/var/lib/heat-cfntools/<filename>``, the user's own parts, and the
server's metadata as the ``x-cfninitdata`` part named ``cfn-init-data``
(os-collect-config's bootstrap ``heat_local`` collector reads it).  The
part bodies are written here, not copied from Heat.

:func:`build_config_drive` writes an ISO 9660 volume labelled
``config-2`` holding ``openstack/latest/meta_data.json``,
``openstack/latest/user_data`` and ``ec2/latest/meta-data.json`` (what
cloud-init's ConfigDrive datasource and os-collect-config's ``ec2``
collector read).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

from tripleo_elements import errors, process

__all__ = [
    "build_config_drive", "CFN_INIT_DATA", "HEAT_CFNTOOLS_DIR",
    "heat_user_data", "Instance", "iso_command", "LABEL",
    "os_collect_config_request", "UserPart", "write_tree",
]

LABEL = "config-2"
CFN_INIT_DATA = "cfn-init-data"
HEAT_CFNTOOLS_DIR = "/var/lib/heat-cfntools"

CLOUD_CONFIG = """\
#cloud-config
# Keep a copy of everything cloud-init's modules print.
output: {all: '| tee -a /var/log/cloud-init-output.log'}
"""

BOOTHOOK = """\
#!/bin/sh
# Heat's boothook makes the /opt/aws/bin links of heat-cfntools; a boothook
# must never fail the boot.
cfn-create-aws-symlinks || true
exit 0
"""

# cloud-init calls handle_part with ctype "__begin__" and "__end__" around
# the parts, and once for each part of a type list_types() names.
PART_HANDLER = f"""\
#part-handler
import os


def list_types():
    return ["text/x-cfninitdata"]


def handle_part(data, ctype, filename, payload):
    if ctype in ("__begin__", "__end__"):
        os.makedirs({HEAT_CFNTOOLS_DIR!r}, mode=0o700, exist_ok=True)
        return
    path = os.path.join({HEAT_CFNTOOLS_DIR!r}, os.path.basename(filename))
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              "w") as handle:
        handle.write(payload)
"""


@dataclasses.dataclass(frozen=True)
class UserPart:
    """One extra user-data part (``subtype`` as in ``text/<subtype>``)."""

    content: str
    filename: str
    subtype: str


def _part(content: str, filename: str, subtype: str) -> MIMEText:
    part = MIMEText(content, _subtype=subtype)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def heat_user_data(metadata: Mapping[str, Any],
                   parts: Sequence[UserPart] = ()) -> str:
    """Heat's multipart user data with ``metadata`` as ``cfn-init-data``."""
    attachments = [
        _part(CLOUD_CONFIG, "cloud-config", "cloud-config"),
        _part(BOOTHOOK, "boothook.sh", "cloud-boothook"),
        _part(PART_HANDLER, "part-handler.py", "part-handler"),
    ]
    attachments += [_part(p.content, p.filename, p.subtype) for p in parts]
    attachments.append(_part(json.dumps(metadata, sort_keys=True),
                             CFN_INIT_DATA, "x-cfninitdata"))
    return MIMEMultipart(_subparts=attachments).as_string()


def os_collect_config_request(metadata_url: str, polling_interval: int = 5,
                              collectors: Sequence[str] = ("request",)
                              ) -> dict[str, Any]:
    """The ``os-collect-config`` key Heat sets for ``POLL_TEMP_URL``."""
    return {"os-collect-config": {
        "request": {"metadata_url": metadata_url},
        "collectors": list(collectors),
        "polling_interval": polling_interval}}


@dataclasses.dataclass(frozen=True)
class Instance:
    """What Nova tells an instance about itself."""

    uuid: str
    hostname: str
    public_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def openstack_meta_data(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "hostname": self.hostname,
                "name": self.hostname.split(".")[0],
                "launch_index": 0, "availability_zone": "nova",
                "public_keys": dict(self.public_keys),
                "keys": [{"name": n, "type": "ssh", "data": k}
                         for n, k in sorted(self.public_keys.items())],
                "meta": {}, "files": []}

    def ec2_meta_data(self) -> dict[str, Any]:
        keys = {str(i): {"openssh-key": key} for i, (_, key) in
                enumerate(sorted(self.public_keys.items()))}
        return {"instance-id": self.uuid, "hostname": self.hostname,
                "local-hostname": self.hostname, "ami-launch-index": 0,
                "public-keys": keys}


def write_tree(root: Path, instance: Instance, user_data: str) -> Path:
    """Write the config drive's files below ``root``."""
    latest = root / "openstack" / "latest"
    latest.mkdir(parents=True, exist_ok=True)
    (latest / "meta_data.json").write_text(
        json.dumps(instance.openstack_meta_data(), indent=2, sort_keys=True))
    (latest / "user_data").write_text(user_data)
    ec2 = root / "ec2" / "latest"
    ec2.mkdir(parents=True, exist_ok=True)
    (ec2 / "meta-data.json").write_text(
        json.dumps(instance.ec2_meta_data(), indent=2, sort_keys=True))
    return root


def iso_command(source: Path, iso: Path) -> list[str]:
    """xorriso (or genisoimage) making a ``config-2`` ISO of ``source``."""
    if shutil.which("xorriso"):
        return ["xorriso", "-as", "mkisofs", "-quiet", "-V", LABEL, "-J",
                "-r", "-o", str(iso), str(source)]
    for tool in ("genisoimage", "mkisofs"):
        if shutil.which(tool):
            return [tool, "-quiet", "-V", LABEL, "-J", "-r", "-o", str(iso),
                    str(source)]
    raise errors.UsageError("no ISO 9660 tool found",
                            "install xorriso (see bindep.txt)")


def build_config_drive(iso: Path, instance: Instance,
                       user_data: str) -> Path:
    """Write the config drive ``iso``; returns it."""
    with tempfile.TemporaryDirectory(prefix="tie-config-drive-") as tmp:
        tree = write_tree(Path(tmp) / "drive", instance, user_data)
        process.run(iso_command(tree, iso), timeout=120)
    return iso
