"""Whole-disk (``vm``) images on hosts without device-mapper.

diskimage-builder's ``partitioning`` block-device plugin exposes the
partitions it writes with ``kpartx`` (on hosts with ``/.dockerenv``:
``kpartx -av`` plus ``dmsetup --noudevsync mknodes``), records every
partition as ``/dev/mapper/loopNpM`` and rolls back with ``dmsetup
remove``.  On a kernel without device-mapper all of that fails, so the
``vm`` element cannot be built at all.

:class:`NoDeviceMapperPartitioning` (plugin key ``partitioning_nodm``)
writes exactly the same partition table through DIB's own code and then
asks the kernel for ordinary loop partitions instead (``partx -a`` on
the loop device).  Partition devices are ``/dev/loopNpM``; a node is
made with ``mknod`` from ``/sys/block/loopN/loopNpM/dev`` when no udev
or devtmpfs made it.  ``umount`` (and rollback) removes the partitions
with ``partx -d`` and deletes only the nodes this plugin made itself.

What was found when building ``debian-minimal vm`` with it (DIB 3.43,
Debian 12 host and guest, grub 2.06, no device-mapper, devtmpfs /dev):

- Nothing later needs a ``/dev/mapper`` path, so this plugin makes no
  extra "matching" nodes.  mkfs, mount and fstab take ``/dev/loopNpM``;
  the ``bootloader`` finalise step runs ``grub-install --target=i386-pc
  --force /dev/loopN`` in the chroot, which reports no error, and
  grub-mkconfig finds the kernel.  The image then boots under qemu from
  its own MBR and GRUB to a login prompt.  No loop device path ends up
  in the image: grub.cfg finds / with ``search --fs-uuid``, the kernel
  gets ``root=LABEL=cloudimg-rootfs`` and fstab uses the label.
  (DIB's bootloader script notes that grub >= 2.02~beta3 accepts
  ``/dev/loopXpN``.)
- devtmpfs creates ``/dev/loopNpM`` itself as soon as ``partx -a`` adds
  the partition; the ``mknod`` fallback is for a static ``/dev``.
- ``partx -a`` exits 1 when the kernel already knows the partitions
  (tried: a second ``partx -a`` on the same loop device); ``partx -u``
  adds the missing ones and is idempotent, so it is the fallback.

:func:`rewrite_for_no_device_mapper` turns any block-device config into
one that uses this plugin; :func:`find_block_device_config` finds the
config DIB would pick; :func:`device_mapper_usable` tells the driver
whether it needs to do so at all.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import stat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from diskimage_builder.block_device.exception import \
    BlockDeviceSetupException
from diskimage_builder.block_device.level1 import partitioning as dib_part
from diskimage_builder.block_device.utils import exec_sudo

from tripleo_elements import errors

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "diskimage_builder.block_device.plugin"
DM_PLUGIN = "partitioning"
NODM_PLUGIN = "partitioning_nodm"

# DIB's own plugin names, used when the entry points cannot be read: the
# rewrite only needs to know which keys DIB would recurse into.
_DIB_PLUGINS = frozenset({
    "local_loop", "partitioning", "lvm", "mkfs", "mount", "fstab",
})


# -- probing the host -------------------------------------------------------

def device_mapper_usable(
        control: Path = Path("/dev/mapper/control"),
        proc_misc: Path = Path("/proc/misc"),
        sys_misc: Path = Path("/sys/class/misc/device-mapper")) -> bool:
    """True when kpartx/dmsetup can work on this host.

    Needs both the control node (a character device at ``control``) and
    the driver in the running kernel (``device-mapper`` listed in
    ``proc_misc`` or ``sys_misc`` present): a container can have a stale
    node without the driver, and a kernel can have the driver while the
    container's ``/dev`` lacks the node.  Reads files only; never raises.
    """
    try:
        if not stat.S_ISCHR(control.stat().st_mode):
            return False
    except OSError:
        return False
    if sys_misc.exists():
        return True
    try:
        misc = proc_misc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.split()[1:2] == ["device-mapper"]
               for line in misc.splitlines())


# -- choosing and rewriting the config ---------------------------------------

def _is_ppc64le(arch: str) -> bool:
    # DIB tests [[ "ppc64le ppc64el" =~ $ARCH ]]: both spellings share the
    # block-device-ppc64el.yaml file.
    return arch in ("ppc64le", "ppc64el")


def find_block_device_config(elements: Mapping[str, Path],
                             arch: str) -> Path | None:
    """The block-device YAML DIB would use for these resolved elements.

    ``elements`` maps element name to its directory.  Per element, as in
    DIB's ``block_device_create_config_file``: the architecture file
    (``block-device-<arch>.yaml``; ``block-device-ppc64el.yaml`` for
    ppc64le/ppc64el) wins over ``block-device-default.yaml``; the first
    element having either wins.  DIB walks elements in bash hash order;
    we walk them sorted by name so the answer is deterministic.  Returns
    None when no element has one (DIB then builds no block device).
    """
    arch_name = "ppc64el" if _is_ppc64le(arch) else arch
    for name in sorted(elements):
        directory = elements[name]
        for candidate in (directory / f"block-device-{arch_name}.yaml",
                          directory / "block-device-default.yaml"):
            if candidate.is_file():
                return candidate
    return None


def _plugin_names() -> frozenset[str]:
    try:
        found = {ep.name for ep in
                 importlib.metadata.entry_points(group=PLUGIN_GROUP)}
    except Exception:  # a broken distribution must not stop a build
        found = set()
    return frozenset(found) | _DIB_PLUGINS


def _scalar(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value)
    return None


def _collect_plugin_keys(entry: yaml.Node, plugins: Collection[str],
                         found: list[yaml.ScalarNode]) -> None:
    """Find ``partitioning`` keys where DIB's ``recurse_config`` sees them.

    ``entry`` is one ``{plugin: values}`` mapping.  DIB recurses into a
    key of ``values`` that names a plugin, and into plugin keys of each
    item of a ``partitions`` list; nothing else is a plugin key.
    """
    if not isinstance(entry, yaml.MappingNode):
        return
    for key, value in entry.value:
        name = _scalar(key)
        if name is None or name not in plugins:
            continue
        if name == DM_PLUGIN:
            found.append(key)
        if not isinstance(value, yaml.MappingNode):
            continue
        for sub_key, sub_value in value.value:
            sub_name = _scalar(sub_key)
            if sub_name == "partitions" and isinstance(
                    sub_value, yaml.SequenceNode):
                for partition in sub_value.value:
                    _collect_plugin_keys(partition, plugins, found)
            elif sub_name in plugins:
                _collect_plugin_keys(
                    yaml.MappingNode("tag:yaml.org,2002:map",
                                     [(sub_key, sub_value)]),
                    plugins, found)


def rewrite_for_no_device_mapper(
        yaml_text: str, source: str = "block-device config",
        plugins: Collection[str] | None = None) -> str:
    """``yaml_text`` with every ``partitioning`` plugin key renamed.

    The key becomes ``partitioning_nodm`` wherever DIB would treat it as
    a plugin (top-level entries, nested under another plugin, or inside
    a partition); the text is edited in place at the key's position, so
    comments, order, quoting and every other byte stay as they were.
    ``plugins`` is the set of plugin names DIB knows (default: the
    installed entry points plus DIB's built-ins).  A config that already
    uses ``partitioning_nodm`` comes back unchanged.

    Raises ElementFormatError naming ``source`` when the text is not YAML
    or not a list of plugin entries.
    """
    hint = ("fix the YAML; a block-device config is a list of "
            "'- plugin: {...}' entries")
    try:
        root = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise errors.ElementFormatError(
            f"{source}: not valid YAML: {' '.join(str(exc).split())}",
            hint) from exc
    if root is None:
        raise errors.ElementFormatError(f"{source}: empty config", hint)
    if not isinstance(root, yaml.SequenceNode):
        raise errors.ElementFormatError(
            f"{source}: top level is a {root.id}, not a list", hint)
    names = frozenset(plugins) if plugins is not None else _plugin_names()
    names = names | {DM_PLUGIN}
    keys: list[yaml.ScalarNode] = []
    for entry in root.value:
        if not isinstance(entry, yaml.MappingNode):
            raise errors.ElementFormatError(
                f"{source}: line {entry.start_mark.line + 1}: entry is a "
                f"{entry.id}, not a '- plugin: {{...}}' mapping", hint)
        _collect_plugin_keys(entry, names, keys)
    out = yaml_text
    # Edit from the end so earlier offsets stay valid.
    for key in sorted(keys, key=lambda k: k.start_mark.index, reverse=True):
        start, end = key.start_mark.index, key.end_mark.index
        original = out[start:end]
        quote = original[0] if original[:1] in ("'", '"') else ""
        out = out[:start] + f"{quote}{NODM_PLUGIN}{quote}" + out[end:]
    return out


# -- the plugin ---------------------------------------------------------------

_PART_NAME = re.compile(r"^(?P<disk>loop\d+)p(?P<number>\d+)$")


class NoDeviceMapperPartitioning(dib_part.Partitioning):
    """DIB's ``partitioning`` plugin with loop partitions, no device-mapper.

    Config, validation and the partition table itself are DIB's (this
    class calls ``_create_mbr``/``_create_gpt``); only the way the kernel
    is told about the partitions differs.  Contract with the rest of the
    block-device graph: after ``create`` every partition's
    ``state['blockdev'][name]['device']`` is ``/dev/loopNpM`` and that
    block device exists; after ``umount`` (or a rollback) the kernel no
    longer has the partitions and nodes made here are gone.  No
    ``kpartx``/``dmsetup`` command is ever run.  Every command goes
    through DIB's ``exec_sudo``.
    """

    def __init__(self, config: dict[str, Any], default_config: Any,
                 state: Any) -> None:
        super().__init__(config, default_config, state)
        self.device_path = ""
        self.image_path = ""
        self.disk_size = 0
        # Nodes made with mknod (not by devtmpfs/udev): ours to delete.
        self.created_nodes: list[str] = []
        self.mapped = False
        self.sys_block = "/sys/block"

    # The partition nodes call create() once each; only the first call
    # does the work (DIB's own gating, reproduced).
    def create(self) -> None:
        self.number_of_partitions += 1
        if self.number_of_partitions > 1:
            logger.info("Not creating the partitions a second time.")
            return
        self.image_path = self.state["blockdev"][self.base]["image"]
        self.device_path = self.state["blockdev"][self.base]["device"]
        self.disk_size = self._size_of_block_dev(self.image_path)
        logger.info("Creating partitions (no device-mapper) on [%s] [%s]",
                    self.base, self.image_path)
        if self.label == "mbr":
            self._create_mbr()
        else:
            self._create_gpt()
        self._drop_device_mapper_rollbacks()
        # Registered before mapping so a failure half-way is undone too.
        self.partitions[0].add_rollback(self._unmap, best_effort=True)
        exec_sudo(["sync"])
        self._map()

    def umount(self) -> None:
        self.number_of_partitions -= 1
        if self.number_of_partitions == 0:
            self._unmap(best_effort=False)

    # -- helpers ----------------------------------------------------------
    def _drop_device_mapper_rollbacks(self) -> None:
        """Remove the ``dmsetup remove`` rollbacks DIB's code registered."""
        for node in self.partitions:
            node.rollbacks = [r for r in node.rollbacks
                              if r[0] is not dib_part.remove_device]

    def _partition_devices(self) -> dict[str, str]:
        """Partition name -> ``/dev/loopNpM``, rewriting DIB's state.

        DIB's table writers record ``/dev/mapper/<loopNpM>``; the kernel
        name of the same partition is that basename under ``/dev``.
        """
        devices = {}
        for node in self.partitions:
            entry = self.state["blockdev"][node.get_name()]
            name = os.path.basename(entry["device"])
            if not _PART_NAME.match(name):
                raise BlockDeviceSetupException(
                    f"unexpected partition device {entry['device']!r} "
                    f"for {node.get_name()}")
            entry["device"] = f"/dev/{name}"
            devices[node.get_name()] = entry["device"]
        return devices

    def _map(self) -> None:
        devices = self._partition_devices()
        self.mapped = True
        try:
            exec_sudo(["partx", "-a", "-v", self.device_path])
        except BlockDeviceSetupException:
            # Partitions the kernel already knows make "-a" fail; "-u"
            # adds the missing ones and fixes the rest.
            logger.info("partx -a failed; updating with partx -u")
            exec_sudo(["partx", "-u", "-v", self.device_path])
        for device in devices.values():
            self._ensure_node(device)

    def _ensure_node(self, device: str) -> None:
        """Make ``device`` a block node matching the kernel's partition."""
        name = os.path.basename(device)
        match = _PART_NAME.match(name)
        assert match is not None
        dev_file = os.path.join(self.sys_block, match["disk"], name, "dev")
        try:
            with open(dev_file, encoding="ascii") as handle:
                major, minor = handle.read().strip().split(":")
        except OSError as exc:
            raise BlockDeviceSetupException(
                f"the kernel did not add partition {name} "
                f"({dev_file}: {exc.strerror})") from exc
        wanted = os.makedev(int(major), int(minor))
        try:
            st = os.stat(device)
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == wanted:
                return
            logger.warning("replacing stale %s", device)
            exec_sudo(["rm", "-f", device])
        except FileNotFoundError:
            pass
        exec_sudo(["mknod", "-m", "0660", device, "b", major, minor])
        self.created_nodes.append(device)

    def _unmap(self, best_effort: bool) -> None:
        """Drop the partitions and our nodes (idempotent).

        ``best_effort`` (rollback) logs failures instead of raising, so
        the remaining rollbacks (loop detach, image delete) still run.
        """
        if not self.mapped:
            return
        try:
            exec_sudo(["partx", "-d", "-v", self.device_path])
        except BlockDeviceSetupException as exc:
            if not best_effort:
                raise
            logger.warning("partx -d %s failed (%s)", self.device_path,
                           getattr(exc, "returncode", "?"))
        for device in self.created_nodes:
            try:
                exec_sudo(["rm", "-f", device])
            except BlockDeviceSetupException:
                logger.warning("could not remove %s", device)
        self.created_nodes = []
        self.mapped = False
