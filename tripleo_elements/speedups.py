"""Faster steps of a build that leave the image's content unchanged.

In: the build's work directory and environment.  Out: the environment
with a ``bin/`` directory of the work directory first on ``PATH``,
holding a ``qemu-img`` that runs the host's real one, adding ``-m N -W``
(N coroutines, out-of-order writes) to a compressed ``convert`` that
names neither.  diskimage-builder's final conversion
(``qemu-img convert -c -f raw -O qcow2``) is single-threaded zlib
otherwise; with ``-W`` the compression runs on every CPU.  The guest sees
the same bytes (``qemu-img compare`` says identical); only the order of
clusters in the qcow2 file differs.  ``TIE_QEMU_IMG_JOBS=1`` turns it
off; other values set N.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

JOBS_ENV = "TIE_QEMU_IMG_JOBS"

_WRAPPER = """#!/bin/bash
# Written by build-image (tripleo_elements.speedups): a compressed
# convert gets -m {jobs} -W unless it names -m or -W; the rest unchanged.
real={real}
if [ "${{1:-}}" = convert ]; then
    compressed=0
    for arg in "$@"; do
        case "$arg" in
            -c) compressed=1;;
            -m|-m*|-W) compressed=0; break;;
        esac
    done
    if [ "$compressed" = 1 ]; then
        shift
        echo "build-image: qemu-img convert -m {jobs} -W (all CPUs)" >&2
        exec "$real" convert -m {jobs} -W "$@"
    fi
fi
exec "$real" "$@"
"""


def qemu_img_jobs(environ: Mapping[str, str]) -> int:
    """Coroutines for a compressed convert: ``$TIE_QEMU_IMG_JOBS``, else
    twice the CPUs (at most 16); 1 means leave qemu-img alone."""
    text = environ.get(JOBS_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return min(int(text), 16)
    return min(2 * (os.cpu_count() or 1), 16)


def wrapper_text(real: str, jobs: int) -> str:
    return _WRAPPER.format(real=shlex.quote(real), jobs=jobs)


def prepare(workdir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the faster ``qemu-img`` first on PATH (unchanged
    when there is no qemu-img or it is turned off)."""
    result = dict(env)
    jobs = qemu_img_jobs(env)
    real = shutil.which("qemu-img", path=env.get("PATH"))
    if jobs <= 1 or real is None:
        return result
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "qemu-img"
    wrapper.write_text(wrapper_text(real, jobs))
    wrapper.chmod(0o755)
    result["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    return result
