"""From an images file to one plan per image.

The checked :class:`~tripleo_elements.images.definitions.Definitions`,
the command line's options and the host environment flow in; per image
a :class:`Prepared` flows out: its
:class:`~tripleo_elements.options.BuildOptions` (made by
:func:`tripleo_elements.options.from_args`, the one argv -> options
path), the element index over ``--elements-path``, the sources,
this project's and diskimage-builder's elements (in that precedence),
and the build environment with the sources' settings applied.
:func:`provenance` says, per element of a plan, which source and commit
it comes from, its content hash and what it overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tripleo_elements import discovery, errors, graph, options
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.images import definitions, gitcache, lock, sources
from tripleo_elements.images.definitions import Definitions, ImageSpec
from tripleo_elements.images.sources import Source


@dataclasses.dataclass(frozen=True)
class Prepared:
    image: ImageSpec
    options: options.BuildOptions
    index: ElementIndex
    environ: Mapping[str, str]
    #: Variable -> the source whose ``settings`` set it.
    settings_applied: Mapping[str, str]
    sources: tuple[Source, ...]
    user_roots: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class Project:
    definitions: Definitions
    sources: tuple[Source, ...]
    warnings: tuple[str, ...]


def load_project(file: Path, environ: Mapping[str, str], *,
                 locked: bool = False, fresh: Sequence[str] | None = None,
                 defs: Definitions | None = None) -> Project:
    """Check the file, then fetch its sources.  ``locked``: exactly the
    commits of ``FILE.lock``; ``fresh`` (update): re-resolve these
    sources (all when empty), keep the others' locked commits."""
    if defs is None:
        defs = definitions.load(file)
    warnings: list[str] = []
    cache = gitcache.GitCache(gitcache.cache_dir(environ))
    locked_map = None
    refresh: frozenset[str] = frozenset()
    if fresh is not None:
        known = {s.name for s in defs.sources}
        unknown = [n for n in fresh if n not in known]
        if unknown:
            raise errors.UsageError(
                f"{file}: no source named {', '.join(unknown)}",
                "sources: " + ", ".join(sorted(known)))
        try:
            locked_map = lock.locked_sources(lock.read(file))
        except errors.LockStale:
            locked_map = {}
        refresh = frozenset(fresh or known) | (known - set(locked_map))
    elif locked:
        locked_map = lock.locked_sources(lock.read(file))
    found = sources.resolve(defs.sources, cache, locked=locked_map,
                            fresh=refresh, warn=warnings.append)
    return Project(defs, found, tuple(warnings))


