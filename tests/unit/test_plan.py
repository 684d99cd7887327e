"""The build plan (pure) and its execution against a fake
disk-image-create on the far side of our subprocess boundary."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import testtools

from tests.unit.trees import make_tree
from tripleo_elements import build, errors, host, options, outputs, process
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover

SOURCES = [host.AptSource("http://mirror.example/debian",
                          ("bookworm", "bookworm-updates")),
           host.AptSource("http://mirror.example/debian-security",
                          ("bookworm-security",))]

TREE = {
    "base": {"deps": []},
    "debian-minimal": {"provides": ["operating-system"]},
    "ubuntu-minimal": {"provides": ["operating-system"]},
    "vm": {"deps": ["block-device"]},
    "block-device-mbr": {
        "provides": ["block-device"],
        "block-device-default.yaml":
            "- local_loop:\n    name: image0\n- partitioning:\n"
            "    base: image0\n    label: mbr\n    partitions:\n"
            "      - name: root\n        size: 100%\n"},
    "heat-cfntools": {"deps": ["os-collect-config"]},
    "os-collect-config": {"install.d/10-occ": "#!/bin/bash\n"},
    "no-final-image": {},
    "baremetal": {},
    "ramdisk-base": {},
    "ipa-ramdisk": {"deps": ["no-final-image", "ramdisk-base"]},
}

FAKE_DIB = """#!/bin/bash
# Fake disk-image-create: records its argv and environment, then
# behaves as FAKE_DIB_MODE says.
printf '%s\\n' "$@" > "$FAKE_DIB_RECORD"
env > "$FAKE_DIB_RECORD.env"
out=""
while [ $# -gt 0 ]; do
    case "$1" in -o) out=$2; shift;; esac
    shift
done
echo "Running hooks from $TMP_DIR/hooks/root.d"
echo "dib-run-parts Running $TMP_DIR/hooks/root.d/10-something"
case "$FAKE_DIB_MODE" in
    fail)
        echo "Running hooks from /tmp/in_target.d/install.d"
        echo "dib-run-parts Running /tmp/in_target.d/install.d/50-broken"
        echo "boom: something broke"
        exit 3;;
    hang)
        trap 'echo "ignoring SIGINT, as disk-image-create does"' INT
        trap 'echo "cleanup trap ran"; exit 143' TERM
        echo "waiting"
        sleep 60 & wait;;
esac
echo "Running hooks from $TMP_DIR/hooks/finalise.d"
mkdir -p "$out.d/dib-manifests"
echo '{"packages": [{"package": "zlib1g", "version": "1:1.2.13"},
{"package": "bash", "version": "5.2"}]}' \\
    > "$out.d/dib-manifests/dib-manifest-dpkg-x"
# The shared download cache is private to this build: take apt's lock
# the way apt does, and download something new.
mkdir -p "$DIB_IMAGE_CACHE/apt"
exec 9> "$DIB_IMAGE_CACHE/apt/lock"
if ! flock -n 9; then
    echo "E: Could not get lock $DIB_IMAGE_CACHE/apt/lock"
    exit 100
fi
echo "downloaded by $$" > "$DIB_IMAGE_CACHE/apt/new-$(basename "$out")-$$.deb"
sleep "${FAKE_DIB_SLEEP:-0}"
echo "Converting image using qemu-img convert"
for suffix in ${FAKE_DIB_WRITE-.qcow2}; do
    echo "new image" > "$out$suffix"
