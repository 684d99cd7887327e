"""Publish what a build wrote, and its manifest.

A finished :class:`~tripleo_elements.plan.BuildPlan` flows in, with the
directory disk-image-create wrote into (inside the build's own work
directory, so nothing else can be mistaken for output).  Every entry
there is moved next to the requested output with an atomic rename, each
file with a ``.sha256`` (and, with ``--checksum``, ``.md5``) file; what
flows out is the list of :class:`Artifact` and the manifest
(``NAME.manifest.json``: elements, sources, command, environment,
outputs with checksums, packages, phase times).  An existing entry of the
same name is replaced only when it is one of ours (an expected output, or
one the previous manifest lists); anything else is moved aside, never
deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from tripleo_elements import plan as plan_mod

#: Sidecar checksum files we write next to every output file.
SIDECARS = (".sha256", ".md5")


@dataclasses.dataclass(frozen=True)
class Artifact:
    path: Path
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Published:
    artifacts: tuple[Artifact, ...]
    #: Directories the build wrote (e.g. DIB's ``NAME.d`` manifests).
    directories: tuple[Path, ...]
    #: Entries that were in the way and not ours: old path -> new path.
    moved_aside: tuple[tuple[Path, Path], ...]
    #: Expected outputs the build did not write.
    missing: tuple[Path, ...]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def previous_outputs(manifest: Path) -> frozenset[str]:
    """Names the previous build of this output recorded as its own."""
    try:
        data = json.loads(manifest.read_text())
        names = data.get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return frozenset()
    if not isinstance(names, list):
        return frozenset()
    return frozenset(str(n) for n in names if isinstance(n, str))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def publish(plan: plan_mod.BuildPlan) -> Published:
    """Move everything in ``plan.outdir`` next to ``plan.output``."""
    dest = plan.output.parent
    ours = previous_outputs(plan.manifest) | {p.name for p in plan.images}
    ours |= {n + s for n in ours for s in SIDECARS}
    stamp = time.strftime("%Y%m%d%H%M%S")
    artifacts, directories, aside = [], [], []
    entries = sorted(plan.outdir.iterdir()) if plan.outdir.is_dir() else []
    for entry in entries:
        target = dest / entry.name
        if os.path.lexists(target):
            if target.name not in ours:
                moved = target.with_name(f"{target.name}.orig-{stamp}")
                os.rename(target, moved)
                aside.append((target, moved))
            elif target.is_dir() and not target.is_symlink():
                # A directory cannot be renamed over: park the old one in
                # the work directory (removed with it).
                os.rename(target, plan.workdir / f"old-{entry.name}")
            elif entry.is_dir():
                os.rename(target, plan.workdir / f"old-{entry.name}")
        if entry.is_dir() and not entry.is_symlink():
            os.rename(entry, target)
            directories.append(target)
            continue
        digest, size = sha256_of(entry), entry.stat().st_size
        md5 = md5_of(entry) if plan.checksum else None
        os.replace(entry, target)
        _write_atomic(target.with_name(target.name + ".sha256"),
                      f"{digest}  {target.name}\n")
        if md5 is not None:
            _write_atomic(target.with_name(target.name + ".md5"),
                          f"{md5}  {target.name}\n")
        artifacts.append(Artifact(target, size, digest))
    written = {a.path for a in artifacts} | set(directories)
    missing = tuple(p for p in plan.images if p not in written)
    return Published(tuple(artifacts), tuple(directories), tuple(aside),
                     missing)


def packages(manifest_dir: Path) -> dict[str, str]:
    """Installed packages from diskimage-builder's dpkg manifest (JSON:
    ``{"packages": [{"package", "version", ...}]}``)."""
    found: dict[str, str] = {}
    for path in sorted(manifest_dir.glob("dib-manifests/dib-manifest-dpkg-*")):
        try:
            entries = json.loads(path.read_text())["packages"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for entry in entries:
            if isinstance(entry, dict) and "package" in entry:
                found[entry["package"]] = str(entry.get("version", ""))
    return dict(sorted(found.items()))


def write_menu(plan: plan_mod.BuildPlan) -> Path:
    """Write the image's menu as ``NAME.menu.json`` atomically."""
    _write_atomic(plan.menu_output,
                  json.dumps(plan.menu, indent=2, sort_keys=True) + "\n")
    return plan.menu_output


def write_manifest(plan: plan_mod.BuildPlan, published: Published,
                   phases: Sequence[tuple[str, float]], seconds: float
                   ) -> Path:
    """Write ``NAME.manifest.json`` atomically; return its path."""
    names = [a.path.name for a in published.artifacts]
    names += [n + s for n in names for s in SIDECARS
              if s == ".sha256" or plan.checksum]
    names += [d.name for d in published.directories]
    if plan.menu_output.exists():
        names.append(plan.menu_output.name)
    data = {
        "elements": list(plan.elements),
        "requested": list(plan.effective_request),
        "sources": {k: str(v) for k, v in plan.sources.items()},
        "command": list(plan.command),
        "environment": {k: v for k, v in plan.environment.items()
                        if k not in plan_mod.OWN_VARS},
        "host_environment": dict(plan.host_environment),
        "final_image": plan.final_image,
        "images": [{"path": str(a.path), "size": a.size,
                    "sha256": a.sha256} for a in published.artifacts],
        "outputs": sorted(names),
        "packages": packages(plan.output.with_name(plan.output.name + ".d")),
        "phases": {p: round(s, 1) for p, s in phases},
        "seconds": round(seconds, 1),
        "menu": {"file": plan.menu_output.name,
                 **{k: sorted(v) for k, v in plan.menu.items()}},
    }
    _write_atomic(plan.manifest,
                  json.dumps(data, indent=2, sort_keys=True) + "\n")
    return plan.manifest
