"""Faster steps of a build that leave the guest's view of the image
unchanged.

In: the build's work directory and environment.  Out: the environment
with a ``bin/`` directory of the work directory first on ``PATH``,
holding a ``qemu-img`` that runs the host's real one and changes only
diskimage-builder's final compressed conversion
(``qemu-img convert -c -f raw -O qcow2``):

* ``-m N -W`` (N coroutines, out-of-order writes) unless it names ``-m``
  or ``-W``: the compression runs on every CPU instead of one.
  ``TIE_QEMU_IMG_JOBS=1`` turns that off; other values set N.
* ``-o compression_type=zstd`` when the build's
  ``TIE_QCOW2_COMPRESSION`` (set by the plan from ``--qcow2-compression``)
  is ``zstd`` and the command names no ``compression_type`` itself:
  zstd clusters cost a fraction of zlib's CPU time to write and to read.
  Such a qcow2 needs qemu 5.1 or later (built with zstd) to be read;
  ``zlib`` keeps qemu's historical default, readable by any qemu.

The guest sees the same bytes either way (``qemu-img compare`` says
identical); the file's cluster order and compression differ.

And, for builds that install packages with dpkg, a helper element
(:data:`INITRAMFS_ELEMENT`, added to disk-image-create's argv by
:mod:`tripleo_elements.build`, not to the plan) that has the initramfs
generated once per package run instead of twice: the kernel package's
postinst hook runs ``update-initramfs -c -k VERSION`` at once, and
initramfs-tools' trigger, activated by every package that ships an
initramfs hook (lvm2, busybox, ...), generates it again at the end of
the same run; the first one is thrown away.  From ``pre-install.d`` to
the end of ``install.d`` (before the stage cache's capture) an
``update-initramfs`` in a directory of its own, first on the PATH apt
gives dpkg (``DPkg::Path`` in an ``apt.conf.d`` file: apt runs
maintainer scripts with ``/usr/sbin:/usr/bin:/sbin:/bin`` otherwise),
turns that one call, made from a maintainer script, into the trigger's
activation plus an empty placeholder (so that the trigger's
``update-initramfs -u`` finds the version); everything else goes to the
real one.  The end of ``install.d`` removes both and generates, for
real, any initramfs still a placeholder.
The initramfs is the one the trigger generated before: same hooks, same
files, same moment.  ``TIE_INITRAMFS_ONCE=0`` leaves the element out.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from tripleo_elements.options import (QCOW2_COMPRESSION_ENV,
                                      QCOW2_COMPRESSIONS)

JOBS_ENV = "TIE_QEMU_IMG_JOBS"
INITRAMFS_ENV = "TIE_INITRAMFS_ONCE"
INITRAMFS_ELEMENT = "tie-initramfs-once"
#: The element's hooks: the stage cache captures at install.d/98.
SHIM_HOOK = "pre-install.d/00-tie-initramfs-once"
DONE_HOOK = "install.d/90-tie-initramfs-once"
SHIM_DIR = "/usr/local/lib/tie-initramfs-once"
SHIM_PATH = f"{SHIM_DIR}/update-initramfs"
APT_CONF = "/etc/apt/apt.conf.d/00tie-initramfs-once"
#: apt's own default DPkg::Path, after the shim's directory.
DPKG_PATH = f"{SHIM_DIR}:/usr/sbin:/usr/bin:/sbin:/bin"
#: The second line of the shim (how the end hook knows it is ours).
SHIM_MARK = "# tie-initramfs-once shim"

_WRAPPER = """#!/bin/bash
# Written by build-image (tripleo_elements.speedups): a compressed
# convert to qcow2 gets {added}; the rest is unchanged.
real={real}
jobs={jobs}
compression={compression}
if [ "${{1:-}}" = convert ]; then
    compressed=0 qcow2=0 own_jobs=0 own_type=0 prev=
    for arg in "$@"; do
        case "$arg" in
            -c) compressed=1;;
            -m|-m*|-W) own_jobs=1;;
            *compression_type=*) own_type=1;;
        esac
        case "$prev:$arg" in
            -O:qcow2|*:-Oqcow2) qcow2=1;;
        esac
        prev=$arg
    done
    if [ "$compressed" = 1 ]; then
        shift
        extra=()
        if [ "$own_jobs" = 0 ] && [ "$jobs" -gt 1 ]; then
            extra+=(-m "$jobs" -W)
        fi
        if [ "$own_type" = 0 ] && [ "$qcow2" = 1 ] && \\
                [ "$compression" != zlib ]; then
            extra+=(-o "compression_type=$compression")
        fi
        if [ "${{#extra[@]}}" -gt 0 ]; then
            echo "build-image: qemu-img convert ${{extra[*]}}" >&2
        fi
        exec "$real" convert "${{extra[@]}}" "$@"
    fi
