"""Plan a disk-image-create run: pure, printable, nothing started.

:class:`~tripleo_elements.options.BuildOptions` and an element index flow
in; a :class:`BuildPlan` flows out: what was asked, what resolved and
from where, the exact argv and environment additions, the host's
``DIB_*`` variables that reach the build (secrets shown as set, not by
value), the files the resolved elements will write, and where the build
works.  ``build-image plan`` prints it; :mod:`tripleo_elements.build`
carries it out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import blockdev, errors, graph, host, tree
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.graph import Resolution, resolve
from tripleo_elements.menu import model as menu_model
from tripleo_elements.options import (DEFAULT_DISK, DEFAULT_ENTRY,
                                      DEFAULT_OS, DEFAULT_RELEASE,
                                      QCOW2_COMPRESSION_ENV,
                                      QCOW2_COMPRESSIONS, BuildOptions)

DEBIAN_OS = frozenset({"debian", "debian-minimal"})
MIRROR_VARS = ("DIB_DISTRIBUTION_MIRROR", "DIB_DEBIAN_DISTRIBUTION_MIRROR")
#: The element that tells disk-image-create to write no disk image.
NO_FINAL_IMAGE = "no-final-image"
#: Files elements write next to the image: element -> suffixes.
ELEMENT_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "baremetal": (".vmlinuz", ".initrd"),
    "ramdisk-base": (".kernel", ".initramfs"),
}
#: Image types disk-image-create writes even with no-final-image (they
#: come from the finished tree, not from the disk image).
TREE_TYPES = frozenset({"tar", "squashfs", "docker"})
#: A host variable whose name holds one of these is recorded as set.
SECRET_WORDS = ("PASSWORD", "TOKEN", "KEY", "SECRET")
SECRET_MARK = "(set)"
DEFAULT_IMAGE_CACHE = Path("~/.cache/image-create")
#: Host variables we replace in the build's environment.
OWN_VARS = frozenset({"ELEMENTS_PATH", "TMP_DIR", "DIB_IMAGE_CACHE"})
#: Where the build writes the image's global menu (the menu-driver
#: element installs it into the image).
MENU_VAR = "TIE_MENU_FILE"


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
    #: The host's DIB_* variables that reach the build (secrets masked).
    host_environment: Mapping[str, str]
    #: Output path without extension; every output is ``<output>.*``.
    output: Path
    workdir: Path
    staged_path: Path
    #: Where disk-image-create writes (inside the work directory).
    outdir: Path
    tmp_dir: Path
    #: The download cache shared between builds.
    image_cache: Path
    #: The files the resolved elements and types will write.
    images: tuple[Path, ...]
    final_image: bool
    checksum: bool
    log: Path
    block_device_config: str | None
    warnings: tuple[str, ...]
    #: The image's global menu (``menu.yaml`` of every element, united).
    menu: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        return self.output.with_name(self.output.name + ".manifest.json")

    @property
    def menu_file(self) -> Path:
        """Where the build writes the menu for the menu-driver element
        (``$TIE_MENU_FILE``, in the work directory)."""
        return self.workdir / "menu.json"

    @property
    def menu_output(self) -> Path:
        """``NAME.menu.json``, next to the image."""
        return self.output.with_name(self.output.name + ".menu.json")

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
            "host_environment": dict(self.host_environment),
            "outputs": [str(p) for p in self.images],
            "final_image": self.final_image,
            "image_cache": str(self.image_cache),
            "tmp_dir": str(self.tmp_dir),
            "log": str(self.log),
            "workdir": str(self.workdir),
            "warnings": list(self.warnings),
            "menu": {k: sorted(v) for k, v in self.menu.items()},
        }

    def to_text(self) -> str:
        lines = [f"requested: {' '.join(self.requested) or '(defaults)'}",
                 f"request:   {' '.join(self.effective_request)}",
                 f"elements ({len(self.elements)}):"]
        width = max((len(e) for e in self.elements), default=0)
        for name in self.elements:
            lines.append(f"  {name:<{width}}  {self.sources[name]}")
            for shadowed in self.overrides.get(name, ()):
                lines.append(f"  {'':<{width}}  overrides {shadowed}")
        for virtual, choice in self.defaults:
            lines.append(f"default: {virtual} -> {choice}")
        lines.append("environment:")
        for key, value in self.environment.items():
            lines.append(f"  {key}={shlex.quote(value)}")
        if self.host_environment:
            lines.append("from this host's environment:")
            for key, value in self.host_environment.items():
                lines.append(f"  {key}={shlex.quote(value)}")
        lines.append("command:")
        lines.append("  " + shlex.join(self.command))
        lines.append("outputs: " + (" ".join(str(p) for p in self.images)
                                    or "(none expected: no-final-image)"))
        lines.append(f"image cache: {self.image_cache} (each build works "
                     "on a hard-linked copy)")
        lines.append(f"log: {self.log}")
        lines.append("menu: " + "; ".join(
            f"{k} {' '.join(sorted(v)) or '(none)'}"
            for k, v in self.menu.items()))
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        return "\n".join(lines) + "\n"


def _closure(names: Iterable[str], index: ElementIndex) -> set[str]:
    """The named elements and everything their element-deps reach."""
    reached = graph.closure(index, [n for n in names if n in index])
    return {n for n in reached if n in index}


def menu_of(resolution: Resolution) -> menu_model.Menu:
    """The global menu of the resolved elements (a name two of them
    define is an error, raised here, at plan time)."""
    return menu_model.menu_of(resolution.sources.items())


def effective_request(options: BuildOptions, index: ElementIndex
                      ) -> tuple[str, ...]:
    """The user's elements plus the defaults (see README and
    :data:`tripleo_elements.options.DEFAULTS_TEXT`)."""
    names = list(options.elements)
    if options.no_defaults:
        return tuple(dict.fromkeys(names))
    if not names:
        names = [DEFAULT_ENTRY] if DEFAULT_ENTRY in index else []
    reached = _closure(names, index)
    if not any("operating-system" in index[n].provides for n in reached):
        names.append(DEFAULT_OS)
    # A build that writes no disk image (ramdisks) gets no disk layout.
    if NO_FINAL_IMAGE not in _closure(names, index):
        names.append(DEFAULT_DISK)
    names.insert(0, "base")
    return tuple(dict.fromkeys(names))


def expected_outputs(output: Path, types: Sequence[str],
                     elements: Iterable[str]) -> tuple[Path, ...]:
    """The files disk-image-create will write for this element set and
    these types (facts from its ``disk-image-create`` and elements)."""
    elements = set(elements)
    final = NO_FINAL_IMAGE not in elements
    suffixes: list[str] = []
    for kind in types:
        if kind == "docker":
            continue          # imported into docker, no file
        if kind == "squashfs":
            suffixes.append(".squash")
        elif kind == "tgz":
            # The .tar is made from the tree; only a final image gzips it.
            suffixes.append(".tgz" if final else ".tar")
        elif final or kind in TREE_TYPES:
            suffixes.append("." + kind)
    for element, extra in sorted(ELEMENT_OUTPUTS.items()):
        if element in elements:
            suffixes.extend(extra)
    return tuple(output.with_name(output.name + s)
                 for s in dict.fromkeys(suffixes))


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The host's ``DIB_*`` variables that reach the build, sorted; a
    name holding PASSWORD, TOKEN, KEY or SECRET shows as set only."""
    shown = {}
    for key in sorted(environ):
        if not key.startswith("DIB_") or key in OWN_VARS:
            continue
        secret = any(w in key.upper() for w in SECRET_WORDS)
        shown[key] = SECRET_MARK if secret else environ[key]
    return shown


