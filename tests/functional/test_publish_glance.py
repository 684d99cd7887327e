"""The glance provider against a real glance-api (uWSGI, sqlite, file
store, no Keystone) on loopback."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import testtools

from tests.functional.test_publish_base import (
    interrupt_after_a_third, make_image)
from tripleo_elements.publish import core, target
from tripleo_elements.publish.errors import MaintenanceMode, PublishError
from tripleo_elements.publish.testservers import GlanceServer


class TestGlanceProvider(testtools.TestCase):

    server: ClassVar[GlanceServer]
    image_a: ClassVar[Path]
    image_b: ClassVar[Path]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if not shutil.which("qemu-img"):
            raise cls.skipException("qemu-img is not installed")
        work = Path(tempfile.mkdtemp(prefix="tie-publish-glance-"))
        cls.addClassCleanup(shutil.rmtree, work, True)
        for sub in ("a", "b"):
            (work / sub).mkdir()
        cls.image_a = make_image(work / "a" / "gl.qcow2", b"ga")
        cls.image_b = make_image(work / "b" / "gl.qcow2", b"gb")
        cls.server = GlanceServer(work / "server").start()
        cls.addClassCleanup(cls.server.stop)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OS_",))}
        env.update(self.server.env())
        return env

    def conn(self) -> Any:
        from openstack import config as occ, connection
        cfg = occ.OpenStackConfig(config_files=[
            self.server.env()["OS_CLIENT_CONFIG_FILE"]], load_envvars=False)
        return connection.Connection(config=cfg.get_one(cloud="tie-glance"))

    def publish(self, image: Path, progress: Any = None,
                name: str = "gl") -> tuple[Any, list[int]]:
        artifact = core.load_artifact(image, name)
        store = core.open_store(target.from_url("glance://tie-glance"),
                                self.env())
        sent: list[int] = []
        return core.publish(artifact, store, progress or sent.append,
                            self.env()), sent

    def named(self, name: str) -> list[Any]:
        return list(self.conn().image.images(name=name))

    def test_upload_verify_read_back_rotate(self) -> None:
        loc_a, sent = self.publish(self.image_a, name="rot")
        self.assertTrue(loc_a.uploaded)
        [image] = self.named("rot")
        data = self.conn().image.download_image(image).content
        self.assertEqual(loc_a.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual("sha512", image.hash_algo)
        self.assertEqual(hashlib.sha512(data).hexdigest(), image.hash_value)
        self.assertEqual(("qcow2", "bare"),
                         (image.disk_format, image.container_format))
        self.assertIn("latest", image.tags)
        # Re-publish: nothing sent.
        again, sent = self.publish(self.image_a, name="rot")
        self.assertEqual((False, []), (again.uploaded, sent))
        # A new build takes the name and the tag; the old one stays.
        loc_b, _ = self.publish(self.image_b, name="rot")
        [new] = self.named("rot")
        self.assertEqual(loc_b.extra["id"], new.id)
        self.assertIn("latest", new.tags)
        [old] = self.named(f"rot-{loc_a.sha256[:12]}")
        self.assertEqual(loc_a.extra["id"], old.id)
        self.assertNotIn("latest", old.tags)

    def test_killed_mid_upload_leaves_the_name_alone(self) -> None:
        first, _ = self.publish(self.image_a, name="kill")
        size = self.image_b.stat().st_size
        done = [0]

        def crash(n: int) -> None:
            done[0] += n
            if done[0] > size // 3 and self.server.procs:
                self.server.kill()

        try:
            with testtools.ExpectedException(PublishError, ".*"):
                self.publish(self.image_b, progress=crash, name="kill")
        finally:
            self.server.start()
        [current] = self.named("kill")
        self.assertEqual(first.extra["id"], current.id)
        self.assertIn("latest", current.tags)
        location, _ = self.publish(self.image_b, name="kill")
        self.assertTrue(location.uploaded)
        self.assertEqual([], [i.name for i in self.conn().image.images()
                              if ".uploading-" in (i.name or "")])

    def test_interrupted_upload_deletes_the_staging_image(self) -> None:
        interrupt = interrupt_after_a_third(self.image_b.stat().st_size)
        self.assertRaises(KeyboardInterrupt, self.publish, self.image_b,
                          interrupt, "intr")
        self.assertEqual([], [i.name for i in self.conn().image.images()
                              if (i.name or "").startswith("intr")])

    def test_maintenance(self) -> None:
        store = core.open_store(target.from_url("glance://tie-glance"),
                                self.env())
        store.lifecycle.enter_maintenance("db upgrade")
        self.addCleanup(store.lifecycle.cancel_maintenance)
        with testtools.ExpectedException(MaintenanceMode, ".*db upgrade"):
            self.publish(self.image_a, name="maint")
        self.assertEqual([], self.named("maint"))
