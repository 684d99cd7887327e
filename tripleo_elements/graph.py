"""Resolve a request into the set of elements of an image.

Same inputs, same element set as diskimage-builder's resolver wherever
DIB's answer is well defined, with three differences:

* the result is deterministic (independent of hash seed and request order):
  a name that a selected element provides is never expanded as an element
  of its own, whatever order things are seen in;
* every error names the element chain that led to it and the files
  involved, with a hint;
* the block-device choice DIB makes in bash for ``vm`` is part of the
  graph (a ``default`` edge), so ``graph`` and ``why`` show it.

The graph is a :class:`networkx.DiGraph` whose nodes are element names and
virtual names; edges carry ``kind``: ``depends`` (element-deps),
``provides`` (virtual name -> providing element) or ``default`` (a default
provider chosen for a virtual name nobody selected provides).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tripleo_elements import errors
from tripleo_elements.discovery import ElementIndex
from tripleo_elements.element import OPERATING_SYSTEM, Element

if TYPE_CHECKING:
    import networkx as nx

DEPENDS = "depends"
PROVIDES = "provides"
DEFAULT = "default"


def _block_device_default(arch: str) -> str:
    # DIB's disk-image-create adds these for "vm" when the request names no
    # block-device-* element (common-functions: _arg_defaults_hack).
    return "block-device-efi" if arch in ("arm64", "aarch64") \
        else "block-device-mbr"


#: Virtual name -> function(arch) giving the element chosen when something
#: needs the name and nothing selected provides it.
DEFAULT_PROVIDERS: Mapping[str, Callable[[str], str]] = {
    "block-device": _block_device_default,
}


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a request against an :class:`ElementIndex`.

    ``elements`` is sorted; ``sources`` maps each to its directory;
    ``virtual`` maps each provided name in play to its provider;
    ``defaults`` lists ``(virtual, chosen element)`` pairs added by
    :data:`DEFAULT_PROVIDERS`.
    """

    requested: tuple[str, ...]
    elements: tuple[str, ...]
    sources: Mapping[str, Path]
    virtual: Mapping[str, str]
    defaults: tuple[tuple[str, str], ...]
    depends: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict, repr=False)

    @functools.cached_property
    def graph(self) -> "nx.DiGraph[str]":
        """The resolved graph (built on first use: networkx is only
        imported by the commands that query the graph)."""
        return _build_graph(self)

    def cycles(self) -> list[list[str]]:
        """Dependency cycles among the resolved elements (sorted)."""
        import networkx as nx
        found = []
        for cycle in nx.simple_cycles(self.graph):
            start = cycle.index(min(cycle))
            found.append(cycle[start:] + cycle[:start])
        return sorted(found)

    def why(self, target: str, limit: int = 10) -> list[list[str]]:
        """The shortest chains from a requested element to ``target``
        (at most ``limit``; see :meth:`why_summary` for how many exist)."""
        return [list(c) for c in self.why_summary(target, limit).chains]

    def why_summary(self, target: str, limit: int = 10) -> "WhyAnswer":
        """The ``limit`` shortest chains from a requested element to
        ``target``, and how many chains there are in all.

        A chain never visits a name twice.  Polynomial in the size of the
        graph: chains are enumerated shortest first (Yen's algorithm) and
        counted, not listed, by a pass over the graph in topological
        order.  Where a cycle lies between the requested elements and
        ``target`` the count is a lower bound (counting simple paths
        through cycles is intractable) and ``exact`` is false.
        """
        return _why(self, target, limit)


@dataclasses.dataclass(frozen=True)
class WhyAnswer:
    """Chains from requested elements to ``target``, shortest first.

    ``total`` counts every chain (a lower bound when ``exact`` is false);
    ``more`` is how many were left out of ``chains``.
    """

    target: str
    chains: tuple[tuple[str, ...], ...]
    total: int
    exact: bool = True

    @property
    def more(self) -> int:
        return max(0, self.total - len(self.chains))


