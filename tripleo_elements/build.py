"""Carry out a :class:`~tripleo_elements.plan.BuildPlan`.

A plan and the host environment flow in; a :class:`BuildResult` flows
out (what was published, phase times, the manifest).  The build works in
its own directory next to the output (``.NAME.tie-build/``: staged
elements, ``tmp/``, and ``out/`` where disk-image-create writes), with a
private copy of the download cache (:mod:`tripleo_elements.downloads`),
under a lock on the output path.  On success what the build wrote is
published (:mod:`tripleo_elements.outputs`); on any failure the work
directory, with its mounts and loop devices, is removed and the previous
outputs are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tripleo_elements import (cleanup, downloads, errors, outputs, process,
                              speedups, tree)
from tripleo_elements.outputs import Artifact
from tripleo_elements.plan import BuildPlan
from tripleo_elements.progress import Progress

__all__ = ["Artifact", "BuildResult", "check_writable", "execute"]


@dataclasses.dataclass(frozen=True)
class BuildResult:
    artifacts: tuple[Artifact, ...]
    directories: tuple[Path, ...]
    phases: tuple[tuple[str, float], ...]
    seconds: float
    manifest: Path
    notices: tuple[str, ...] = ()


def _probe(directory: Path, what: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".tie-probe-", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise errors.OutputNotWritable(
            f"{what} {directory} is not writable: "
            f"{exc.strerror or exc}",
            "choose another -o (or TMP_DIR, --image-cache), or fix its "
            "permissions")


def check_writable(plan: BuildPlan) -> None:
    """Fail fast, before anything slow, when the build could not write
    its outputs or its temporary files."""
    _probe(plan.output.parent, "output directory")
    if not plan.tmp_dir.is_relative_to(plan.workdir):
        _probe(plan.tmp_dir.parent, "TMP_DIR")
    _probe(plan.image_cache, "download cache")


def _remove(plan: BuildPlan) -> None:
    """Remove what this build made: its work and temporary dirs."""
    for top in (plan.workdir, plan.tmp_dir):
        if top.exists():
            cleanup.remove_workdir(top)


def execute(plan: BuildPlan, environ: Mapping[str, str],
            report: Callable[[str, str | None], None]) -> BuildResult:
    """Run the plan.  On success the outputs replace the previous ones
    atomically; on any failure the work directory (with its mounts and
    loop devices) is removed and the previous outputs are untouched."""
    check_writable(plan)
    with downloads.output_lock(plan.image_cache, plan.output) as locked:
        if not locked:
            raise errors.BuildLocked(
                f"another build is writing {plan.output} right now",
                "wait for it, or choose another -o")
        return _execute(plan, environ, report)


def _execute(plan: BuildPlan, environ: Mapping[str, str],
             report: Callable[[str, str | None], None]) -> BuildResult:
    # A previous run of this output was killed hard: release what it
    # left (both directories are ours by name, and we hold the lock).
    _remove(plan)
    started = time.monotonic()
    progress = Progress(report)
    plan.workdir.mkdir()
    try:
        plan.outdir.mkdir()
        plan.tmp_dir.mkdir(parents=True)
        # The menu-driver element installs it into the image.
        plan.menu_file.write_text(
            json.dumps(plan.menu, indent=2, sort_keys=True) + "\n")
        staged = tree.stage(plan.sources, parent=plan.workdir)
        staged.path.rename(plan.staged_path)
        command = plan.command
        if speedups.initramfs_once(plan.elements, environ):
            # Build code, not an element of the plan (see speedups).
            speedups.write_initramfs_element(plan.staged_path)
            command = (*command, speedups.INITRAMFS_ELEMENT)
        if plan.block_device_config is not None:
            (plan.workdir / "block-device.yaml").write_text(
                plan.block_device_config)
        env = dict(environ)
        env.update(plan.environment)
        with downloads.private_cache(plan.image_cache, env) as cache:
            env["DIB_IMAGE_CACHE"] = str(cache)
            # DIB finds its helpers next to the interpreter it runs under.
            env["PATH"] = os.pathsep.join(
                [str(Path(sys.executable).parent), env.get("PATH", "")])
            env = speedups.prepare(plan.workdir, env)
            # Line-buffered: the log is readable while the build runs.
            with open(plan.log, "w", encoding="utf-8", buffering=1) as log:
                code = process.stream(command, env=env, log=log,
                                      on_line=progress.line,
                                      cwd=plan.outdir)
        if code != 0:
            raise errors.BuildFailed(
                f"disk-image-create failed ({process.explain(code)}) in "
                f"{progress.where()}; log: {plan.log}\n"
                + "\n".join(progress.tail),
                f"read {plan.log}; re-run with -x for a shell trace")
        published = outputs.publish(plan)
        outputs.write_menu(plan)
    except BaseException as exc:
        try:
            _remove(plan)
        except errors.TieError as left:
            # Keep the build's own error; say what could not be undone.
            if isinstance(exc, errors.TieError):
                exc.message += f"; cleanup: {left.message}"
        raise
    phases = progress.finish()
    manifest = outputs.write_manifest(plan, published, phases,
                                      time.monotonic() - started)
    with contextlib.suppress(errors.TieError):
        _remove(plan)
    notices = [f"{old} was in the way and not made by build-image: "
               f"moved to {new}" for old, new in published.moved_aside]
    if published.missing:
        kept = [str(a.path) for a in published.artifacts]
        raise errors.BuildFailed(
            "disk-image-create reported success but wrote no "
            + ", ".join(str(p) for p in published.missing)
            + (f"; kept what it wrote: {', '.join(kept)}" if kept else ""),
            f"read {plan.log} and {manifest}")
    if not published.artifacts and not published.directories:
        notices.append("the build wrote no files (no-final-image and no "
                       "element that writes any)")
    return BuildResult(published.artifacts, published.directories, phases,
                       time.monotonic() - started, manifest,
                       tuple(notices))