def _dib_types(types: Sequence[str]) -> str:
    # disk-image-create's squashfs test reads IMAGE_TYPES[$x] with an
    # unset x, i.e. always the first type: squashfs must come first.
    ordered = sorted(types, key=lambda t: t != "squashfs")
    return ",".join(ordered)


def _dib_flags(options: BuildOptions) -> list[str]:
    flags = ["-x"] * options.trace
    if options.uncompressed:
        flags.append("-u")
    if options.offline:
        flags.append("--offline")
    if options.packages:
        flags += ["-p", ",".join(options.packages)]
    for flag, value in (("--image-size", options.image_size),
                        ("--max-online-resize", options.max_online_resize),
                        ("--qemu-img-options", options.qemu_img_options),
                        ("--mkfs-options", options.mkfs_options),
                        ("--root-label", options.root_label)):
        if value is not None:
            flags += [flag, str(value)]
    if "docker" in options.types:
        flags += ["--docker-target",
                  options.docker_target or options.output.name]
    return flags


def qcow2_compression(options: BuildOptions, environ: Mapping[str, str]
                      ) -> str | None:
    """How the qcow2's clusters are compressed: ``--qcow2-compression``,
    else ``$TIE_QCOW2_COMPRESSION``, else zstd; None when no compressed
    qcow2 is written or ``--qemu-img-options`` chooses it."""
    if "qcow2" not in options.types or options.uncompressed or \
            "compression_type" in (options.qemu_img_options or ""):
        return None
    if options.qcow2_compression is not None:
        return options.qcow2_compression
    value = environ.get(QCOW2_COMPRESSION_ENV, "").strip()
    if not value:
        return QCOW2_COMPRESSIONS[0]
    if value not in QCOW2_COMPRESSIONS:
        raise errors.UsageError(
            f"{QCOW2_COMPRESSION_ENV}={value} is no qcow2 compression",
            "set it to zstd (qemu 5.1 or later reads it) or zlib (any "
            "qemu)")
    return value


