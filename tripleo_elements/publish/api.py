"""The three interfaces a storage provider implements, and their data.

A third-party provider is a pip package exposing an object that satisfies
:class:`Provider` under the entry point group
``tripleo_elements.publish.provider``.  ``configure(settings, env)`` gets
settings already checked against ``settings_schema`` and the environment
(credentials come from there, the way each service's own tools read them)
and returns a :class:`Store`: the :class:`Driver` and :class:`Lifecycle`
bound to that store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: What a provider may accept; ``image`` is mandatory for publishing.
DATA_TYPES = frozenset({"image", "checksum", "manifest"})


@dataclass(frozen=True)
class Artifact:
    """One image to publish: its bytes, digest and manifest."""

    path: Path
    name: str
    sha256: str
    size: int
    disk_format: str
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The content-addressed name stored under ``name/``."""
        return f"{self.sha256}.{self.disk_format}"

    def manifest_json(self) -> bytes:
        data = dict(self.manifest)
        data.update({"name": self.name, "sha256": self.sha256,
                     "size": self.size, "disk_format": self.disk_format})
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class Location:
    """Where a published image is: the driver's descriptor of it."""

    provider: str
    url: str
    sha256: str
    size: int
    uploaded: bool
    latest: str = ""
    download_url: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


#: Called with the number of bytes just sent.
ProgressFn = Callable[[int], None]


@runtime_checkable
class Driver(Protocol):
    """Create / find / delete the data, and describe where it is."""

    def find(self, artifact: Artifact) -> Location | None:
        """The verified copy already stored for this sha256, if any."""

    def create(self, artifact: Artifact, progress: ProgressFn) -> Location:
        """Upload and verify; on any failure leave nothing under the final
        name and remove partial data (multipart parts, segments)."""

    def set_latest(self, artifact: Artifact, location: Location) -> Location:
        """Point ``latest`` (or the fixed name) at a verified upload."""

    def delete(self, artifact: Artifact) -> None:
        """Remove the stored image and its side files."""


@runtime_checkable
class Lifecycle(Protocol):
    """The store itself: set up, maintenance, removal, scope."""

    def initialize(self) -> None:
        """Create the bucket / container / directory if missing."""

    def maintenance(self) -> str | None:
        """The reason the store is in maintenance mode, or None."""

    def enter_maintenance(self, reason: str) -> None: ...

    def cancel_maintenance(self) -> None: ...

    def delete_store(self) -> None:
        """Remove everything this target published (not the bucket)."""

    def attach(self, scope: str) -> None:
        """Record the scope (cloud, zone, project) the store serves."""


@dataclass(frozen=True)
class Store:
    """What ``Provider.configure`` returns: a driver and its lifecycle."""

    describe: str
    driver: Driver
    lifecycle: Lifecycle


@runtime_checkable
class Provider(Protocol):
    """A storage provider: a unique name, what it accepts, its settings."""

    name: str
    data_types: frozenset[str]
    settings_schema: Mapping[str, Any]

    def configure(self, settings: Mapping[str, Any],
                  env: Mapping[str, str]) -> Store: ...
