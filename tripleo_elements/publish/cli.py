"""``build-image publish``: the command-line pieces.

``cli.main`` dispatches ``publish`` here (``publish.cli.main(argv[1:])``);
:func:`add_arguments` and :func:`run` let a caller build its own parser.
Errors are raised as TieError and turned into exit codes by :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tripleo_elements import errors
from tripleo_elements.publish import api, core, secrets, target
from tripleo_elements.publish.progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", metavar="IMAGE",
                        help="the image file (its .sha256 and "
                        ".manifest.json beside it are used when present)")
    parser.add_argument("--to", required=True, metavar="TARGET",
                        help="a publisher name from the publishers file, or "
                        "s3://bucket/prefix, swift://container/prefix, "
                        "glance://cloud, dir:///path")
    parser.add_argument("--name", default=None,
                        help="image name (default: the file name without "
                        "its extension)")
    parser.add_argument("--publishers", default=None, metavar="FILE",
                        help="publishers file (default: $TIE_PUBLISHERS, "
                        "else $XDG_CONFIG_HOME/tripleo-image-elements/"
                        "publishers.yaml)")
    parser.add_argument("--maintenance", choices=("on", "off", "status"),
                        default=None, help="put the target in or out of "
                        "maintenance mode (no IMAGE), or show it")
    parser.add_argument("--reason", default="",
                        help="why, with --maintenance on")
    parser.add_argument("--format", choices=("text", "json"),
                        default="text", help="result format")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build-image publish",
        description="Publish a built image to a directory, Glance, Swift "
        "or S3; idempotent, verified, 'latest' moved last.")
    add_arguments(parser)
    return parser


def _maintenance(args: argparse.Namespace, store_env: Mapping[str, str],
                 out: TextIO) -> int:
    where = target.publishers_file(args.publishers, store_env)
    tgt = target.resolve(args.to, where)
    store = core.open_store(tgt, store_env)
    with secrets.redacting(store_env):
        if args.maintenance == "on":
            store.lifecycle.enter_maintenance(args.reason or "maintenance")
        elif args.maintenance == "off":
            store.lifecycle.cancel_maintenance()
        reason = store.lifecycle.maintenance()
    state = f"in maintenance ({reason})" if reason else "accepting uploads"
    out.write(f"{store.describe}: {state}\n")
    return 0


def publish_image(image: Path, tgt: target.Target, env: Mapping[str, str],
                  err: TextIO, name: str | None = None) -> api.Location:
    """Publish one image file to one target, progress on ``err``.

    The one entry point for callers: ``build-image publish`` and, after a
    build, each item of an image definition's ``publish:`` list
    (``target.from_mapping(label, item)``; check them all up front with
    ``core.check_target``)."""
    # Target and settings first: a bad one is reported before the image
    # (possibly gigabytes) is even hashed.
    store = core.open_store(tgt, env)
    artifact = core.load_artifact(image, name)
    progress = Progress(err, artifact.size,
                        f"{artifact.name} -> {store.describe}")
    try:
        return core.publish(artifact, store, progress, env)
    finally:
        progress.finish()


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None,
        out: TextIO | None = None, err: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    out = out or sys.stdout
    err = err or sys.stderr
    if args.maintenance:
        if args.image:
            raise errors.UsageError("--maintenance takes no IMAGE",
                                    "run the publish separately")
        return _maintenance(args, env, out)
    if not args.image:
        raise errors.UsageError("IMAGE is required",
                                "build-image publish IMAGE --to TARGET")
    where = target.publishers_file(args.publishers, env)
    location = publish_image(Path(args.image), target.resolve(args.to, where),
                             env, err, args.name)
    if args.format == "json":
        data = {k: v for k, v in location.__dict__.items() if k != "extra"}
        data["extra"] = dict(location.extra)
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return 0
    what = "uploaded" if location.uploaded else "already there (same sha256)"
    out.write(f"{args.name or Path(args.image).stem}: {what}: "
              f"{location.url}\n")
    if location.latest:
        out.write(f"latest: {location.latest}\n")
    if location.download_url:
        out.write(f"download: {location.download_url}\n")
    return 0


def main(argv: Sequence[str] | None = None,
         env: Mapping[str, str] | None = None) -> int:
    """Parse, run, and map errors to exit codes (1 failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    try:
        return run(args, env)
    except errors.TieError as exc:
        sys.stderr.write(secrets.redact(exc.render(), env) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error[interrupted]: publish interrupted; nothing "
                         "is visible under the final name\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
