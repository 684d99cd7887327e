"""``dir``: a local or mounted directory.

Each file is written to a temporary name in the same directory and renamed
into place (atomic on one filesystem), the image last but one and the
``latest`` symlink last, so a reader never sees a partial image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripleo_elements.publish import api
from tripleo_elements.publish.errors import PublishError, VerifyError
from tripleo_elements.publish.providers import (
    MAINTENANCE, SCOPE, checksum_line)

CHUNK = 4 << 20


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class DirStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # Driver
    def _dir(self, artifact: api.Artifact) -> Path:
        return self.root / artifact.name

    def _location(self, artifact: api.Artifact, path: Path,
                  uploaded: bool) -> api.Location:
        return api.Location(provider="dir", url=f"dir://{path}",
                            sha256=artifact.sha256, size=artifact.size,
                            uploaded=uploaded, download_url=f"file://{path}")

    def find(self, artifact: api.Artifact) -> api.Location | None:
        path = self._dir(artifact) / artifact.filename
        side = path.with_name(path.name + ".sha256")
        if not path.is_file() or not side.is_file():
            return None
        if side.read_bytes() != checksum_line(artifact) or \
                path.stat().st_size != artifact.size:
            return None
        return self._location(artifact, path, uploaded=False)

    def create(self, artifact: api.Artifact,
               progress: api.ProgressFn) -> api.Location:
        folder = self._dir(artifact)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / artifact.filename
        tmp = folder / f".{artifact.filename}.tmp-{os.getpid()}"
        digest = hashlib.sha256()
        try:
            with open(artifact.path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    progress(len(chunk))
                dst.flush()
                os.fsync(dst.fileno())
            if digest.hexdigest() != artifact.sha256:
                raise VerifyError(
                    f"{final}: copied sha256 {digest.hexdigest()} is not "
                    f"{artifact.sha256}", "the source changed while copying")
            _write_atomic(folder / f"{artifact.sha256}.manifest.json",
                          artifact.manifest_json())
            os.replace(tmp, final)
            # The checksum file last: find() trusts only complete pairs.
            _write_atomic(final.with_name(final.name + ".sha256"),
                          checksum_line(artifact))
        except OSError as exc:
            raise PublishError(f"{final}: {exc.strerror or exc}",
                               "nothing was left under the final name"
                               ) from None
        finally:
            tmp.unlink(missing_ok=True)
        return self._location(artifact, final, uploaded=True)

    def set_latest(self, artifact: api.Artifact,
                   location: api.Location) -> api.Location:
        folder = self._dir(artifact)
        link = folder / f"latest.{artifact.disk_format}"
        tmp = folder / f".latest.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(artifact.filename)
        os.replace(tmp, link)
        return api.Location(**{**location.__dict__, "latest": str(link)})

    def delete(self, artifact: api.Artifact) -> None:
        folder = self._dir(artifact)
        for leaf in (f"{artifact.filename}.sha256", artifact.filename,
                     f"{artifact.sha256}.manifest.json"):
            (folder / leaf).unlink(missing_ok=True)

    # Lifecycle
    def initialize(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PublishError(f"{self.root}: {exc.strerror}",
                               "check the path and its permissions") from None

    def maintenance(self) -> str | None:
        marker = self.root / MAINTENANCE
        return marker.read_text().strip() or "no reason given" \
            if marker.is_file() else None

    def enter_maintenance(self, reason: str) -> None:
        self.initialize()
        _write_atomic(self.root / MAINTENANCE, reason.encode() + b"\n")

    def cancel_maintenance(self) -> None:
        (self.root / MAINTENANCE).unlink(missing_ok=True)

    def delete_store(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def attach(self, scope: str) -> None:
        self.initialize()
        _write_atomic(self.root / SCOPE, scope.encode() + b"\n")


class DirProvider:
    name = "dir"
    data_types = frozenset({"image", "checksum", "manifest"})
    settings_schema: Mapping[str, Any] = {
        "type": "object",
        "properties": {"path": {"type": "string", "pattern": "^/"}},
        "required": ["path"],
        "additionalProperties": False,
    }

    def configure(self, settings: Mapping[str, Any],
                  env: Mapping[str, str]) -> api.Store:
        store = DirStore(Path(settings["path"]))
        return api.Store(f"dir://{settings['path']}", store, store)


PROVIDER = DirProvider()
