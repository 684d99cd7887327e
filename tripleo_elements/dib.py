"""Plan a disk-image-create run (pure), then run it (small, separate).

The plan is plain data: what was asked, what resolved, from where, and the
exact argv and environment additions.  ``build-image plan`` prints it;
:func:`execute` carries it out in a private work directory next to the
output, so a failed or interrupted build never touches a previous image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tripleo_elements import blockdev, cleanup, errors, host, process, tree
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.graph import Resolution, resolve

#: The OS element added when the request names none.
DEFAULT_OS = "debian-minimal"
DEFAULT_RELEASE = "bookworm"
#: Whole-disk images: added unless --no-defaults.
DEFAULT_DISK = "vm"
DEFAULT_ENTRY = "heat-cfntools"
IMAGE_TYPES = ("qcow2", "raw", "tar", "vhd", "squashfs")
DEBIAN_OS = frozenset({"debian", "debian-minimal"})
MIRROR_VARS = ("DIB_DISTRIBUTION_MIRROR", "DIB_DEBIAN_DISTRIBUTION_MIRROR")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What the user asked for (from the CLI or an image definition)."""

    elements: tuple[str, ...] = ()
    output: Path = Path("image")
    types: tuple[str, ...] = ("qcow2",)
    release: str | None = None
    arch: str = "amd64"
    elements_path: tuple[Path, ...] = ()
    no_defaults: bool = False


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """Everything needed to run the build; printable as text or JSON."""

    requested: tuple[str, ...]
    effective_request: tuple[str, ...]
    elements: tuple[str, ...]
    sources: Mapping[str, Path]
    overrides: Mapping[str, tuple[Path, ...]]
    defaults: tuple[tuple[str, str], ...]
    command: tuple[str, ...]
    environment: Mapping[str, str]
    workdir: Path
    staged_path: Path
    images: tuple[Path, ...]
    log: Path
    block_device_config: str | None
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "requested": list(self.requested),
            "effective_request": list(self.effective_request),
            "elements": list(self.elements),
            "sources": {k: str(v) for k, v in self.sources.items()},
            "overrides": {k: [str(p) for p in v]
                          for k, v in self.overrides.items()},
            "defaults": [list(d) for d in self.defaults],
            "command": list(self.command),
            "environment": dict(self.environment),
            "outputs": [str(p) for p in self.images],
            "log": str(self.log),
            "workdir": str(self.workdir),
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        import shlex
        lines = [f"requested: {' '.join(self.requested) or '(defaults)'}",
                 f"request:   {' '.join(self.effective_request)}",
                 f"elements ({len(self.elements)}):"]
        width = max(len(e) for e in self.elements)
        for name in self.elements:
            lines.append(f"  {name:<{width}}  {self.sources[name]}")
            for shadowed in self.overrides.get(name, ()):
                lines.append(f"  {'':<{width}}  overrides {shadowed}")
        for virtual, choice in self.defaults:
            lines.append(f"default: {virtual} -> {choice}")
        lines.append("environment:")
        for key, value in self.environment.items():
            lines.append(f"  {key}={shlex.quote(value)}")
        lines.append("command:")
        lines.append("  " + shlex.join(self.command))
        lines.append("outputs: " + " ".join(str(p) for p in self.images))
        lines.append(f"log: {self.log}")
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        return "\n".join(lines) + "\n"


def effective_request(options: BuildOptions, index: ElementIndex
                      ) -> tuple[str, ...]:
    """The user's elements plus the defaults (see README)."""
    names = list(options.elements)
    if options.no_defaults:
        return tuple(dict.fromkeys(names))
    if not names:
        names = [DEFAULT_ENTRY] if DEFAULT_ENTRY in index else []
    if not _names_an_os(names, index):
        names.append(DEFAULT_OS)
    names.append(DEFAULT_DISK)
    names.insert(0, "base")
    return tuple(dict.fromkeys(names))


def _names_an_os(names: Sequence[str], index: ElementIndex) -> bool:
    """Does the request (with its dependencies) bring an OS element?"""
    seen: set[str] = set()
    todo = [n for n in names if n in index]
    while todo:
        name = todo.pop()
        if name in seen or name not in index:
            continue
        seen.add(name)
        if "operating-system" in index[name].provides:
            return True
        todo.extend(index[name].depends)
    return False


def _operating_system(resolution: Resolution) -> str:
    return resolution.virtual.get("operating-system", "")


