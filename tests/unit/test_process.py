"""process.stream: no wait outlives the command it waits for."""

from __future__ import annotations

import io
import os
import sys
import time

import fixtures
import testtools

from tripleo_elements import errors, process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class TestStream(testtools.TestCase):

    def run_stream(self, script: str, **kwargs: float) -> tuple[int, str,
                                                                list[str]]:
        log = io.StringIO()
        seen: list[str] = []
        code = process.stream(["bash", "-c", script], env=dict(os.environ),
                              log=log, on_line=seen.append, **kwargs)
        return code, log.getvalue(), seen

    def test_lines_and_exit_code(self) -> None:
        code, log, seen = self.run_stream("echo one; echo two >&2; exit 3")
        self.assertEqual(3, code)
        self.assertEqual(["one", "two"], seen)
        self.assertIn("+ bash -c", log)

    def test_timeout_stops_the_command(self) -> None:
        start = time.monotonic()
        exc = self.assertRaises(errors.CommandTimedOut, self.run_stream,
                                "echo started; sleep 600", timeout=1.0,
                                grace=5.0)
        self.assertLess(time.monotonic() - start, 15)
        self.assertIn("no result after 1 s", exc.message)
        self.assertIn("SIGTERM", exc.message)
        self.assertEqual(errors.EXIT_FAILED, exc.exit_code)

    def test_stray_child_holding_output_is_killed(self) -> None:
        self.patch(process, "DRAIN_SECONDS", 1.0)
        pidfile = self.useFixture(fixtures.TempDir()).path
        script = (f"sleep 600 & echo $! > {pidfile}/pid; echo parent done")
        start = time.monotonic()
        code, log, seen = self.run_stream(script)
        self.assertLess(time.monotonic() - start, 15)
        self.assertEqual(0, code)
        self.assertEqual(["parent done"], seen)
        self.assertIn("still hold its output", log)
        with open(f"{pidfile}/pid") as handle:
            stray = int(handle.read())
        deadline = time.monotonic() + 5
        while _pid_alive(stray) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(_pid_alive(stray), "the stray sleep survived")

    def test_missing_command(self) -> None:
        log = io.StringIO()
        exc = self.assertRaises(
            errors.CommandError, process.stream,
            [os.path.join(sys.prefix, "no-such-command")],
            env={}, log=log, on_line=lambda line: None)
        self.assertIn("command not found", exc.message)
