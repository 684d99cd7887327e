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
from tests.functional import guest, heatstack
from tripleo_elements.testing import accel, qemu
from tripleo_elements.testing.http import HeatServer


class FakeProcess:
    """Stands in for subprocess.Popen; ``stubborn`` ignores SIGTERM."""

    def __init__(self, argv: Sequence[str], stubborn: bool = False) -> None:
        self.argv = list(argv)
        self.stubborn = stubborn
        self.returncode: int | None = None
        self.terminated = False
        self.killed = False
        self.reaped = False
        self.output: IO[bytes] | None = None

    def say(self, text: str) -> None:
        """Write to qemu's own log (stdout+stderr)."""
        assert self.output is not None
        self.output.write(text.encode())
        self.output.flush()

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
        proc.output = output
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
        self.cache_file = self.tmp / "accel-cache.json"
        # Never the user's cache, never a forced accelerator from outside.
        self.useFixture(fixtures.EnvironmentVariable(
            accel.CACHE_ENV, str(self.cache_file)))
        self.useFixture(fixtures.EnvironmentVariable(qemu.ACCEL_ENV))

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


def accel_of(argv: Sequence[str]) -> str:
    return argv[argv.index("-accel") + 1]


def abort_under_kvm(proc: FakeProcess) -> None:
    """Real guests on the half-working hosts: KVM aborts at once, and a
    guest without ``-cpu host`` (like a tiny probe) runs."""
    if accel_of(proc.argv) == "kvm" and "host" in proc.argv:
        proc.say("qemu-system-x86_64: error: failed to set MSR 0x10a to "
                 "0x69\nkvm_buf_set_msrs: Assertion failed.\n")
        proc.returncode = -6
    else:
        serial_path(proc.argv).write_text("[    0.000000] Linux version "
                                          "6.1.0-28-amd64\n")


def boots(proc: FakeProcess) -> None:
    serial_path(proc.argv).write_text(
        "SeaBIOS\nGRUB loading.\nLinux version 6.1.0-28-amd64 ...\n")


def stuck_in_grub_under_kvm(proc: FakeProcess) -> None:
    if accel_of(proc.argv) == "kvm":
        serial_path(proc.argv).write_text("GRUB loading.")
    else:
        boots(proc)


FINGERPRINT = {"qemu": "/usr/bin/qemu-system-x86_64", "kernel": "6.1",
               "boot_id": "b1", "shape": "-cpu host"}


