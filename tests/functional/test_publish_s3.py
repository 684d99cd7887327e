"""The s3 provider against a real SeaweedFS S3 gateway on loopback."""

from __future__ import annotations

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

    def test_presigned_url_serves_the_image(self) -> None:
        import urllib.request
        location, _ = self.publish(self.image_a, "url", presign_seconds=300)
        self.assertTrue(location.download_url.startswith(
            self.server.endpoint))
        with urllib.request.urlopen(location.download_url) as reply:
            data = reply.read()
        self.assertEqual(location.sha256, __import__("hashlib").sha256(
            data).hexdigest())
