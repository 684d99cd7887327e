"""The swift provider against real Swift servers on loopback (SLO, tempurl)."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Any

import testtools
from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from tests.functional.test_publish_base import ProviderContract
from tripleo_elements.publish.testservers import SwiftCluster

CONTAINER = "tie-images"


class TestSwiftProvider(ProviderContract, testtools.TestCase):

    @classmethod
    def start_server(cls, workdir: Path) -> Any:
        server = SwiftCluster(workdir)
        server.start()
        return server

    def conn(self) -> Any:
        env = self.server.env()
        return swift.Connection(env["ST_AUTH"], env["ST_USER"],
                                env["ST_KEY"], retries=0)

    def target(self, prefix: str, **extra: Any) -> str:
        # 4 MiB segments: the 24 MiB image goes up as an SLO.
        query = {"segment_size_mib": "4",
                 **{k: str(v) for k, v in extra.items()}}
        return f"swift://{CONTAINER}/{prefix}?" + "&".join(
            f"{k}={v}" for k, v in sorted(query.items()))

    def read_object(self, prefix: str, name: str, leaf: str) -> bytes | None:
        try:
            _, body = self.conn().get_object(CONTAINER,
                                             f"{prefix}/{name}/{leaf}")
        except ClientException as exc:
            if exc.http_status == 404:
                return None
            raise
        return body

    def segments(self, prefix: str) -> list[str]:
        try:
            _, listing = self.conn().get_container(
                f"{CONTAINER}_segments", prefix=f"{prefix}/",
                full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return []
            raise
        return [e["name"] for e in listing]

    def leftovers(self, prefix: str) -> list[str]:
        # Segments not referenced by a stored manifest.
        used: set[str] = set()
        _, listing = self.conn().get_container(
            CONTAINER, prefix=f"{prefix}/", full_listing=True)
        for entry in listing:
            if entry["name"].endswith(".qcow2"):
                _, body = self.conn().get_object(
                    CONTAINER, entry["name"],
                    query_string="multipart-manifest=get")
                import json
                used.update(s["name"].split("/", 2)[2]
                            for s in json.loads(body))
        return sorted(set(self.segments(prefix)) - used)

    def bad_credentials(self) -> dict[str, str]:
        return {"ST_KEY": "wrong-key-7d2a5b"}

    def test_large_image_is_a_static_large_object(self) -> None:
        location, _ = self.publish(self.image_a, "slo")
        head = self.conn().head_object(CONTAINER, location.url.split(
            "/", 3)[3])
        self.assertEqual("True", head.get("x-static-large-object"))
        self.assertEqual(7, len(self.segments("slo")))  # 24 MiB+ / 4 MiB

    def test_temp_url_serves_the_image(self) -> None:
        self.conn().post_account({"X-Account-Meta-Temp-URL-Key": "tk-1"})
        self.addCleanup(self.conn().post_account,
                        {"X-Account-Meta-Temp-URL-Key": ""})
        location, _ = self.publish(self.image_a, "tmpurl",
                                   temp_url_seconds=300)
        self.assertIn("temp_url_sig=", location.download_url)
        with urllib.request.urlopen(location.download_url) as reply:
            data = reply.read()
        self.assertEqual(location.sha256, hashlib.sha256(data).hexdigest())