def make_plan(options: BuildOptions, index: ElementIndex,
              environ: Mapping[str, str], *,
              apt_sources: Sequence[host.AptSource] = (),
              device_mapper: bool = True,
              dib_command: str = "disk-image-create") -> BuildPlan:
    """Resolve and plan the build.  Pure: reads element files only."""
    for kind in options.types:
        if kind not in IMAGE_TYPES:
            raise errors.UsageError(
                f"unknown image type '{kind}'",
                "choose from " + ", ".join(IMAGE_TYPES))
    request = effective_request(options, index)
    resolution = resolve(index, request, arch=options.arch)
    elements = [index[n] for n in resolution.elements]
    tree.check_collisions(elements)
    warnings = [s.message() for e in elements
                for s in tree.skipped_scripts(e)] + tree.overwrites(elements)

    output = Path(os.path.abspath(options.output))
    name = output.name
    workdir = output.parent / f".{name}.tie-build"
    staged_path = workdir / "elements"

    env: dict[str, str] = {"ELEMENTS_PATH": str(staged_path),
                           "TMP_DIR": str(workdir / "tmp")}
    release = options.release or environ.get("DIB_RELEASE")
    os_element = _operating_system(resolution)
    if os_element in DEBIAN_OS:
        release = release or DEFAULT_RELEASE
        if not any(v in environ for v in MIRROR_VARS):
            mirrors = host.debian_mirrors(release, apt_sources)
            if mirrors.archive:
                env["DIB_DISTRIBUTION_MIRROR"] = mirrors.archive
            else:
                warnings.append(
                    f"no apt source of this host serves '{release}'; "
                    "diskimage-builder's default mirror will be used")
            if mirrors.security and \
                    "DIB_DEBIAN_SECURITY_MIRROR" not in environ:
                env["DIB_DEBIAN_SECURITY_MIRROR"] = mirrors.security
    if release:
        env["DIB_RELEASE"] = release

    bd_config = None
    if not device_mapper and "vm" in resolution.elements:
        bd_config = _no_dm_block_device_config(resolution, environ,
                                               options.arch)
        if bd_config is not None:
            env["DIB_BLOCK_DEVICE_CONFIG"] = \
                "file://" + str(workdir / "block-device.yaml")

    argv = [dib_command, "-a", options.arch, "-o", str(workdir / name),
            "-t", ",".join(options.types), "-n", *resolution.elements]
    images = tuple(output.parent / f"{name}.{t}" for t in options.types)
    overrides = {n: index.overrides[n].shadowed for n in resolution.elements
                 if n in index.overrides}
    return BuildPlan(
        requested=tuple(options.elements), effective_request=request,
        elements=resolution.elements, sources=resolution.sources,
        overrides=overrides, defaults=resolution.defaults,
        command=tuple(argv), environment=env, workdir=workdir,
        staged_path=staged_path, images=images,
        log=output.parent / f"{name}.log", block_device_config=bd_config,
        warnings=tuple(warnings))


def _no_dm_block_device_config(resolution: Resolution,
                               environ: Mapping[str, str], arch: str
                               ) -> str | None:
    """The block-device config rewritten for hosts without device-mapper,
    or None when nothing in it needs device-mapper."""
    user = environ.get("DIB_BLOCK_DEVICE_CONFIG")
    if user:
        if user.startswith("file://"):
            source = Path(user[len("file://"):])
            try:
                text = source.read_text()
            except OSError as exc:
                raise errors.UsageError(
                    f"DIB_BLOCK_DEVICE_CONFIG: cannot read {source}: "
                    f"{exc.strerror}", "point it at a readable YAML file")
        else:
            text = user
    else:
        path = blockdev.find_block_device_config(resolution.sources, arch)
        if path is None:
            return None
        text = path.read_text()
    rewritten = blockdev.rewrite_for_no_device_mapper(text)
    return rewritten if rewritten != text else None


# ---------------------------------------------------------------- execution

@dataclasses.dataclass(frozen=True)
class Artifact:
    path: Path
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class BuildResult:
    artifacts: tuple[Artifact, ...]
    phases: tuple[tuple[str, float], ...]
    seconds: float
    manifest: Path


_PHASE = re.compile(r"(?:hooks|in_target\.d)/([a-z-]+\.d)(?:/([\w-]+))?")
#: Steps after the last hook phase, named by the line that starts them.
_STEPS = (("Converting image using qemu-img", "convert"),)