def _cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The build options given on the command line (differing from the
    defaults): they apply to every image of the file."""
    defaults = options.parser().parse_args([])
    out = {}
    for setting in options.SETTINGS:
        if setting.dest == "elements" or not hasattr(args, setting.dest):
            continue
        value = getattr(args, setting.dest)
        if value != getattr(defaults, setting.dest, None):
            out[setting.dest] = value
    return out


def image_options(image: ImageSpec, args: argparse.Namespace
                  ) -> options.BuildOptions:
    if getattr(args, "elements", None):
        raise errors.UsageError(
            "-e and -f do not mix: the images file names the elements",
            "add the elements to the image in the file")
    namespace = options.parser().parse_args(definitions.image_argv(image))
    for dest, value in _cli_overrides(args).items():
        setattr(namespace, dest, value)
    return options.from_args(namespace)


def prepare(project: Project, image: ImageSpec, args: argparse.Namespace,
            environ: Mapping[str, str]) -> Prepared:
    opts = image_options(image, args)
    user = tuple(Path(os.path.abspath(p)) for p in opts.elements_path)
    roots = discovery.default_roots(
        [*user, *(s.elements_dir for s in project.sources)], {})
    index = discovery.discover(roots)
    env, applied = sources.apply_settings(environ, image.environment,
                                          project.sources)
    return Prepared(image, opts, index, env, applied, project.sources,
                    user)


def resolution(prepared: Prepared) -> graph.Resolution:
    return graph.resolve(
        prepared.index,
        plan_mod.effective_request(prepared.options, prepared.index),
        arch=prepared.options.arch)


def _origin(path: Path, user_roots: Sequence[Path],
            sources_: Sequence[Source]) -> tuple[str, Source | None]:
    real = Path(os.path.realpath(path))
    for root in user_roots:
        if real.is_relative_to(os.path.realpath(root)):
            return "elements-path", None
    for source in sources_:
        if real.is_relative_to(source.elements_dir):
            return source.name, source
    if real.is_relative_to(os.path.realpath(discovery.our_elements_dir())):
        return "tripleo-image-elements", None
    if real.is_relative_to(os.path.realpath(discovery.dib_elements_dir())):
        return "diskimage-builder", None
    return "ELEMENTS_PATH", None


def provenance_of(index: ElementIndex, elements: Sequence[str], *,
                  user_roots: Sequence[Path] = (),
                  sources_: Sequence[Source] = (),
                  with_hash: bool = True) -> dict[str, dict[str, Any]]:
    """Element -> {source, commit, path, hash, overrides}, for any
    element index (a plain ``-e`` build has no sources)."""
    out: dict[str, dict[str, Any]] = {}
    for name in elements:
        path = index[name].path
        label, source = _origin(path, user_roots, sources_)
        entry: dict[str, Any] = {"source": label, "path": str(path)}
        if source is not None and source.commit:
            entry["commit"] = source.commit
        if with_hash:
            entry["hash"] = sources.content_hash(path)
        override = index.overrides.get(name)
        if override is not None:
            entry["overrides"] = [_origin(p, user_roots, sources_)[0]
                                  for p in override.shadowed]
        out[name] = entry
    return out


def provenance(prepared: Prepared, elements: Sequence[str],
               with_hash: bool = True) -> dict[str, dict[str, Any]]:
    """Element -> {source, commit, path, hash, overrides}."""
    return provenance_of(prepared.index, elements,
                         user_roots=prepared.user_roots,
                         sources_=prepared.sources, with_hash=with_hash)


def lock_entries(project: Project, prepared: Sequence[Prepared]
                 ) -> dict[str, dict[str, Any]]:
    """The lock file's ``sources`` for these images."""
    entries: dict[str, dict[str, Any]] = {}
    for source in project.sources:
        entry: dict[str, Any] = {"origin": source.origin, "elements": {}}
        if source.commit:
            entry.update(commit=source.commit, ref=source.ref)
        entries[source.name] = entry
    for item in prepared:
        for name, info in provenance(item, resolution(item).elements
                                     ).items():
            if info["source"] in entries:
                entries[info["source"]]["elements"][name] = info["hash"]
    return entries


def each_image(file: Path, only: Sequence[str], args: argparse.Namespace,
               environ: Mapping[str, str], *, locked: bool = False,
               warn: Callable[[str], None]) -> tuple[Project,
                                                     list[Prepared]]:
    """Load, fetch, and prepare the selected images (the common start of
    every subcommand given ``-f``)."""
    defs = definitions.load(file)
    check_images(defs, only, args, environ)
    project = load_project(file, environ, locked=locked, defs=defs)
    for warning in project.warnings:
        warn(warning)
    images = project.definitions.select(only)
    return project, [prepare(project, i, args, environ) for i in images]


def publish_targets(image: ImageSpec, environ: Mapping[str, str]
                    ) -> list[Any]:
    """The image's ``publish:`` list as publish targets (each a URL, a
    name from the publishers file, or a ``{provider: ...}`` mapping)."""
    from tripleo_elements.publish import target
    found = []
    for i, item in enumerate(image.publish):
        if isinstance(item, str):
            found.append(target.resolve(
                item, target.publishers_file(None, environ)))
        else:
            found.append(target.from_mapping(
                f"{image.name}.publish[{i}]", item))
    return found


def check_images(defs: Definitions, only: Sequence[str],
                 args: argparse.Namespace | None,
                 environ: Mapping[str, str]) -> None:
    """What can be checked without fetching: ``--only`` names, each
    image's options (as ``build-image build`` would check them), and its
    publish targets (provider known, settings valid)."""
    from tripleo_elements.publish import core
    blank = argparse.Namespace() if args is None else args
    for image in defs.select(only):
        try:
            image_options(image, blank)
        except errors.UsageError as exc:
            raise errors.DefinitionError(
                f"{defs.path}: image '{image.name}': {exc.message}",
                exc.hint) from None
        for tgt in publish_targets(image, environ):
            core.check_target(tgt)
