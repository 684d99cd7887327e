"""Whole-disk (``vm``) images on hosts without device-mapper.

diskimage-builder's ``partitioning`` block-device plugin exposes the
partitions it writes with ``kpartx`` (on hosts with ``/.dockerenv``:
``kpartx -av`` plus ``dmsetup --noudevsync mknodes``), records every
partition as ``/dev/mapper/loopNpM`` and rolls back with ``dmsetup
remove``.  On a kernel without device-mapper all of that fails, so the
``vm`` element cannot be built at all.

:class:`~tripleo_elements.nodm_plugin.NoDeviceMapperPartitioning`
(plugin key ``partitioning_nodm``)
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

import logging
import stat
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

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
    import importlib.metadata  # only needed on hosts without device-mapper
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


def _kind(node: yaml.Node) -> str:
    """'scalar', 'sequence' or 'mapping' (PyYAML's node ids)."""
    return str(getattr(node, "id", type(node).__name__))


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
            f"{source}: top level is a {_kind(root)}, not a list", hint)
    names = frozenset(plugins) if plugins is not None else _plugin_names()
    names = names | {DM_PLUGIN}
    keys: list[yaml.ScalarNode] = []
    for entry in root.value:
        if not isinstance(entry, yaml.MappingNode):
            raise errors.ElementFormatError(
                f"{source}: line {entry.start_mark.line + 1}: entry is a "
                f"{_kind(entry)}, not a '- plugin: {{...}}' mapping", hint)
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
