"""Unit tests for tripleo_elements.blockdev (no root, no loop devices)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import fixtures
import testtools
import yaml

from diskimage_builder.block_device import config as dib_config
from diskimage_builder.block_device.exception import \
    BlockDeviceSetupException
from diskimage_builder.block_device.level1 import partitioning as dib_part

from tripleo_elements import blockdev
from tripleo_elements import errors, nodm_plugin

# A loop device number no real host has, so checks of /dev find nothing.
LOOP = "/dev/loop99999"

MBR_CONFIG = """\
# Default single partition loopback

- local_loop:
    name: image0

- partitioning:
    base: image0
    label: mbr
    partitions:
      - name: root
        flags: [ boot, primary ]
        size: 100%
        mkfs:
          mount:
            mount_point: /
"""

NESTED_CONFIG = """\
- local_loop:
    name: image0
    partitioning:   # nested under the loop
      label: gpt
      partitions:
        - name: ESP
          type: 'EF00'
          size: 16MiB
          mkfs:
            type: vfat
            mount:
              mount_point: /boot/efi
        - name: root
          size: 100%
          mkfs:
            type: ext4
            label: partitioning
            opts: "-E partitioning"
            mount:
              mount_point: /
"""


class TestRewrite(testtools.TestCase):

    def test_top_level_key_renamed_rest_byte_identical(self) -> None:
        out = blockdev.rewrite_for_no_device_mapper(MBR_CONFIG)
        self.assertEqual(
            MBR_CONFIG.replace("- partitioning:", "- partitioning_nodm:"),
            out)

    def test_nested_key_renamed_values_untouched(self) -> None:
        out = blockdev.rewrite_for_no_device_mapper(NESTED_CONFIG)
        self.assertIn("    partitioning_nodm:   # nested under the loop\n",
                      out)
        # Values that merely contain the word are not plugin keys.
        self.assertIn("label: partitioning\n", out)
        self.assertIn('opts: "-E partitioning"\n', out)
        self.assertEqual(1, out.count("partitioning_nodm"))

    def test_key_inside_a_partition_renamed(self) -> None:
        text = ("- local_loop:\n    name: image0\n"
                "- partitioning:\n    base: image0\n    label: mbr\n"
                "    partitions:\n"
                "      - name: p1\n        size: 100%\n"
                "        partitioning:\n          label: mbr\n"
                "          partitions: []\n")
        out = blockdev.rewrite_for_no_device_mapper(text)
        self.assertEqual(2, out.count("partitioning_nodm:"))

    def test_quoted_and_flow_keys(self) -> None:
        text = ('- "partitioning": {base: image0, label: mbr,'
                ' partitions: []}\n'
                "- {'partitioning': {base: x, label: gpt, partitions: []}}\n")
        out = blockdev.rewrite_for_no_device_mapper(text)
        parsed = yaml.safe_load(out)
        self.assertEqual([["partitioning_nodm"], ["partitioning_nodm"]],
                         [list(entry) for entry in parsed])
        self.assertIn('"partitioning_nodm"', out)
        self.assertIn("'partitioning_nodm'", out)

    def test_key_under_a_non_plugin_value_untouched(self) -> None:
        text = ("- local_loop:\n    name: image0\n"
                "    options:\n      partitioning: not-a-plugin\n")
        self.assertEqual(text, blockdev.rewrite_for_no_device_mapper(text))

    def test_idempotent(self) -> None:
        once = blockdev.rewrite_for_no_device_mapper(NESTED_CONFIG)
        self.assertEqual(once, blockdev.rewrite_for_no_device_mapper(once))

    def test_dib_builds_graph_with_our_plugin(self) -> None:
        out = blockdev.rewrite_for_no_device_mapper(NESTED_CONFIG)
        graph = dib_config.config_tree_to_graph(yaml.safe_load(out))
        defaults = {"build-dir": "/fake", "image-size": "100MiB",
                    "image-dir": "/fake", "mount-base": "/fake"}
        _, call_order = dib_config.create_graph(graph, defaults, {})
        parents = {type(getattr(n, "partitioning", None)).__name__
                   for n in call_order if hasattr(n, "partitioning")}
        self.assertEqual({"NoDeviceMapperPartitioning"}, parents)

    def test_malformed_yaml_names_source(self) -> None:
        exc = self.assertRaises(
            errors.ElementFormatError, blockdev.rewrite_for_no_device_mapper,
            "- partitioning:\n  base: [unclosed\n", source="/x/bd.yaml")
        self.assertIn("/x/bd.yaml: not valid YAML", exc.message)
        self.assertIn("line", exc.message)
        self.assertTrue(exc.hint)

    def test_not_a_list(self) -> None:
        exc = self.assertRaises(
            errors.ElementFormatError, blockdev.rewrite_for_no_device_mapper,
            "partitioning: {}\n", source="cfg.yaml")
        self.assertIn("cfg.yaml: top level is a mapping", exc.message)

    def test_entry_not_a_mapping(self) -> None:
        exc = self.assertRaises(
            errors.ElementFormatError, blockdev.rewrite_for_no_device_mapper,
            "- local_loop: {name: image0}\n- just-a-string\n",
            source="cfg.yaml")
        self.assertIn("cfg.yaml: line 2", exc.message)

    def test_empty(self) -> None:
        self.assertRaises(errors.ElementFormatError,
                          blockdev.rewrite_for_no_device_mapper, "# none\n")


class TestFindConfig(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)

    def element(self, name: str, *files: str) -> Path:
        path = self.root / name
        path.mkdir()
        for f in files:
            (path / f).write_text("- local_loop: {name: image0}\n")
        return path

    def test_first_by_name_wins(self) -> None:
        elements = {
            "zz": self.element("zz", "block-device-default.yaml"),
            "aa": self.element("aa", "block-device-default.yaml"),
            "mm": self.element("mm"),
        }
        self.assertEqual(self.root / "aa" / "block-device-default.yaml",
                         blockdev.find_block_device_config(elements, "amd64"))

    def test_arch_file_preferred_within_element(self) -> None:
        elements = {"bd": self.element("bd", "block-device-default.yaml",
                                       "block-device-amd64.yaml")}
        self.assertEqual(self.root / "bd" / "block-device-amd64.yaml",
                         blockdev.find_block_device_config(elements, "amd64"))
        self.assertEqual(self.root / "bd" / "block-device-default.yaml",
                         blockdev.find_block_device_config(elements, "arm64"))

    def test_earlier_element_default_beats_later_arch_file(self) -> None:
        # DIB decides element by element, arch file then default.
        elements = {"a": self.element("a", "block-device-default.yaml"),
                    "b": self.element("b", "block-device-amd64.yaml")}
        self.assertEqual(self.root / "a" / "block-device-default.yaml",
                         blockdev.find_block_device_config(elements, "amd64"))

    def test_ppc64le_and_ppc64el_share_a_file(self) -> None:
        elements = {"bd": self.element("bd", "block-device-default.yaml",
                                       "block-device-ppc64el.yaml")}
        for arch in ("ppc64le", "ppc64el"):
            self.assertEqual(
                self.root / "bd" / "block-device-ppc64el.yaml",
                blockdev.find_block_device_config(elements, arch))

    def test_none(self) -> None:
        self.assertIsNone(blockdev.find_block_device_config(
            {"x": self.element("x")}, "amd64"))
        self.assertIsNone(blockdev.find_block_device_config({}, "amd64"))


class TestDeviceMapperProbe(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(self.useFixture(fixtures.TempDir()).path)
        self.misc = self.root / "misc"
        self.sys_misc = self.root / "sys-device-mapper"
        # /dev/null is a character device on every Linux host.
        self.char_dev = Path(os.devnull)

    def probe(self, control: Path) -> bool:
        return blockdev.device_mapper_usable(control, self.misc,
                                             self.sys_misc)

    def test_usable_via_proc_misc(self) -> None:
        self.misc.write_text(" 58 device-mapper\n235 autofs\n")
        self.assertTrue(self.probe(self.char_dev))

    def test_usable_via_sysfs(self) -> None:
        self.sys_misc.mkdir()
        self.assertTrue(self.probe(self.char_dev))

    def test_driver_missing(self) -> None:
        self.misc.write_text("235 autofs\n237 loop-control\n")
        self.assertFalse(self.probe(self.char_dev))

    def test_no_misc_info_at_all(self) -> None:
        self.assertFalse(self.probe(self.char_dev))

    def test_control_missing_or_not_char(self) -> None:
        self.misc.write_text(" 58 device-mapper\n")
        self.assertFalse(self.probe(self.root / "absent"))
        regular = self.root / "control"
        regular.write_text("")
        self.assertFalse(self.probe(regular))


class FakeSudo:
    """Records exec_sudo argv lists; fails commands matching ``fail``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: set[tuple[str, ...]] = set()

    def __call__(self, cmd: list[str]) -> str:
        assert isinstance(cmd, list)
        self.calls.append(list(cmd))
        if tuple(cmd) in self.fail:
            exc = BlockDeviceSetupException("exec_sudo failed: fake")
            exc.returncode = 1  # type: ignore[attr-defined]
            raise exc
        return ""