class TestAccel(QemuTestCase):
    """The accelerator follows what real guests do on this host."""

    def setUp(self) -> None:
        super().setUp()
        self.kvm_usable = True
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.accel.kvm_device_usable",
            lambda: self.kvm_usable))

    def cache(self) -> accel.AccelCache:
        return accel.AccelCache(self.cache_file, FINGERPRINT)

    def vm(self, **kwargs: object) -> qemu.VirtualMachine:
        kwargs.setdefault("accel_cache", self.cache())
        kwargs.setdefault("environ", {})
        return qemu.VirtualMachine(self.image, self.tmp / "vm",
                                   kvm_trial_seconds=0.5,
                                   **kwargs)  # type: ignore[arg-type]

    def test_guest_reaching_its_kernel_makes_kvm_and_is_remembered(
            self) -> None:
        fake = self.fake_spawn(on_start=boots)
        with self.vm() as vm:
            self.assertEqual("kvm", vm.accel)
            self.assertIsNone(vm.fallback_reason)
        self.assertEqual(["kvm"], [accel_of(p.argv) for p in fake.procs])
        self.assertIn("-cpu", fake.procs[0].argv)
        remembered = self.cache().get()
        assert remembered is not None
        self.assertEqual(("kvm", "cache"),
                         (remembered.accel, remembered.source))

    def test_kvm_aborting_real_guest_restarts_under_tcg(self) -> None:
        # A guest shaped like the old tiny probe (no -cpu host) runs under
        # KVM on this fake host; the real guest aborts.  The choice must
        # follow the real guest: TCG.
        fake = self.fake_spawn(on_start=abort_under_kvm)
        probe_like = fake(["qemu-system-x86_64", "-accel", "kvm",
                           "-serial", f"file:{self.tmp / 'probe.log'}"])
        self.assertIsNone(probe_like.returncode)
        fake.procs.clear()
        with self.vm() as vm:
            self.assertEqual("tcg", vm.accel)
            self.assertTrue(vm.running)
            text = vm.wait_for_console("Linux version", 5,
                                       poll_interval=0.05)
        self.assertIn("Linux version", text)
        self.assertEqual(["kvm", "tcg"],
                         [accel_of(p.argv) for p in fake.procs])
        assert vm.fallback_reason is not None
        self.assertIn("status -6", vm.fallback_reason)
        self.assertIn("failed to set MSR", vm.fallback_reason)
        self.assertIn("fell back from KVM", vm.accel_reason)
        self.assertIn("failed to set MSR",
                      (self.tmp / "vm" / "qemu.kvm.log").read_text())
        self.assertNotIn("-cpu", fake.procs[1].argv)
        remembered = self.cache().get()
        assert remembered is not None
        self.assertEqual("tcg", remembered.accel)
        self.assertIn("status -6", remembered.reason)

    def test_remembered_tcg_starts_without_a_kvm_attempt(self) -> None:
        self.cache().put("tcg", "under KVM qemu exited (status -6)")
        fake = self.fake_spawn(on_start=boots)
        with self.vm() as vm:
            self.assertEqual("tcg", vm.accel)
            self.assertIn("remembered", vm.accel_reason)
        self.assertEqual(["tcg"], [accel_of(p.argv) for p in fake.procs])

    def test_remembered_kvm_still_falls_back_when_the_guest_aborts(
            self) -> None:
        self.cache().put("kvm", "a guest reached its kernel under KVM")
        fake = self.fake_spawn(on_start=abort_under_kvm)
        with self.vm() as vm:
            self.assertEqual("tcg", vm.accel)
        self.assertEqual(["kvm", "tcg"],
                         [accel_of(p.argv) for p in fake.procs])
        remembered = self.cache().get()
        assert remembered is not None
        self.assertEqual("tcg", remembered.accel)

    def test_guest_stuck_in_bootloader_under_kvm_restarts_under_tcg(
            self) -> None:
        fake = self.fake_spawn(on_start=stuck_in_grub_under_kvm)
        start = time.monotonic()
        with self.vm() as vm:
            self.assertEqual("tcg", vm.accel)
        self.assertLess(time.monotonic() - start, 5)
        self.assertTrue(fake.procs[0].terminated)
        self.assertTrue(fake.procs[0].reaped)
        assert vm.fallback_reason is not None
        self.assertIn("no kernel console line within 0 s",
                      vm.fallback_reason)
        self.assertIn("GRUB loading.", vm.fallback_reason)
        self.assertEqual("GRUB loading.",
                         (self.tmp / "vm" / "console.kvm.log").read_text())

    def test_env_forces_without_trial_or_fallback(self) -> None:
        fake = self.fake_spawn(on_start=abort_under_kvm)
        vm = self.vm(environ={qemu.ACCEL_ENV: "kvm"})
        with vm:
            self.assertEqual("kvm", vm.accel)
            exc = self.assertRaises(qemu.VmExited, vm.wait_for_console,
                                    "login:", 60)
        self.assertEqual(1, len(fake.procs))
        self.assertIn("status -6", exc.message)
        self.assertIsNone(self.cache().get())

    def test_bad_env_value(self) -> None:
        self.fake_spawn()
        vm = self.vm(environ={qemu.ACCEL_ENV: "hvf"})
        exc = self.assertRaises(errors.UsageError, vm.start)
        self.assertIn("TIE_QEMU_ACCEL='hvf'", exc.message)

    def test_argument_forces_tcg_and_leaves_the_cache_alone(self) -> None:
        fake = self.fake_spawn(on_start=boots)
        with self.vm(accel="tcg") as vm:
            self.assertEqual("tcg", vm.accel)
        self.assertEqual(1, len(fake.procs))
        self.assertFalse(self.cache_file.exists())

    def test_unusable_kvm_device_means_tcg_at_once(self) -> None:
        self.kvm_usable = False
        fake = self.fake_spawn(on_start=boots)
        with self.vm() as vm:
            self.assertEqual("tcg", vm.accel)
            self.assertIn("/dev/kvm", vm.accel_reason)
        self.assertEqual(["tcg"], [accel_of(p.argv) for p in fake.procs])

    def test_cache_is_keyed_by_fingerprint(self) -> None:
        self.cache().put("tcg", "x")
        other = accel.AccelCache(self.cache_file,
                                 dict(FINGERPRINT, qemu_version="8.2"))
        self.assertIsNone(other.get())
        self.cache_file.write_text("not json")
        self.assertIsNone(self.cache().get())
        self.cache().put("kvm", "y")
        again = self.cache().get()
        assert again is not None
        self.assertEqual("kvm", again.accel)

    def test_detect_accel_starts_nothing(self) -> None:
        fake = self.fake_spawn()
        self.assertEqual("tcg", qemu.detect_accel(
            environ={qemu.ACCEL_ENV: "tcg"}))
        self.kvm_usable = False
        self.assertEqual("tcg", qemu.detect_accel(
            environ={accel.CACHE_ENV: str(self.cache_file)}))
        self.assertEqual([], fake.procs)


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