def _why(resolution: Resolution, target: str, limit: int) -> WhyAnswer:
    import networkx as nx
    graph = resolution.graph
    roots = [r for r in resolution.requested if r in graph]
    if target not in graph or not roots:
        return WhyAnswer(target, (), 0)
    # One extra source node in front of every requested element turns
    # "chains from any requested element" into paths from one node.
    source = object()
    relevant = nx.ancestors(graph, target) | {target}
    sub: nx.DiGraph[object] = nx.DiGraph(graph.subgraph(relevant))
    sub.add_node(source)
    for root in roots:
        if root in relevant:
            sub.add_edge(source, root)
    if sub.out_degree(source) == 0:
        return WhyAnswer(target, (), 0)
    total, exact = _count_paths(sub, source, target)
    chains: list[tuple[str, ...]] = []
    if limit > 0:
        for path in nx.shortest_simple_paths(sub, source, target):
            chains.append(tuple(str(name) for name in path[1:]))
            if len(chains) >= limit:
                break
    chains.sort(key=lambda c: (len(c), c))
    return WhyAnswer(target, tuple(chains), max(total, len(chains)), exact)


def _count_paths(graph: "nx.DiGraph[object]", source: object, target: str
                 ) -> tuple[int, bool]:
    """Paths from ``source`` to ``target``: exact on a DAG; on a graph
    with cycles, the paths of its condensation counted once per edge
    between components (each is at least one distinct simple path)."""
    import networkx as nx
    exact = nx.is_directed_acyclic_graph(graph)
    dag: nx.DiGraph[Any]
    start: Any
    end: Any
    if exact:
        dag, start, end = graph, source, target
        weight: dict[tuple[Any, Any], int] = {e: 1 for e in graph.edges}
    else:
        dag = cast("nx.DiGraph[Any]", nx.condensation(graph))
        member = dag.graph["mapping"]
        start, end = member[source], member[target]
        weight = {}
        for u, v in graph.edges:
            a, b = member[u], member[v]
            if a != b:
                weight[a, b] = weight.get((a, b), 0) + 1
    count: dict[Any, int] = {start: 1}
    for node in nx.topological_sort(dag):
        here = count.get(node, 0)
        if not here:
            continue
        for succ in dag.successors(node):
            count[succ] = count.get(succ, 0) + here * weight[node, succ]
    return count.get(end, 0), exact


def walk(roots: Iterable[str],
         successors: Callable[[str], Iterable[str]]) -> dict[str, str | None]:
    """Breadth-first walk from ``roots``: every name reached, mapped to
    the name it was first reached from (``None`` for a root).

    The one dependency-closure walk of the project; cycles are fine.
    Deterministic: roots in the order given, successors in the order
    ``successors`` returns them.  :func:`chain_to` turns the result into
    the chain that led to a name.
    """
    parents: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for root in roots:
        if root not in parents:
            parents[root] = None
            queue.append(root)
    while queue:
        name = queue.popleft()
        for step in successors(name):
            if step not in parents:
                parents[step] = name
                queue.append(step)
    return parents


def closure(index: ElementIndex, roots: Iterable[str], *,
            providers: Mapping[str, Sequence[str]] | None = None,
            elements: Mapping[str, Element] | None = None
            ) -> dict[str, str | None]:
    """The ``element-deps`` closure of ``roots``, as :func:`walk` gives it.

    Names are looked up in ``elements`` first (e.g. elements being
    checked that are not on the path), then in ``index``; a name found in
    neither is reached but not followed.  With ``providers`` (virtual
    name -> providing elements, as :meth:`ElementIndex.providers` gives)
    every provider of a dependency is followed as well, so the walk
    over-approximates any resolution; without it only the names written
    in ``element-deps`` are followed.
    """
    extra = elements or {}

    def successors(name: str) -> Iterable[str]:
        element = extra.get(name) or index.elements.get(name)
        if element is None:
            return ()
        if providers is None:
            return element.depends
        return [step for dep in element.depends
                for step in (dep, *providers.get(dep, ()))]

    return walk(roots, successors)


def chain_to(parents: Mapping[str, str | None], name: str) -> list[str]:
    """The chain of names from a root (parent None) down to ``name``,
    following ``parents`` (child -> parent); stops at a cycle."""
    chain = [name]
    seen = {name}
    while parents.get(chain[-1]) is not None:
        parent = parents[chain[-1]]
        assert parent is not None
        if parent in seen:
            break
        seen.add(parent)
        chain.append(parent)
    return list(reversed(chain))


def _arrow(chain: Sequence[str]) -> str:
    return " -> ".join(chain)


