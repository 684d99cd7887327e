"""The ``-f FILE`` side of ``build-image``.

:func:`extend_parser` adds ``-f FILE``, ``--only NAME`` and
``--locked`` to the subcommands that take a request, and the
``validate``, ``lock`` and ``update`` subcommands; :func:`handles`
says whether a parsed command is ours and :func:`run` carries it out.
``tripleo_elements.cli`` stays the one place that maps errors to exit
codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from tripleo_elements import graph, plan as plan_mod
from tripleo_elements.images import definitions, lock, project

#: Subcommands that exist only with an images file.
COMMANDS = ("validate", "lock", "update", "host-packages")
#: Subcommands that take ``-f FILE`` in place of ``-e ...``.
REQUEST_COMMANDS = ("build", "plan", "graph", "why", "list", "menu")


def _file_args(parser: argparse.ArgumentParser, *, only: bool = True
               ) -> None:
    parser.add_argument("-f", "--file", type=Path, metavar="FILE",
                        help="image definitions file (images.yaml)")
    if only:
        parser.add_argument("--only", action="append", default=[],
                            metavar="NAME", help="only this image of the "
                            "file (repeatable)")


def extend_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                  ) -> None:
    for name in REQUEST_COMMANDS:
        parser = sub.choices[name]
        _file_args(parser)
        if name in ("build", "plan"):
            parser.add_argument("--locked", action="store_true",
                                help="use exactly the commits of FILE.lock")
    build = sub.choices["build"]
    build.add_argument("--parallel", type=int, default=1, metavar="N",
                       help="with -f: build up to N images at once")
    build.add_argument("--keep-going", action="store_true",
                       help="with -f: build the other images after one "
                       "failed")
    p = sub.add_parser("validate", help="check an images file (nothing "
                       "is fetched or built)")
    _file_args(p, only=False)
    p = sub.add_parser("lock", help="write FILE.lock: each source's commit "
                       "and a hash of each element used")
    _file_args(p, only=False)
    p = sub.add_parser("update", help="move FILE.lock to the sources' "
                       "current commits (the named ones, or all)")
    _file_args(p, only=False)
    p.add_argument("sources", nargs="*", metavar="SOURCE")
    p = sub.add_parser("host-packages", help="the Debian packages the "
                       "file's sources need (bindep.txt) and this host "
                       "lacks, one a line (tools/setup-host installs them)")
    _file_args(p, only=False)


def handles(args: argparse.Namespace) -> bool:
    if args.command in COMMANDS or getattr(args, "file", None) is not None:
        return True
    given = [flag for flag, dest, default in (
        ("--only", "only", []), ("--locked", "locked", False),
        ("--parallel", "parallel", 1), ("--keep-going", "keep_going", False))
        if getattr(args, dest, default) != default]
    if given:
        from tripleo_elements import errors
        raise errors.UsageError(f"{given[0]} needs -f FILE",
                                f"build-image {args.command} -f images.yaml "
                                f"{given[0]} ...")
    return False


def warn(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


def _need_file(args: argparse.Namespace) -> Path:
    if args.file is None:
        from tripleo_elements import errors
        raise errors.UsageError(f"build-image {args.command} needs -f FILE",
                                f"build-image {args.command} -f images.yaml")
    path: Path = args.file
    return path


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    file = _need_file(args)
    defs = definitions.load(file)
    project.check_images(defs, (), args, os.environ)
    out.write(f"{file}: valid ({len(defs.images)} images, "
              f"{len(defs.sources)} sources)\n")
    return 0


def _prepared(args: argparse.Namespace, locked: bool = False
              ) -> tuple[project.Project, list[project.Prepared]]:
    return project.each_image(_need_file(args), args.only, args,
                              os.environ, locked=locked, warn=warn)


def image_plan(prepared: project.Prepared) -> plan_mod.BuildPlan:
    return plan_mod.plan_from_options(prepared.options, prepared.index,
                                      prepared.environ)


def plan_json(prepared: project.Prepared, plan: plan_mod.BuildPlan
              ) -> dict[str, object]:
    data = plan.to_json()
    data["name"] = prepared.image.name
    data["element_sources"] = project.provenance(prepared, plan.elements)
    data["settings_applied"] = dict(prepared.settings_applied)
    return data


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    _, items = _prepared(args, getattr(args, "locked", False))
    plans = [(p, image_plan(p)) for p in items]
    if args.format == "json":
        data = [plan_json(p, plan) for p, plan in plans]
        out.write(json.dumps(data[0] if len(args.only) == 1 else data,
                             indent=2, sort_keys=True) + "\n")
        return 0
    for prepared, plan in plans:
        out.write(f"== image {prepared.image.name}\n")
        out.write(plan.to_text())
        out.write("element sources:\n")
        origins = project.provenance(prepared, plan.elements,
                                     with_hash=False)
        width = max((len(e) for e in origins), default=0)
        for name, info in origins.items():
            where = info["source"] + (f"@{info['commit'][:12]}"
                                      if "commit" in info else "")
            line = f"  {name:<{width}}  {where}"
            if info.get("overrides"):
                line += "  (overrides " + ", ".join(info["overrides"]) + ")"
            out.write(line + "\n")
        for variable, source in prepared.settings_applied.items():
            out.write(f"setting {variable} from source '{source}'\n")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    proj, items = _prepared(args)
    if not items:
        return 0
    prepared = items[0]
    names = list(prepared.index.elements)
    origins = project.provenance(prepared, names, with_hash=False)
    if args.format == "json":
        out.write(json.dumps(origins, indent=2, sort_keys=True) + "\n")
        return 0
    width = max((len(n) for n in names), default=0)
    for name, info in origins.items():
        where = info["source"] + (f"@{info['commit'][:12]}"
                                  if "commit" in info else "")
        out.write(f"{name:<{width}}  {where:<28}  {info['path']}\n")
        for shadowed in info.get("overrides", ()):
            out.write(f"{'':<{width}}  overrides {shadowed}\n")
    return 0


def cmd_graph(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements import cli
    _, items = _prepared(args)
    for prepared in items:
        if len(items) > 1:
            out.write(f"# image {prepared.image.name}\n")
        resolution = project.resolution(prepared)
        if args.format == "dot":
            out.write(graph.to_dot(resolution))
        elif args.format == "text":
            out.write(graph.to_text(resolution))
        else:
            return cli.cmd_graph(_as_plain(args, prepared), out)
    return 0


def _as_plain(args: argparse.Namespace, prepared: project.Prepared
              ) -> argparse.Namespace:
    data = dict(vars(args))
    data.update(file=None, elements=list(prepared.options.elements),
                no_defaults=prepared.options.no_defaults,
                arch=prepared.options.arch,
                elements_path=[str(p) for p in (
                    *prepared.user_roots,
                    *(s.elements_dir for s in prepared.sources))])
    return argparse.Namespace(**data)


def cmd_why(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements import cli
    _, items = _prepared(args)
    code = 0
    for prepared in items:
        if len(items) > 1:
            out.write(f"# image {prepared.image.name}\n")
        code = max(code, cli.cmd_why(_as_plain(args, prepared), out))
    return code


def cmd_menu(args: argparse.Namespace, out: TextIO) -> int:
    """The menu of one image of the file (``--only NAME`` when it holds
    several)."""
    from tripleo_elements.menu import command as menu_command
    _, items = _prepared(args)
    if len(items) != 1:
        from tripleo_elements import errors
        names = ", ".join(p.image.name for p in items)
        raise errors.UsageError(
            f"build-image menu -f: {len(items)} images ({names}); the menu "
            "is per image", "name one with --only NAME")
    menu = plan_mod.menu_of(project.resolution(items[0]))
    return menu_command.show_menu(menu, args, out)


def cmd_lock(args: argparse.Namespace, out: TextIO,
             fresh: list[str] | None = None) -> int:
    file = _need_file(args)
    proj = project.load_project(file, os.environ, fresh=fresh)
    for warning in proj.warnings:
        warn(warning)
    args.only = []
    items = [project.prepare(proj, i, args, os.environ)
             for i in proj.definitions.images]
    entries = project.lock_entries(proj, items)
    path = lock.write(file, entries)
    for name, entry in entries.items():
        commit = entry.get("commit", "(path)")
        out.write(f"{name}: {commit} ({len(entry['elements'])} elements "
                  "used)\n")
    out.write(f"wrote {path}\n")
    return 0


def cmd_update(args: argparse.Namespace, out: TextIO) -> int:
    return cmd_lock(args, out, fresh=list(args.sources))


def cmd_host_packages(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements.images import sources
    proj = project.load_project(_need_file(args), os.environ)
    for warning in proj.warnings:
        warn(warning)
    missing = sources.missing_packages(proj.sources)
    for package in sorted({p for ps in missing.values() for p in ps}):
        out.write(package + "\n")
    return 0


def cmd_build(args: argparse.Namespace, out: TextIO) -> int:
    from tripleo_elements.images import runner
    if args.dry_run:
        return cmd_plan(args, out)
    return runner.run(args, out)


HANDLERS = {"validate": cmd_validate, "lock": cmd_lock,
            "update": cmd_update, "host-packages": cmd_host_packages,
            "plan": cmd_plan, "list": cmd_list,
            "graph": cmd_graph, "why": cmd_why, "build": cmd_build,
            "menu": cmd_menu}


def run(args: argparse.Namespace, out: TextIO) -> int:
    return HANDLERS[args.command](args, out)
