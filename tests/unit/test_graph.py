"""Acceptance cases for the resolver, behaviour by behaviour."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import testtools

from tests.unit.trees import make_tree
from tripleo_elements import errors, graph
from tripleo_elements.discovery import default_roots, discover

OS = {"provides": ["operating-system"]}


class ResolverTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(__import__("shutil").rmtree, self.tmp)

    def resolve(self, tree: dict, request: list[str], *extra: dict,
                arch: str = "amd64") -> graph.Resolution:
        roots = [make_tree(self.tmp / "r0", tree)]
        for i, more in enumerate(extra, 1):
            roots.append(make_tree(self.tmp / f"r{i}", more))
        return graph.resolve(discover(roots), request, arch=arch)

    def test_transitive_dependencies(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["b"]},
                            "b": {"deps": ["c"]}, "c": {}},
                           ["os", "a"])
        self.assertEqual(("a", "b", "c", "os"), res.elements)

    def test_earlier_path_entry_overrides_later(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": []}}, ["os", "a"],
                           {"a": {"deps": ["c"]}, "c": {}})
        self.assertEqual(("a", "os"), res.elements)
        self.assertEqual(self.tmp / "r0" / "a", res.sources["a"])
        index = discover([self.tmp / "r0", self.tmp / "r1"])
        self.assertEqual((self.tmp / "r1" / "a",),
                         index.overrides["a"].shadowed)

    def test_name_is_directory_basename(self) -> None:
        res = self.resolve({"os": OS, "my-el": {}}, ["os", "my-el"])
        self.assertIn("my-el", res.elements)

    def test_virtual_name_satisfied_by_provider(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["virt"]},
                            "impl": {"provides": ["virt"]}},
                           ["os", "a", "impl"])
        self.assertEqual(("a", "impl", "os"), res.elements)
        self.assertEqual("impl", res.virtual["virt"])
        self.assertNotIn("virt", res.elements)

    def test_real_element_shadowed_by_provider_is_dropped(self) -> None:
        # 'virt' exists as an element and is also provided: the provider
        # wins whatever the order of the request.
        tree = {"os": OS, "a": {"deps": ["virt"]},
                "virt": {"deps": ["junk"]}, "junk": {},
                "impl": {"provides": ["virt"]}}
        for request in itertools.permutations(["os", "a", "impl"]):
            res = self.resolve(tree, list(request))
            self.assertEqual(("a", "impl", "os"), res.elements)

    def test_provided_twice_is_an_error(self) -> None:
        err = self.assertRaises(
            errors.ProvidedTwice, self.resolve,
            {"os": OS, "x": {"provides": ["virt"]},
             "y": {"provides": ["virt"]}}, ["os", "x", "y"])
        self.assertIn("'virt' is provided by both 'x'", err.message)
        self.assertIn("element-provides", err.message)
        self.assertTrue(err.hint)

    def test_requesting_a_provided_element_is_an_error(self) -> None:
        err = self.assertRaises(
            errors.RequestedButProvided, self.resolve,
            {"os": OS, "x": {"provides": ["y"]}, "y": {}}, ["os", "x", "y"])
        self.assertIn("'y' was requested but 'x'", err.message)

    def test_missing_operating_system(self) -> None:
        err = self.assertRaises(
            errors.MissingOperatingSystem, self.resolve,
            {"os": OS, "a": {}}, ["a"])
        self.assertIn("operating-system", err.message)
        self.assertIn("os", err.hint)

    def test_missing_element_names_the_chain_and_file(self) -> None:
        err = self.assertRaises(
            errors.ElementNotFound, self.resolve,
            {"os": OS, "heat": {"deps": ["occ"]}, "occ": {"deps": ["foo"]}},
            ["os", "heat"])
        self.assertIn("heat -> occ -> foo: element 'foo' not found",
                      err.message)
        self.assertIn(str(self.tmp / "r0" / "occ" / "element-deps"),
                      err.message)
        self.assertIn("searched: " + str(self.tmp / "r0"), err.hint)

    def test_comment_line_in_element_deps(self) -> None:
        err = self.assertRaises(
            errors.ElementNotFound, self.resolve,
            {"os": OS, "a": {"deps": ["# a comment"]}}, ["os", "a"])
        self.assertIn("no comment syntax", err.hint)

    def test_cycles_are_allowed_and_reported(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["b"]},
                            "b": {"deps": ["a"]}}, ["os", "a"])
        self.assertEqual(("a", "b", "os"), res.elements)
        self.assertEqual([["a", "b"]], res.cycles())
        self.assertIn("cycle: a -> b -> a", graph.to_text(res))

    def test_vm_block_device_default_is_in_the_graph(self) -> None:
        tree = {"os": OS, "vm": {"deps": ["block-device"]},
                "block-device-mbr": {"provides": ["block-device"]},
                "block-device-efi": {"provides": ["block-device"]}}
        res = self.resolve(tree, ["os", "vm"])
        self.assertIn("block-device-mbr", res.elements)
        self.assertEqual((("block-device", "block-device-mbr"),),
                         res.defaults)
        self.assertEqual([["vm", "block-device", "block-device-mbr"]],
                         res.why("block-device-mbr"))
        self.assertIn('"block-device" -> "block-device-mbr" '
                      '[style=dotted, label="default"]',
                      graph.to_dot(res))
        arm = self.resolve(tree, ["os", "vm"], arch="arm64")
        self.assertIn("block-device-efi", arm.elements)
        chosen = self.resolve(tree, ["os", "vm", "block-device-efi"])
        self.assertEqual((), chosen.defaults)
        self.assertNotIn("block-device-mbr", chosen.elements)

    def test_why_lists_every_chain(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["b", "c"]},
                            "b": {"deps": ["d"]}, "c": {"deps": ["d"]},
                            "d": {}}, ["os", "a"])
        self.assertEqual([["a", "b", "d"], ["a", "c", "d"]], res.why("d"))

    def test_why_is_polynomial_and_counts_what_it_leaves_out(self) -> None:
        # 100 elements, each depending on the next three: C(99) chains
        # from e0 to e99 grow like 1.84^n; listing them never ends.
        tree: dict = {"os": OS}
        for i in range(100):
            tree[f"e{i}"] = {"deps": [f"e{j}" for j in
                                      range(i + 1, min(i + 4, 100))]}
        res = self.resolve(tree, ["os", "e0"])
        counts = [1, 1, 2]
        for _ in range(3, 100):
            counts.append(counts[-1] + counts[-2] + counts[-3])
        start = time.monotonic()
        answer = res.why_summary("e99", limit=10)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(counts[99], answer.total)
        self.assertTrue(answer.exact)
        self.assertEqual(10, len(answer.chains))
        self.assertEqual(counts[99] - 10, answer.more)
        shortest = len(answer.chains[0])
        self.assertEqual(34, shortest)  # 99 steps of at most 3: 33 + 1
        self.assertEqual(sorted(answer.chains, key=lambda c: (len(c), c)),
                         list(answer.chains))
        for chain in answer.chains:
            self.assertEqual(("e0", "e99"), (chain[0], chain[-1]))
        self.assertEqual([list(c) for c in answer.chains], res.why("e99"))

    def test_why_does_not_wander_where_the_target_is_not(self) -> None:
        # One chain, e0 -> zz, beside a 100-element DAG with 3 deps each:
        # a depth-first search of every path never came back (> 60 s).
        tree: dict = {"os": OS, "zz": {}}
        for i in range(100):
            tree[f"e{i}"] = {"deps": [f"e{j}" for j in
                                      range(i + 1, min(i + 4, 100))]}
        tree["e0"]["deps"].append("zz")
        res = self.resolve(tree, ["os", "e0"])
        start = time.monotonic()
        self.assertEqual([["e0", "zz"]], res.why("zz"))
        self.assertLess(time.monotonic() - start, 10)

    def test_why_with_a_cycle_counts_a_lower_bound(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["b", "c"]},
                            "b": {"deps": ["c"]}, "c": {"deps": ["b", "d"]},
                            "d": {}}, ["os", "a"])
        answer = res.why_summary("d")
        self.assertEqual((("a", "c", "d"), ("a", "b", "c", "d")),
                         answer.chains)
        self.assertFalse(answer.exact)
        self.assertEqual(2, answer.total)
        self.assertEqual(0, answer.more)

    def test_why_of_a_requested_element_and_of_a_stranger(self) -> None:
        res = self.resolve({"os": OS, "a": {"deps": ["b"]}, "b": {}},
                           ["os", "a", "b"])
        answer = res.why_summary("b")
        self.assertEqual((("b",), ("a", "b")), answer.chains)
        self.assertEqual(2, answer.total)
        self.assertEqual([], res.why("nothing"))
        self.assertEqual(0, res.why_summary("nothing").total)

    def test_why_command_says_how_many_chains_it_left_out(self) -> None:
        import contextlib
        import io

        from tripleo_elements import cli
        tree: dict = {"os": OS}
        for i in range(40):
            tree[f"e{i}"] = {"deps": [f"e{j}" for j in
                                      range(i + 1, min(i + 3, 40))]}
        make_tree(self.tmp / "cli", tree)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["why", "e39", "--no-defaults", "-a", "amd64",
                             "--elements-path", str(self.tmp / "cli"),
                             "-e", "os", "-e", "e0"])
        self.assertEqual(0, code)
        lines = out.getvalue().splitlines()
        self.assertEqual(11, len(lines))
        # 39 steps of one or two: the shortest chains have 21 names.
        self.assertEqual(21, len(lines[0].split(" -> ")))
        # Fibonacci: F(40) chains from e0 to e39, ten shown.
        fib = [1, 1]
        for _ in range(38):
            fib.append(fib[-1] + fib[-2])
        self.assertEqual(f"... and {fib[39] - 10} more chains (the "
                         "shortest are shown)", lines[-1])

    def test_walk_follows_each_name_once(self) -> None:
        edges = {"a": ["b", "c"], "b": ["a", "d"], "c": ["d"], "d": []}
        parents = graph.walk(["a"], lambda n: edges.get(n, ()))
        self.assertEqual({"a": None, "b": "a", "c": "a", "d": "b"}, parents)
        self.assertEqual(["a", "b", "d"], graph.chain_to(parents, "d"))

    def test_closure_with_and_without_providers(self) -> None:
        make_tree(self.tmp / "c", {"os": OS, "a": {"deps": ["virt", "x"]},
                                   "impl": {"provides": ["virt"],
                                            "deps": ["y"]},
                                   "y": {}})
        index = discover([self.tmp / "c"])
        plain = graph.closure(index, ["a"])
        self.assertEqual({"a": None, "virt": "a", "x": "a"}, plain)
        full = graph.closure(index, ["a"], providers=index.providers())
        self.assertEqual({"a": None, "virt": "a", "impl": "a", "x": "a",
                          "y": "impl"}, full)

    def test_result_independent_of_request_order(self) -> None:
        tree = {"os": OS, "a": {"deps": ["v", "c"]}, "c": {"deps": ["b"]},
                "b": {"provides": ["v"]}, "v": {"deps": ["junk"]},
                "junk": {}}
        results = {self.resolve(tree, list(p)).elements
                   for p in itertools.permutations(["os", "a", "c"])}
        self.assertEqual({("a", "b", "c", "os")}, results)

    def test_result_independent_of_hash_seed(self) -> None:
        tree = {"os": OS}
        for i in range(30):
            deps = [f"e{j}" for j in range(i + 1, min(i + 4, 30))]
            tree[f"e{i}"] = {"deps": deps,
                             "provides": [f"v{i}"] if i % 7 == 0 else []}
        make_tree(self.tmp / "seed", tree)
        code = ("import json,sys; from tripleo_elements import graph, "
                "discovery; i=discovery.discover([sys.argv[1]]); "
                "print(json.dumps(graph.resolve(i, ['os','e1']).elements))")
        outputs = set()
        for seed in ("0", "1", "42", "random"):
            env = dict(os.environ, PYTHONHASHSEED=seed)
            out = subprocess.run([sys.executable, "-c", code,
                                  str(self.tmp / "seed")], env=env,
                                 capture_output=True, text=True, check=True)
            outputs.add(out.stdout)
        self.assertEqual(1, len(outputs))
        self.assertIn("e29", json.loads(outputs.pop()))


class DibParityTest(testtools.TestCase):
    """Our resolved set equals diskimage-builder's on DIB's own elements."""

    REQUESTS = [
        ["base", "debian-minimal", "vm", "block-device-mbr"],
        ["base", "debian-minimal", "vm", "block-device-gpt"],
        ["base", "ubuntu-minimal", "vm", "block-device-efi"],
        ["base", "centos", "vm", "block-device-mbr", "cloud-init"],
        ["base", "debian", "baremetal", "openssh-server", "devuser"],
        ["base", "fedora", "vm", "block-device-efi", "growroot"],
        ["base", "debian-minimal", "cloud-init-datasources",
         "dhcp-all-interfaces"],
        ["base", "rocky-container", "pip-and-virtualenv",
         "source-repositories"],
    ]

    def test_same_set_as_dib(self) -> None:
        from diskimage_builder import element_dependencies
        index = discover(default_roots())
        dib_root = [r for r in index.roots if "diskimage_builder" in str(r)]
        self.assertEqual(1, len(dib_root))
        checked = 0
        for request in self.REQUESTS:
            ours = graph.resolve(discover(dib_root), request).elements
            theirs = element_dependencies.get_elements(
                request, str(dib_root[0]))
            self.assertEqual(sorted(n for n, _ in theirs), list(ours),
                             f"request {request}")
            checked += 1
        self.assertEqual(len(self.REQUESTS), checked)