def resolve(index: ElementIndex, requested: Sequence[str],
            arch: str = "amd64") -> Resolution:
    """Resolve ``requested`` element names into the image's element set.

    Raises :class:`errors.ElementNotFound`, :class:`errors.ProvidedTwice`,
    :class:`errors.RequestedButProvided` or
    :class:`errors.MissingOperatingSystem`.
    """
    request = tuple(dict.fromkeys(requested))
    if not request:
        raise errors.UsageError("no elements requested",
                                "name at least one element with -e")
    all_provides = index.providers()
    excluded: set[str] = set()
    # A real element that some selected element also provides is dropped
    # and the resolution redone without it, until nothing changes: the
    # answer then does not depend on the order names were seen in.
    while True:
        state = _expand(index, request, arch, all_provides, excluded)
        selected, provided_by = state[0], state[1]
        shadowed = {n for n in selected if n in provided_by
                    and n not in request}
        if not shadowed - excluded:
            break
        excluded |= shadowed
    selected, provided_by, parents, defaults = state
    _check_request(index, request, selected, provided_by, parents)
    _check_operating_system(index, request, provided_by, all_provides)
    elements = tuple(sorted(selected))
    return Resolution(
        requested=request,
        elements=elements,
        sources={n: index[n].path for n in elements},
        virtual={v: p for v, p in sorted(provided_by.items())},
        defaults=tuple(sorted(defaults.items())),
        depends={n: index[n].depends for n in elements},
    )


#: What one expansion found: the selected elements, virtual name ->
#: provider, child -> parent (for chains), defaults chosen.
_Expansion = tuple[set[str], dict[str, str], dict[str, "str | None"],
                   dict[str, str]]


def _expand(index: ElementIndex, request: tuple[str, ...], arch: str,
            all_provides: Mapping[str, tuple[str, ...]],
            excluded: set[str]) -> _Expansion:
    selected: set[str] = set()
    provided_by: dict[str, str] = {}
    parents: dict[str, str | None] = {name: None for name in request}
    defaults: dict[str, str] = {}
    queue: deque[str] = deque(sorted(request))
    deferred: set[str] = set()
    expanded_only: set[str] = set()

    def select(name: str) -> None:
        selected.add(name)
        element = index[name]
        for virtual in element.provides:
            other = provided_by.get(virtual)
            if other is not None and other != name:
                raise errors.ProvidedTwice(
                    f"{_arrow(chain_to(parents, name))}: '{virtual}' is "
                    f"provided by both '{other}' "
                    f"({index[other].path / 'element-provides'}) and "
                    f"'{name}' ({element.path / 'element-provides'})",
                    "keep only one of the two elements in the image")
            provided_by[virtual] = name
        for dep in element.depends:
            if dep not in parents:
                parents[dep] = name
            if dep not in selected and dep not in provided_by:
                queue.append(dep)

    while True:
        while queue:
            name = queue.popleft()
            if name in selected or name in provided_by:
                continue
            ambiguous = name in all_provides or name in excluded
            if name in index and not ambiguous:
                select(name)
            else:
                deferred.add(name)
        deferred = {n for n in deferred if n not in provided_by
                    and n not in selected and n not in expanded_only}
        if not deferred:
            break
        # Nothing unambiguous is left: settle the first deferred name
        # (sorted) and carry on, since selecting it may provide others.
        name = sorted(deferred)[0]
        deferred.discard(name)
        if name in DEFAULT_PROVIDERS and name not in index:
            choice = DEFAULT_PROVIDERS[name](arch)
            if choice in index:
                parents.setdefault(choice, name)
                defaults[name] = choice
                select(choice)
                continue
        if name in index and name not in excluded:
            select(name)
            continue
        if name in index and name not in expanded_only:
            # A real element that a selected element also provides, and
            # needed to bring that provider in: like DIB, follow its deps
            # but leave it out of the result.
            expanded_only.add(name)
            for dep in index[name].depends:
                parents.setdefault(dep, name)
                queue.append(dep)
            continue
        _raise_missing(index, name, parents, all_provides)
    return selected, provided_by, parents, defaults