fi
exec "$real" "$@"
"""


def qemu_img_jobs(environ: Mapping[str, str]) -> int:
    """Coroutines for a compressed convert: ``$TIE_QEMU_IMG_JOBS``, else
    twice the CPUs (at most 16); 1 means one (qemu-img's default)."""
    text = environ.get(JOBS_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return min(int(text), 16)
    return min(2 * (os.cpu_count() or 1), 16)


def qcow2_compression(environ: Mapping[str, str]) -> str:
    """The build's qcow2 compression: ``$TIE_QCOW2_COMPRESSION`` when it
    names one of :data:`COMPRESSIONS`, else zlib (qemu-img's own choice:
    an environment without the plan's variable is not changed)."""
    value = environ.get(QCOW2_COMPRESSION_ENV, "").strip()
    return value if value in QCOW2_COMPRESSIONS else "zlib"


def wrapper_text(real: str, jobs: int, compression: str = "zlib") -> str:
    added = " and ".join(
        ([f"-m {jobs} -W"] if jobs > 1 else [])
        + ([f"-o compression_type={compression}"]
           if compression != "zlib" else []))
    return _WRAPPER.format(real=shlex.quote(real), jobs=jobs,
                           compression=shlex.quote(compression),
                           added=added)


def prepare(workdir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the faster ``qemu-img`` first on PATH (unchanged
    when there is no qemu-img, or neither change is wanted)."""
    result = dict(env)
    jobs = qemu_img_jobs(env)
    compression = qcow2_compression(env)
    real = shutil.which("qemu-img", path=env.get("PATH"))
    if (jobs <= 1 and compression == "zlib") or real is None:
        return result
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "qemu-img"
    wrapper.write_text(wrapper_text(real, jobs, compression))
    wrapper.chmod(0o755)
    result["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    return result


#: Tests only: a directory standing for the chroot's ``/``.
ROOT_ENV = "TIE_INITRAMFS_ONCE_ROOT"

_SHIM = f"""#!/bin/sh
{SHIM_MARK}
# (build-image, tripleo_elements/speedups.py; removed at the end of
# install.d.)  The kernel's postinst hook (update-initramfs -c -k V
# [-b /boot]) from a maintainer script: activate initramfs-tools'
# trigger, which generates the initramfs once at the end of this package
# run, and leave an empty placeholder so that its "update-initramfs -u"
# finds version V.
r=${{{ROOT_ENV}:-}}
if [ -n "$DPKG_MAINTSCRIPT_PACKAGE" ] && [ "$1" = -c ] && \\
        [ "$2" = -k ] && [ -n "$3" ] && [ "$3" != all ] && \\
        {{ [ $# = 3 ] || {{ [ $# = 5 ] && [ "$4" = -b ] && \\
            [ "$5" = /boot ]; }}; }} && \\
        [ ! -e "$r/boot/initrd.img-$3" ] && \\
        grep -qx initramfs-tools "$r/var/lib/dpkg/triggers/update-initramfs" \\
            2>/dev/null && \\
        dpkg-trigger --no-await update-initramfs; then
    : > "$r/boot/initrd.img-$3"
    echo "update-initramfs: /boot/initrd.img-$3 deferred to the" \\
        "trigger (build-image)"
    exit 0
fi
# Without initramfs-tools there is nothing to update (as if this command
# were not there).
[ -x "$r/usr/sbin/update-initramfs" ] || exit 0
exec "$r/usr/sbin/update-initramfs" "$@"
"""

_INSTALL_SHIM = f"""#!/bin/bash
# build-image: generate the initramfs once per package run (see
# tripleo_elements/speedups.py); {DONE_HOOK} removes it.
if [ "${{DIB_DEBUG_TRACE:-0}}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail
r=${{{ROOT_ENV}:-}}
if [ -d "$r/usr/local/lib" ] && [ -d "$r/etc/apt/apt.conf.d" ] && \\
        [ ! -e "$r{SHIM_DIR}" ] && [ ! -e "$r{APT_CONF}" ]; then
    mkdir "$r{SHIM_DIR}"
    cat > "$r{SHIM_PATH}" <<'SHIM'
{_SHIM}SHIM
    chmod 0755 "$r{SHIM_PATH}"
    cat > "$r{APT_CONF}" <<'CONF'
// tie-initramfs-once (build-image): removed at the end of install.d.
DPkg::Path "{DPKG_PATH}";
CONF
fi
"""

_DONE = f"""#!/bin/bash
# build-image: remove the update-initramfs shim of {SHIM_HOOK};
# an initramfs still an empty placeholder (its trigger never ran) is
# generated now, for real.
if [ "${{DIB_DEBUG_TRACE:-0}}" -gt 0 ]; then
    set -x
fi
set -eu
set -o pipefail
r=${{{ROOT_ENV}:-}}
if [ -f "$r{SHIM_PATH}" ] && grep -qxF "{SHIM_MARK}" "$r{SHIM_PATH}"; then
    rm -f "$r{APT_CONF}" "$r{SHIM_PATH}"
    rmdir "$r{SHIM_DIR}"
fi
for initrd in "$r"/boot/initrd.img-*; do
    if [ -f "$initrd" ] && [ ! -L "$initrd" ] && [ ! -s "$initrd" ]; then
        rm -f "$initrd"
        "$r/usr/sbin/update-initramfs" -c -k "${{initrd##*/initrd.img-}}"
    fi
done
"""


def initramfs_once(elements: tuple[str, ...] | list[str],
                   environ: Mapping[str, str]) -> bool:
    """Whether a build of ``elements`` gets :data:`INITRAMFS_ELEMENT`:
    it installs packages with dpkg, names no element so called, and
    ``$TIE_INITRAMFS_ONCE`` is not 0."""
    return "dpkg" in elements and INITRAMFS_ELEMENT not in elements \
        and environ.get(INITRAMFS_ENV, "1").strip() != "0"


_README = f"""{INITRAMFS_ELEMENT}
{"=" * len(INITRAMFS_ELEMENT)}

Generated by build-image for one build: the initramfs is generated once
per package run instead of once by the kernel's hook and again by
initramfs-tools' trigger.  Not an element to name;
``TIE_INITRAMFS_ONCE=0`` leaves it out.  See
``tripleo_elements/speedups.py``.
"""


def write_initramfs_element(parent: Path) -> Path:
    """The helper element, written into ``parent`` (the staged
    elements); its name goes at the end of disk-image-create's argv."""
    element = parent / INITRAMFS_ELEMENT
    element.mkdir(parents=True, exist_ok=True)
    (element / "README.rst").write_text(_README)
    for rel, text in ((SHIM_HOOK, _INSTALL_SHIM), (DONE_HOOK, _DONE)):
        path = element / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    return element
