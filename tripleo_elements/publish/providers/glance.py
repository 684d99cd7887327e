"""``glance``: the OpenStack Image service through openstacksdk.

Auth is openstacksdk's: ``clouds.yaml`` and ``OS_CLOUD`` (the ``cloud``
setting names the entry), or ``OS_*`` variables.  The image goes up under a
staging name (``NAME.uploading-SHA12``) with its disk/container format and
the manifest's properties (``os_distro``, ``os_version``, ``hw_*``, the
build id, our sha256); Glance's ``os_hash_value`` (sha512) must equal ours,
else it is deleted.  Only then is it rotated in: the previous image named
NAME is renamed ``NAME-SHA12`` and loses the ``latest`` tag, the new one
takes NAME and the tag, and previous images beyond ``keep`` are retired.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tripleo_elements import errors
from tripleo_elements.publish import api, secrets
from tripleo_elements.publish.errors import (
    PublishAuthError, PublishError, PublishSettingsError, VerifyError)

MAINTENANCE_NAME = ".tie-maintenance"
PROP_SHA = "tie_sha256"
PROP_NAME = "tie_image"


class _Reader:
    """The image file, hashed (sha512) and reported as Glance reads it.

    ``len`` and ``tell`` let requests send a Content-Length (uWSGI's
    chunked input is not what glance-api reads reliably)."""

    def __init__(self, f: Any, size: int, progress: api.ProgressFn) -> None:
        self.f = f
        self.len = size
        self.pos = 0
        self.progress = progress
        self.sha512 = hashlib.sha512()

    def tell(self) -> int:
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        chunk = self.f.read(-1 if size is None else size)
        if chunk:
            self.pos += len(chunk)
            self.sha512.update(chunk)
            self.progress(len(chunk))
        return bytes(chunk)


class GlanceStore:
    def __init__(self, settings: Mapping[str, Any],
                 env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.cloud = settings.get("cloud") or env.get("OS_CLOUD") or ""
        self.tag = settings.get("tag", "latest")
        self.keep = settings.get("keep", 1)
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            from openstack import config as occ
            from openstack import connection
            files = list(occ.loader.CONFIG_FILES)
            if self.env.get("OS_CLIENT_CONFIG_FILE"):
                files.insert(0, self.env["OS_CLIENT_CONFIG_FILE"])
            try:
                region = occ.OpenStackConfig(
                    config_files=files,
                    load_envvars=not self.cloud).get_one(
                        cloud=self.cloud or None,
                        region_name=self.settings.get("region"))
                self._conn = connection.Connection(config=region)
            except Exception as exc:
                if type(exc).__name__ == "ConfigException":
                    raise PublishSettingsError(
                        f"glance://{self.cloud}: "
                        f"{secrets.one_line(exc).split(': ', 1)[-1]}",
                        "name a cloud of clouds.yaml (OS_CLIENT_CONFIG_FILE,"
                        " ~/.config/openstack/) or set OS_CLOUD") from None
                raise self._fail("connect", exc) from None
        return self._conn

    def _fail(self, what: str, exc: Exception) -> errors.TieError:
        if isinstance(exc, errors.TieError):
            return exc  # already ours (e.g. from connecting)
        text = secrets.redact(secrets.one_line(exc), self.env)
        response = getattr(exc, "response", None)
        status = getattr(exc, "http_status", None) or getattr(
            exc, "status_code", None) or getattr(response, "status_code",
                                                 None)
        if status in (401, 403) or type(exc).__name__ in (
                "Unauthorized", "MissingAuthPlugin", "NoMatchingPlugin"):
            return PublishAuthError(
                f"glance://{self.cloud}: {what}: unauthorized",
                "check clouds.yaml / OS_CLOUD")
        return PublishError(f"glance://{self.cloud}: {what}: {text}",
                            "nothing was left under the final name")

    def _images(self, **filters: Any) -> list[Any]:
        return sorted(self.conn.image.images(**filters),
                      key=lambda i: (i.created_at or "", i.id))

    def _location(self, artifact: api.Artifact, image: Any,
                  uploaded: bool) -> api.Location:
        return api.Location(provider="glance",
                            url=f"glance://{self.cloud}/{image.id}",
                            sha256=image.properties.get(PROP_SHA, ""),
                            size=int(image.size or 0), uploaded=uploaded,
                            extra={"id": image.id, "name": image.name})

    # Driver
    def find(self, artifact: api.Artifact) -> api.Location | None:
        try:
            for image in self._images(status="active"):
                props = image.properties or {}
                if props.get(PROP_SHA) == artifact.sha256 and \
                        props.get(PROP_NAME) == artifact.name:
                    return self._location(artifact, image, uploaded=False)
        except Exception as exc:
            raise self._fail("look up", exc) from None
        return None

    def create(self, artifact: api.Artifact,
               progress: api.ProgressFn) -> api.Location:
        staging = f"{artifact.name}.uploading-{artifact.sha256[:12]}"
        props = {k: str(v) for k, v in artifact.manifest.items()
                 if k in ("os_distro", "os_version", "build_id")
                 or k.startswith("hw_")}
        props.update({str(k): str(v) for k, v in
                      self.settings.get("properties", {}).items()})
        props.update({PROP_SHA: artifact.sha256, PROP_NAME: artifact.name})
        image = None
        try:
            for stale in self._images(name=staging):
                self.conn.image.delete_image(stale, ignore_missing=True)
            image = self.conn.image.create_image(
                name=staging,
                disk_format=self.settings.get("disk_format",
                                              artifact.disk_format),
                container_format=self.settings.get("container_format",
                                                   "bare"),
                visibility=self.settings.get("visibility", "private"),
                **props)
            with open(artifact.path, "rb") as f:
                reader = _Reader(f, artifact.size, progress)
                self._put(image, reader, artifact.size)
            image = self.conn.image.get_image(image)
            ours = reader.sha512.hexdigest()
            if image.status != "active" or image.hash_algo != "sha512" or \
                    image.hash_value != ours:
                raise VerifyError(
                    f"glance://{self.cloud}/{image.id}: os_hash_value "
                    f"{image.hash_algo}:{(image.hash_value or '')[:16]}... "
                    f"is not sha512:{ours[:16]}... (status {image.status})",
                    "the image was deleted; publish again")
        except BaseException as exc:  # Ctrl-C too: remove the staging image
            if image is not None:
                try:
                    self.conn.image.delete_image(image, ignore_missing=True)
                except Exception:
                    pass  # service gone: the next publish deletes it
            if isinstance(exc, PublishError) or \
                    not isinstance(exc, Exception):
                raise
            raise self._fail("upload", exc) from None
        return self._location(artifact, image, uploaded=True)

    def _put(self, image: Any, reader: _Reader, size: int) -> None:
        """PUT the bytes to /v2/images/ID/file (plain upload, streamed)."""
        self.conn.image.put(
            f"images/{image.id}/file", data=reader,
            headers={"Content-Type": "application/octet-stream"}
        ).raise_for_status()

    def set_latest(self, artifact: api.Artifact,
                   location: api.Location) -> api.Location:
        try:
            new = self.conn.image.get_image(location.extra["id"])
            for old in self._images(name=artifact.name):
                if old.id == new.id:
                    continue
                sha = (old.properties or {}).get(PROP_SHA, old.id)[:12]
                self.conn.image.update_image(old, name=f"{artifact.name}-"
                                             f"{sha}")
                if self.tag in (old.tags or []):
                    self.conn.image.remove_tag(old, self.tag)
            if new.name != artifact.name:
                new = self.conn.image.update_image(new, name=artifact.name)
            if self.tag not in (new.tags or []):
                self.conn.image.add_tag(new, self.tag)
            previous = [i for i in self._images()
                        if (i.properties or {}).get(PROP_NAME) ==
                        artifact.name and i.id != new.id
                        and i.name != artifact.name]
            for old in previous[:max(len(previous) - self.keep, 0)]:
                self.conn.image.delete_image(old, ignore_missing=True)
        except Exception as exc:
            raise self._fail("rotate", exc) from None
        return api.Location(**{**location.__dict__,
                               "latest": f"glance://{self.cloud}/"
                               f"{artifact.name}"})

    def delete(self, artifact: api.Artifact) -> None:
        for image in self._images():
            if (image.properties or {}).get(PROP_SHA) == artifact.sha256:
                self.conn.image.delete_image(image, ignore_missing=True)

    # Lifecycle
    def initialize(self) -> None:
        """Nothing to create: the image service is the store."""

    def maintenance(self) -> str | None:
        try:
            for image in self._images(name=MAINTENANCE_NAME):
                return (image.properties or {}).get(
                    "tie_reason") or "no reason given"
        except Exception as exc:
            raise self._fail("read maintenance state", exc) from None
        return None

    def enter_maintenance(self, reason: str) -> None:
        if self.maintenance() is None:
            self.conn.image.create_image(
                name=MAINTENANCE_NAME, disk_format="raw",
                container_format="bare", visibility="private",
                tie_reason=reason)

    def cancel_maintenance(self) -> None:
        for image in self._images(name=MAINTENANCE_NAME):
            self.conn.image.delete_image(image, ignore_missing=True)

    def delete_store(self) -> None:
        for image in self._images():
            if PROP_NAME in (image.properties or {}):
                self.conn.image.delete_image(image, ignore_missing=True)

    def attach(self, scope: str) -> None:
        """Glance images belong to the project of the credentials."""


class GlanceProvider:
    name = "glance"
    data_types = frozenset({"image"})
    settings_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "cloud": {"type": "string"},
            "region": {"type": "string"},
            "disk_format": {"enum": ["qcow2", "raw", "vhd", "vmdk", "iso",
                                     "ploop", "vdi", "aki", "ari", "ami"]},
            "container_format": {"enum": ["bare", "ovf", "ova", "docker",
                                          "aki", "ari", "ami"]},
            "visibility": {"enum": ["private", "shared", "community",
                                    "public"]},
            "tag": {"type": "string", "minLength": 1},
            "keep": {"type": "integer", "minimum": 0},
            "properties": {"type": "object",
                           "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }

    def configure(self, settings: Mapping[str, Any],
                  env: Mapping[str, str]) -> api.Store:
        store = GlanceStore(settings, env)
        return api.Store(f"glance://{store.cloud}", store, store)


PROVIDER = GlanceProvider()
