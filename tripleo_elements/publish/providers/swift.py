"""``swift``: OpenStack Swift through python-swiftclient.

Auth is what the ``swift`` CLI reads: ``ST_AUTH``/``ST_USER``/``ST_KEY``
(v1, e.g. tempauth) or ``OS_AUTH_URL``/``OS_USERNAME``/``OS_PASSWORD``/
``OS_PROJECT_NAME`` (Keystone v3).  An image larger than one segment goes
up as a Static Large Object: segments (each checked against its MD5 ETag)
into ``CONTAINER_segments``, then the manifest, so the final name appears
only once everything is there.  Any failure deletes the segments written;
stale segments of the same sha256 are removed before a new upload.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from typing import Any

from tripleo_elements.publish import api, secrets
from tripleo_elements.publish.errors import (
    PublishAuthError, PublishError, PublishSettingsError, VerifyError)
from tripleo_elements.publish.providers import (
    MAINTENANCE, SCOPE, checksum_line, join, key, latest_doc)


class _Reader(io.RawIOBase):
    """Bytes read out in chunks, reporting progress as they go."""

    def __init__(self, data: bytes, progress: api.ProgressFn) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.progress = progress

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos,
                io.SEEK_END: len(self.data)}[whence]
        self.pos = max(0, min(base + offset, len(self.data)))
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        end = len(self.data) if size < 0 else min(self.pos + size,
                                                  len(self.data))
        chunk = bytes(self.data[self.pos:end])
        self.pos = end
        if chunk:
            self.progress(len(chunk))
        return chunk


class SwiftStore:
    def __init__(self, settings: Mapping[str, Any],
                 env: Mapping[str, str]) -> None:
        from swiftclient import client

        self.container = settings["container"]
        self.segments = settings.get("segment_container",
                                     f"{self.container}_segments")
        self.prefix = settings.get("prefix", "")
        self.segment_size = settings.get("segment_size_mib", 256) << 20
        self.temp_url_seconds = settings.get("temp_url_seconds", 0)
        self.env = env
        auth_url = settings.get("auth_url") or env.get("ST_AUTH")
        if auth_url:
            self.conn = client.Connection(
                authurl=auth_url, user=env.get("ST_USER"),
                key=env.get("ST_KEY"), retries=1, timeout=60,
                insecure=settings.get("insecure", False))
        elif env.get("OS_AUTH_URL"):
            self.conn = client.Connection(
                authurl=env["OS_AUTH_URL"], auth_version="3",
                user=env.get("OS_USERNAME"), key=env.get("OS_PASSWORD"),
                os_options={
                    "project_name": env.get("OS_PROJECT_NAME"),
                    "user_domain_name": env.get("OS_USER_DOMAIN_NAME",
                                                "Default"),
                    "project_domain_name": env.get(
                        "OS_PROJECT_DOMAIN_NAME", "Default"),
                    "region_name": env.get("OS_REGION_NAME")},
                retries=1, timeout=60)
        else:
            raise PublishSettingsError(
                f"swift://{self.container}: no auth URL",
                "set ST_AUTH/ST_USER/ST_KEY or OS_AUTH_URL/OS_USERNAME/"
                "OS_PASSWORD/OS_PROJECT_NAME")

    def _fail(self, what: str, exc: Exception) -> PublishError:
        from swiftclient.exceptions import ClientException

        status = getattr(exc, "http_status", None)
        if isinstance(exc, ClientException) and (
                status in (401, 403) or "Unauthorized" in str(exc)):
            return PublishAuthError(
                f"swift://{self.container}: {what}: unauthorized "
                f"({status or 401})", "check ST_USER/ST_KEY (or OS_*)")
        return PublishError(
            f"swift://{self.container}: {what}: "
            f"{secrets.redact(secrets.one_line(exc), self.env)}",
            "nothing is visible under the final name; publish again")

    def _head(self, container: str, obj: str) -> dict[str, str] | None:
        from swiftclient.exceptions import ClientException
        try:
            return self.conn.head_object(container, obj)
        except ClientException as exc:
            if exc.http_status == 404:
                return None
            raise

    def _location(self, artifact: api.Artifact, obj: str,
                  uploaded: bool) -> api.Location:
        url = ""
        if self.temp_url_seconds:
            from swiftclient.utils import generate_temp_url
            account = self.conn.head_account()
            temp_key = account.get("x-account-meta-temp-url-key", "")
            storage_url = self.conn.url
            path = storage_url[storage_url.index("/v1/"):]
            base = storage_url[:storage_url.index("/v1/")]
            url = base + generate_temp_url(
                f"{path}/{self.container}/{obj}", self.temp_url_seconds,
                temp_key, "GET")
        return api.Location(provider="swift",
                            url=f"swift://{self.container}/{obj}",
                            sha256=artifact.sha256, size=artifact.size,
                            uploaded=uploaded, download_url=url)

    # Driver
    def find(self, artifact: api.Artifact) -> api.Location | None:
        obj = key(self.prefix, artifact, artifact.filename)
        try:
            head = self._head(self.container, obj)
        except Exception as exc:
            raise self._fail("look up", exc) from None
        if head is None or int(head.get("content-length", -1)) != \
                artifact.size or head.get("x-object-meta-sha256") != \
                artifact.sha256:
            return None
        return self._location(artifact, obj, uploaded=False)

    def _segment_prefix(self, artifact: api.Artifact) -> str:
        return key(self.prefix, artifact, artifact.sha256) + "/"

    def _delete_segments(self, artifact: api.Artifact) -> None:
        from swiftclient.exceptions import ClientException
        try:
            _, listing = self.conn.get_container(
                self.segments, prefix=self._segment_prefix(artifact),
                full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return
            raise
        for entry in listing:
            self.conn.delete_object(self.segments, entry["name"])

    def create(self, artifact: api.Artifact,
               progress: api.ProgressFn) -> api.Location:
        obj = key(self.prefix, artifact, artifact.filename)
        meta = {"X-Object-Meta-Sha256": artifact.sha256,
                "X-Object-Meta-Image-Name": artifact.name}
        segmented = artifact.size > self.segment_size
        written = False
        try:
            self._delete_segments(artifact)
            md5s, sha = [], hashlib.sha256()
            manifest = []
            with open(artifact.path, "rb") as f:
                if not segmented:
                    data = f.read()
                    sha.update(data)
                    md5 = hashlib.md5(data).hexdigest()
                    self._check_sha(sha, artifact)
                    etag = self.conn.put_object(
                        self.container, obj, _Reader(data, progress),
                        content_length=len(data), etag=md5, headers=meta,
                        content_type="application/octet-stream")
                    md5s.append(md5)
                else:
                    self.conn.put_container(self.segments)
                    number = 1
                    while data := f.read(self.segment_size):
                        written = True
                        sha.update(data)
                        md5 = hashlib.md5(data).hexdigest()
                        seg = f"{self._segment_prefix(artifact)}{number:08d}"
                        got = self.conn.put_object(
                            self.segments, seg, _Reader(data, progress),
                            content_length=len(data), etag=md5)
                        if got != md5:
                            raise VerifyError(f"segment {seg}: ETag {got} "
                                              f"is not {md5}", "aborted")
                        manifest.append({"path": f"/{self.segments}/{seg}",
                                         "etag": md5,
                                         "size_bytes": len(data)})
                        md5s.append(md5)
                        number += 1
                    self._check_sha(sha, artifact)
                    etag = self.conn.put_object(
                        self.container, obj, json.dumps(manifest),
                        query_string="multipart-manifest=put",
                        headers=meta, content_type="application/octet-stream")
            expected = md5s[0] if not segmented else hashlib.md5(
                "".join(md5s).encode()).hexdigest()
            head = self._head(self.container, obj) or {}
            if head.get("etag", "").strip('"') != expected or \
                    int(head.get("content-length", -1)) != artifact.size:
                raise VerifyError(
                    f"swift://{self.container}/{obj}: stored ETag "
                    f"{head.get('etag')} (returned {etag}) is not "
                    f"{expected}", "publish again")
            for leaf, body in (
                    (artifact.filename + ".sha256", checksum_line(artifact)),
                    (f"{artifact.sha256}.manifest.json",
                     artifact.manifest_json())):
                self.conn.put_object(self.container,
                                     key(self.prefix, artifact, leaf), body)
        except BaseException as exc:  # Ctrl-C too: remove the segments
            if written:
                try:
                    self._delete_segments(artifact)
                except Exception:
                    pass  # server gone: the next publish removes them
            if isinstance(exc, PublishError) or \
                    not isinstance(exc, Exception):
                raise
            raise self._fail("upload", exc) from None
        return self._location(artifact, obj, uploaded=True)

    @staticmethod
    def _check_sha(sha: Any, artifact: api.Artifact) -> None:
        if sha.hexdigest() != artifact.sha256:
            raise VerifyError(f"{artifact.path} changed while uploading",
                              "nothing was published")

    def set_latest(self, artifact: api.Artifact,
                   location: api.Location) -> api.Location:
        pointer = key(self.prefix, artifact, "latest")
        obj = key(self.prefix, artifact, artifact.filename)
        try:
            self.conn.put_object(self.container, pointer,
                                 latest_doc(artifact, obj),
                                 content_type="application/json")
        except Exception as exc:
            raise self._fail("update latest", exc) from None
        return api.Location(**{**location.__dict__,
                               "latest": f"swift://{self.container}/"
                               f"{pointer}"})

    def delete(self, artifact: api.Artifact) -> None:
        self.conn.delete_object(
            self.container, key(self.prefix, artifact, artifact.filename),
            query_string="multipart-manifest=delete")
        for leaf in (artifact.filename + ".sha256",
                     f"{artifact.sha256}.manifest.json"):
            self.conn.delete_object(self.container,
                                    key(self.prefix, artifact, leaf))

    # Lifecycle
    def initialize(self) -> None:
        try:
            self.conn.put_container(self.container)
            if self.temp_url_seconds and not self.conn.head_account().get(
                    "x-account-meta-temp-url-key"):
                raise PublishSettingsError(
                    f"swift://{self.container}: temp_url_seconds is set "
                    f"but the account has no Temp-URL-Key",
                    "swift post -m Temp-URL-Key:SECRET")
        except PublishError:
            raise
        except PublishSettingsError:
            raise
        except Exception as exc:
            raise self._fail("create container", exc) from None

    def maintenance(self) -> str | None:
        from swiftclient.exceptions import ClientException
        try:
            _, body = self.conn.get_object(self.container,
                                           join(self.prefix, MAINTENANCE))
        except ClientException as exc:
            if exc.http_status == 404:
                return None
            raise self._fail("read maintenance state", exc) from None
        except Exception as exc:
            raise self._fail("read maintenance state", exc) from None
        return body.decode().strip() or "no reason given"

    def enter_maintenance(self, reason: str) -> None:
        self.initialize()
        self.conn.put_object(self.container, join(self.prefix, MAINTENANCE),
                             reason.encode() + b"\n")

    def cancel_maintenance(self) -> None:
        from swiftclient.exceptions import ClientException
        try:
            self.conn.delete_object(self.container,
                                    join(self.prefix, MAINTENANCE))
        except ClientException as exc:
            if exc.http_status != 404:
                raise

    def delete_store(self) -> None:
        for container in (self.container, self.segments):
            try:
                _, listing = self.conn.get_container(
                    container, prefix=join(self.prefix, ""),
                    full_listing=True)
            except Exception:
                continue
            for entry in listing:
                self.conn.delete_object(container, entry["name"])

    def attach(self, scope: str) -> None:
        self.conn.put_object(self.container, join(self.prefix, SCOPE),
                             json.dumps({"scope": scope}).encode())


class SwiftProvider:
    name = "swift"
    data_types = frozenset({"image", "checksum", "manifest"})
    settings_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "container": {"type": "string", "minLength": 1},
            "prefix": {"type": "string"},
            "segment_container": {"type": "string", "minLength": 1},
            "auth_url": {"type": "string", "pattern": "^https?://"},
            "segment_size_mib": {"type": "integer", "minimum": 1,
                                 "maximum": 5120},
            "temp_url_seconds": {"type": "integer", "minimum": 0},
            "insecure": {"type": "boolean"},
        },
        "required": ["container"],
        "additionalProperties": False,
    }

    def configure(self, settings: Mapping[str, Any],
                  env: Mapping[str, str]) -> api.Store:
        store = SwiftStore(settings, env)
        return api.Store(f"swift://{join(store.container, store.prefix)}",
                         store, store)


PROVIDER = SwiftProvider()
