"""The config drive and Heat-shaped user data the functional tier boots."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fixtures
import testtools

from tripleo_elements.testing import configdrive

METADATA = {"os-collect-config": {"request": {"metadata_url": "http://x/"},
                                  "collectors": ["request"],
                                  "polling_interval": 5}}


def parts(user_data: str) -> list[email.message.Message]:
    message = email.message_from_string(user_data)
    assert message.is_multipart()
    return list(message.get_payload())


class TestHeatUserData(testtools.TestCase):

    def test_parts_in_heat_order(self) -> None:
        extra = configdrive.UserPart("#!/bin/sh\ntrue\n", "userdata",
                                     "x-shellscript")
        got = [(p.get_content_type(), p.get_filename())
               for p in parts(configdrive.heat_user_data(METADATA, [extra]))]
        self.assertEqual([
            ("text/cloud-config", "cloud-config"),
            ("text/cloud-boothook", "boothook.sh"),
            ("text/part-handler", "part-handler.py"),
            ("text/x-shellscript", "userdata"),
            ("text/x-cfninitdata", "cfn-init-data"),
        ], got)

    def test_cfn_init_data_is_the_metadata(self) -> None:
        last = parts(configdrive.heat_user_data(METADATA))[-1]
        self.assertEqual(METADATA, json.loads(last.get_payload(decode=True)))

    def test_part_handler_writes_cfninitdata(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        handler = parts(configdrive.heat_user_data(METADATA))[2]
        source = handler.get_payload(decode=True).decode()
        self.assertTrue(source.startswith("#part-handler\n"))
        source = source.replace(repr(configdrive.HEAT_CFNTOOLS_DIR),
                                repr(tmp + "/state"))
        namespace: dict[str, Any] = {}
        exec(compile(source, "part-handler.py", "exec"), namespace)
        self.assertEqual(["text/x-cfninitdata"], namespace["list_types"]())
        namespace["handle_part"](None, "__begin__", None, None)
        namespace["handle_part"](None, "text/x-cfninitdata",
                                 "cfn-init-data", '{"a": 1}')
        namespace["handle_part"](None, "__end__", None, None)
        written = Path(tmp, "state", "cfn-init-data")
        self.assertEqual('{"a": 1}', written.read_text())
        self.assertEqual(0o600, written.stat().st_mode & 0o777)

    def test_request_transport_key(self) -> None:
        self.assertEqual(METADATA, configdrive.os_collect_config_request(
            "http://x/", 5))


class TestConfigDrive(testtools.TestCase):

    instance = configdrive.Instance(
        uuid="0b5c1c1e-0000-4000-8000-000000000001", hostname="tie-test",
        public_keys={"tie": "ssh-ed25519 AAAA test"})

    def test_tree_layout(self) -> None:
        root = Path(self.useFixture(fixtures.TempDir()).path)
        configdrive.write_tree(root, self.instance, "UD")
        meta = json.loads(
            (root / "openstack/latest/meta_data.json").read_text())
        self.assertEqual(self.instance.uuid, meta["uuid"])
        self.assertEqual("tie-test", meta["hostname"])
        self.assertEqual({"tie": "ssh-ed25519 AAAA test"},
                         meta["public_keys"])
        self.assertEqual("UD", (root / "openstack/latest/user_data")
                         .read_text())
        ec2 = json.loads((root / "ec2/latest/meta-data.json").read_text())
        self.assertEqual("ssh-ed25519 AAAA test",
                         ec2["public-keys"]["0"]["openssh-key"])

    def test_iso_label_and_files(self) -> None:
        if not (shutil.which("xorriso") or shutil.which("genisoimage")):
            self.skipTest("needs xorriso or genisoimage")
        if not shutil.which("blkid"):
            self.skipTest("needs blkid")
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        iso = configdrive.build_config_drive(tmp / "cd.iso", self.instance,
                                             "UD")
        probe = subprocess.run(["blkid", "-o", "export", str(iso)],
                               capture_output=True, text=True, check=True)
        self.assertIn("LABEL=config-2", probe.stdout.splitlines())
        self.assertIn("TYPE=iso9660", probe.stdout.splitlines())
        if shutil.which("xorriso"):
            listing = subprocess.run(
                ["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"],
                capture_output=True, text=True, check=True).stdout
            for name in ("/openstack/latest/meta_data.json",
                         "/openstack/latest/user_data",
                         "/ec2/latest/meta-data.json"):
                self.assertIn(f"'{name}'", listing)
