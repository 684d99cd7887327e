"""Reuse a built image while nothing that goes into it has changed.

``cached_build(["-e", "heat-cfntools"], cache_dir)`` returns
``cache_dir/<key>.qcow2``, building it with ``build-image ARGS -o
cache_dir/<key>`` only when no image of that key is there.  The key is a
sha256 over everything the build reads that this host controls:

* every file of every resolved element (each source directory of the
  plan, symlinks followed as the staged tree follows them): its path
  inside the element, its mode and its content;
* the ``disk-image-create`` command and the environment the plan adds,
  with the output and work-directory paths replaced by placeholders, and
  the block-device configuration the plan writes;
* the build host's ``DIB_*`` variables (they reach the build);
* the source of this package's build code (``tripleo_elements/*.py``
  and ``tripleo_elements/menu/``, which computes the image's menu,
  not ``testing/``) and the installed diskimage-builder version.

What the key cannot see: packages changing on the mirror.  Remove the
cache directory (or set ``TIE_IMAGE_CACHE`` elsewhere) to force a fresh
build.  Only the newest :data:`KEEP` images are kept; an image that is
reused counts as new.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tripleo_elements import buildcache, errors, options, outputs, process
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import default_roots, discover

__all__ = [
    "CACHE_ENV", "CacheError", "DEFAULT_BUILD_TIMEOUT", "KeyParts",
    "TIMEOUT_ENV", "build_timeout", "cached_build", "default_cache_dir",
    "host_env_digest", "image_key", "key_parts", "plan_digest", "plan_for",
    "project_digest", "prune", "tree_digest",
]

CACHE_ENV = "TIE_IMAGE_CACHE"
TIMEOUT_ENV = "TIE_BUILD_TIMEOUT"
DEFAULT_BUILD_TIMEOUT = 3600.0
DEFAULT_CACHE = Path("~/.cache/tripleo-image-elements/images")
#: How many images to keep in the cache directory.
KEEP = 3
KEY_FORMAT = "tie-image-key-1"
#: Host variables that change where DIB keeps things, not what it builds.
IGNORED_ENV = frozenset({"DIB_IMAGE_CACHE", "DIB_DEBUG_TRACE",
                         "DIB_SHOW_IMAGE_USAGE"})
#: Placeholder names for the paths a plan carries.
WORKDIR_MARK = "@WORKDIR@"
OUTPUT_MARK = "@OUTPUT@"
#: The output name the key's plan is made with (the key is not known yet).
KEY_PLACEHOLDER = "tie-image-key-placeholder"
#: Files every image of the cache has next to it (``<key><suffix>``).
SUFFIXES = (".qcow2", ".qcow2.sha256", ".manifest.json", ".log",
            ".build.log", ".d", ".lock", ".menu.json")


CacheError = errors.ImageCacheError


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$TIE_IMAGE_CACHE``, else
    ``~/.cache/tripleo-image-elements/images``."""
    env = os.environ if environ is None else environ
    value = env.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_CACHE.expanduser()


@dataclasses.dataclass(frozen=True)
class KeyParts:
    """What the key is computed over (each part hashed separately, so a
    changed key can be explained by comparing the parts)."""

    elements: Mapping[str, str]
    plan: str
    host_env: str
    project: str

    def digest(self) -> str:
        h = hashlib.sha256(KEY_FORMAT.encode() + b"\0")
        for name, value in sorted(self.elements.items()):
            h.update(f"element {name} {value}\n".encode())
        h.update(f"plan {self.plan}\n".encode())
        h.update(f"env {self.host_env}\n".encode())
        h.update(f"project {self.project}\n".encode())
        return h.hexdigest()


#: One tree digest for both caches.
tree_digest = buildcache.tree_digest


def _normalise(text: str, plan: plan_mod.BuildPlan) -> str:
    text = text.replace(str(plan.workdir), WORKDIR_MARK)
    text = text.replace(str(plan.output), OUTPUT_MARK)
    return text.replace(plan.output.name, OUTPUT_MARK)


def plan_digest(plan: plan_mod.BuildPlan) -> str:
    """The plan's command, added environment and block-device config,
    without the paths that name where it is built."""
    data = {
        "command": [_normalise(a, plan) for a in plan.command],
        "environment": {k: _normalise(v, plan)
                        for k, v in sorted(plan.environment.items())},
        "block_device_config": plan.block_device_config,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()
                          ).hexdigest()


def host_env_digest(environ: Mapping[str, str]) -> str:
    items = sorted((k, v) for k, v in environ.items()
                   if k.startswith("DIB_") and k not in IGNORED_ENV)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def project_digest() -> str:
    """Our build code (not the test helpers, the checks, the publishers
    or the error classes, which cannot change what a build writes) and
    DIB's version."""
    from importlib import metadata
    package = Path(plan_mod.__file__).resolve().parent
    h = hashlib.sha256()
    for path in buildcache.build_code_files(package):
        name = path.relative_to(package)
        h.update(f"{name} {outputs.sha256_of(path)}\n".encode())
    h.update(f"diskimage-builder "
             f"{metadata.version('diskimage-builder')}\n".encode())
    return h.hexdigest()


