"""The publish flow, the same for every provider.

maintenance? -> refuse;  already there (same sha256)? -> skip the upload;
else upload + verify (driver.create);  then, and only then, move ``latest``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripleo_elements.publish import api, registry, secrets
from tripleo_elements.publish.errors import (
    MaintenanceMode, PublishError, PublishSettingsError)
from tripleo_elements.publish.target import Target

DISK_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".img": "raw",
                ".vhd": "vhd", ".vmdk": "vmdk", ".iso": "iso",
                ".tar": "tar", ".tgz": "tgz"}
# What of a build manifest goes along (the build environment and command
# do not: they may name private mirrors or tokens).
MANIFEST_KEYS = ("elements", "requested", "sources", "packages", "seconds")
OS_ELEMENTS = ("debian", "ubuntu", "centos", "fedora", "rhel", "rocky",
               "opensuse", "gentoo")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_artifact(path: Path, name: str | None = None) -> api.Artifact:
    """Read the image, its ``.sha256`` (checked) and manifest beside it."""
    if not path.is_file():
        raise PublishSettingsError(f"{path}: no such image file",
                                   "build it first, or fix the path")
    disk_format = DISK_FORMATS.get(path.suffix)
    if disk_format is None:
        raise PublishSettingsError(
            f"{path}: unknown image type '{path.suffix}'",
            f"known: {', '.join(sorted(DISK_FORMATS))}")
    digest = sha256_file(path)
    side = path.with_name(path.name + ".sha256")
    if side.exists():
        recorded = side.read_text().split()[:1]
        if recorded != [digest]:
            raise PublishSettingsError(
                f"{path}: sha256 {digest[:12]}... does not match {side}",
                "the image changed after the build; rebuild it")
    manifest: dict[str, Any] = {}
    mpath = path.with_name(f"{path.stem}.manifest.json")
    if mpath.exists():
        try:
            built = json.loads(mpath.read_text())
        except ValueError as exc:
            raise PublishSettingsError(f"{mpath}: not JSON: {exc}",
                                       "rebuild the image") from None
        manifest = {k: built[k] for k in MANIFEST_KEYS if k in built}
        manifest["build_id"] = hashlib.sha256(
            mpath.read_bytes()).hexdigest()[:16]
        env = built.get("environment", {})
        distro = [e for e in built.get("elements", ()) if e in OS_ELEMENTS]
        if distro:
            manifest["os_distro"] = distro[0]
        if isinstance(env, dict) and env.get("DIB_RELEASE"):
            manifest["os_version"] = env["DIB_RELEASE"]
    image_name = name or path.stem
    if not image_name or "/" in image_name:
        raise PublishSettingsError(f"bad image name '{image_name}'",
                                   "--name takes a plain name, no '/'")
    return api.Artifact(path=path, name=image_name, sha256=digest,
                        size=path.stat().st_size, disk_format=disk_format,
                        manifest=manifest)


def check_target(target: Target) -> api.Provider:
    """Provider found and settings valid, without touching the network:
    what an image definition's ``publish:`` list is checked with before a
    build starts."""
    provider = registry.load(target.provider)
    registry.validate(provider, target.settings, target.label)
    return provider


def open_store(target: Target, env: Mapping[str, str]) -> api.Store:
    return check_target(target).configure(target.settings, env)


def publish(artifact: api.Artifact, store: api.Store,
            progress: api.ProgressFn, env: Mapping[str, str]
            ) -> api.Location:
    with secrets.redacting(env):
        reason = store.lifecycle.maintenance()
        if reason is not None:
            raise MaintenanceMode(
                f"{store.describe} is in maintenance mode ({reason}); "
                f"nothing was uploaded",
                "wait, or end it with build-image publish --to TARGET "
                "--maintenance off")
        store.lifecycle.initialize()
        location = store.driver.find(artifact)
        if location is None:
            location = store.driver.create(artifact, progress)
            if location.sha256 != artifact.sha256:
                raise PublishError(
                    f"{store.describe}: stored sha256 {location.sha256} is "
                    f"not {artifact.sha256}", "the upload was removed")
        return store.driver.set_latest(artifact, location)