def _raise_missing(index: ElementIndex, name: str,
                   parents: Mapping[str, str | None],
                   all_provides: Mapping[str, tuple[str, ...]]) -> None:
    chain = chain_to(parents, name)
    searched = ", ".join(str(r) for r in index.roots)
    where = ""
    if len(chain) > 1:
        where = f" (listed in {index[chain[-2]].path / 'element-deps'})"
    if name.startswith("#"):
        hint = ("element-deps has no comment syntax; delete the line")
    elif name in all_provides:
        hint = (f"'{name}' is a virtual name; add one of its providers: "
                + ", ".join(all_provides[name]))
    else:
        hint = f"searched: {searched}; add its directory with --elements-path"
    raise errors.ElementNotFound(
        f"{_arrow(chain)}: element '{name}' not found{where}", hint)


def _check_request(index: ElementIndex, request: Iterable[str],
                   selected: set[str], provided_by: Mapping[str, str],
                   parents: Mapping[str, str | None]) -> None:
    for name in sorted(request):
        provider = provided_by.get(name)
        if provider is not None and provider != name:
            raise errors.RequestedButProvided(
                f"'{name}' was requested but '{provider}' "
                f"({_arrow(chain_to(parents, provider))}) already provides it "
                f"({index[provider].path / 'element-provides'})",
                f"drop '{name}' from the request, or the element that "
                f"brings in '{provider}'")


def _check_operating_system(index: ElementIndex, request: Sequence[str],
                            provided_by: Mapping[str, str],
                            all_provides: Mapping[str, tuple[str, ...]]
                            ) -> None:
    if OPERATING_SYSTEM in provided_by:
        return
    choices = ", ".join(all_provides.get(OPERATING_SYSTEM, ())) or "none"
    raise errors.MissingOperatingSystem(
        f"{' '.join(request)}: no element provides '{OPERATING_SYSTEM}'",
        f"add an OS element, one of: {choices}")


def _build_graph(resolution: Resolution) -> "nx.DiGraph[str]":
    import networkx as nx
    graph: nx.DiGraph[str] = nx.DiGraph()
    selected = set(resolution.elements)
    for name in resolution.elements:
        graph.add_node(name, virtual=False,
                       path=str(resolution.sources[name]))
    for virtual, provider in resolution.virtual.items():
        if virtual not in selected:
            graph.add_node(virtual, virtual=True)
        graph.add_edge(virtual, provider, kind=PROVIDES)
    for name in resolution.elements:
        for dep in resolution.depends.get(name, ()):
            if dep in graph:
                graph.add_edge(name, dep, kind=DEPENDS)
    for virtual, choice in resolution.defaults:
        graph.add_edge(virtual, choice, kind=DEFAULT)
    return graph


def to_dot(resolution: Resolution) -> str:
    """Graphviz text for the resolution: virtual names dashed, the
    requested elements bold, default choices labelled."""
    graph = resolution.graph
    lines = ["digraph elements {", "  rankdir=LR;",
             "  node [shape=box, fontname=Helvetica];"]
    for node in sorted(graph.nodes):
        attrs = []
        if graph.nodes[node].get("virtual"):
            attrs.append('style=dashed, shape=ellipse')
        if node in resolution.requested:
            attrs.append("penwidth=2")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'  "{node}"{suffix};')
    for src, dst in sorted(graph.edges):
        kind = graph.edges[src, dst]["kind"]
        style = {DEPENDS: "", PROVIDES: ' [style=dashed, label="provided by"]',
                 DEFAULT: ' [style=dotted, label="default"]'}[kind]
        lines.append(f'  "{src}" -> "{dst}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(resolution: Resolution) -> str:
    """Readable adjacency listing, with cycles at the end."""
    graph = resolution.graph
    out = []
    for node in sorted(graph.nodes):
        label = node + (" (virtual)" if graph.nodes[node].get("virtual")
                        else "")
        if node in resolution.requested:
            label += " [requested]"
        out.append(label)
        for dst in sorted(graph.successors(node)):
            kind = graph.edges[node, dst]["kind"]
            arrow = {DEPENDS: "->", PROVIDES: "=> provided by",
                     DEFAULT: "=> default"}[kind]
            out.append(f"    {arrow} {dst}")
    cycles = resolution.cycles()
    for cycle in cycles:
        out.append("cycle: " + " -> ".join(cycle + [cycle[0]]))
    return "\n".join(out) + "\n"