done
"""


class PlanTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.index = discover([make_tree(self.tmp / "elements", TREE)])

    def plan(self, env=None, dm=True, **kw) -> plan_mod.BuildPlan:
        opts = options.BuildOptions(output=self.tmp / "out" / "img", **kw)
        return plan_mod.make_plan(opts, self.index, env or {},
                                  apt_sources=SOURCES, device_mapper=dm)

    def test_default_request_is_entry_os_and_vm(self) -> None:
        plan = self.plan()
        self.assertEqual(("base", "heat-cfntools", "debian-minimal", "vm"),
                         plan.effective_request)
        self.assertEqual(("base", "block-device-mbr", "debian-minimal",
                          "heat-cfntools", "os-collect-config", "vm"),
                         plan.elements)

    def test_user_os_element_replaces_the_default(self) -> None:
        plan = self.plan(elements=("ubuntu-minimal", "heat-cfntools"))
        self.assertNotIn("debian-minimal", plan.elements)
        self.assertIn("vm", plan.elements)
        self.assertNotIn("DIB_DISTRIBUTION_MIRROR", plan.environment)

    def test_no_defaults_adds_nothing(self) -> None:
        plan = self.plan(elements=("debian-minimal",), no_defaults=True)
        self.assertEqual(("debian-minimal",), plan.elements)
        self.assertIn("-n", plan.command)

    def test_mirrors_from_host_apt_sources(self) -> None:
        env = self.plan().environment
        self.assertEqual("http://mirror.example/debian",
                         env["DIB_DISTRIBUTION_MIRROR"])
        self.assertEqual("http://mirror.example/debian-security",
                         env["DIB_DEBIAN_SECURITY_MIRROR"])
        self.assertEqual("bookworm", env["DIB_RELEASE"])

    def test_user_mirror_wins(self) -> None:
        env = self.plan(env={"DIB_DISTRIBUTION_MIRROR": "http://mine/"}
                        ).environment
        self.assertNotIn("DIB_DISTRIBUTION_MIRROR", env)

    def test_command_passes_the_resolved_set_and_staged_path(self) -> None:
        plan = self.plan(types=("qcow2", "raw"))
        argv = list(plan.command)
        self.assertEqual(["disk-image-create", "-a", "amd64", "-o"],
                         argv[:4])
        self.assertEqual("qcow2,raw", argv[argv.index("-t") + 1])
        self.assertEqual(list(plan.elements), argv[-len(plan.elements):])
        self.assertEqual(str(plan.staged_path),
                         plan.environment["ELEMENTS_PATH"])
        self.assertEqual([self.tmp / "out" / "img.qcow2",
                          self.tmp / "out" / "img.raw"], list(plan.images))

    def test_no_device_mapper_rewrites_block_device_config(self) -> None:
        plan = self.plan(dm=False)
        self.assertIn("partitioning_nodm", plan.block_device_config)
        self.assertEqual(
            "file://" + str(plan.workdir / "block-device.yaml"),
            plan.environment["DIB_BLOCK_DEVICE_CONFIG"])
        self.assertIsNone(self.plan(dm=True).block_device_config)

    def test_json_has_the_stable_keys(self) -> None:
        data = json.loads(json.dumps(self.plan().to_json()))
        for key in ("requested", "elements", "sources", "command",
                    "environment"):
            self.assertIn(key, data)

    def test_unknown_image_type(self) -> None:
        err = self.assertRaises(errors.UsageError, options.parse,
                                ["-t", "qcow3"])
        self.assertIn("qcow3", err.message)

    def test_hook_collision_stops_the_plan(self) -> None:
        make_tree(self.tmp / "elements", {
            "heat-cfntools": {"deps": ["os-collect-config"],
                              "install.d/10-occ": "#!/bin/bash\n"}})
        self.index = discover([self.tmp / "elements"])
        err = self.assertRaises(errors.HookCollision, self.plan)
        self.assertIn("install.d/10-occ is shipped by 2 elements",
                      err.message)

    def test_skipped_script_is_a_warning(self) -> None:
        make_tree(self.tmp / "elements", {
            "os-collect-config": {"install.d/10-occ.sh": "#!/bin/bash\n"}})
        self.index = discover([self.tmp / "elements"])
        self.assertTrue(any("10-occ.sh" in w and "run-parts" in w
                            for w in self.plan().warnings))

    # ---- outputs follow what the resolved elements write (issue 8, #2)

    def test_no_final_image_gets_no_vm_and_expects_no_disk(self) -> None:
        plan = self.plan(elements=("ipa-ramdisk",))
        self.assertIn("no-final-image", plan.elements)
        self.assertNotIn("vm", plan.elements)
        self.assertNotIn("block-device-mbr", plan.elements)
        self.assertFalse(plan.final_image)
        out = self.tmp / "out"
        self.assertEqual((out / "img.kernel", out / "img.initramfs"),
                         plan.images)

    def test_baremetal_adds_kernel_and_initrd(self) -> None:
        plan = self.plan(elements=("baremetal",))
        out = self.tmp / "out"
        self.assertEqual((out / "img.qcow2", out / "img.vmlinuz",
                          out / "img.initrd"), plan.images)

    def test_tree_types_are_written_without_final_image(self) -> None:
        plan = self.plan(elements=("ipa-ramdisk",),
                         types=("tar", "squashfs", "qcow2", "docker"))
        names = [p.name for p in plan.images]
        self.assertEqual(["img.tar", "img.squash", "img.kernel",
                          "img.initramfs"], names)
        self.assertTrue(any("writes no qcow2" in w for w in plan.warnings))

    def test_squashfs_is_passed_first(self) -> None:
        # disk-image-create only makes the squashfs when it is the first
        # type (it tests IMAGE_TYPES[$x] with x unset).
        argv = list(self.plan(types=("qcow2", "squashfs")).command)
        self.assertEqual("squashfs,qcow2", argv[argv.index("-t") + 1])
        self.assertEqual(["img.qcow2", "img.squash"],
                         [p.name for p in self.plan(
                             types=("qcow2", "squashfs")).images])

    # ---- disk-image-create's options (issue 8, users from DIB)

    def test_dib_options_reach_the_command(self) -> None:
        opts = options.parse([
            "-o", str(self.tmp / "out" / "img"), "-x", "-x", "-u",
            "--offline", "-p", "vim,curl", "-p", "jq", "--image-size", "4",
            "--image-extra-size", "1.5", "--max-online-resize", "1000",
            "--qemu-img-options", "compat=1.1", "--mkfs-options", "-N 9",
            "--root-label", "root", "-t", "qcow2,docker",
            "--docker-target", "me/img:1"])
        plan = plan_mod.make_plan(opts, self.index, {}, apt_sources=SOURCES)
        argv = list(plan.command)
        self.assertEqual(2, argv.count("-x"))
        for flag, value in (("-p", "vim,curl,jq"), ("--image-size", "4"),
                            ("--max-online-resize", "1000"),
                            ("--qemu-img-options", "compat=1.1"),
                            ("--mkfs-options", "-N 9"),
                            ("--root-label", "root"),
                            ("--docker-target", "me/img:1")):
            self.assertEqual(value, argv[argv.index(flag) + 1], flag)
        self.assertIn("-u", argv)
        self.assertIn("--offline", argv)
        # DIB's --image-extra-size is not in its parser: the variable is.
        self.assertNotIn("--image-extra-size", argv)
        self.assertEqual("1.5", plan.environment["DIB_IMAGE_EXTRA_SIZE"])
        self.assertEqual(["img.qcow2"], [p.name for p in plan.images])

    def test_qcow2_compression_is_zstd_unless_asked_otherwise(self) -> None:
        var = options.QCOW2_COMPRESSION_ENV
        self.assertEqual("zstd", self.plan().environment[var])
        self.assertEqual("zlib", self.plan(
            qcow2_compression="zlib").environment[var])
        self.assertEqual("zlib", self.plan(
            env={var: "zlib"}).environment[var])
        # The option wins over the variable.
        self.assertEqual("zstd", self.plan(
            env={var: "zlib"}, qcow2_compression="zstd").environment[var])
        # Nothing compressed, no qcow2, or the user's own qemu-img choice.
        for kw in ({"uncompressed": True}, {"types": ("raw",)},
                   {"qemu_img_options": "compression_type=zlib"}):
            self.assertNotIn(var, self.plan(**kw).environment, kw)
        # ... and it is in the text of the plan.
        self.assertIn(f"{var}=zstd", self.plan().to_text())

    def test_bad_qcow2_compression_is_a_usage_error(self) -> None:
        error = self.assertRaises(
            errors.UsageError, options.parse,
            ["-o", "x", "--qcow2-compression", "lz4"])
        self.assertIn("lz4", error.message)
        self.assertEqual("zlib", options.parse(
            ["-o", "x", "--qcow2-compression", "zlib"]).qcow2_compression)
        error = self.assertRaises(
            errors.UsageError, self.plan,
            env={options.QCOW2_COMPRESSION_ENV: "gzip"})
        self.assertIn("TIE_QCOW2_COMPRESSION=gzip", error.message)

    def test_host_dib_variables_shown_with_secrets_masked(self) -> None:
        plan = self.plan(env={"DIB_DEV_USER_PASSWORD": "hunter2",
                              "DIB_GITHUB_TOKEN": "t0k",
                              "DIB_APT_KEY": "k", "DIB_OS_SECRET": "s",
                              "DIB_DEBUG_TRACE": "1", "HOME": "/root"})
        self.assertEqual({"DIB_APT_KEY": "(set)", "DIB_DEBUG_TRACE": "1",
                          "DIB_DEV_USER_PASSWORD": "(set)",
                          "DIB_GITHUB_TOKEN": "(set)",
                          "DIB_OS_SECRET": "(set)"},
                         dict(plan.host_environment))
        text = plan.to_text() + json.dumps(plan.to_json())
        for secret in ("hunter2", "t0k"):
            self.assertNotIn(secret, text)
        self.assertIn("DIB_DEBUG_TRACE=1", plan.to_text())

    def test_user_tmp_dir_is_honoured(self) -> None:
        plan = self.plan(env={"TMP_DIR": str(self.tmp / "big")})
        tmp = Path(plan.environment["TMP_DIR"])
        self.assertEqual(self.tmp / "big", tmp.parent)
        self.assertTrue(tmp.name.startswith("tie-img-"))
        self.assertEqual(plan.workdir / "tmp",
                         Path(self.plan().environment["TMP_DIR"]))

    def test_image_cache_choice(self) -> None:
        self.assertEqual(self.tmp / "c", self.plan(
            env={"DIB_IMAGE_CACHE": str(self.tmp / "c")}).image_cache)
        self.assertEqual(self.tmp / "d", self.plan(
            env={"DIB_IMAGE_CACHE": str(self.tmp / "c")},
            image_cache=self.tmp / "d").image_cache)


class ExecuteTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.index = discover([make_tree(self.tmp / "elements", TREE)])
        fake = self.tmp / "fake-dib"
        fake.write_text(FAKE_DIB)
        fake.chmod(0o755)
        self.record = self.tmp / "argv"
        opts = options.BuildOptions(output=self.tmp / "out" / "img")
        (self.tmp / "out").mkdir()
        self.env = {"DIB_IMAGE_CACHE": str(self.tmp / "cache")}
        self.plan = plan_mod.make_plan(opts, self.index, self.env,
                                       apt_sources=SOURCES,
                                       device_mapper=True,
                                       dib_command=str(fake))
        self.reports: list[tuple[str, str | None]] = []

    def run_build(self, mode: str) -> build.BuildResult:
        env = dict(os.environ, FAKE_DIB_MODE=mode,
                   FAKE_DIB_RECORD=str(self.record), **self.env)
        return build.execute(self.plan, env,
                             lambda p, s: self.reports.append((p, s)))

    def test_success_publishes_image_checksum_and_manifest(self) -> None:
        result = self.run_build("ok")
        image = self.tmp / "out" / "img.qcow2"
        self.assertEqual("new image\n", image.read_text())
        self.assertEqual(f"{outputs.sha256_of(image)}  img.qcow2\n",
                         (self.tmp / "out" / "img.qcow2.sha256").read_text())
        manifest = json.loads(result.manifest.read_text())
        self.assertEqual(list(self.plan.elements), manifest["elements"])
        self.assertFalse(self.plan.workdir.exists())
        self.assertIn("root.d", dict(result.phases))
        self.assertIn("convert", dict(result.phases))
        self.assertEqual({"bash": "5.2", "zlib1g": "1:1.2.13"},
                         manifest["packages"])
        self.assertTrue(
            (self.tmp / "out" / "img.d" / "dib-manifests").is_dir())
        self.assertIn(("root.d", "10-something"), self.reports)
        argv = self.record.read_text().splitlines()
        self.assertEqual(list(self.plan.elements),
                         argv[-len(self.plan.elements):])
        env = self.record.with_suffix(".env").read_text()
        self.assertIn(f"ELEMENTS_PATH={self.plan.staged_path}", env)
        self.assertIn("DIB_RELEASE=bookworm", env)

    def test_failure_keeps_previous_image_and_reports_where(self) -> None:
        image = self.tmp / "out" / "img.qcow2"
        image.write_text("good old image\n")
        err = self.assertRaises(errors.BuildFailed, self.run_build, "fail")
        self.assertEqual(1, err.exit_code)
        self.assertIn("exit 3", err.message)
        self.assertIn("install.d/50-broken", err.message)
        self.assertIn("boom: something broke", err.message)
        self.assertIn(str(self.plan.log), err.message)
        self.assertEqual("good old image\n", image.read_text())
        self.assertFalse(self.plan.workdir.exists())
        self.assertIn("boom: something broke", self.plan.log.read_text())

    def test_sigint_terminates_build_cleanly_and_keeps_old_image(self) -> None:
        image = self.tmp / "out" / "img.qcow2"
        image.write_text("good old image\n")

        def interrupt() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.plan.log.exists() and \
                        "waiting" in self.plan.log.read_text():
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.1)

        threading.Thread(target=interrupt, daemon=True).start()
        err = self.assertRaises(process.Interrupted, self.run_build, "hang")
        self.assertIn("SIGINT", err.message)
        self.assertIn("cleanup trap ran", self.plan.log.read_text())
        self.assertEqual("good old image\n", image.read_text())
        self.assertFalse(self.plan.workdir.exists())
