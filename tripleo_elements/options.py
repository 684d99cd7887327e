"""What the user asks a build for: :class:`BuildOptions` and the one table
of settings behind it.

Each :class:`Setting` names its flags, default, help text and how its
command-line text becomes a typed value.  The table drives the argparse
options of ``build``/``plan`` (and the element options of ``graph`` and
``why``), the JSON form of the options, and :func:`parse` /
:func:`from_args`, the only way from arguments to :class:`BuildOptions`:
the CLI and :mod:`tripleo_elements.testing.imagecache` both go through
them.  Values are checked here, so a bad ``-a`` or ``-t`` is a one-line
error before anything is resolved.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import errors, host

#: The OS element added when the request names none.
DEFAULT_OS = "debian-minimal"
DEFAULT_RELEASE = "bookworm"
#: Whole-disk images: added unless --no-defaults or no-final-image.
DEFAULT_DISK = "vm"
DEFAULT_ENTRY = "heat-cfntools"
#: disk-image-create's image types (``-t``), in the order we pass them.
IMAGE_TYPES = ("qcow2", "raw", "tar", "tgz", "vhd", "squashfs", "docker")
#: Architecture names diskimage-builder and its elements recognise.
#: ``--qcow2-compression`` values (the first is the default).
QCOW2_COMPRESSIONS = ("zstd", "zlib")
#: Where the default of ``--qcow2-compression`` can be set instead.
QCOW2_COMPRESSION_ENV = "TIE_QCOW2_COMPRESSION"
ARCHES = ("amd64", "arm64", "armhf", "i386", "ppc64el", "ppc64le",
          "ppc64", "s390x", "x86_64", "aarch64")

#: What the defaults add, for --help and the README.
DEFAULTS_TEXT = (
    "Unless --no-defaults: 'base' is added; an OS element "
    f"({DEFAULT_OS}, release {DEFAULT_RELEASE}) when no element brings "
    f"one; '{DEFAULT_DISK}' (a whole-disk, bootable image) unless an "
    "element pulls in 'no-final-image' (ramdisk builds); and "
    f"'{DEFAULT_ENTRY}' when no element is named at all.")


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
    image_size: str | None = None
    image_extra_size: str | None = None
    image_cache: Path | None = None
    max_online_resize: int | None = None
    packages: tuple[str, ...] = ()
    qemu_img_options: str | None = None
    uncompressed: bool = False
    qcow2_compression: str | None = None
    mkfs_options: str | None = None
    root_label: str | None = None
    offline: bool = False
    checksum: bool = False
    trace: int = 0
    docker_target: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) for v in value]
            data[field.name] = value
        return data


# ---------------------------------------------------------- value parsers

def _types(text: str) -> tuple[str, ...]:
    types = tuple(dict.fromkeys(t.strip() for t in text.split(",")
                                if t.strip()))
    if not types:
        raise errors.UsageError(
            f"-t '{text}' names no image type",
            "choose from " + ",".join(IMAGE_TYPES))
    for kind in types:
        if kind not in IMAGE_TYPES:
            raise errors.UsageError(
                f"unknown image type '{kind}'",
                "choose from " + ", ".join(IMAGE_TYPES))
    if "tar" in types and "tgz" in types:
        raise errors.UsageError(
            "-t tar,tgz: diskimage-builder deletes the .tar it compresses "
            "into the .tgz", "ask for one of them per build")
    return types


def _arch(text: str) -> str:
    if text not in ARCHES:
        raise errors.UsageError(
            f"unknown architecture '{text}'",
            "diskimage-builder knows " + ", ".join(ARCHES))
    return text


def _size(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise errors.UsageError(f"'{text}' is not a size in GB",
                                "give a positive number, e.g. 4 or 2.5")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise errors.UsageError(f"'{text}' is not a positive integer",
                                "give a block count, e.g. 274877906944")
    return value


def _compression(text: str) -> str:
    if text not in QCOW2_COMPRESSIONS:
        raise errors.UsageError(
            f"unknown qcow2 compression '{text}'",
            "choose zstd (qemu 5.1 or later reads it) or zlib (any qemu)")
    return text


def _packages(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(p.strip() for v in values for p in v.split(",")
                 if p.strip())


@dataclasses.dataclass(frozen=True)
class Setting:
    """One option: flags, default, help, and how its text becomes the
    :class:`BuildOptions` field ``dest``."""

    dest: str
    flags: tuple[str, ...]
    help: str
    #: "elements": every command that resolves; "build": build and plan.
    scope: str = "build"
    #: "value", "append", "flag" (store_true) or "count".
    action: str = "value"
    metavar: str | None = None
    default: Any = None
    convert: Callable[[Any], Any] | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("elements", ("-e", "--element"), "element to include "
            "(repeatable)", scope="elements", action="append",
            metavar="ELEMENT", convert=tuple),
    Setting("elements_path", ("--elements-path",), "extra element "
            "directory, searched before $ELEMENTS_PATH and the built-in "
            "ones (repeatable)", scope="elements", action="append",
            metavar="DIR", convert=lambda v: tuple(Path(p) for p in v)),
    Setting("arch", ("-a", "--arch"), "target architecture (default: "
            "this host's, %(default)s)", scope="elements",
            default=host.host_arch(), convert=_arch),
    Setting("no_defaults", ("--no-defaults",), "add nothing beyond the "
            "named elements (no base, no OS element, no vm)",
            scope="elements", action="flag"),
    Setting("output", ("-o", "--output"), "output path without extension "
            "(default: %(default)s)", default="image", convert=Path),
    Setting("types", ("-t", "--type"), "comma-separated image types: "
            + ",".join(IMAGE_TYPES) + " (default: %(default)s)",
            default="qcow2", convert=_types),
    Setting("release", ("-r", "--release"), "distribution release "
            f"(DIB_RELEASE; Debian default: {DEFAULT_RELEASE})"),
    Setting("image_size", ("--image-size",), "image size in GB (default: "
            "what the files need, plus room)", metavar="GB",
            convert=_size),
    Setting("image_extra_size", ("--image-extra-size",), "GB to add to "
            "the computed image size (DIB_IMAGE_EXTRA_SIZE)", metavar="GB",
            convert=_size),
    Setting("image_cache", ("--image-cache",), "the download cache shared "
            "by builds (default: $DIB_IMAGE_CACHE, else "
            "~/.cache/image-create); each build works on a private copy",
            metavar="DIR", convert=Path),
    Setting("max_online_resize", ("--max-online-resize",), "filesystem "
            "blocks the root filesystem can later be grown to online",
            metavar="BLOCKS", convert=_positive_int),
    Setting("packages", ("-p", "--package"), "extra packages to install "
            "after install.d (comma-separated, repeatable)",
            action="append", metavar="PKG[,PKG...]", convert=_packages),
    Setting("qemu_img_options", ("--qemu-img-options",), "options for "
            "qemu-img convert (key=value,...)", metavar="OPTS"),
    Setting("uncompressed", ("-u", "--uncompressed"), "do not compress "
            "the qcow2 (bigger, faster)", action="flag"),
    Setting("qcow2_compression", ("--qcow2-compression",), "compression "
            "of the qcow2's clusters: zstd (faster; qemu 5.1 or later "
            "reads it) or zlib (any qemu); default: "
            f"${QCOW2_COMPRESSION_ENV}, else zstd",
            metavar="zstd|zlib", convert=_compression),
    Setting("mkfs_options", ("--mkfs-options",), "options passed to mkfs "
            "of the root filesystem (one string)", metavar="OPTS"),
    Setting("root_label", ("--root-label",), "label of the root filesystem "
            "(default: cloudimg-rootfs)", metavar="LABEL"),
    Setting("offline", ("--offline",), "do not update cached downloads",
            action="flag"),
    Setting("checksum", ("--checksum",), "also write NAME.TYPE.md5 (a "
            ".sha256 file is always written)", action="flag"),
    Setting("trace", ("-x",), "shell trace of the build scripts (-x -x: "
            "more)", action="count", default=0),
    Setting("docker_target", ("--docker-target",), "repository:tag for "
            "-t docker (default: the output name)", metavar="TARGET"),
)


def add_arguments(parser: argparse.ArgumentParser, *, build: bool) -> None:
    """Add the table's options (only the element ones unless ``build``)."""
    for setting in SETTINGS:
        if setting.scope == "build" and not build:
            continue
        kwargs: dict[str, Any] = {"dest": setting.dest, "help": setting.help}
        if setting.action == "append":
            kwargs.update(action="append", default=[],
                          metavar=setting.metavar)
        elif setting.action == "flag":
            kwargs.update(action="store_true")
        elif setting.action == "count":
            kwargs.update(action="count", default=setting.default)
        else:
            kwargs.update(default=setting.default, metavar=setting.metavar)
        parser.add_argument(*setting.flags, **kwargs)
    if build:
        parser.add_argument(
            "stray", nargs="*", metavar="",
            help=argparse.SUPPRESS)