class TestPlugin(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.image = self.tmp / "image0.raw"
        with open(self.image, "wb") as handle:
            handle.truncate(64 * 1024 * 1024)
        self.sys_block = self.tmp / "sys-block"
        self.sudo = FakeSudo()
        # Our module and DIB's partitioning module (sgdisk for GPT).
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.nodm_plugin.exec_sudo", self.sudo))
        self.useFixture(fixtures.MonkeyPatch(
            "diskimage_builder.block_device.level1.partitioning.exec_sudo",
            self.sudo))
        self.useFixture(fixtures.MonkeyPatch(
            "diskimage_builder.block_device.utils.exec_sudo", self.sudo))

    def kernel_partition(self, number: int, devno: str) -> None:
        d = self.sys_block / "loop99999" / f"loop99999p{number}"
        d.mkdir(parents=True)
        (d / "dev").write_text(devno + "\n")

    def plugin(self, label: str = "mbr", parts: int = 1,
               ) -> tuple[nodm_plugin.NoDeviceMapperPartitioning,
                          dict[str, Any]]:
        partitions: list[dict[str, Any]] = [
            {"name": f"p{i}", "base": "image0",
             "size": "8MiB" if i < parts else "100%"}
            for i in range(1, parts + 1)]
        if label == "mbr":
            # Without "primary" DIB makes logical partitions (5, 6...).
            for part in partitions:
                part["flags"] = ["primary"]
        state: dict[str, Any] = {"blockdev": {"image0": {
            "image": str(self.image), "device": LOOP}}}
        plugin = nodm_plugin.NoDeviceMapperPartitioning(
            {"name": "partitioning_nodm_image0", "base": "image0",
             "label": label, "partitions": partitions}, {}, state)
        plugin.sys_block = str(self.sys_block)
        return plugin, state

    def create_all(self, plugin: nodm_plugin.NoDeviceMapperPartitioning
                   ) -> None:
        for node in plugin.get_nodes():
            node.create()

    def test_mbr_create_and_umount(self) -> None:
        self.kernel_partition(1, "259:7")
        plugin, state = self.plugin()
        self.create_all(plugin)
        self.assertEqual({"device": "/dev/loop99999p1"},
                         state["blockdev"]["p1"])
        self.assertEqual(
            [["sync"],
             ["partx", "-a", "-v", LOOP],
             ["mknod", "-m", "0660", "/dev/loop99999p1", "b", "259", "7"]],
            self.sudo.calls)
        # The MBR itself was written by DIB's code.
        with open(self.image, "rb") as handle:
            handle.seek(510)
            self.assertEqual(b"\x55\xaa", handle.read(2))
        self.sudo.calls.clear()
        for node in reversed(plugin.get_nodes()):
            node.umount()
        self.assertEqual([["partx", "-d", "-v", LOOP],
                          ["rm", "-f", "/dev/loop99999p1"]],
                         self.sudo.calls)

    def test_gpt_two_partitions(self) -> None:
        self.kernel_partition(1, "259:1")
        self.kernel_partition(2, "259:2")
        plugin, state = self.plugin(label="gpt", parts=2)
        self.create_all(plugin)
        self.assertEqual("/dev/loop99999p1",
                         state["blockdev"]["p1"]["device"])
        self.assertEqual("/dev/loop99999p2",
                         state["blockdev"]["p2"]["device"])
        self.assertEqual("sgdisk", self.sudo.calls[0][0])
        self.assertEqual(
            [["sync"],
             ["partx", "-a", "-v", LOOP],
             ["mknod", "-m", "0660", "/dev/loop99999p1", "b", "259", "1"],
             ["mknod", "-m", "0660", "/dev/loop99999p2", "b", "259", "2"]],
            self.sudo.calls[1:])
        self.sudo.calls.clear()
        nodes = plugin.get_nodes()
        nodes[1].umount()
        self.assertEqual([], self.sudo.calls, "unmapped before the last")
        nodes[0].umount()
        self.assertEqual(["partx", "-d", "-v", LOOP], self.sudo.calls[0])

    def test_mbr_logical_partition_numbering(self) -> None:
        # DIB numbers a non-primary MBR partition 5; the state follows.
        self.kernel_partition(5, "259:3")
        plugin, state = self.plugin()
        plugin.partitions[0].flags = set()
        self.create_all(plugin)
        self.assertEqual("/dev/loop99999p5",
                         state["blockdev"]["p1"]["device"])
        self.assertEqual(
            ["mknod", "-m", "0660", "/dev/loop99999p5", "b", "259", "3"],
            self.sudo.calls[-1])

    def test_falls_back_to_partx_update(self) -> None:
        self.kernel_partition(1, "259:7")
        self.sudo.fail.add(("partx", "-a", "-v", LOOP))
        plugin, _ = self.plugin()
        self.create_all(plugin)
        self.assertIn(["partx", "-u", "-v", LOOP], self.sudo.calls)

    def test_no_device_mapper_anywhere(self) -> None:
        plugin, _ = self.plugin(parts=2)
        # No sysfs entries: the kernel "did not add" the partitions.
        self.assertRaises(BlockDeviceSetupException, self.create_all, plugin)
        for node in reversed(plugin.get_nodes()):
            node.rollback()
        flat = [c[0] for c in self.sudo.calls]
        self.assertNotIn("dmsetup", flat)
        self.assertNotIn("kpartx", flat)
        self.assertEqual(["partx", "-d", "-v", LOOP], self.sudo.calls[-1])
        for node in plugin.get_nodes():
            self.assertNotIn(dib_part.remove_device,
                             [r[0] for r in node.rollbacks])

    def test_rollback_is_best_effort_and_once(self) -> None:
        self.kernel_partition(1, "259:7")
        plugin, _ = self.plugin()
        self.create_all(plugin)
        self.sudo.fail.add(("partx", "-d", "-v", LOOP))
        self.sudo.calls.clear()
        for node in reversed(plugin.get_nodes()):
            node.rollback()  # must not raise
        for node in reversed(plugin.get_nodes()):
            node.rollback()
        self.assertEqual(1, self.sudo.calls.count(["partx", "-d", "-v",
                                                   LOOP]))
        self.assertIn(["rm", "-f", "/dev/loop99999p1"], self.sudo.calls)

    def test_umount_failure_raises(self) -> None:
        self.kernel_partition(1, "259:7")
        plugin, _ = self.plugin()
        self.create_all(plugin)
        self.sudo.fail.add(("partx", "-d", "-v", LOOP))
        self.assertRaises(BlockDeviceSetupException,
                          plugin.get_nodes()[0].umount)

    def test_survives_pickle_between_create_and_umount(self) -> None:
        # dib-block-device pickles the nodes after create and loads them
        # in a new process for umount.
        self.kernel_partition(1, "259:7")
        plugin, _ = self.plugin()
        self.create_all(plugin)
        nodes = pickle.loads(pickle.dumps(plugin.get_nodes()))
        self.sudo.calls.clear()
        for node in reversed(nodes):
            node.umount()
        self.assertEqual([["partx", "-d", "-v", LOOP],
                          ["rm", "-f", "/dev/loop99999p1"]],
                         self.sudo.calls)
