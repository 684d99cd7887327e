"""``build-image build -f FILE``: many images, each in isolation.

The prepared images of a file flow in; every check that needs no build
runs first for all of them (publish targets, host packages of the
sources, host tools, writable outputs, distinct outputs); then each
image is planned and built by :func:`tripleo_elements.buildcache.execute`
(its own work directory, its own private copy of the download cache,
its own lock), up to ``--parallel`` at once, its provenance recorded
(:mod:`.sbom`) and its ``publish:`` list carried out.  Out flows a
summary table and an exit code: 0 when every image was built (and
published), 1 otherwise.  Without ``--keep-going`` no new build starts
after a failure; those images are reported as skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tripleo_elements import build, buildcache, errors, host, stagecache
from tripleo_elements.images import project, sbom, sources
from tripleo_elements.plan import BuildPlan


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    result: str
    seconds: float = 0.0
    size: int = 0
    path: str = ""
    error: str = ""


class _Lines:
    """Phase lines of several builds, one whole line at a time."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def write(self, text: str) -> None:
        with self.lock:
            self.stream.write(text)
            self.stream.flush()


def _reporter(name: str, lines: _Lines) -> Any:
    last: list[str] = []

    def report(phase: str, _script: str | None) -> None:
        if not last or last[-1] != phase:
            last.append(phase)
            lines.write(f"{time.strftime('%H:%M:%S')} [{name}] phase "
                        f"{phase}\n")
    return report


def _one(prepared: project.Prepared, plan: BuildPlan, targets: list[Any],
         origins: dict[str, str], lines: _Lines, use_cache: bool = True
         ) -> Outcome:
    from tripleo_elements.publish import cli as publish_cli
    name = prepared.image.name
    started = time.monotonic()
    lines.write(f"[{name}] building {plan.output} from "
                f"{len(plan.elements)} elements; log: {plan.log}\n")
    try:
        result = buildcache.execute(plan, prepared.environ,
                                    _reporter(name, lines),
                                    use_cache=use_cache)
        main = result.artifacts[0] if result.artifacts else None
        sbom.record(result.manifest, plan.output, name,
                    project.provenance(prepared, plan.elements), origins,
                    prepared.options.to_json(),
                    main.path if main else None,
                    main.sha256 if main else None)
        for tgt in targets:
            if main is None:
                raise errors.PublishError(
                    f"image '{name}' wrote no file to publish",
                    "drop its publish: list")
            location = publish_cli.publish_image(main.path, tgt,
                                                 prepared.environ,
                                                 sys.stderr)
            lines.write(f"[{name}] published to {location.url}\n")
    except errors.TieError as exc:
        lines.write(f"[{name}] {exc.render()}\n")
        return Outcome(name, "failed", time.monotonic() - started,
                       error=exc.message.splitlines()[0])
    size = sum(a.size for a in result.artifacts)
    path = str(main.path) if main else str(plan.output)
    return Outcome(name, "ok", time.monotonic() - started, size, path)


def _check(items: Sequence[project.Prepared], plans: Sequence[BuildPlan],
           proj: project.Project) -> None:
    outputs: dict[str, str] = {}
    for prepared, plan in zip(items, plans):
        other = outputs.setdefault(str(plan.output), prepared.image.name)
        if other != prepared.image.name:
            raise errors.UsageError(
                f"images '{other}' and '{prepared.image.name}' both write "
                f"{plan.output}", "give one of them another 'output'")
    sources.check_bindep(proj.sources)
    host.check_host_tools()
    for plan in plans:
        build.check_writable(plan)


def stop_children(sig: int = signal.SIGTERM,
                  skip: frozenset[int] | set[int] = frozenset()) -> list[int]:
    """Send ``sig`` to the process group of each child of this process
    that leads its own group (the builds' disk-image-create), but those
    in ``skip``; returns their pids."""
    me, stopped = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[1]) == me and \
                fields[2] == entry:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(entry), sig)
                stopped.append(int(entry))
    return sorted(stopped)


