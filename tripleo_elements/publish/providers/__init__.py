"""Our storage providers: dir, glance, s3, swift (entry points in setup.cfg).

Object-store layout shared by dir, s3 and swift, under the target prefix::

    NAME/SHA256.FMT            the image, content-addressed (never rewritten)
    NAME/SHA256.FMT.sha256     "SHA256  NAME.FMT"
    NAME/SHA256.manifest.json  what was built (no credentials)
    NAME/latest                pointer (JSON) to the newest verified upload
    .maintenance               present while the store is in maintenance
"""

from __future__ import annotations

import json

from tripleo_elements.publish import api

MAINTENANCE = ".maintenance"
SCOPE = ".scope"


def key(prefix: str, artifact: api.Artifact, leaf: str) -> str:
    return f"{join(prefix, artifact.name)}/{leaf}"


def join(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def checksum_line(artifact: api.Artifact) -> bytes:
    return f"{artifact.sha256}  {artifact.name}.{artifact.disk_format}\n" \
        .encode()


def latest_doc(artifact: api.Artifact, object_key: str) -> bytes:
    return (json.dumps({"object": object_key, "sha256": artifact.sha256,
                        "size": artifact.size},
                       indent=2, sort_keys=True) + "\n").encode()