def from_args(args: argparse.Namespace) -> BuildOptions:
    """The options in ``args`` (parsed with :func:`add_arguments`),
    checked and typed.  Raises :class:`errors.UsageError`."""
    stray = getattr(args, "stray", None) or []
    if stray:
        hint = " ".join(f"-e {w}" for w in stray)
        raise errors.UsageError(
            f"unexpected argument{'s' if len(stray) > 1 else ''} "
            f"'{' '.join(stray)}': build-image takes elements with -e",
            f"build-image {hint}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if not hasattr(args, setting.dest):
            continue
        value = getattr(args, setting.dest)
        if value is None:
            continue
        if setting.convert is not None:
            value = setting.convert(value)
        values[setting.dest] = value
    options = BuildOptions(**values)
    return _strip_type_suffix(options)


def _strip_type_suffix(options: BuildOptions) -> BuildOptions:
    """``-o foo.qcow2 -t qcow2`` means ``foo``, as disk-image-create
    reads it (it drops the extension of a single type)."""
    if len(options.types) == 1 and \
            options.output.name.endswith("." + options.types[0]):
        name = options.output.name[:-len(options.types[0]) - 1]
        if name:
            return dataclasses.replace(options,
                                       output=options.output.with_name(name))
    return options


def parser(*, build: bool = True) -> argparse.ArgumentParser:
    """A stand-alone parser of the table's options (for library users)."""
    result = argparse.ArgumentParser(prog="build-image", add_help=False)
    add_arguments(result, build=build)
    return result


def parse(argv: Sequence[str]) -> BuildOptions:
    """``build-image build`` arguments -> :class:`BuildOptions`."""
    try:
        namespace = parser().parse_args(list(argv))
    except SystemExit:
        raise errors.UsageError(f"cannot parse {' '.join(argv)!r}",
                                "see build-image --help")
    return from_args(namespace)
