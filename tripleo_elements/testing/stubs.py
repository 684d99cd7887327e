"""Stub commands that answer per call, and the server that answers them.

A stub is a small program put where a script looks for a command.  Each
call connects to a Unix socket served by the test process (a
:class:`StubServer`), which records the call and chooses the reply: the
first :class:`When` rule matching the arguments, else the stub's own
reply.  Because the choice is made in the test process, rules may be
callables and sequences keep their state across calls.  Commands that
the sandbox denies go through the same program and are recorded as
:class:`Denied`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Denied", "Reply", "Stub", "StubServer", "When", "stub_program",
]

Argv = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Reply:
    """One answer: exit status, standard output and standard error."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


def _replies(items: Iterable[Reply | int]) -> tuple[Reply, ...]:
    return tuple(i if isinstance(i, Reply) else Reply(int(i)) for i in items)


@dataclasses.dataclass(frozen=True)
class When:
    """A per-call rule of a :class:`Stub`.

    It matches a call whose arguments (without the command name) are
    exactly ``argv``, start with ``prefix``, or make ``test(args)`` true;
    a rule with none of them matches every call.  It answers with
    ``exit_code``/``stdout``/``stderr``, or with ``sequence``: the n-th
    matching call gets ``sequence[n]`` (the last one repeats; a bare int
    is an exit code).  ``passthrough=True`` records the call and then
    runs the real command.
    """

    argv: Sequence[str] | None = None
    prefix: Sequence[str] | None = None
    test: Callable[[Argv], bool] | None = None
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    sequence: Sequence[Reply | int] = ()
    passthrough: bool = False

    def __post_init__(self) -> None:
        for name in ("argv", "prefix"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "sequence", _replies(self.sequence))

    def matches(self, args: Argv) -> bool:
        if self.argv is not None and tuple(args) != self.argv:
            return False
        if (self.prefix is not None
                and tuple(args[:len(self.prefix)]) != self.prefix):
            return False
        return self.test is None or bool(self.test(tuple(args)))

    def reply(self, count: int) -> Reply:
        """The answer to the ``count``-th (0-based) matching call."""
        if self.sequence:
            reply = self.sequence[min(count, len(self.sequence) - 1)]
            return reply if isinstance(reply, Reply) else Reply(reply)
        return Reply(self.exit_code, self.stdout, self.stderr)


@dataclasses.dataclass(frozen=True)
class Stub:
    """A fake command ``name``.

    Without rules every call prints ``stdout``/``stderr`` and exits
    ``exit_code``; ``sequence`` answers call after call instead;
    ``when`` holds per-call :class:`When` rules tried in order first.
    ``passthrough=True`` records each call then runs the real command
    (the rules' own ``passthrough`` choose per call).
    """

    name: str
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    when: Sequence[When] = ()
    sequence: Sequence[Reply | int] = ()
    passthrough: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"bad stub name {self.name!r}")
        object.__setattr__(self, "when", tuple(self.when))
        object.__setattr__(self, "sequence", _replies(self.sequence))

    @classmethod
    def of(cls, stub: "Stub | str") -> "Stub":
        """``stub`` itself, or a stub that succeeds silently for a name."""
        return stub if isinstance(stub, Stub) else cls(stub)

    def _default(self) -> When:
        return When(exit_code=self.exit_code, stdout=self.stdout,
                    stderr=self.stderr, sequence=self.sequence,
                    passthrough=self.passthrough)


@dataclasses.dataclass(frozen=True)
class Denied:
    """A command the sandbox refused: its argv and where it was called
    (``script:line`` for bash scripts, else the caller's command line)."""

    argv: Argv
    where: str

    @property
    def name(self) -> str:
        return self.argv[0]

    def describe(self) -> str:
        import shlex
        where = f" at {self.where}" if self.where else ""
        return f"`{shlex.join(self.argv)}`{where}"


def stub_program(python: str, socket_path: str) -> str:
    """The text of the program every stub and denied command runs.

    ``python`` is the real interpreter (never a stub of ``python3``);
    the command's name is the base name it was called by.
    """
    return f"""#!{python} -IS
import json, os, socket, sys
name = os.path.basename(sys.argv[0])
where = os.environ.get("TIE_CALLER", "")
if not where:
    try:
        with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
            where = f.read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError:
        pass
request = json.dumps({{"name": name, "args": sys.argv[1:],
                      "where": where.strip()}}).encode() + b"\\n"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({socket_path!r})
s.sendall(request)
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
reply = json.loads(data)
if reply.get("exec"):
    os.execv(reply["exec"], [name] + sys.argv[1:])
sys.stdout.write(reply["stdout"])
sys.stdout.flush()
sys.stderr.write(reply["stderr"])
sys.exit(reply["exit"])
"""


class StubServer:
    """Answers stub calls on a Unix socket; records calls and denials.

    ``real`` maps a command name to the path of the real program (used
    by pass-through stubs; the path the stub program can execute).
    Use as a context manager; it serves from a thread.
    """

    def __init__(self, socket_path: Path, stubs: Iterable[Stub],
                 real: Mapping[str, str] | None = None) -> None:
        self.socket_path = socket_path
        self.stubs = {s.name: s for s in stubs}
        self.real = dict(real or {})
        self._calls: list[Argv] = []
        self._denied: list[Denied] = []
        self._counts: dict[tuple[str, int], int] = {}
        self._errors: list[Exception] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(socket_path))
        os.chmod(socket_path, 0o777)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = False

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(self.socket_path))
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._sock.close()

    @property
    def calls(self) -> tuple[Argv, ...]:
        with self._lock:
            return tuple(self._calls)

    @property
    def denied(self) -> tuple[Denied, ...]:
        with self._lock:
            return tuple(self._denied)

    @property
    def errors(self) -> tuple[Exception, ...]:
        """Exceptions raised while answering (a ``When.test`` that
        failed); the runner raises the first after the run."""
        with self._lock:
            return tuple(self._errors)

    def answer(self, name: str, args: Argv, where: str) -> dict[str, Any]:
        """Record one call and choose its reply."""
        stub = self.stubs.get(name)
        with self._lock:
            if stub is None:
                self._denied.append(Denied((name, *args), where))
                return {"exit": 127, "stdout": "", "stderr": (
                    f"tie-sandbox: {name!r} is neither stubbed nor allowed"
                    f" (called{' at ' + where if where else ''})\n")}
            self._calls.append((name, *args))
            rules = [*stub.when, stub._default()]
            index = next(i for i, r in enumerate(rules) if r.matches(args))
            count = self._counts.get((name, index), 0)
            self._counts[(name, index)] = count + 1
        rule = rules[index]
        if rule.passthrough:
            real = self.real.get(name)
            if real is None:
                return {"exit": 127, "stdout": "", "stderr": (
                    f"tie-sandbox: no real {name!r} to pass through to\n")}
            return {"exec": real}
        reply = rule.reply(count)
        return {"exit": reply.exit_code, "stdout": reply.stdout,
                "stderr": reply.stderr}

    def _serve(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            with conn:
                if self._stopping:
                    return
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    request = json.loads(data)
                    reply = self.answer(request["name"],
                                        tuple(request["args"]),
                                        request.get("where", ""))
                except Exception as exc:  # a bad rule must not hang stubs
                    with self._lock:
                        self._errors.append(exc)
                    reply = {"exit": 125, "stdout": "",
                             "stderr": f"tie-sandbox: stub failed: {exc}\n"}
                try:
                    conn.sendall(json.dumps(reply).encode())
                except OSError:
                    pass
