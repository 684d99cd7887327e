"""``build-image cache list|prune``: the build cache's command line.

``cli.main`` dispatches ``cache`` here (``buildcache_cli.main(argv[1:])``).
In: arguments and the environment (``XDG_CACHE_HOME``).  Out: a listing
or what was removed on stdout; errors become exit codes in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tripleo_elements import buildcache, errors, stagecache, wheelcache


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build-image cache",
        description="The build cache (default $XDG_CACHE_HOME/"
        "tripleo-image-elements/builds): a build whose inputs are all "
        "unchanged returns the recorded image at once; the stage cache "
        "(.../stages) holds installed OS trees a rebuild starts from; "
        "the wheel cache (.../wheels, or $DIB_OCC_WHEEL_CACHE_DIR) holds "
        "os-collect-config's downloaded wheels.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="every entry, most recently used first")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p = sub.add_parser("prune", help="remove old or least recently used "
                       "entries")
    p.add_argument("--max-size", metavar="SIZE", default=None,
                   help="keep the most recently used entries that fit in "
                   "SIZE (bytes, or e.g. 500M, 10G)")
    p.add_argument("--max-age", metavar="AGE", default=None,
                   help="remove entries unused for longer than AGE "
                   "(e.g. 30d, 12h, 2w)")
    p.add_argument("--all", action="store_true",
                   help="remove every entry not in use")
    return parser


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


_Lister = Callable[[Path], list[buildcache.Entry]]
_Pruner = Callable[..., list[buildcache.Entry]]


def _roots(environ: Mapping[str, str]
           ) -> list[tuple[str, Path, _Lister, _Pruner]]:
    return [("build", buildcache.cache_dir(environ), buildcache.entries,
             buildcache.prune),
            ("stage", stagecache.cache_dir(environ), buildcache.entries,
             buildcache.prune),
            ("wheels", wheelcache.cache_dir(environ), wheelcache.entries,
             wheelcache.prune)]


def run(args: argparse.Namespace, environ: Mapping[str, str],
        out: TextIO) -> int:
    roots = _roots(environ)
    if args.action == "list":
        known = [(kind, e) for kind, root, listed, _ in roots
                 for e in listed(root)]
        if args.format == "json":
            out.write(json.dumps([
                {"kind": kind, "key": e.key, "name": e.name,
                 "output": e.output, "size": e.size,
                 "created": round(e.created), "used": round(e.used)}
                for kind, e in known], indent=2) + "\n")
            return 0
        for kind, root, _, _ in roots:
            mine = [e for k, e in known if k == kind]
            out.write(f"{root}: {len(mine)} entries ({kind}), "
                      f"{sum(e.size for e in mine) / 2**20:.1f} MiB\n")
            for e in mine:
                out.write(f"{e.key[:16]}  {e.size / 2**20:9.1f} MiB  "
                          f"built {_stamp(e.created)}  used "
                          f"{_stamp(e.used)}  {kind} {e.output}\n")
        return 0
    if args.max_size is None and args.max_age is None and not args.all:
        raise errors.UsageError("cache prune: nothing to prune by",
                                "give --max-size, --max-age or --all")
    max_age = None if args.max_age is None \
        else buildcache.parse_age(args.max_age)
    max_bytes = 0 if args.all else (
        None if args.max_size is None
        else buildcache.parse_size(args.max_size))
    removed = []
    for kind, root, _, pruned in roots:
        # --max-size applies to each cache on its own.
        removed += [(kind, e) for e in pruned(
            root, max_bytes=max_bytes, max_age=max_age)]
    for kind, e in removed:
        out.write(f"removed {e.key[:16]}  {e.size / 2**20:.1f} MiB  "
                  f"{kind} {e.output}\n")
    out.write(f"{len(removed)} removed, "
              f"{sum(e.size for _, e in removed) / 2**20:.1f} MiB freed\n")
    return 0


def main(argv: Sequence[str] | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, os.environ if environ is None else environ,
                   sys.stdout)
    except errors.TieError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code
