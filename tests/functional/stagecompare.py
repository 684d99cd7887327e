"""Compare two built root trees in content: the stage cache's equality
check (used by ``test_stage_cache`` and ``tools/bench-build``).

:func:`listing` maps each path of a root to its type, mode, owner and
sha256 (files) or target (links); :func:`differences` compares two
listings, leaving out :data:`EVERY_BUILD` (what differs between any two
builds of the same inputs) and the paths a test changed on purpose;
:func:`packages` reads DIB's dpkg manifest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from tripleo_elements import outputs

#: Paths whose content differs between any two builds of the same
#: inputs, with why.
EVERY_BUILD: Mapping[str, str] = {
    "boot/initrd.img-*": "the initramfs embeds build times",
    "etc/dib-manifests/dib_arguments": "names the build's work directory",
    "etc/dib-manifests/dib_environment": "names the build's work directory",
    "etc/iscsi/initiatorname.iscsi": "a random initiator name",
    "boot/grub/grub.cfg": "filesystem UUIDs",
    "etc/fstab": "filesystem UUIDs",
    "var/lib/dbus/machine-id": "machine id",
    "etc/machine-id": "machine id",
    "var/log/*": "logs with times",
    "var/cache/debconf/*-old": "debconf's backups",
    "var/cache/ldconfig/aux-cache": "written with times",
    "etc/ssh/ssh_host_*": "host keys",
    "root/.cache/*": "pip's caches",
    "*.pyc": "timestamps",
    "*__pycache__": "timestamps",
    "var/lib/systemd/deb-systemd-helper-enabled/*": "order only",
}


def listing(root: Path) -> dict[str, str]:
    """``{relative path: "type mode uid:gid sha256-or-target"}``."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            head = f"{stat.S_IFMT(info.st_mode):o} " \
                f"{stat.S_IMODE(info.st_mode):o} {info.st_uid}:{info.st_gid}"
            if stat.S_ISLNK(info.st_mode):
                found[rel] = f"{head} -> {os.readlink(path)}"
            elif stat.S_ISREG(info.st_mode):
                found[rel] = f"{head} {outputs.sha256_of(Path(path))}"
            else:
                found[rel] = head
    return found


def ignored(rel: str, extra: Iterable[str] = ()) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in (*EVERY_BUILD, *extra))


def differences(old: Mapping[str, str], new: Mapping[str, str],
                extra: Iterable[str] = ()) -> list[str]:
    """Paths that differ (added, removed or changed), one line each."""
    extra = tuple(extra)
    lines = []
    for rel in sorted(set(old) | set(new)):
        if ignored(rel, extra) or old.get(rel) == new.get(rel):
            continue
        lines.append(f"{rel}: {old.get(rel, '(absent)')} -> "
                     f"{new.get(rel, '(absent)')}")
    return lines


def packages(manifest_dir: Path) -> dict[str, str]:
    """``{package: version}`` from DIB's ``dib-manifest-dpkg-*``."""
    found: dict[str, str] = {}
    for path in sorted(manifest_dir.glob("dib-manifest-dpkg-*")):
        for item in json.loads(path.read_text())["packages"]:
            found[item["package"]] = item["version"]
    return found


def tar_listing(path: Path) -> dict[str, str]:
    """:func:`listing` of a root tarball (``-t tar``) without unpacking."""
    import tarfile
    kinds = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file",
             tarfile.SYMTYPE: "link", tarfile.LNKTYPE: "file",
             tarfile.DIRTYPE: "dir"}
    found: dict[str, str] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            rel = os.path.normpath(member.name)
            if rel == ".":
                continue
            head = f"{kinds.get(member.type, member.type)} " \
                f"{member.mode:o} {member.uid}:{member.gid}"
            if member.issym():
                found[rel] = f"{head} -> {member.linkname}"
            elif member.isfile() or member.islnk():
                # Which name of a hard link comes first is not content.
                handle = tar.extractfile(member)
                h = hashlib.sha256()
                if handle is not None:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        h.update(block)
                found[rel] = f"{head} {h.hexdigest()}"
            else:
                found[rel] = head
    return found