def image_cache_dir(options: BuildOptions, environ: Mapping[str, str]
                    ) -> Path:
    """--image-cache, else $DIB_IMAGE_CACHE, else DIB's default."""
    if options.image_cache is not None:
        return Path(os.path.abspath(options.image_cache.expanduser()))
    value = environ.get("DIB_IMAGE_CACHE", "").strip()
    path = Path(value) if value else DEFAULT_IMAGE_CACHE
    return Path(os.path.abspath(path.expanduser()))


def _tmp_dir(workdir: Path, output: Path, environ: Mapping[str, str]
             ) -> Path:
    """The build's TMP_DIR.  A user's TMP_DIR (e.g. a bigger disk) is
    honoured: the build gets a directory of its own inside it."""
    user = environ.get("TMP_DIR", "").strip()
    if not user:
        return workdir / "tmp"
    tag = hashlib.sha256(str(output).encode()).hexdigest()[:12]
    return Path(os.path.abspath(user)) / f"tie-{output.name}-{tag}"


def make_plan(options: BuildOptions, index: ElementIndex,
              environ: Mapping[str, str], *,
              apt_sources: Sequence[host.AptSource] = (),
              device_mapper: bool = True,
              dib_command: str = "disk-image-create") -> BuildPlan:
    """Resolve and plan the build.  Pure: reads element files only."""
    request = effective_request(options, index)
    resolution = resolve(index, request, arch=options.arch)
    elements = [index[n] for n in resolution.elements]
    tree.check_collisions(elements)
    menu = menu_of(resolution)
    warnings = [s.message() for e in elements
                for s in tree.skipped_scripts(e)] + tree.overwrites(elements)

    output = Path(os.path.abspath(options.output))
    name = output.name
    workdir = output.parent / f".{name}.tie-build"
    staged_path = workdir / "elements"
    outdir = workdir / "out"
    tmp_dir = _tmp_dir(workdir, output, environ)

    env: dict[str, str] = {"ELEMENTS_PATH": str(staged_path),
                           "TMP_DIR": str(tmp_dir),
                           MENU_VAR: str(workdir / "menu.json")}
    release = options.release or environ.get("DIB_RELEASE")
    os_element = resolution.virtual.get("operating-system", "")
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
    if options.image_extra_size is not None:
        # disk-image-create's --image-extra-size is in its help but not
        # in its option parser; the variable works.
        env["DIB_IMAGE_EXTRA_SIZE"] = options.image_extra_size
    # Carried out by the qemu-img of tripleo_elements.speedups; in the
    # plan's environment, so that the build cache's key covers it.
    compression = qcow2_compression(options, environ)
    if compression is not None:
        env[QCOW2_COMPRESSION_ENV] = compression

    bd_config = None
    if not device_mapper and "vm" in resolution.elements:
        bd_config = _no_dm_block_device_config(resolution, environ,
                                               options.arch)
        if bd_config is not None:
            env["DIB_BLOCK_DEVICE_CONFIG"] = \
                "file://" + str(workdir / "block-device.yaml")

    final = NO_FINAL_IMAGE not in resolution.elements
    # (The default qcow2 goes unmentioned: a ramdisk build keeps it.)
    if not final and options.types != ("qcow2",) and \
            set(options.types) - TREE_TYPES:
        warnings.append(
            "no-final-image is part of the image: diskimage-builder "
            "writes no " + ", ".join(sorted(set(options.types)
                                            - TREE_TYPES)) + " image")
    argv = [dib_command, "-a", options.arch, "-o", str(outdir / name),
            "-t", _dib_types(options.types), "-n", *_dib_flags(options),
            *resolution.elements]
    overrides = {n: index.overrides[n].shadowed for n in resolution.elements
                 if n in index.overrides}
    return BuildPlan(
        requested=tuple(options.elements), effective_request=request,
        elements=resolution.elements, sources=resolution.sources,
        overrides=overrides, defaults=resolution.defaults,
        command=tuple(argv), environment=env,
        host_environment=host_environment(environ), output=output,
        workdir=workdir, staged_path=staged_path, outdir=outdir,
        tmp_dir=tmp_dir, image_cache=image_cache_dir(options, environ),
        images=expected_outputs(output, options.types, resolution.elements),
        final_image=final, checksum=options.checksum,
        log=output.with_name(f"{name}.log"), block_device_config=bd_config,
        warnings=tuple(warnings), menu=menu.to_json())


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


def plan_from_options(options: BuildOptions, index: ElementIndex,
                      environ: Mapping[str, str]) -> BuildPlan:
    """:func:`make_plan` with the facts read from this host."""
    return make_plan(options, index, environ,
                     apt_sources=host.apt_sources(),
                     device_mapper=blockdev.device_mapper_usable())
