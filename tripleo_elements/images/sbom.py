"""Provenance of a built image: manifest additions and an SPDX 2.3 SBOM.

A finished build (its manifest, diskimage-builder's package manifests)
and the element provenance of :func:`tripleo_elements.images.project.
provenance` flow in; out flow the manifest's ``provenance`` section
(diskimage-builder's version, every element with source, commit and
content hash, the options) and ``NAME.spdx.json`` beside the image: one
package for the image, one per installed Debian package (version and
purl ``pkg:deb/debian/NAME@VERSION?arch=ARCH``) and one per element
(its source, commit and content hash).  Origins are redacted URLs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

SPDX_VERSION = "SPDX-2.3"
NAMESPACE = "https://tripleo-image-elements.invalid/spdx"


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def dpkg_packages(manifest_dir: Path) -> list[dict[str, str]]:
    """Packages from DIB's dpkg manifest(s): name, version, arch."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(manifest_dir.glob(
            "dib-manifests/dib-manifest-dpkg-*")):
        try:
            entries = json.loads(path.read_text())["packages"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for entry in entries:
            if not isinstance(entry, dict) or "package" not in entry:
                continue
            name = str(entry["package"]).split(":")[0]
            found[name] = {"name": name,
                           "version": str(entry.get("version", "")),
                           "arch": str(entry.get("arch", ""))}
    return [found[n] for n in sorted(found)]


def purl(package: Mapping[str, str]) -> str:
    text = f"pkg:deb/debian/{quote(package['name'], safe='')}"
    if package["version"]:
        text += "@" + quote(package["version"], safe="")
    if package["arch"]:
        text += "?arch=" + quote(package["arch"], safe="")
    return text


def _spdx_id(kind: str, name: str, taken: set[str]) -> str:
    base = f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)
    ident, n = base, 1
    while ident in taken:
        n += 1
        ident = f"{base}-{n}"
    taken.add(ident)
    return ident


def document(name: str, image: Path | None, image_sha256: str | None,
             packages: list[dict[str, str]],
             elements: Mapping[str, Mapping[str, Any]],
             origins: Mapping[str, str],
             created: datetime.datetime | None = None) -> dict[str, Any]:
    """The SPDX 2.3 document (a dict ready for JSON)."""
    created = created or datetime.datetime.now(datetime.timezone.utc)
    taken: set[str] = set()
    root = _spdx_id("Image", name, taken)
    image_pkg: dict[str, Any] = {
        "SPDXID": root, "name": name, "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False, "primaryPackagePurpose": "OPERATING-SYSTEM",
        "supplier": "NOASSERTION",
    }
    if image is not None:
        image_pkg["packageFileName"] = image.name
    if image_sha256:
        image_pkg["checksums"] = [{"algorithm": "SHA256",
                                   "checksumValue": image_sha256}]
    spdx_packages = [image_pkg]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT",
                      "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root}]
    for package in packages:
        ident = _spdx_id("deb", package["name"], taken)
        spdx_packages.append({
            "SPDXID": ident, "name": package["name"],
            "versionInfo": package["version"] or "NOASSERTION",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "supplier": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                              "referenceType": "purl",
                              "referenceLocator": purl(package)}],
        })
        relationships.append({"spdxElementId": root,
                              "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
    for element, info in sorted(elements.items()):
        ident = _spdx_id("Element", element, taken)
        source = str(info.get("source", ""))
        commit = info.get("commit")
        origin = origins.get(source, "")
        location = "NOASSERTION"
        if commit and re.match(r"^(https|ssh|git)://", origin):
            location = f"git+{origin}@{commit}"
        entry: dict[str, Any] = {
            "SPDXID": ident, "name": element,
            "versionInfo": commit or str(info.get("hash", "NOASSERTION")),
            "downloadLocation": location, "filesAnalyzed": False,
            "supplier": "NOASSERTION",
            "sourceInfo": f"diskimage-builder element from source "
                          f"'{source}'" + (f" at commit {commit}"
                                           if commit else ""),
            "comment": f"content hash {info.get('hash', '')}",
        }
        if isinstance(info.get("hash"), str) and \
                info["hash"].startswith("sha256:"):
            entry["checksums"] = [{"algorithm": "SHA256",
                                   "checksumValue": info["hash"][7:]}]
        spdx_packages.append(entry)
        relationships.append({"spdxElementId": ident,
                              "relationshipType": "BUILD_TOOL_OF",
                              "relatedSpdxElement": root})
    digest = hashlib.sha256(json.dumps(
        [name, image_sha256, created.isoformat()]).encode()).hexdigest()
    return {
        "spdxVersion": SPDX_VERSION, "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT", "name": f"{name} image",
        "documentNamespace": f"{NAMESPACE}/{name}-{digest[:16]}",
        "creationInfo": {
            "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [
                f"Tool: tripleo-image-elements-"
                f"{_version('tripleo-image-elements')}",
                f"Tool: diskimage-builder-{_version('diskimage-builder')}"],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    }


def _write(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def record(manifest: Path, output: Path, name: str,
           elements: Mapping[str, Mapping[str, Any]],
           origins: Mapping[str, str], options: Mapping[str, Any],
           image: Path | None, image_sha256: str | None) -> Path:
    """Add the provenance to ``manifest`` and write the SBOM beside the
    image (``OUTPUT.spdx.json``); returns the SBOM's path."""
    data = json.loads(manifest.read_text())
    data["provenance"] = {
        "image": name,
        "diskimage_builder": _version("diskimage-builder"),
        "tripleo_image_elements": _version("tripleo-image-elements"),
        "elements": {k: dict(v) for k, v in sorted(elements.items())},
        "sources": dict(sorted(origins.items())),
        "options": dict(options),
    }
    sbom = output.with_name(output.name + ".spdx.json")
    data.setdefault("outputs", [])
    if sbom.name not in data["outputs"]:
        data["outputs"] = sorted([*data["outputs"], sbom.name])
    packages = dpkg_packages(output.with_name(output.name + ".d"))
    _write(sbom, document(name, image, image_sha256, packages, elements,
                          origins))
    _write(manifest, data)
    return sbom
