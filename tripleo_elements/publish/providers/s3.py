"""``s3``: any S3 endpoint through boto3 (AWS, SeaweedFS, MinIO, Ceph RGW).

Credentials come from boto3's own places (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``); the endpoint from
the ``endpoint_url`` setting or ``AWS_ENDPOINT_URL``.  Images go up as one
multipart upload -- each part with its Content-MD5 and (``checksum:
sha256``, the default) its SHA-256 checksum, which the server verifies;
the whole checked against the composite ETag and composite checksum --
which only becomes visible on completion; any
failure aborts it, and stale uploads of the same key are aborted before a
new one starts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tripleo_elements.publish import api, secrets
from tripleo_elements.publish.errors import (
    PublishAuthError, PublishError, VerifyError)
from tripleo_elements.publish.providers import (
    MAINTENANCE, SCOPE, checksum_line, join, key, latest_doc)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
              "InvalidToken", "ExpiredToken", "Forbidden", "403"}


class S3Store:
    def __init__(self, settings: Mapping[str, Any],
                 env: Mapping[str, str]) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings["bucket"]
        self.prefix = settings.get("prefix", "")
        self.part_size = settings.get("part_size_mib", 16) << 20
        self.expires = settings.get("presign_seconds", 0)
        self.sha256_parts = settings.get("checksum", "sha256") == "sha256"
        self.env = env
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            profile_name=env.get("AWS_PROFILE") or None)
        config = Config(
            s3={"addressing_style":
                "path" if settings.get("path_style") else "auto"},
            retries={"max_attempts": 2, "mode": "standard"},
            signature_version="s3v4",
            connect_timeout=10, read_timeout=120,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required")
        self.endpoint = settings.get("endpoint_url") or env.get(
            "AWS_ENDPOINT_URL") or None
        self.client = session.client(
            "s3", endpoint_url=self.endpoint,
            region_name=settings.get("region") or env.get(
                "AWS_DEFAULT_REGION") or "us-east-1",
            config=config)

    def _fail(self, what: str, exc: Exception) -> PublishError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return PublishAuthError(
                f"s3://{self.bucket}: no credentials",
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in AUTH_CODES:
                return PublishAuthError(
                    f"s3://{self.bucket}: {what}: access denied ({code})",
                    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return PublishError(
            f"s3://{self.bucket}: {what}: "
            f"{secrets.redact(secrets.one_line(exc), self.env)}",
            "nothing is visible under the final name; publish again")

    def _head(self, object_key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError
        try:
            return self.client.head_object(Bucket=self.bucket, Key=object_key,
                                           ChecksumMode="ENABLED")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in (
                    "404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _location(self, artifact: api.Artifact, object_key: str,
                  uploaded: bool) -> api.Location:
        url = ""
        if self.expires:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket,
                                      "Key": object_key},
                ExpiresIn=self.expires)
        return api.Location(provider="s3",
                            url=f"s3://{self.bucket}/{object_key}",
                            sha256=artifact.sha256, size=artifact.size,
                            uploaded=uploaded, download_url=url)

    # Driver
    def find(self, artifact: api.Artifact) -> api.Location | None:
        object_key = key(self.prefix, artifact, artifact.filename)
        try:
            head = self._head(object_key)
        except Exception as exc:
            raise self._fail("look up", exc) from None
        if head is None or head.get("ContentLength") != artifact.size or \
                head.get("Metadata", {}).get("sha256") != artifact.sha256:
            return None
        return self._location(artifact, object_key, uploaded=False)

    def _abort_stale(self, object_key: str) -> None:
        listing = self.client.list_multipart_uploads(
            Bucket=self.bucket, Prefix=object_key)
        for upload in listing.get("Uploads", []):
            if upload["Key"] == object_key:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=object_key,
                    UploadId=upload["UploadId"])

    def create(self, artifact: api.Artifact,
               progress: api.ProgressFn) -> api.Location:
        object_key = key(self.prefix, artifact, artifact.filename)
        upload_id = None
        try:
            self._abort_stale(object_key)
            extra: dict[str, str] = (
                {"ChecksumAlgorithm": "SHA256"} if self.sha256_parts else {})
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=object_key,
                ContentType="application/octet-stream",
                Metadata={"sha256": artifact.sha256,
                          "name": artifact.name}, **extra)["UploadId"]
            parts: list[dict[str, Any]] = []
            md5s: list[bytes] = []
            shas: list[bytes] = []
            sha = hashlib.sha256()
            with open(artifact.path, "rb") as f:
                number = 1
                while chunk := f.read(self.part_size):
                    md5 = hashlib.md5(chunk)
                    sha.update(chunk)
                    part_sha = hashlib.sha256(chunk).digest()
                    checks = {"ContentMD5": _b64(md5.digest())}
                    if self.sha256_parts:
                        checks["ChecksumSHA256"] = _b64(part_sha)
                    reply = self.client.upload_part(
                        Bucket=self.bucket, Key=object_key,
                        UploadId=upload_id, PartNumber=number, Body=chunk,
                        **checks)
                    if reply["ETag"].strip('"') != md5.hexdigest():
                        raise VerifyError(
                            f"s3://{self.bucket}/{object_key}: part {number} "
                            f"ETag mismatch", "the upload was aborted")
                    part = {"PartNumber": number, "ETag": reply["ETag"]}
                    if self.sha256_parts:
                        part["ChecksumSHA256"] = _b64(part_sha)
                    parts.append(part)
                    md5s.append(md5.digest())
                    shas.append(part_sha)
                    progress(len(chunk))
                    number += 1
            if sha.hexdigest() != artifact.sha256:
                raise VerifyError(f"{artifact.path} changed while uploading",
                                  "the upload was aborted")
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts})
            upload_id = None
            expected = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"
            head = self._head(object_key) or {}
            composite = f"{_b64(hashlib.sha256(b''.join(shas)).digest())}" \
                f"-{len(shas)}"
            stored = head.get("ChecksumSHA256")
            if head.get("ETag", "").strip('"') != expected or \
                    head.get("ContentLength") != artifact.size or (
                        self.sha256_parts and stored not in (None, composite)):
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
                raise VerifyError(
                    f"s3://{self.bucket}/{object_key}: stored ETag/checksum "
                    f"{head.get('ETag')}/{stored} is not {expected}/"
                    f"{composite}",
                    "the object was deleted; publish again")
            self.client.put_object(
                Bucket=self.bucket,
                Key=key(self.prefix, artifact, artifact.filename + ".sha256"),
                Body=checksum_line(artifact))
            self.client.put_object(
                Bucket=self.bucket,
                Key=key(self.prefix, artifact,
                        f"{artifact.sha256}.manifest.json"),
                Body=artifact.manifest_json())
        except PublishError:
            raise
        except Exception as exc:
            raise self._fail("upload", exc) from None
        finally:
            if upload_id is not None:
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=object_key,
                        UploadId=upload_id)
                except Exception:
                    pass  # server gone: the next publish aborts it
        return self._location(artifact, object_key, uploaded=True)

    def set_latest(self, artifact: api.Artifact,
                   location: api.Location) -> api.Location:
        pointer = key(self.prefix, artifact, "latest")
        object_key = key(self.prefix, artifact, artifact.filename)
        try:
            self.client.put_object(Bucket=self.bucket, Key=pointer,
                                   Body=latest_doc(artifact, object_key),
                                   ContentType="application/json")
        except Exception as exc:
            raise self._fail("update latest", exc) from None
        return api.Location(**{**location.__dict__,
                               "latest": f"s3://{self.bucket}/{pointer}"})

    def delete(self, artifact: api.Artifact) -> None:
        for leaf in (artifact.filename, artifact.filename + ".sha256",
                     f"{artifact.sha256}.manifest.json"):
            self.client.delete_object(
                Bucket=self.bucket, Key=key(self.prefix, artifact, leaf))

    # Lifecycle
    def initialize(self) -> None:
        from botocore.exceptions import ClientError
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in (
                    "404", "NoSuchBucket", "NotFound"):
                raise self._fail("open bucket", exc) from None
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except Exception as exc2:
                raise self._fail("create bucket", exc2) from None
        except Exception as exc:
            raise self._fail("open bucket", exc) from None

    def maintenance(self) -> str | None:
        try:
            obj = self.client.get_object(
                Bucket=self.bucket, Key=join(self.prefix, MAINTENANCE))
        except Exception as exc:
            from botocore.exceptions import ClientError
            if isinstance(exc, ClientError) and str(
                    exc.response.get("Error", {}).get("Code")) in (
                    "404", "NoSuchKey", "NoSuchBucket", "NotFound"):
                return None
            raise self._fail("read maintenance state", exc) from None
        return obj["Body"].read().decode().strip() or "no reason given"

    def enter_maintenance(self, reason: str) -> None:
        self.initialize()
        self.client.put_object(Bucket=self.bucket,
                               Key=join(self.prefix, MAINTENANCE),
                               Body=reason.encode() + b"\n")

    def cancel_maintenance(self) -> None:
        self.client.delete_object(Bucket=self.bucket,
                                  Key=join(self.prefix, MAINTENANCE))

    def delete_store(self) -> None:
        prefix = join(self.prefix, "")
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])

    def attach(self, scope: str) -> None:
        self.client.put_object(Bucket=self.bucket,
                               Key=join(self.prefix, SCOPE),
                               Body=json.dumps({"scope": scope}).encode())


class S3Provider:
    name = "s3"
    data_types = frozenset({"image", "checksum", "manifest"})
    settings_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "bucket": {"type": "string", "minLength": 3},
            "prefix": {"type": "string"},
            "endpoint_url": {"type": "string", "pattern": "^https?://"},
            "region": {"type": "string"},
            "path_style": {"type": "boolean"},
            "part_size_mib": {"type": "integer", "minimum": 5,
                              "maximum": 5120},
            "presign_seconds": {"type": "integer", "minimum": 0,
                                "maximum": 604800},
            "checksum": {"enum": ["sha256", "md5"]},
        },
        "required": ["bucket"],
        "additionalProperties": False,
    }

    def configure(self, settings: Mapping[str, Any],
                  env: Mapping[str, str]) -> api.Store:
        store = S3Store(settings, env)
        return api.Store(f"s3://{join(store.bucket, store.prefix)}",
                         store, store)


PROVIDER = S3Provider()