class Progress:
    """Follows disk-image-create's output: current phase, script, and the
    time spent in each phase.  ``report`` receives status changes."""

    def __init__(self, report: Callable[[str, str | None], None]) -> None:
        self.report = report
        self.phase = "setup"
        self.script: str | None = None
        self.started = time.monotonic()
        self.phase_started = self.started
        self.times: dict[str, float] = {}
        self.tail: list[str] = []

    def line(self, text: str) -> None:
        self.tail = (self.tail + [text])[-30:]
        for marker, step in _STEPS:
            if marker in text:
                self._close_phase()
                self.phase, self.script = step, None
                self.report(step, None)
                return
        match = _PHASE.search(text)
        if not match:
            return
        phase, script = match.group(1), match.group(2)
        if phase != self.phase:
            self._close_phase()
            self.phase = phase
            self.script = None
        if script and script != self.script and "Running" in text:
            self.script = script
        self.report(self.phase, self.script)

    def _close_phase(self) -> None:
        now = time.monotonic()
        self.times[self.phase] = (self.times.get(self.phase, 0.0)
                                  + now - self.phase_started)
        self.phase_started = now

    def finish(self) -> tuple[tuple[str, float], ...]:
        self._close_phase()
        return tuple(self.times.items())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def execute(plan: BuildPlan, environ: Mapping[str, str],
            report: Callable[[str, str | None], None]) -> BuildResult:
    """Run the plan.  On success the images replace the outputs
    atomically; on any failure the work directory (with its mounts and
    loop devices) is removed and the previous outputs are untouched."""
    if plan.workdir.exists():
        # A previous run was killed hard: release what it left.
        cleanup.remove_workdir(plan.workdir)
    started = time.monotonic()
    progress = Progress(report)
    plan.workdir.mkdir(parents=True)
    try:
        (plan.workdir / "tmp").mkdir()
        staged = tree.stage(plan.sources, parent=plan.workdir)
        staged.path.rename(plan.staged_path)
        if plan.block_device_config is not None:
            (plan.workdir / "block-device.yaml").write_text(
                plan.block_device_config)
        env = dict(environ)
        env.update(plan.environment)
        # DIB finds its helpers next to the interpreter it runs under.
        env["PATH"] = os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", "")])
        # Line-buffered: the log is readable while the build runs.
        with open(plan.log, "w", encoding="utf-8", buffering=1) as log:
            code = process.stream(plan.command, env=env, log=log,
                                  on_line=progress.line)
        if code != 0:
            where = progress.phase + (f"/{progress.script}"
                                      if progress.script else "")
            raise errors.BuildFailed(
                f"disk-image-create failed ({process.explain(code)}) in "
                f"{where}; log: {plan.log}\n" + "\n".join(progress.tail),
                f"read {plan.log}; re-run with DIB_DEBUG_TRACE=1 for a "
                "shell trace")
        artifacts = _publish(plan)
    except BaseException as exc:
        try:
            cleanup.remove_workdir(plan.workdir)
        except errors.TieError as left:
            # Keep the build's own error; say what could not be undone.
            if isinstance(exc, errors.TieError):
                exc.message += f"; cleanup: {left.message}"
        raise
    phases = progress.finish()
    manifest = _write_manifest(plan, artifacts, phases,
                               time.monotonic() - started)
    cleanup.remove_workdir(plan.workdir)
    return BuildResult(artifacts, phases, time.monotonic() - started,
                       manifest)


def _publish(plan: BuildPlan) -> tuple[Artifact, ...]:
    """Move the finished images next to the requested output (same
    filesystem: an atomic rename each) with a ``.sha256`` file."""
    name = plan.images[0].stem if plan.images else "image"
    built = []
    for final in plan.images:
        temp = plan.workdir / final.name
        if not temp.is_file():
            raise errors.BuildFailed(
                f"disk-image-create reported success but wrote no {temp}",
                f"read {plan.log}")
        built.append((temp, final))
    artifacts = []
    for temp, final in built:
        digest = sha256_of(temp)
        size = temp.stat().st_size
        os.replace(temp, final)
        final.with_name(final.name + ".sha256").write_text(
            f"{digest}  {final.name}\n")
        artifacts.append(Artifact(final, size, digest))
    # Extra outputs (kernel/initrd of 'baremetal', DIB's manifests dir).
    for extra in sorted(plan.workdir.glob(f"{name}*")):
        if extra.name in {a.path.name for a in artifacts}:
            continue
        target = plan.images[0].parent / extra.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(extra, target)
    return tuple(artifacts)


def _packages(manifest_dir: Path) -> dict[str, str]:
    """Installed packages from diskimage-builder's dpkg manifest (JSON:
    ``{"packages": [{"package", "version", ...}]}``)."""
    packages: dict[str, str] = {}
    for path in sorted(manifest_dir.glob("dib-manifests/dib-manifest-dpkg-*")):
        try:
            entries = json.loads(path.read_text())["packages"]
        except (ValueError, KeyError, TypeError):
            continue
        for entry in entries:
            if isinstance(entry, dict) and "package" in entry:
                packages[entry["package"]] = str(entry.get("version", ""))
    return dict(sorted(packages.items()))


def _write_manifest(plan: BuildPlan, artifacts: Sequence[Artifact],
                    phases: Sequence[tuple[str, float]], seconds: float
                    ) -> Path:
    first = plan.images[0]
    manifest = first.parent / f"{first.stem}.manifest.json"
    data = {
        "elements": list(plan.elements),
        "requested": list(plan.effective_request),
        "sources": {k: str(v) for k, v in plan.sources.items()},
        "command": list(plan.command),
        "environment": {k: v for k, v in plan.environment.items()
                        if k not in ("ELEMENTS_PATH", "TMP_DIR")},
        "images": [{"path": str(a.path), "size": a.size,
                    "sha256": a.sha256} for a in artifacts],
        "packages": _packages(first.parent / f"{first.stem}.d"),
        "phases": {p: round(s, 1) for p, s in phases},
        "seconds": round(seconds, 1),
    }
    tmp = manifest.with_name(manifest.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, manifest)
    return manifest


def plan_from_options(options: BuildOptions, index: ElementIndex,
                      environ: Mapping[str, str]) -> BuildPlan:
    """:func:`make_plan` with the facts read from this host."""
    return make_plan(options, index, environ,
                     apt_sources=host.apt_sources(),
                     device_mapper=blockdev.device_mapper_usable())
