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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tripleo_elements import (build, buildcache, errors, graph, host,
                              options, process, stagecache)
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import ElementIndex, default_roots, discover
from tripleo_elements.images import cli as images_cli

SUBCOMMANDS = ("build", "plan", "graph", "why", "list", "check", "publish",
               "validate", "lock", "update", "host-packages",
               "menu", "instance-config", "validate-metadata", "cache")


def _version() -> str:
    from importlib import metadata
    versions = []
    for dist in ("tripleo-image-elements", "diskimage-builder"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    return ", ".join(versions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build-image",
        description="Build stateless, Heat-driven OpenStack disk images "
        "from diskimage-builder elements. Without a subcommand, builds "
        "(build-image --help shows the build options).")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser(
        "build", help="build an image (the default)",
        description="Build an image with disk-image-create from the "
        "resolved elements. " + options.DEFAULTS_TEXT + " Other "
        "subcommands: " + ", ".join(SUBCOMMANDS[1:]) + " (build-image "
        "SUBCOMMAND --help).",
        usage="build-image [build] [-e ELEMENT]... [-o OUTPUT] "
        "[-t TYPES] [options]")
    options.add_arguments(p, build=True)
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and stop")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="plan format with --dry-run")
    p.add_argument("--no-cache", action="store_true",
                   help="build afresh: neither use nor fill the build cache")
    p.add_argument("--no-stage-cache", action="store_true",
                   help="neither use nor fill the stage cache (the "
                   "installed OS tree a rebuild starts from); same as "
                   "TIE_STAGE_CACHE=0")

    p = sub.add_parser("plan", help="print what a build would run")
    options.add_arguments(p, build=True)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--no-cache", action="store_true",
                   help="do not look the plan up in the build cache")
    p.add_argument("--no-stage-cache", action="store_true",
                   help="report the stage cache as off (TIE_STAGE_CACHE=0)")

    p = sub.add_parser("graph", help="print the element dependency graph")
    options.add_arguments(p, build=False)
    p.add_argument("--format", choices=("text", "dot", "svg"),
                   default="text")

    p = sub.add_parser("why", help="the shortest chains from a requested "
                       "element to ELEMENT, and how many more there are")
    p.add_argument("target", metavar="ELEMENT")
    options.add_arguments(p, build=False)

    p = sub.add_parser("list", help="every element on the ELEMENTS_PATH")
    p.add_argument("--elements-path", action="append", default=[],
                   metavar="DIR")
    p.add_argument("--format", choices=("text", "json"), default="text")

    from tripleo_elements.menu import command as menu_command
    p = sub.add_parser("menu", help="the features and variables of an "
                       "image (its global menu; --project adds states)")
    options.add_arguments(p, build=False)
    menu_command.add_menu_arguments(p)
    p = sub.add_parser("instance-config", help="the metadata document that "
                       "turns an instance's features on and sets variables")
    menu_command.add_instance_arguments(p)
    p = sub.add_parser("validate-metadata", help="check a menu metadata "
                       "document written by hand")
    menu_command.add_validate_arguments(p)

    sub.add_parser("check", help="lint elements (see build-image check -h)",
                   add_help=False)
    sub.add_parser("publish", help="upload a built image to a directory, "
                   "Glance, Swift or S3 (see build-image publish -h)",
                   add_help=False)
    sub.add_parser("cache", help="list or prune the build cache (see "
                   "build-image cache -h)", add_help=False)
    images_cli.extend_parser(sub)
    return parser


def _index(args: argparse.Namespace) -> ElementIndex:
    return discover(default_roots(args.elements_path, os.environ))


def _resolution(args: argparse.Namespace) -> graph.Resolution:
    index = _index(args)
    opts = options.from_args(args)
    return graph.resolve(index, plan_mod.effective_request(opts, index),
                         arch=opts.arch)


def _environ(args: argparse.Namespace) -> Mapping[str, str]:
    """The host environment, with the stage cache off if asked."""
    return stagecache.environ_for(
        os.environ, getattr(args, "no_stage_cache", False))


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    plan = plan_mod.plan_from_options(options.from_args(args), _index(args),
                                      os.environ)
    cached = None if getattr(args, "no_cache", False) else \
        buildcache.describe(plan, _environ(args))
    if args.format == "json":
        data = plan.to_json()
        if cached is not None:
            data["build_cache"] = cached
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        out.write(plan.to_text())
        if cached is not None:
            out.write(buildcache.describe_text(cached))
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
    answer = resolution.why_summary(args.target)
    chains = answer.chains
    if not chains:
        raise errors.ElementNotFound(
            f"'{args.target}' is not part of the image "
            f"({' '.join(resolution.requested)})",
            "build-image graph shows every element of the image")
    for chain in chains:
        out.write(" -> ".join(chain) + "\n")
    if answer.more:
        out.write(f"... and {'' if answer.exact else 'at least '}"
                  f"{answer.more} more chains (the shortest are shown)\n")
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


