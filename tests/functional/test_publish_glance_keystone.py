"""The glance provider against a glance-api that authenticates with a
real Keystone: wrong credentials are one line and exit 1, the right ones
publish.

Keystone is the control plane's (``ControlPlane.start(mode="keystone")``:
MariaDB and Keystone only, from the control plane's cached venv; the
real-Heat test uses the same venv later in the tier).  glance-api runs
from the publish tier's Glance venv (it already holds
keystonemiddleware) with the ``keystone`` paste flavor, its own service
user, and Glance's own policy.  Loopback only; Keystone's catalog names
``tie-control.test``, which ``start`` resolves through /etc/hosts (so
this module needs root, or ``TIE_HOSTS_FILE``, as the control plane does).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import testtools
from testtools import content

from tests.functional.test_publish_base import make_image
from tripleo_elements import errors
from tripleo_elements.publish import core
from tripleo_elements.publish.testservers import (
    GlanceServer, KeystoneAuth, clouds_yaml)
from tripleo_elements.testing.controlplane import ControlPlane, services

TOP = Path(__file__).resolve().parents[2]
WRONG_PASSWORD = "wrong-password-5e0c7b"


class TestGlanceWithKeystone(testtools.TestCase):

    cp: ClassVar[ControlPlane]
    server: ClassVar[GlanceServer]
    keystone: ClassVar[KeystoneAuth]
    image: ClassVar[Path]
    work: ClassVar[Path]
    timings: ClassVar[dict[str, float]]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if not shutil.which("qemu-img"):
            raise cls.skipException("qemu-img is not installed")
        try:
            services._need(services.MARIADBD, "mariadb-server")
        except errors.TieError as exc:
            raise cls.skipException(exc.render()) from None
        if os.geteuid() != 0 and "TIE_HOSTS_FILE" not in os.environ:
            raise cls.skipException(
                "the control plane adds its name to /etc/hosts: needs root "
                "(or TIE_HOSTS_FILE)")
        cls.work = Path(tempfile.mkdtemp(prefix="tie-glance-ks-"))
        cls.addClassCleanup(shutil.rmtree, cls.work, True)
        cls.timings = {}
        began = time.monotonic()
        cls.cp = ControlPlane(cls.work / "control-plane")
        cls.addClassCleanup(cls.cp.stop)
        cls.cp.start(mode="keystone")
        cls.timings.update({f"keystone_{k}": v
                            for k, v in cls.cp.timings.items()})
        glance_password = cls.cp.service_user("glance")
        cls.keystone = KeystoneAuth(
            auth_url=f"http://127.0.0.1:{cls.cp.ports.keystone}/v3",
            service_user="glance", service_password=glance_password,
            user="admin", password=cls.cp.admin_env()["OS_PASSWORD"],
            project="admin")
        (cls.work / "glance").mkdir()
        cls.server = GlanceServer(cls.work / "glance",
                                  keystone=cls.keystone).start()
        cls.addClassCleanup(cls.server.stop)
        cls.timings["keystone_and_glance_up_s"] = time.monotonic() - began
        (cls.work / "img").mkdir()
        cls.image = make_image(cls.work / "img" / "ks.qcow2", b"ks", mib=8)

    def secrets(self) -> list[str]:
        return [WRONG_PASSWORD, self.keystone.password,
                self.keystone.service_password, *self.cp.secret_values()]

    def publish(self, clouds: Path) -> tuple[int, str, str]:
        """``build-image publish`` as a user runs it, with ``clouds``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OS_")}
        env.update(PYTHONPATH=str(TOP), OS_CLIENT_CONFIG_FILE=str(clouds))
        proc = subprocess.run(
            [sys.executable, "-m", "tripleo_elements.cli", "publish",
             str(self.image), "--to", f"glance://{self.server.cloud}"],
            env=env, capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stdout, proc.stderr

    def images(self, name: str) -> list[Any]:
        from openstack import config as occ, connection
        cfg = occ.OpenStackConfig(config_files=[
            self.server.env()["OS_CLIENT_CONFIG_FILE"]], load_envvars=False)
        conn = connection.Connection(
            config=cfg.get_one(cloud=self.server.cloud))
        return list(conn.image.images(name=name))

    def test_glance_refuses_requests_without_a_token(self) -> None:
        # The auth path is real: no token, no images.
        request = urllib.request.Request(f"{self.server.endpoint}/v2/images")
        error = self.assertRaises(urllib.error.HTTPError,
                                  urllib.request.urlopen, request, None, 30)
        self.assertEqual(401, error.code)

    def test_wrong_password_one_line_exit_1_then_right_one_publishes(
            self) -> None:
        wrong = self.work / "clouds-wrong.yaml"
        wrong.write_text(clouds_yaml(self.server.cloud, self.server.endpoint,
                                     self.keystone, password=WRONG_PASSWORD))
        began = time.monotonic()
        code, out, err = self.publish(wrong)
        self.timings["wrong_password_s"] = time.monotonic() - began
        self.addDetail("wrong-password-stderr",
                       content.text_content(err))
        self.assertEqual(1, code, err)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertRegex(err.strip(), r"^error\[publish-auth\]: "
                         rf"glance://{self.server.cloud}: .*unauthorized")
        self.assertEqual([], [s for s in self.secrets() if s in out + err])
        self.assertEqual([], self.images("ks"))

        began = time.monotonic()
        code, out, err = self.publish(
            Path(self.server.env()["OS_CLIENT_CONFIG_FILE"]))
        self.timings["publish_s"] = time.monotonic() - began
        self.assertEqual(0, code, err)
        self.assertEqual([], [s for s in self.secrets() if s in out + err])
        [image] = self.images("ks")
        data = self.image.read_bytes()
        self.assertEqual(hashlib.sha512(data).hexdigest(), image.hash_value)
        self.assertEqual(core.sha256_file(self.image),
                         image.properties["tie_sha256"])
        self.addDetail("timings", content.json_content(
            dict(sorted(self.timings.items()))))
