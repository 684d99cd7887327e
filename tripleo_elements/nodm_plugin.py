"""The ``partitioning_nodm`` block-device plugin (see :mod:`blockdev`).

Kept apart from :mod:`tripleo_elements.blockdev` so that planning a build
does not import diskimage-builder's block-device code: only DIB's
``dib-block-device`` loads this module, through its entry point.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import Any

from diskimage_builder.block_device.exception import \
    BlockDeviceSetupException
from diskimage_builder.block_device.level1 import partitioning as dib_part
from diskimage_builder.block_device.utils import exec_sudo

logger = logging.getLogger(__name__)

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