FAKE_QEMU = r"""#!/bin/sh
# A stand-in for qemu-system-x86_64 on a host whose KVM half works:
# aborts under KVM, boots to a kernel panic and exits 3 under TCG.
case "$1" in --version) echo "QEMU emulator version 0.0 (fake)"; exit 0;; esac
serial=""; accel=""; prev=""
for arg in "$@"; do
    case "$prev" in
        -serial) serial=${arg#file:} ;;
        -accel) accel=$arg ;;
    esac
    prev=$arg
done
if [ "$accel" = kvm ]; then
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
    kill -ABRT $$
fi
echo "qemu: starting under $accel" >&2
echo "[    0.000000] Linux version 6.1.0 (fake)" > "$serial"
sleep 0.5
echo "Kernel panic - not syncing: fake" >> "$serial"
exit 3
"""


class TestWaitsEndOnDeadVm(QemuTestCase):
    """Every wait on a guest ends within seconds once qemu is gone."""

    def dead_vm(self) -> qemu.VirtualMachine:
        def guest(proc: FakeProcess) -> None:
            serial_path(proc.argv).write_text("Kernel panic - fake\n")
            proc.say("qemu: fake qemu says goodbye\n")
            proc.returncode = 134

        self.fake_spawn(on_start=guest)
        vm = qemu.VirtualMachine(self.image, self.tmp / "vm", accel="tcg")
        vm.start()
        self.addCleanup(vm.stop)
        return vm

    def assert_exit_report(self, exc: qemu.VmError) -> None:
        self.assertIn("exited (status 134)", exc.message)
        self.assertIn("fake qemu says goodbye", exc.message)
        self.assertIn("Kernel panic - fake", exc.message)

    def test_wait_until(self) -> None:
        vm = self.dead_vm()
        start = time.monotonic()
        exc = self.assertRaises(qemu.VmExited, vm.wait_until,
                                lambda: None, 600, "something")
        self.assertLess(time.monotonic() - start, 3)
        self.assertIn("while waiting for something", exc.message)
        self.assert_exit_report(exc)

    def test_wait_for_console(self) -> None:
        vm = self.dead_vm()
        exc = self.assertRaises(qemu.VmExited, vm.wait_for_console,
                                "login:", 600)
        self.assert_exit_report(exc)

    def test_signal_wait_on_loopback_server(self) -> None:
        vm = self.dead_vm()
        with HeatServer() as server:
            start = time.monotonic()
            exc = self.assertRaises(qemu.VmExited, server.wait_for,
                                    "/signal/x", 1, timeout=600,
                                    alive=vm.check_alive, check_every=0.1)
        self.assertLess(time.monotonic() - start, 3)
        self.assert_exit_report(exc)

    def test_heat_guest_signal_metadata_and_ssh_waits(self) -> None:
        vm = self.dead_vm()
        stack = heatstack.HeatGuest(self.image, self.tmp / "guest")
        stack.vm = vm
        with stack.server:
            start = time.monotonic()
            for wait in (lambda: stack.wait_signal("/signal/a", 900),
                         lambda: stack.wait_first_signal("/signal/a", 900)):
                exc = self.assertRaises(qemu.VmExited, wait)
                self.assertIn("signal on /signal/a", exc.message)
                self.assert_exit_report(exc)
            ssh = guest.Ssh(free_port(), self.tmp / "no-key",
                            alive=stack.alive)
            exc = self.assertRaises(qemu.VmExited, ssh.wait, 900)
            self.assertIn("an SSH login", exc.message)
            self.assertLess(time.monotonic() - start, 10)

    def test_real_process_kvm_abort_then_dead_tcg_guest(self) -> None:
        fake_qemu = self.tmp / "fake-qemu"
        fake_qemu.write_text(FAKE_QEMU)
        fake_qemu.chmod(0o755)
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.testing.accel.kvm_device_usable",
            lambda: True))
        vm = qemu.VirtualMachine(
            self.image, self.tmp / "vm", qemu=str(fake_qemu), environ={},
            accel_cache=accel.AccelCache(self.cache_file, FINGERPRINT),
            kvm_trial_seconds=20)
        start = time.monotonic()
        with vm:
            self.assertEqual("tcg", vm.accel)
            exc = self.assertRaises(qemu.VmExited, vm.wait_for_console,
                                    "login:", 600, poll_interval=0.1)
        self.assertLess(time.monotonic() - start, 10)
        assert vm.fallback_reason is not None
        self.assertIn("status -6", vm.fallback_reason)
        self.assertIn("failed to set MSR", vm.fallback_reason)
        self.assertIn("exited (status 3)", exc.message)
        self.assertIn("starting under tcg", exc.message)
        self.assertIn("Kernel panic - not syncing: fake", exc.message)


def free_port() -> int:
    return qemu.free_tcp_port()


class TestKvmDevice(testtools.TestCase):

    def test_only_a_character_device_counts(self) -> None:
        tmp = Path(self.useFixture(fixtures.TempDir()).path)
        plain = tmp / "kvm"
        plain.write_bytes(b"")
        self.assertFalse(accel.kvm_device_usable(plain))
        self.assertFalse(accel.kvm_device_usable(tmp / "missing"))
        self.assertTrue(accel.kvm_device_usable(Path("/dev/null")))
