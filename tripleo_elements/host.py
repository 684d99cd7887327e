"""Facts about the build host: apt mirrors, required tools, architecture.

Everything here reads files whose paths are parameters, so tests point it
at a fake tree; nothing here starts a process.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from tripleo_elements import errors

APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
APT_SOURCES_LIST = Path("/etc/apt/sources.list")


@dataclasses.dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DebianMirrors:
    """The host's Debian archive and security archive base URIs."""

    archive: str | None
    security: str | None


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and last:
                fields[last] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri.rstrip("/"), suites))
    return out


def _parse_one_line(text: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append(AptSource(words[0].rstrip("/"), (words[1],)))
    return out


def apt_sources(sources_dir: Path = APT_SOURCES_DIR,
                sources_list: Path = APT_SOURCES_LIST) -> list[AptSource]:
    """Every enabled ``deb`` source of the host, in apt's reading order."""
    found: list[AptSource] = []
    if sources_list.is_file():
        found += _parse_one_line(sources_list.read_text(errors="replace"))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.iterdir()):
            text = path.read_text(errors="replace") if path.is_file() else ""
            if path.suffix == ".sources":
                found += _parse_deb822(text)
            elif path.suffix == ".list":
                found += _parse_one_line(text)
    return found


def debian_mirrors(release: str, sources: Iterable[AptSource]
                   ) -> DebianMirrors:
    """Pick the archive serving ``release`` and the one serving
    ``release-security``.  With no security entry, the archive's
    sibling ``<archive>-security`` is assumed (the usual mirror layout)."""
    archive = security = None
    for source in sources:
        if archive is None and (release in source.suites
                                or f"{release}-updates" in source.suites):
            archive = source.uri
        if security is None and f"{release}-security" in source.suites:
            security = source.uri
    if security is None and archive is not None:
        security = archive + "-security"
    return DebianMirrors(archive, security)


def host_arch() -> str:
    """The DIB architecture name of this host."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@dataclasses.dataclass(frozen=True)
class BindepPackage:
    package: str
    profiles: tuple[str, ...]
    commands: tuple[str, ...]


def read_bindep(path: Path) -> list[BindepPackage]:
    """Parse ``bindep.txt``, with our ``# commands:`` annotations."""
    packages = []
    commands: tuple[str, ...] = ()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("# commands:"):
            commands = tuple(line.split(":", 1)[1].split())
            continue
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        profiles = tuple(w for w in re.findall(r"[\w:-]+", rest)
                         if not w.startswith("platform:"))
        packages.append(BindepPackage(name, profiles, commands))
        commands = ()
    return packages


#: Where an installed (non-editable) copy keeps bindep.txt, below
#: sys.prefix (setup.cfg's data_files).
SHARE_DIR = Path("share") / "tripleo-image-elements"


def bindep_file(package_dir: Path | None = None,
                prefix: Path | None = None) -> Path:
    """Our ``bindep.txt``: the source tree's when running from one, else
    the installed copy under ``<prefix>/share/tripleo-image-elements``."""
    package_dir = package_dir or Path(__file__).resolve().parent
    source_tree = package_dir.parent
    if (source_tree / "setup.cfg").is_file() and \
            (source_tree / "bindep.txt").is_file():
        return source_tree / "bindep.txt"
    return Path(prefix or sys.prefix) / SHARE_DIR / "bindep.txt"


#: Commands a disk-image-create build needs on the host.
BUILD_COMMANDS: tuple[str, ...] = (
    "sudo", "debootstrap", "qemu-img", "sgdisk", "sfdisk", "losetup",
    "partx", "mkfs.ext4", "curl", "git",
)


def missing_commands(commands: Iterable[str],
                     packages: Iterable[BindepPackage],
                     which: Callable[[str], str | None] = shutil.which,
                     ) -> dict[str, str]:
    """Missing command -> Debian package that provides it (from bindep)."""
    provider: dict[str, str] = {}
    for pkg in packages:
        for command in pkg.commands:
            provider.setdefault(command, pkg.package)
    return {c: provider.get(c, "?") for c in commands if which(c) is None}


def check_host_tools(commands: Iterable[str] = BUILD_COMMANDS,
                     bindep: Path | None = None,
                     which: Callable[[str], str | None] = shutil.which
                     ) -> None:
    """Raise :class:`errors.HostToolsMissing` naming what to install."""
    path = bindep or bindep_file()
    packages = read_bindep(path) if path.is_file() else []
    missing = missing_commands(commands, packages, which)
    if missing:
        names = ", ".join(f"{c} ({p})" for c, p in sorted(missing.items()))
        install = " ".join(sorted(set(missing.values()) - {"?"}))
        raise errors.HostToolsMissing(
            f"host commands missing: {names}",
            f"apt-get install {install}" if install
            else "install them on the host")


def is_root(euid: Callable[[], int] = os.geteuid) -> bool:
    return euid() == 0
