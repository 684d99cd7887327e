"""Render an element's os-apply-config templates with the real tool.

``render_templates(element_dir, metadata)`` runs ``os-apply-config -t
TEMPLATES -m METADATA -o OUT --fallback-metadata`` (no fallback files, so
nothing from the machine running the test leaks in) and returns every
file written, keyed by its path in the image.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tripleo_elements.errors import PackageMissing, RenderError

__all__ = [
    "os_apply_config_command", "PackageMissing", "render_templates",
    "RenderError",
]


def os_apply_config_command() -> str:
    """The os-apply-config next to this Python, else the one on PATH.

    Raises :class:`~tripleo_elements.errors.PackageMissing` naming the
    package to install when there is none.
    """
    local = Path(sys.executable).parent / "os-apply-config"
    if local.exists():
        return str(local)
    found = shutil.which("os-apply-config")
    if found is None:
        raise PackageMissing(
            f"os-apply-config is not installed (not next to "
            f"{sys.executable}, not on PATH): render_templates runs it",
            "pip install 'tripleo-image-elements[testing]' (or: pip "
            "install os-apply-config) in the environment running the "
            "tests")
    return found


def render_templates(
        element_dir: Path | str,
        metadata: Mapping[str, Any] | list[Mapping[str, Any]],
        *, env: Mapping[str, str] | None = None,
        existing: Mapping[str, str] | None = None,
) -> dict[str, tuple[str, int]]:
    """Render ``element_dir``/os-apply-config against ``metadata``.

    ``metadata`` is one mapping or a list merged in order (like several
    os-collect-config cache files).  ``existing`` pre-creates files in
    the output root (path in the image -> content), to test what a
    render does to a file that is already there.  Returns ``{path in the
    image: (content, permission bits)}`` for every file present in the
    output root afterwards.  Raises :class:`RenderError` when
    os-apply-config fails (its stderr attached).  ``env`` is added to a
    minimal environment; executable templates see it.
    """
    templates = Path(element_dir) / "os-apply-config"
    if not templates.is_dir():
        raise FileNotFoundError(f"{element_dir} has no os-apply-config/")
    documents = metadata if isinstance(metadata, list) else [metadata]
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        work = Path(tmp)
        out = work / "out"
        out.mkdir()
        for path, content in (existing or {}).items():
            target = out / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        files = []
        for index, document in enumerate(documents):
            meta = work / f"metadata-{index}.json"
            meta.write_text(json.dumps(document))
            files.append(str(meta))
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "LANG": "C.UTF-8", "HOME": tmp}
        run_env.update(env or {})
        argv = [os_apply_config_command(), "-t", str(templates),
                "-o", str(out), "--fallback-metadata", "-m", *files]
        proc = subprocess.run(argv, env=run_env, capture_output=True,
                              text=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise RenderError(
                f"os-apply-config failed ({proc.returncode}) on "
                f"{templates}: {proc.stderr.strip()}", proc.stderr)
        rendered = {}
        for written in sorted(out.rglob("*")):
            if written.is_file():
                mode = stat.S_IMODE(written.stat().st_mode)
                rendered["/" + str(written.relative_to(out))] = (
                    written.read_text(), mode)
        return rendered
