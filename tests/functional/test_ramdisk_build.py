"""A build that writes no disk image (``no-final-image``) keeps the
kernel and initramfs it made and records them in the manifest.

``debian-minimal baremetal no-final-image``: the smallest element set that
pulls in ``no-final-image`` and writes a kernel and an initramfs
(``baremetal`` extracts them as ``NAME.vmlinuz`` and ``NAME.initrd``).
Before the fix, ``vm`` was added, the build failed at the end for want of
a qcow2 and both files were deleted.
"""

from __future__ import annotations

from pathlib import Path

from testtools import content

from tests.functional import base, builds
from tripleo_elements import outputs


class TestRamdiskBuild(base.FunctionalTestCase):

    def test_kernel_and_initramfs_kept_with_checksums(self) -> None:
        output = self.workdir / "ramdisk"
        build = builds.Build(["--no-defaults", "-e", "debian-minimal",
                              "-e", "baremetal", "-e", "no-final-image"],
                             output)
        self.addOnException(
            lambda exc_info: self.attach_log("build", build.log, 80))
        code = build.wait()
        self.assertEqual(0, code, build.tail())
        self.addDetail("seconds", content.text_content(
            f"{build.seconds:.0f}"))
        kernel = self.workdir / "ramdisk.vmlinuz"
        initrd = self.workdir / "ramdisk.initrd"
        with open(kernel, "rb") as handle:
            # Linux x86 boot protocol: "HdrS" at offset 0x202.
            handle.seek(0x202)
            self.assertEqual(b"HdrS", handle.read(4))
        self.assertGreater(initrd.stat().st_size, 1 << 20)
        self.assertFalse((self.workdir / "ramdisk.qcow2").exists())
        manifest = build.manifest()
        self.assertNotIn("vm", manifest["elements"])
        self.assertIn("no-final-image", manifest["elements"])
        recorded = {Path(i["path"]).name: i["sha256"]
                    for i in manifest["images"]}
        self.assertEqual({"ramdisk.vmlinuz": outputs.sha256_of(kernel),
                          "ramdisk.initrd": outputs.sha256_of(initrd)},
                         recorded)
        self.assertEqual(f"{recorded['ramdisk.vmlinuz']}  ramdisk.vmlinuz\n",
                         (self.workdir / "ramdisk.vmlinuz.sha256")
                         .read_text())
        self.assertEqual([], sorted(p.name for p in self.workdir.iterdir()
                                    if p.name.startswith(".ramdisk")))
