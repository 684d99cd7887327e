"""Leave nothing behind: mounts, loop devices and the work directory.

diskimage-builder cleans up after itself on the normal paths; this is the
safety net for the others (a killed build, a failing cleanup trap).  It
only ever touches mounts below, and loop devices backed by files below,
the build's own work directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tripleo_elements import process

MOUNTINFO = Path("/proc/self/mountinfo")
SYS_BLOCK = Path("/sys/block")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"),
                       ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _is_below(path: str, top: Path) -> bool:
    top_s = str(top).rstrip("/")
    return path == top_s or path.startswith(top_s + "/")


def mounts_below(top: Path, mountinfo: Path = MOUNTINFO) -> list[str]:
    """Mount points at or below ``top``, deepest first."""
    points = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = _unescape(fields[4])
            if _is_below(point, top):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def loops_below(top: Path, sys_block: Path = SYS_BLOCK) -> list[str]:
    """Loop devices (``/dev/loopN``) whose backing file is below ``top``."""
    found: list[str] = []
    if not sys_block.is_dir():
        return found
    for entry in sorted(sys_block.glob("loop*")):
        backing = entry / "loop" / "backing_file"
        try:
            target = backing.read_text().strip()
        except OSError:
            continue
        if target.endswith(" (deleted)"):
            target = target[:-len(" (deleted)")]
        if _is_below(target, top):
            found.append(f"/dev/{entry.name}")
    return found


def release(top: Path) -> list[str]:
    """Unmount and detach everything of ``top``; return what was done."""
    top = Path(os.path.realpath(top))
    done = []
    for point in mounts_below(top):
        result = process.run(["umount", "--recursive", point], check=False)
        if result.returncode != 0:
            process.run(["umount", "--lazy", point], check=False)
        done.append(f"unmounted {point}")
    for loop in loops_below(top):
        process.run(["partx", "-d", loop], check=False)
        process.run(["losetup", "-d", loop], check=False)
        done.append(f"detached {loop}")
    return done


def remove_workdir(top: Path) -> list[str]:
    """Release ``top`` and delete it, refusing while anything is still
    mounted below it (never delete through a bind mount)."""
    done = release(top)
    left = mounts_below(Path(os.path.realpath(top)))
    if left:
        raise process.CommandError(
            f"{top}: still mounted after cleanup: {', '.join(left)}",
            "unmount these by hand, then delete the directory")
    shutil.rmtree(top, ignore_errors=True)
    return done
