"""``build-image menu``, ``instance-config`` and ``validate-metadata``.

In: parsed arguments and the global menu (``cli`` resolves a request to
one; ``--from`` / ``--menu`` read a ``NAME.menu.json``).  Out: text on
the given stream; problems raise :class:`~tripleo_elements.errors.TieError`
subclasses (``cli.main`` prints them, one line each).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from tripleo_elements import errors
from tripleo_elements.menu import model, policy, render


def add_menu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="menu_from", type=Path, metavar="FILE",
        help="a built image's NAME.menu.json instead of a request")
    parser.add_argument("--project", type=Path, metavar="FILE",
                        help="project policy file: adds each entry's state")
    parser.add_argument("--format", choices=render.FORMATS, default="text")


def add_instance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--menu", type=Path, required=True, metavar="FILE",
                        help="the image's NAME.menu.json")
    parser.add_argument("--project", type=Path, required=True,
                        metavar="FILE", help="project policy file (YAML)")
    parser.add_argument("--enable", action="append", default=[],
                        metavar="FEATURE")
    parser.add_argument("--disable", action="append", default=[],
                        metavar="FEATURE")
    parser.add_argument("--set", dest="assignments", action="append",
                        default=[], metavar="VAR=VALUE",
                        help="a list is comma-separated or a JSON list")
    parser.add_argument("--file", dest="selection", type=Path,
                        metavar="SELECTION.yaml",
                        help="enable/disable/set as YAML")


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--menu", type=Path, required=True, metavar="FILE")
    parser.add_argument("--project", type=Path, metavar="FILE",
                        help="also check the document's project part "
                        "against this file")
    parser.add_argument("document", type=Path, metavar="FILE",
                        help="the metadata document (JSON or YAML)")


def show_menu(menu: model.Menu, args: argparse.Namespace,
              out: TextIO) -> int:
    project = (policy.load_project(menu, args.project)
               if args.project is not None else None)
    out.write(render.render(policy.project_menu(menu, project),
                            args.format))
    return 0


def instance_config(args: argparse.Namespace, out: TextIO) -> int:
    menu = model.load_json(args.menu)
    project = policy.load_project(menu, args.project)
    chosen = policy.selection(menu, file=args.selection, enable=args.enable,
                              disable=args.disable,
                              assignments=args.assignments)
    doc = policy.metadata(menu, project, chosen)
    out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return 0


def _load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise errors.from_os_error(path, exc, "metadata document")
    try:
        return json.loads(text)
    except ValueError:
        from tripleo_elements.check import formats
        try:
            return formats.yaml_load(text)
        except Exception as exc:  # any parser failure is a broken file
            raise errors.MenuError(
                f"{path}: neither JSON nor YAML: {formats.first_line(exc)}",
                "give the metadata document as JSON")


def validate_metadata(args: argparse.Namespace, out: TextIO) -> int:
    menu = model.load_json(args.menu)
    project = (policy.load_project(menu, args.project)
               if args.project is not None else None)
    problems = policy.metadata_problems(
        menu, _load_document(args.document), project)
    if problems:
        raise errors.MenuRefused(
            [f"{args.document}: {p}" for p in problems],
            "build-image instance-config writes a valid document")
    out.write(f"{args.document}: ok\n")
    return 0
