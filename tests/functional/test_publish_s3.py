"""The s3 provider against a real SeaweedFS S3 gateway on loopback."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import boto3
import testtools
from botocore.exceptions import ClientError

from tests.functional.test_publish_base import ProviderContract
from tripleo_elements.publish.testservers import SeaweedS3

BUCKET = "tie-images"


class TestS3Provider(ProviderContract, testtools.TestCase):

    @classmethod
    def start_server(cls, workdir: Path) -> Any:
        server = SeaweedS3(workdir)
        server.start()
        return server

    def client(self) -> Any:
        env = self.server.env()
        return boto3.client(
            "s3", endpoint_url=self.server.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1")

    def target(self, prefix: str, **extra: Any) -> str:
        query = {"endpoint_url": self.server.endpoint, "path_style": "true",
                 "part_size_mib": "5", **{k: str(v) for k, v in
                                          extra.items()}}
        return f"s3://{BUCKET}/{prefix}?" + "&".join(
            f"{k}={v}" for k, v in sorted(query.items()))

    def read_object(self, prefix: str, name: str, leaf: str) -> bytes | None:
        try:
            return self.client().get_object(
                Bucket=BUCKET, Key=f"{prefix}/{name}/{leaf}")["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise

    def leftovers(self, prefix: str) -> list[str]:
        uploads = self.client().list_multipart_uploads(
            Bucket=BUCKET, Prefix=f"{prefix}/").get("Uploads", [])
        return sorted(u["Key"] for u in uploads)

    def bad_credentials(self) -> dict[str, str]:
        return {"AWS_SECRET_ACCESS_KEY": "wrong-secret-4f1c9e"}

    def test_parts_carry_sha256_checksums(self) -> None:
        location, _ = self.publish(self.image_a, "cksum")
        key = location.url.split("/", 3)[3]
        head = self.client().head_object(Bucket=BUCKET, Key=key,
                                         ChecksumMode="ENABLED")
        data = self.image_a.read_bytes()
        parts = [hashlib.sha256(data[i:i + (5 << 20)]).digest()
                 for i in range(0, len(data), 5 << 20)]
        composite = base64.b64encode(hashlib.sha256(
            b"".join(parts)).digest()).decode()
        self.assertEqual(f"{composite}-{len(parts)}",
                         head["ChecksumSHA256"])
        self.assertEqual(location.sha256, head["Metadata"]["sha256"])

    def test_presigned_url_serves_the_image(self) -> None:
        import urllib.request
        location, _ = self.publish(self.image_a, "url", presign_seconds=300)
        self.assertTrue(location.download_url.startswith(
            self.server.endpoint))
        with urllib.request.urlopen(location.download_url) as reply:
            data = reply.read()
        self.assertEqual(location.sha256, hashlib.sha256(data).hexdigest())
