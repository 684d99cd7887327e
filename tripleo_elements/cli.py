"""``build-image``: the command line.

This is the one place that turns exceptions into messages and exit codes:
0 success, 1 the build failed, 2 bad input (nothing was started).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tripleo_elements import dib, errors, graph, host, process
from tripleo_elements.discovery import ElementIndex, default_roots, discover

SUBCOMMANDS = ("build", "plan", "graph", "why", "list", "check")


def _common(parser: argparse.ArgumentParser, *, build: bool) -> None:
    parser.add_argument("-e", "--element", dest="elements", action="append",
                        default=[], metavar="ELEMENT",
                        help="element to include (repeatable)")
    parser.add_argument("--elements-path", action="append", default=[],
                        metavar="DIR", help="extra element directory, "
                        "searched before $ELEMENTS_PATH and the built-in "
                        "ones (repeatable)")
    parser.add_argument("-a", "--arch", default=host.host_arch(),
                        help="target architecture (default: %(default)s)")
    parser.add_argument("--no-defaults", action="store_true",
                        help="add nothing beyond the named elements (no "
                        "OS element, no vm, no base)")
    if build:
        parser.add_argument("-o", "--output", default="image",
                            help="output path without extension "
                            "(default: %(default)s)")
        parser.add_argument("-t", "--type", dest="types", default="qcow2",
                            help="comma-separated image types: "
                            + ",".join(dib.IMAGE_TYPES)
                            + " (default: %(default)s)")
        parser.add_argument("-r", "--release", default=None,
                            help="distribution release (DIB_RELEASE; "
                            f"Debian default: {dib.DEFAULT_RELEASE})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build-image",
        description="Build stateless, Heat-driven OpenStack disk images "
        "from diskimage-builder elements. Without a subcommand, builds.")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("build", help="build an image (the default)")
    _common(p, build=True)
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and stop")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="plan format with --dry-run")

    p = sub.add_parser("plan", help="print what a build would run")
    _common(p, build=True)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("graph", help="print the element dependency graph")
    _common(p, build=False)
    p.add_argument("--format", choices=("text", "dot", "svg"),
                   default="text")

    p = sub.add_parser("why", help="every chain from a requested element "
                       "to ELEMENT")
    p.add_argument("target", metavar="ELEMENT")
    _common(p, build=False)

    p = sub.add_parser("list", help="every element on the ELEMENTS_PATH")
    p.add_argument("--elements-path", action="append", default=[],
                   metavar="DIR")
    p.add_argument("--format", choices=("text", "json"), default="text")

    sub.add_parser("check", help="lint elements (see build-image check -h)",
                   add_help=False)
    return parser


def _index(args: argparse.Namespace) -> ElementIndex:
    return discover(default_roots(args.elements_path, os.environ))


def _options(args: argparse.Namespace) -> dib.BuildOptions:
    types = tuple(t for t in args.types.split(",") if t)
    return dib.BuildOptions(
        elements=tuple(args.elements), output=Path(args.output),
        types=types, release=args.release, arch=args.arch,
        elements_path=tuple(Path(p) for p in args.elements_path),
        no_defaults=args.no_defaults)


def _resolution(args: argparse.Namespace) -> graph.Resolution:
    index = _index(args)
    options = dib.BuildOptions(elements=tuple(args.elements),
                               arch=args.arch, no_defaults=args.no_defaults)
    return graph.resolve(index, dib.effective_request(options, index),
                         arch=args.arch)


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    plan = dib.plan_from_options(_options(args), _index(args), os.environ)
    if args.format == "json":
        out.write(json.dumps(plan.to_json(), indent=2, sort_keys=True)
                  + "\n")
    else:
        out.write(plan.to_text())
    return 0


def cmd_graph(args: argparse.Namespace, out: TextIO) -> int:
    resolution = _resolution(args)
    if args.format == "text":
        out.write(graph.to_text(resolution))
    elif args.format == "dot":
        out.write(graph.to_dot(resolution))
    else:
        if shutil.which("dot") is None:
            raise errors.HostToolsMissing(
                "svg output needs Graphviz's 'dot'",
                "apt-get install graphviz, or use --format dot")
        result = process.run(["dot", "-Tsvg"], input=graph.to_dot(resolution))
        out.write(result.stdout)
    return 0


def cmd_why(args: argparse.Namespace, out: TextIO) -> int:
    resolution = _resolution(args)
    chains = resolution.why(args.target)
    if not chains:
        raise errors.ElementNotFound(
            f"'{args.target}' is not part of the image "
            f"({' '.join(resolution.requested)})",
            "build-image graph shows every element of the image")
    for chain in chains:
        out.write(" -> ".join(chain) + "\n")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    index = discover(default_roots(args.elements_path, os.environ))
    if args.format == "json":
        data = {name: {"path": str(e.path),
                       "shadowed": [str(p) for p in
                                    (index.overrides[name].shadowed
                                     if name in index.overrides else ())]}
                for name, e in index.elements.items()}
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return 0
    width = max((len(n) for n in index.elements), default=0)
    for name, element in index.elements.items():
        out.write(f"{name:<{width}}  {element.path}\n")
        if name in index.overrides:
            for shadowed in index.overrides[name].shadowed:
                out.write(f"{'':<{width}}  shadows {shadowed}\n")
    return 0


class _Reporter:
    """Progress for humans (one updating line) or for CI (timestamped
    phase lines)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_phase: str | None = None

    def __call__(self, phase: str, script: str | None) -> None:
        elapsed = int(time.monotonic() - self.start)
        stamp = f"{elapsed // 60:02d}:{elapsed % 60:02d}"
        if self.tty:
            what = phase + (f"/{script}" if script else "")
            self.stream.write(f"\r\x1b[K[{stamp}] {what}")
            self.stream.flush()
        elif phase != self.last_phase:
            self.stream.write(f"{time.strftime('%H:%M:%S')} phase {phase}\n")
            self.stream.flush()
        self.last_phase = phase

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    if args.dry_run:
        return cmd_plan(args, out)
    plan = dib.plan_from_options(_options(args), _index(args), os.environ)
    for warning in plan.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    host.check_host_tools()
    out.write(f"building {plan.images[0]} from {len(plan.elements)} "
              f"elements; log: {plan.log}\n")
    out.flush()
    reporter = _Reporter(sys.stderr)
    try:
        result = dib.execute(plan, os.environ, reporter)
    finally:
        reporter.done()
    for artifact in result.artifacts:
        out.write(f"image:    {artifact.path}\n"
                  f"size:     {artifact.size / 2**20:.1f} MiB\n"
                  f"sha256:   {artifact.sha256}\n")
    out.write(f"manifest: {result.manifest}\n")
    out.write(f"time:     {result.seconds:.0f} s\n")
    for phase, seconds in result.phases:
        out.write(f"  {phase:<16} {seconds:7.1f} s\n")
    return 0


HANDLERS = {"build": cmd_build, "plan": cmd_plan, "graph": cmd_graph,
            "why": cmd_why, "list": cmd_list}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":
        from tripleo_elements import check
        return check.main(argv[1:])
    if argv and argv[0] == "publish":
        from tripleo_elements.publish import cli as publish_cli
        return publish_cli.main(argv[1:])
    if not argv or (argv[0] not in SUBCOMMANDS
                    and argv[0] not in ("-h", "--help")):
        argv.insert(0, "build")
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args, sys.stdout)
    except errors.TieError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error[interrupted]: stopped by the user\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
