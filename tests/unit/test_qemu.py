"""Unit tests for tripleo_elements.testing.qemu, with qemu faked at spawn()."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import fixtures
import testtools

from tripleo_elements import errors
from tripleo_elements.testing import qemu


class FakeProcess:
    """Stands in for subprocess.Popen; ``stubborn`` ignores SIGTERM."""

    def __init__(self, argv: Sequence[str], stubborn: bool = False) -> None:
        self.argv = list(argv)
        self.stubborn = stubborn
        self.returncode: int | None = None
        self.terminated = False
        self.killed = False
        self.reaped = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True
        if not self.stubborn:
            self.returncode = -15

    def kill(self) -> None:
        self.killed = True
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is not None:
                raise subprocess.TimeoutExpired(self.argv, timeout)
            raise AssertionError("wait() without timeout would hang")
        self.reaped = True
        return self.returncode


class FakeSpawn:
    """Replaces qemu.spawn; ``on_start`` can play the guest."""

    def __init__(self, stubborn: bool = False,
                 on_start: Callable[[FakeProcess], None] | None = None,
                 ) -> None:
        self.stubborn = stubborn
        self.on_start = on_start
        self.procs: list[FakeProcess] = []

    def __call__(self, argv: Sequence[str],
                 output: IO[bytes] | None = None) -> FakeProcess:
        proc = FakeProcess(argv, self.stubborn)
        self.procs.append(proc)
        if self.on_start is not None:
            self.on_start(proc)
        return proc


def serial_path(argv: Sequence[str]) -> Path:
    spec = argv[argv.index("-serial") + 1]
    assert spec.startswith("file:"), spec
    return Path(spec[len("file:"):])


class QemuTestCase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.image = self.tmp / "base.qcow2"
        self.image.write_bytes(b"QFI\xfb")
        qemu._detect_accel_cached.cache_clear()
        self.addCleanup(qemu._detect_accel_cached.cache_clear)

    def fake_spawn(self, **kwargs: object) -> FakeSpawn:
        fake = FakeSpawn(**kwargs)  # type: ignore[arg-type]
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.qemu.spawn", fake))
        return fake


class TestArgv(QemuTestCase):

    def test_full_command_line(self) -> None:
        iso = self.tmp / "config,drive.iso"
        blank = self.tmp / "blank.qcow2"
        vm = qemu.VirtualMachine(
            self.image, self.tmp / "vm", accel="tcg", cpus=2,
            forwards=[22, 8080],
            drives=[qemu.Drive.iso(iso), qemu.Drive(blank, snapshot=False)])
        argv = vm.argv()
        self.assertEqual(["qemu-system-x86_64", "-accel", "tcg",
                          "-m", "1024M", "-smp", "2"], argv[:7])
        self.assertEqual(self.tmp / "vm" / "console.log", serial_path(argv))
        drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
        self.assertEqual(
            [f"file={self.image},format=qcow2,if=virtio,media=disk,"
             "snapshot=on",
             f"file={self.tmp}/config,,drive.iso,format=raw,if=ide,"
             "media=cdrom,readonly=on",
             f"file={blank},format=qcow2,if=virtio,media=disk"],
            drives)
        netdev = argv[argv.index("-netdev") + 1]
        self.assertEqual(
            "user,id=net0"
            f",hostfwd=tcp:127.0.0.1:{vm.host_port(22)}-:22"
            f",hostfwd=tcp:127.0.0.1:{vm.host_port(8080)}-:8080",
            netdev)
        self.assertNotEqual(vm.host_port(22), vm.host_port(8080))
        for flag in ("-display", "-monitor", "-no-reboot"):
            self.assertIn(flag, argv)
        self.assertNotIn("-cpu", argv)
        self.assertNotIn("-nographic", argv)

    def test_kvm_uses_host_cpu_and_memory(self) -> None:
        vm = qemu.VirtualMachine(self.image, self.tmp, accel="kvm",
                                 memory_mb=2048, extra_args=["-S"])
        argv = vm.argv()
        self.assertEqual(["-cpu", "host"],
                         argv[argv.index("-cpu"):argv.index("-cpu") + 2])
        self.assertEqual("2048M", argv[argv.index("-m") + 1])
        self.assertEqual("-S", argv[-1])

    def test_probe_boot_sector(self) -> None:
        sector = qemu.probe_boot_sector()
        self.assertEqual(512, len(sector))
        self.assertEqual(b"\x55\xaa", sector[-2:])
        # mov si, imm16 must point at the marker (loaded at 0x7c00).
        si = int.from_bytes(sector[9:11], "little")
        self.assertEqual(0x7C00 + sector.index(qemu.PROBE_MARKER), si)


class TestAccel(QemuTestCase):

    def test_override_skips_probe(self) -> None:
        fake = self.fake_spawn()
        for value in ("kvm", "tcg"):
            self.assertEqual(value, qemu.detect_accel(
                environ={qemu.ACCEL_ENV: value}))
        self.assertEqual([], fake.procs)

    def test_bad_override(self) -> None:
        exc = self.assertRaises(errors.UsageError, qemu.detect_accel,
                                environ={qemu.ACCEL_ENV: "hvf"})
        self.assertIn("TIE_QEMU_ACCEL='hvf'", exc.message)

    def test_no_kvm_device_means_tcg_without_probe(self) -> None:
        fake = self.fake_spawn()
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.qemu.kvm_device_usable",
            lambda: False))
        self.assertEqual("tcg", qemu.detect_accel(environ={}))
        self.assertEqual([], fake.procs)

    def test_probe_success_is_kvm_and_cached(self) -> None:
        def guest(proc: FakeProcess) -> None:
            serial_path(proc.argv).write_bytes(b"SeaBIOS\r\n"
                                               + qemu.PROBE_MARKER)

        fake = self.fake_spawn(on_start=guest)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.qemu.kvm_device_usable", lambda: True))
        self.assertEqual("kvm", qemu.detect_accel(environ={}))
        self.assertEqual("kvm", qemu.detect_accel(environ={}))
        self.assertEqual(1, len(fake.procs))
        argv = fake.procs[0].argv
        self.assertEqual(["-accel", "kvm"], argv[1:3])
        self.assertTrue(fake.procs[0].terminated)
        self.assertTrue(fake.procs[0].reaped)

    def test_silent_probe_is_tcg_and_killed(self) -> None:
        fake = self.fake_spawn(stubborn=True)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.qemu.kvm_device_usable", lambda: True))
        start = time.monotonic()
        self.assertEqual("tcg", qemu.detect_accel(timeout=0.3, environ={}))
        self.assertLess(time.monotonic() - start, 5)
        self.assertTrue(fake.procs[0].killed)
        self.assertTrue(fake.procs[0].reaped)


class TestVirtualMachine(QemuTestCase):

    def test_timeout_message_has_console_tail(self) -> None:
        def guest(proc: FakeProcess) -> None:
            serial_path(proc.argv).write_text(
                "".join(f"boot line {i}\n" for i in range(1, 61)))

        self.fake_spawn(on_start=guest)
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg") as vm:
            exc = self.assertRaises(qemu.ConsoleTimeout, vm.wait_for_console,
                                    "login:", 0.2, poll_interval=0.05)
        self.assertIn("'login:'", exc.message)
        self.assertIn("boot line 21\n", exc.message)
        self.assertTrue(exc.message.endswith("boot line 60"))
        self.assertNotIn("boot line 20\n", exc.message)
        self.assertIsInstance(exc, errors.TieError)
        self.assertEqual(errors.EXIT_FAILED, exc.exit_code)

    def test_returns_console_on_match(self) -> None:
        def guest(proc: FakeProcess) -> None:
            serial_path(proc.argv).write_text("Debian GNU/Linux 12\n"
                                              "host login: ")

        self.fake_spawn(on_start=guest)
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg") as vm:
            text = vm.wait_for_console(r"\blogin:", 5)
            self.assertIn("Debian GNU/Linux 12", text)
            self.assertEqual(text, vm.console_text())

    def test_qemu_exit_fails_fast(self) -> None:
        def guest(proc: FakeProcess) -> None:
            serial_path(proc.argv).write_text("Kernel panic\n")
            proc.returncode = 1

        self.fake_spawn(on_start=guest)
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg") as vm:
            exc = self.assertRaises(qemu.VmError, vm.wait_for_console,
                                    "login:", 60)
        self.assertIn("status 1", exc.message)
        self.assertIn("Kernel panic", exc.message)

    def test_killed_on_exit_even_after_an_error(self) -> None:
        fake = self.fake_spawn()

        def body() -> None:
            with qemu.VirtualMachine(self.image, self.tmp, accel="tcg"):
                raise RuntimeError("test body failed")

        self.assertRaises(RuntimeError, body)
        self.assertTrue(fake.procs[0].terminated)
        self.assertTrue(fake.procs[0].reaped)
        self.assertFalse(fake.procs[0].killed)

    def test_stubborn_vm_is_killed(self) -> None:
        fake = self.fake_spawn(stubborn=True)
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg"):
            pass
        self.assertTrue(fake.procs[0].terminated)
        self.assertTrue(fake.procs[0].killed)
        self.assertTrue(fake.procs[0].reaped)

    def test_hard_time_limit(self) -> None:
        fake = self.fake_spawn()
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg",
                                 time_limit=0.1) as vm:
            deadline = time.monotonic() + 5
            while vm.running and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertFalse(vm.running)
            exc = self.assertRaises(qemu.VmError, vm.wait_for_console,
                                    "login:", 5)
        self.assertIn("killed at its 0 s time limit", exc.message)
        self.assertTrue(fake.procs[0].terminated)

    def test_missing_image(self) -> None:
        fake = self.fake_spawn()
        vm = qemu.VirtualMachine(self.tmp / "nope.qcow2", self.tmp,
                                 accel="tcg")
        exc = self.assertRaises(qemu.VmError, vm.start)
        self.assertIn("nope.qcow2", exc.message)
        self.assertEqual([], fake.procs)

    def test_console_log_truncated_on_start(self) -> None:
        self.fake_spawn()
        (self.tmp / "console.log").write_text("old boot login:\n")
        with qemu.VirtualMachine(self.image, self.tmp, accel="tcg") as vm:
            self.assertEqual("", vm.console_text())
