"""The one module that starts processes.

Every command is logged as a copy-pasteable ``shlex.join`` line; failures
are explained (not found, killed by a signal, non-zero exit) with the tail
of their output.  Unit tests fake :func:`run` and :func:`stream` here, at
our own subprocess boundary, and nowhere else.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from tripleo_elements import errors

LOG = logging.getLogger(__name__)


CommandError = errors.CommandError
Interrupted = errors.Interrupted


def explain(returncode: int) -> str:
    """Say what a return code means."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    if returncode == 127:
        return "exit 127 (command not found inside the script)"
    if returncode == 126:
        return "exit 126 (not executable)"
    return f"exit {returncode}"


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, check: bool = True,
        input: str | None = None, timeout: float | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run a short command and capture its output (text)."""
    LOG.debug("+ %s", shlex.join(argv))
    try:
        proc = subprocess.run(list(argv), env=dict(env) if env else None,
                              cwd=cwd, input=input, capture_output=True,
                              text=True, timeout=timeout)
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found",
                           "install it on the host (see bindep.txt)")
    except subprocess.TimeoutExpired:
        raise CommandError(f"{shlex.join(argv)}: timed out after "
                           f"{timeout:.0f}s", "")
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise CommandError(
            f"{shlex.join(argv)}: {explain(proc.returncode)}"
            + (": " + " | ".join(tail) if tail else ""), "")
    return proc


#: How long the output may stay open after the command itself exited:
#: longer means something it started still holds it, and would keep a
#: reader waiting for ever.
DRAIN_SECONDS = 10.0


def stream(argv: Sequence[str], *, env: Mapping[str, str],
           log: IO[str], on_line: Callable[[str], None],
           cwd: Path | None = None, grace: float = 180.0,
           timeout: float | None = None) -> int:
    """Run a long command, teeing each output line to ``log`` (with a
    timestamp) and to ``on_line``.  Returns the exit code.

    The child runs in its own process group.  SIGINT or SIGTERM received
    here is passed on to that group as SIGTERM: disk-image-create carries
    on through SIGINT but runs its cleanup traps on SIGTERM.  A second
    signal, or ``grace`` seconds without exit, sends SIGKILL.  After the
    child has exited, :class:`Interrupted` is raised so the caller can
    clean up what the child left.

    No wait outlives the command: after ``timeout`` seconds (if given)
    the group gets SIGTERM, then SIGKILL after ``grace``, and
    :class:`CommandTimedOut` is raised once it has exited; and when the
    command has exited but something it started still holds its output
    open after DRAIN_SECONDS, what is left of its process group is
    killed and reading stops.
    """
    LOG.debug("+ %s", shlex.join(argv))
    log.write(f"+ {shlex.join(argv)}\n")
    try:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True, errors="replace", bufsize=1)
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found",
                           "run the README's setup command first")
    received: list[int] = []
    timed_out: list[float] = []

    def escalate() -> None:
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)

    def stop_group() -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        threading.Thread(target=escalate, daemon=True).start()

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            stop_group()
        else:
            _signal_group(proc.pid, signal.SIGKILL)

    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.put(text)
        lines.put(None)

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    started = time.monotonic()
    try:
        threading.Thread(target=reader, daemon=True).start()
        exited_at: float | None = None
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                line = line.rstrip("\n")
                log.write(f"{time.strftime('%H:%M:%S')} {line}\n")
                on_line(line)
                continue
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > DRAIN_SECONDS:
                    log.write(f"{time.strftime('%H:%M:%S')} [build-image] "
                              "the command exited but processes it "
                              "started still hold its output; killing "
                              "them\n")
                    _signal_group(proc.pid, signal.SIGKILL)
                    break
            elif timeout is not None and not timed_out \
                    and now - started > timeout:
                timed_out.append(now - started)
                log.write(f"{time.strftime('%H:%M:%S')} [build-image] no "
                          f"result after {timeout:.0f} s; stopping it\n")
                stop_group()
        returncode = proc.wait()
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        log.flush()
    if received:
        raise Interrupted(
            f"stopped by {signal.Signals(received[0]).name}",
            "nothing was written over the previous image")
    if timed_out:
        raise errors.CommandTimedOut(
            f"{shlex.join(argv)}: no result after {timeout:.0f} s; stopped "
            f"({explain(returncode)})",
            "see the log for the step it was in; raise the time limit if "
            "the host is just slow")
    return returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