def _sbom_path(plan: plan_mod.BuildPlan) -> Path:
    return plan.output.with_name(plan.output.name + ".spdx.json")


def _record_provenance(plan: plan_mod.BuildPlan, opts: options.BuildOptions,
                       index: ElementIndex,
                       result: build.BuildResult) -> None:
    """The manifest's provenance and the SPDX SBOM, as for ``-f`` builds
    (elements come from this project, DIB or ``--elements-path``)."""
    from tripleo_elements.images import project, sbom
    main = result.artifacts[0] if result.artifacts else None
    sbom.record(result.manifest, plan.output, plan.output.name,
                project.provenance_of(
                    index, plan.elements,
                    user_roots=opts.elements_path),
                {}, opts.to_json(), main.path if main else None,
                main.sha256 if main else None)


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    if args.dry_run:
        return cmd_plan(args, out)
    opts = options.from_args(args)
    index = _index(args)
    plan = plan_mod.plan_from_options(opts, index, os.environ)
    for warning in plan.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    build.check_writable(plan)
    host.check_host_tools()
    out.write(f"building {plan.output} from {len(plan.elements)} "
              f"elements; log: {plan.log}\n")
    out.flush()
    reporter = _Reporter(sys.stderr)
    try:
        result = buildcache.execute(plan, _environ(args), reporter,
                                    use_cache=not args.no_cache)
    finally:
        reporter.done()
    _record_provenance(plan, opts, index, result)
    for notice in result.notices:
        sys.stderr.write(f"notice: {notice}\n")
    for artifact in result.artifacts:
        out.write(f"output:   {artifact.path}\n"
                  f"size:     {artifact.size / 2**20:.1f} MiB\n"
                  f"sha256:   {artifact.sha256}\n")
    for directory in result.directories:
        out.write(f"output:   {directory}/\n")
    out.write(f"manifest: {result.manifest}\n")
    out.write(f"sbom:     {_sbom_path(plan)}\n")
    out.write(f"menu:     {plan.menu_output}\n")
    out.write(f"time:     {result.seconds:.0f} s\n")
    for phase, seconds in result.phases:
        out.write(f"  {phase:<16} {seconds:7.1f} s\n")
    return 0


def cmd_menu(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements.menu import command as menu_command
    from tripleo_elements.menu import model as menu_model
    if args.menu_from is not None:
        menu = menu_model.load_json(args.menu_from)
    else:
        menu = plan_mod.menu_of(_resolution(args))
    return menu_command.show_menu(menu, args, out)


def _menu_handler(name: str
                  ) -> Callable[[argparse.Namespace, TextIO], int]:
    def handler(args: argparse.Namespace, out: TextIO) -> int:
        from tripleo_elements.menu import command as menu_command
        return int(getattr(menu_command, name)(args, out))
    return handler


HANDLERS = {"build": cmd_build, "plan": cmd_plan, "graph": cmd_graph,
            "why": cmd_why, "list": cmd_list, "menu": cmd_menu,
            "instance-config": _menu_handler("instance_config"),
            "validate-metadata": _menu_handler("validate_metadata")}


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "check":
        from tripleo_elements import check
        return check.main(argv[1:])
    if argv and argv[0] == "cache":
        from tripleo_elements import buildcache_cli
        return buildcache_cli.main(argv[1:])
    if argv and argv[0] == "publish":
        from tripleo_elements.publish import cli as publish_cli
        return publish_cli.main(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        # No subcommand means build: show what a build takes.
        argv = ["build", "--help"]
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] != "--version"):
        argv.insert(0, "build")
    try:
        args = build_parser().parse_args(argv)
        if images_cli.handles(args):
            return images_cli.run(args, sys.stdout)
        return HANDLERS[args.command](args, sys.stdout)
    except errors.TieError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        # Flush here, not at interpreter exit, so a reader that went away
        # is seen below.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        sys.stderr.write("error[interrupted]: stopped by the user\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``build-image list | head``): not an
        # error of ours.  Point stdout at /dev/null so the interpreter's
        # final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