def _stop(futures: dict[concurrent.futures.Future[Outcome], str],
          failed: threading.Event, args: argparse.Namespace) -> None:
    """After Ctrl-C: start no other build, and stop the running ones the
    way a lone build is stopped (their disk-image-create gets SIGTERM and
    cleans up) until every job has returned.  A job that was between two
    steps (waiting for a lock, starting disk-image-create) is stopped as
    soon as its disk-image-create runs."""
    args.keep_going = False
    failed.set()
    for future in futures:
        future.cancel()
    # Each disk-image-create gets one SIGTERM: a second one could cut its
    # cleanup (unmounting, removing its work directory) short.
    stopped: set[int] = set()
    while not all(f.done() for f in futures):
        stopped.update(stop_children(skip=stopped))
        concurrent.futures.wait(futures, timeout=0.5)


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("IMAGE", "RESULT", "TIME", "SIZE", "PATH")]
    for o in outcomes:
        rows.append((o.name, o.result,
                     f"{o.seconds:.0f} s" if o.result != "skipped" else "-",
                     f"{o.size / 2**20:.1f} MiB" if o.size else "-",
                     o.path or o.error or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths))
                   + "  " + r[4] + "\n" for r in rows)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements.images import cli as images_cli
    if args.parallel < 1:
        raise errors.UsageError(f"--parallel {args.parallel}: needs 1 or "
                                "more", "--parallel 2")
    environ = stagecache.environ_for(
        os.environ, getattr(args, "no_stage_cache", False))
    proj, items = project.each_image(args.file, args.only, args, environ,
                                     locked=args.locked,
                                     warn=images_cli.warn)
    plans = [images_cli.image_plan(p) for p in items]
    for prepared, plan in zip(items, plans):
        for warning in plan.warnings:
            sys.stderr.write(f"warning: [{prepared.image.name}] "
                             f"{warning}\n")
    targets = {p.image.name: project.publish_targets(p.image, os.environ)
               for p in items}
    _check(items, plans, proj)
    origins = {s.name: s.origin for s in proj.sources}
    lines = _Lines(out)
    failed = threading.Event()
    outcomes: dict[str, Outcome] = {}

    def job(prepared: project.Prepared, plan: BuildPlan) -> Outcome:
        if failed.is_set() and not args.keep_going:
            return Outcome(prepared.image.name, "skipped",
                           error="not started after a failure")
        outcome = _one(prepared, plan, targets[prepared.image.name],
                       origins, lines,
                       use_cache=not getattr(args, "no_cache", False))
        if outcome.result != "ok":
            failed.set()
        return outcome

    if args.parallel == 1 or len(items) == 1:
        # In the main thread: Ctrl-C reaches the build's own handler,
        # which stops disk-image-create and cleans up.
        for prepared, plan in zip(items, plans):
            outcomes[prepared.image.name] = job(prepared, plan)
    else:
        pool = concurrent.futures.ThreadPoolExecutor(args.parallel)
        futures: dict[concurrent.futures.Future[Outcome], str] = {}
        # Ctrl-C only sets a flag: a KeyboardInterrupt raised inside
        # concurrent.futures' own locking could leave a lock held and the
        # pool waiting for ever.  The main thread polls the flag.
        interrupted = threading.Event()
        in_main = threading.current_thread() is threading.main_thread()
        previous = (signal.signal(signal.SIGINT,
                                  lambda *_: interrupted.set())
                    if in_main else None)
        try:
            futures = {pool.submit(job, p, plan): p.image.name
                       for p, plan in zip(items, plans)}
            pending = set(futures)
            while pending and not interrupted.is_set():
                done, pending = concurrent.futures.wait(
                    pending, timeout=0.2,
                    return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    outcomes[futures[future]] = future.result()
            if interrupted.is_set():
                _stop(futures, failed, args)
                for future, name in futures.items():
                    if future.done() and not future.cancelled():
                        outcomes[name] = future.result()
                out.write(table([outcomes.get(p.image.name, Outcome(
                    p.image.name, "skipped")) for p in items]))
                raise KeyboardInterrupt
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            pool.shutdown(wait=True)
    ordered = [outcomes[p.image.name] for p in items]
    out.write(table(ordered))
    return 0 if all(o.result == "ok" for o in ordered) else 1