def key_parts(plan: plan_mod.BuildPlan,
              environ: Mapping[str, str]) -> KeyParts:
    elements = {name: tree_digest(Path(plan.sources[name]))
                for name in plan.elements}
    return KeyParts(elements=elements, plan=plan_digest(plan),
                    host_env=host_env_digest(environ),
                    project=project_digest())


def plan_for(args: Sequence[str], output: Path,
             environ: Mapping[str, str]) -> plan_mod.BuildPlan:
    """The plan ``build-image ARGS -o OUTPUT`` would carry out."""
    if any(a in ("-o", "--output") or a.startswith("--output=")
           for a in args):
        raise errors.UsageError(
            "cached_build: the arguments may not name the output (-o)",
            "the cache chooses it from the key")
    opts = options.parse([*args, "-o", str(output)])
    if opts.types != ("qcow2",):
        raise errors.UsageError("cached_build: only qcow2 images are cached",
                                "drop -t")
    index = discover(default_roots(opts.elements_path, environ))
    return plan_mod.plan_from_options(opts, index, environ)


def image_key(args: Sequence[str], cache_dir: Path,
              environ: Mapping[str, str] | None = None) -> str:
    env = dict(os.environ if environ is None else environ)
    plan = plan_for(args, Path(cache_dir) / KEY_PLACEHOLDER, env)
    return key_parts(plan, env).digest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock: two runs never build the same key at once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def prune(cache_dir: Path, keep: int = KEEP,
          protect: Sequence[str] = ()) -> list[str]:
    """Remove all but the ``keep`` newest images (by mtime); the keys in
    ``protect`` always stay.  Returns the keys removed."""
    images = sorted(Path(cache_dir).glob("*.qcow2"),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for image in images[keep:]:
        key = image.name[:-len(".qcow2")]
        if key in protect:
            continue
        for suffix in SUFFIXES:
            _remove(Path(cache_dir) / f"{key}{suffix}")
        removed.append(key)
    return removed


def _build_command() -> str:
    return str(Path(sys.executable).parent / "build-image")


def cached_build(args: list[str], cache_dir: Path | None = None, *,
                 environ: Mapping[str, str] | None = None,
                 keep: int = KEEP) -> Path:
    """``cache_dir/<key>.qcow2`` for ``build-image ARGS``: reused when
    present, else built (log: ``<key>.build.log``).  ``environ`` is the
    build's environment (default: this process's); the image and its
    ``<key>.manifest.json`` and ``<key>.d/`` are written by build-image
    itself, atomically, only when the build succeeds.
    Raises CacheError when the build fails.
    """
    env = dict(os.environ if environ is None else environ)
    cache = Path(cache_dir) if cache_dir is not None \
        else default_cache_dir(env)
    cache.mkdir(parents=True, exist_ok=True)
    cache = cache.resolve()
    key = image_key(args, cache, env)
    image = cache / f"{key}.qcow2"
    with _locked(cache / f"{key}.lock"):
        if not (image.is_file()
                and (cache / f"{key}.manifest.json").is_file()):
            _build(args, cache / key, env)
        now = time.time()
        os.utime(image, (now, now))
    prune(cache, keep, protect=(key,))
    return image


def build_timeout(environ: Mapping[str, str]) -> float:
    """Seconds a cached build may take: ``$TIE_BUILD_TIMEOUT`` or 3600
    (a cold default build takes 5-10 min here; a hung one must not hold
    a test run until its own limit)."""
    value = environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_BUILD_TIMEOUT
    except ValueError:
        raise errors.UsageError(f"{TIMEOUT_ENV}={value!r} is not a number",
                                "give seconds, e.g. 3600") from None
    if seconds <= 0:
        raise errors.UsageError(f"{TIMEOUT_ENV}={value!r} must be above 0",
                                "give seconds, e.g. 3600")
    return seconds


def _build(args: Sequence[str], output: Path,
           env: Mapping[str, str]) -> None:
    # This cache keeps its own images: the build cache would copy each.
    argv = [_build_command(), "build", *args, "--no-cache", "-o",
            str(output)]
    log = output.with_name(output.name + ".build.log")
    with open(log, "w", encoding="utf-8", buffering=1) as handle:
        try:
            code = process.stream(argv, env=dict(env), log=handle,
                                  on_line=lambda line: None,
                                  timeout=build_timeout(env))
        except errors.CommandTimedOut as exc:
            raise CacheError(f"{exc.message}; log: {log}",
                             f"read {log} and {output}.log") from None
    if code != 0 or not output.with_suffix(".qcow2").is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise CacheError(
            f"{' '.join(argv)}: {process.explain(code)}; log: {log}\n{tail}",
            f"read {log} and {output}.log")
