"""Look inside a built image without booting it (root only).

``with mounted_image(qcow2) as tree: ssh_host_keys(tree.root)`` converts
the image to a temporary raw file, attaches it read-only to a loop device
with its partitions (``losetup -r -P``; ``partx -a`` when the kernel did
not add them; ``mknod`` when no devtmpfs/udev made the nodes), mounts the
root partition read-only (``noload``: no journal replay on a read-only
device) and undoes all of it on exit, whatever happened.

The check functions take the root of a tree and return a list of
problems (empty: fine), so they can be tested on a scratch directory and
their failures read as sentences.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tripleo_elements import errors, process
from tripleo_elements.element import ORC_PHASES

__all__ = [
    "cloud_init_datasources", "find_strings", "heat_stack", "ImageError",
    "initramfs_zstd", "inside", "leaked_values", "machine_id",
    "mounted_image", "MountedImage",
    "password_locked", "ssh_host_keys", "udev_fix",
]


ImageError = errors.ImageError


@dataclasses.dataclass(frozen=True)
class MountedImage:
    root: Path
    loop: str
    partition: str


def _partitions(loop: str) -> list[str]:
    name = Path(loop).name
    sys_dir = Path("/sys/block") / name
    found = sorted(p.name for p in sys_dir.glob(f"{name}p*"))
    nodes = []
    for part in found:
        node = Path("/dev") / part
        if not node.exists():
            # A static /dev (no devtmpfs, no udev): make the node.
            major, minor = (sys_dir / part / "dev").read_text().split(":")
            os.mknod(node, 0o600 | stat.S_IFBLK,
                     os.makedev(int(major), int(minor)))
        nodes.append(str(node))
    return nodes


def _root_partition(partitions: Sequence[str]) -> str:
    """The partition labelled ``cloudimg-rootfs`` (DIB's root label),
    else the largest one with a Linux filesystem."""
    best: tuple[int, str] | None = None
    for part in partitions:
        probe = process.run(["blkid", "-o", "export", part], check=False)
        fields = dict(line.split("=", 1) for line in probe.stdout.splitlines()
                      if "=" in line)
        if fields.get("LABEL") == "cloudimg-rootfs":
            return part
        if fields.get("TYPE") in ("ext4", "ext3", "xfs", "btrfs"):
            size = int(process.run(["blockdev", "--getsize64", part]
                                   ).stdout.strip())
            if best is None or size > best[0]:
                best = (size, part)
    if best is None:
        raise ImageError(f"no root filesystem among {list(partitions)}",
                         "is this a whole-disk image?")
    return best[1]


@contextlib.contextmanager
def mounted_image(image: Path, workdir: Path | None = None,
                  image_format: str = "qcow2") -> Iterator[MountedImage]:
    """Mount ``image``'s root filesystem read-only; see the module doc."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="tie-image-", dir=workdir)))
        raw = tmp / "disk.raw"
        process.run(["qemu-img", "convert", "-f", image_format, "-O", "raw",
                     str(image), str(raw)], timeout=600)
        loop = process.run(["losetup", "-r", "-P", "--show", "-f",
                            str(raw)], timeout=60).stdout.strip()
        stack.callback(process.run, ["losetup", "-d", loop], check=False)
        partitions = _partitions(loop)
        if not partitions:
            process.run(["partx", "-a", loop], check=False)
            stack.callback(process.run, ["partx", "-d", loop], check=False)
            deadline = time.monotonic() + 10
            while not partitions and time.monotonic() < deadline:
                time.sleep(0.2)
                partitions = _partitions(loop)
        if not partitions:
            raise ImageError(f"{image}: no partitions found on {loop}",
                             "is this a whole-disk image?")
        root_part = _root_partition(partitions)
        mnt = tmp / "root"
        mnt.mkdir()
        process.run(["mount", "-o", "ro,noload", root_part, str(mnt)],
                    timeout=60)
        stack.callback(_umount, mnt)
        yield MountedImage(root=mnt, loop=loop, partition=root_part)


def _umount(path: Path) -> None:
    for attempt in range(10):
        if process.run(["umount", str(path)], check=False).returncode == 0:
            return
        time.sleep(0.5)
    process.run(["umount", "-l", str(path)], check=False)


# ------------------------------------------------------------------ checks

def inside(root: Path, path: str) -> Path:
    """``path`` (absolute, in the image) below ``root``."""
    return root / path.lstrip("/")


def _resolve(root: Path, path: str, depth: int = 0) -> Path:
    """Follow symlinks the way the image would (absolute targets are
    inside the image)."""
    target = inside(root, path)
    if depth < 20 and target.is_symlink():
        link = os.readlink(target)
        absolute = link if link.startswith("/") else \
            os.path.normpath(os.path.join(os.path.dirname(path), link))
        return _resolve(root, absolute, depth + 1)
    return target


def ssh_host_keys(root: Path) -> list[str]:
    """SSH host keys baked into the image (each instance makes its own)."""
    return [f"host key in the image: /etc/ssh/{p.name}"
            for p in sorted(inside(root, "/etc/ssh").glob("ssh_host_*"))]


def machine_id(root: Path) -> list[str]:
    """/etc/machine-id must exist and be empty (systemd fills it at boot)."""
    path = inside(root, "/etc/machine-id")
    if not path.exists():
        return ["/etc/machine-id is missing (an empty file is expected)"]
    content = path.read_text().strip()
    return [f"/etc/machine-id is not empty: {content!r}"] if content else []


def password_locked(root: Path, user: str) -> list[str]:
    """``user`` exists and has no usable password (``!`` or ``*``)."""
    for line in inside(root, "/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            if len(fields) < 2 or not fields[1].startswith(("!", "*")):
                return [f"{user}: password is usable in /etc/shadow "
                        f"(field starts {fields[1][:1]!r})"]
            return []
    return [f"{user}: not in /etc/shadow"]


def find_strings(paths: Iterable[Path], needles: Sequence[str]
                 ) -> list[str]:
    """Every file below ``paths`` holding one of ``needles`` (binary
    files too), as ``path: needle`` lines."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing or not needles:
        return []
    argv = ["grep", "-r", "-a", "-o", "-F", "--no-messages"]
    for needle in needles:
        argv += ["-e", needle]
    proc = process.run(argv + existing, check=False, timeout=600)
    if proc.returncode not in (0, 1):
        raise ImageError(f"grep failed: {proc.stderr.strip()}")
    return sorted(set(proc.stdout.splitlines()))


def leaked_values(root: Path, needles: Sequence[str],
                  outputs: Sequence[Path] = (),
                  dirs: Sequence[str] = ("/etc", "/var/lib", "/var/log",
                                         "/root", "/home", "/opt",
                                         "/usr/local", "/usr/share/stackuser",
                                         "/tmp", "/var/tmp")) -> list[str]:
    """Build-host values found in the image or in the build's outputs."""
    paths = [inside(root, d) for d in dirs] + list(outputs)
    return [f"build-host value leaked: {line}"
            for line in find_strings(paths, needles)]


def _executable(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & 0o111)


def heat_stack(root: Path) -> list[str]:
    """The Heat agent stack is installed and wired up (see the READMEs of
    os-collect-config, os-refresh-config, os-apply-config, heat-config,
    stackuser and heat-cfntools)."""
    problems = []
    wants = "/etc/systemd/system/multi-user.target.wants/" \
        "os-collect-config.service"
    if not inside(root, wants).is_symlink():
        problems.append(f"os-collect-config.service is not enabled "
                        f"({wants} missing)")
    elif not _resolve(root, wants).is_file():
        problems.append(f"{wants} points at no unit file")
    for tool in ("os-collect-config", "os-refresh-config",
                 "os-apply-config", "cfn-signal", "cfn-init",
                 "dib-run-parts"):
        if not any(_executable(_resolve(root, f"{d}/{tool}"))
                   for d in ("/usr/local/bin", "/usr/bin", "/bin")):
            problems.append(f"{tool}: not installed")
    orc = "/usr/libexec/os-refresh-config"
    for phase in ORC_PHASES:
        if not inside(root, f"{orc}/{phase}").is_dir():
            problems.append(f"{orc}/{phase}: missing")
    for script in ("configure.d/20-os-apply-config",
                   "configure.d/55-heat-config",
                   "configure.d/60-stackuser-authorized-keys"):
        if not _executable(inside(root, f"{orc}/{script}")):
            problems.append(f"{orc}/{script}: missing or not executable")
    for hook in ("script", "os-apply-config"):
        path = f"/usr/libexec/heat-config/hooks/{hook}"
        if not _executable(inside(root, path)):
            problems.append(f"{path}: missing or not executable")
    templates = "/usr/libexec/os-apply-config/templates"
    for template in ("etc/os-collect-config.conf",
                     "var/run/heat-config/heat-config",
                     "var/lib/stackuser/authorized_keys"):
        if not inside(root, f"{templates}/{template}").is_file():
            problems.append(f"{templates}/{template}: missing")
    conf = inside(root, "/etc/os-collect-config.conf")
    if not conf.is_file():
        problems.append("/etc/os-collect-config.conf: no bootstrap "
                        "configuration")
    elif "collectors = heat_local" not in conf.read_text():
        problems.append("/etc/os-collect-config.conf: heat_local is not a "
                        "bootstrap collector")
    if not inside(root, "/etc/sudoers.d/stackuser").is_file():
        problems.append("/etc/sudoers.d/stackuser: missing")
    if not inside(root, "/usr/bin/cloud-init").exists():
        problems.append("cloud-init: not installed")
    return problems


_DATASOURCE = re.compile(r"datasource_list\s*:\s*\[([^\]]*)\]")


def cloud_init_datasources(root: Path) -> list[str]:
    """The datasources cloud-init is told to try (from cloud.cfg.d)."""
    names: list[str] = []
    for path in sorted(inside(root, "/etc/cloud/cloud.cfg.d").glob("*.cfg")):
        for match in _DATASOURCE.finditer(path.read_text()):
            names += [n.strip().strip("'\"") for n in match.group(1)
                      .split(",") if n.strip()]
    return names


LVEXTEND_FIX_MARK = "DM_NOSCAN"


def udev_fix(root: Path) -> list[str]:
    """lvm-udev-lvextend-fix's rule overrides lvm2's in /etc/udev/rules.d."""
    rules = sorted(inside(root, "/etc/udev/rules.d").glob("*dm.rules"))
    if not rules:
        return ["no device-mapper rule in /etc/udev/rules.d"]
    for rule in rules:
        shipped = _resolve(root, f"/lib/udev/rules.d/{rule.name}")
        if not shipped.exists():
            return [f"/etc/udev/rules.d/{rule.name} overrides no rule of "
                    "lvm2"]
        if LVEXTEND_FIX_MARK in rule.read_text():
            return []
    return [f"{', '.join(r.name for r in rules)}: no {LVEXTEND_FIX_MARK} "
            "rule: the fix is not applied"]


#: The first bytes of a zstd frame (RFC 8878).
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def initramfs_zstd(root: Path) -> list[str]:
    """Every ``/boot/initrd.img-*`` is zstd-compressed (fast-boot installs
    zstd; without it initramfs-tools falls back to gzip)."""
    images = sorted(inside(root, "/boot").glob("initrd.img-*"))
    if not images:
        return ["no /boot/initrd.img-*"]
    problems = []
    for path in images:
        with open(path, "rb") as handle:
            head = handle.read(len(ZSTD_MAGIC))
        if head != ZSTD_MAGIC:
            problems.append(f"/boot/{path.name} is not zstd-compressed "
                            f"(starts with {head.hex()})")
    return problems
