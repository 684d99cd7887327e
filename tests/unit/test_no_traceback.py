"""Property: whatever element tree it is given, ``build-image`` never
ends in a traceback.

Hypothesis generates element trees (odd names, ``element-deps`` in
several encodings and line endings, phase scripts, YAML, templates,
symbolic links including dangling ones and loops, odd modes) and runs
``plan``, ``list``, ``why``, ``graph`` and ``check`` on them in-process through
``cli.main``.  Each run must end with exit 0, 1 or 2, and a failure must
be one ``error[...]`` line.

Bounded to run in the unit tier: a fixed number of examples with a
derandomised seed (set ``TIE_HYPOTHESIS_RANDOM=1`` to explore with fresh
seeds, ``TIE_HYPOTHESIS_EXAMPLES=N`` for more examples).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import stat
import tempfile
import traceback
from pathlib import Path
from unittest import mock

import testtools
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tripleo_elements import cli
from tripleo_elements.testing.elements import (FileSpec, Link,
                                               build_element_tree)

NAMES = ["os", "a", "b", "c", "base", "vm", "block-device",
         "block-device-mbr", "operating-system", "# comment", "-dash",
         "sp ace", "ünï", "dots.name", "CAPS", "tab\tname", "new\nline",
         "environment-defaults", "bin", "install.d", "static", "x" * 60]

ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "utf-16"]
ENDINGS = ["\n", "\r\n", "\r"]

PATHS = [
    "install.d/50-x", "install.d/10-foo.sh", "install.d/sub/20-y",
    "pre-install.d/01-a", "root.d/10-r", "finalise.d/99-z",
    "environment.d/10-x.bash", "environment.d/20-y",
    "package-installs.yaml", "package-installs.json", "pkg-map", "svc-map",
    "os-apply-config/etc/x.conf", "os-apply-config/etc/x.conf.oac",
    "os-refresh-config/configure.d/20-x",
    "os-refresh-config/post-configure.d/10-y", "bin/tool", "README.rst",
    "README", "static/etc/f", "source-repository-x", "element-deps",
    "element-provides", "tests/t.py", "x.py",
]

SHEBANGS = ["#!/bin/bash\n", "#!/bin/sh\n", "#!/usr/bin/env python3\n",
            "#!/usr/bin/python3\n", "", "#!\n"]

SNIPPETS = [
    "set -eu\nset -o pipefail\n", "set -x\n", "\tindent\n",
    "if [ ${DIB_DEBUG_TRACE:-0} -gt 0 ]; then\n    set -x\nfi\n",
    "export X=$(true)\n", "sudo rm -rf /\n", "which foo\n",
    "import os\nprint(os)\n", "def f(:\n", "- a\n- b\n",
    "a:\n  phase: install.d\n", "pkg: [\n", "{}\n", "a: 1\n",
    "x:\n  when: DIB_X = 1\n", '{"family": {"debian": {"a": "b"}}}\n',
    "{{#a}}{{b}}{{/a}}\n", "{{#a}}\n", "mode: 0600\nowner: root\n",
    "mode: 'x'\nbogus: 1\n", "git x /tmp/x https://x.invalid/x\n",
    "\x00\x01\xff", "# comment\n", "   \n", "",
]


@dataclasses.dataclass(frozen=True)
class Tree:
    """A generated example: roots of elements, and what to request."""

    roots: tuple[dict[str, dict[str, FileSpec] | Link], ...]
    requested: tuple[str, ...]
    modes: tuple[tuple[int, str, int], ...]


def _encode(text: str, encoding: str, ending: str) -> bytes:
    return text.replace("\n", ending).encode(encoding, "replace")


@st.composite
def name_lists(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=4))
    text = "".join(f"{n}\n" for n in names)
    if draw(st.booleans()):
        text = draw(st.sampled_from(["", "\n\n", " a \n", "a b\n"])) + text
    return _encode(text, draw(st.sampled_from(ENCODINGS)),
                   draw(st.sampled_from(ENDINGS)))


@st.composite
def contents(draw: st.DrawFn) -> FileSpec:
    kind = draw(st.sampled_from(["text", "text", "binary", "link"]))
    if kind == "binary":
        return draw(st.binary(max_size=40))
    if kind == "link":
        return Link(draw(st.sampled_from([
            "nowhere", "../a/element-deps", "../../", "/dev/null",
            "self-loop", "."])))
    text = draw(st.sampled_from(SHEBANGS)) + "".join(
        draw(st.lists(st.sampled_from(SNIPPETS), max_size=3)))
    data = _encode(text, draw(st.sampled_from(ENCODINGS)),
                   draw(st.sampled_from(ENDINGS)))
    mode = draw(st.sampled_from([0o644, 0o755, 0o000, 0o200, 0o4755]))
    return (data, mode)


@st.composite
def elements(draw: st.DrawFn) -> dict[str, FileSpec]:
    files: dict[str, FileSpec] = {}
    if draw(st.booleans()):
        files["element-deps"] = (draw(name_lists()), 0o644)
    if draw(st.booleans()):
        files["element-provides"] = (draw(name_lists()), 0o644)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=4,
                              unique=True)):
        spec = draw(contents())
        if isinstance(spec, Link) and spec.target == "self-loop":
            spec = Link(Path(path).name)
        files[path] = spec
    return files


@st.composite
def roots(draw: st.DrawFn, index: int
          ) -> dict[str, dict[str, FileSpec] | Link]:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True))
    root: dict[str, dict[str, FileSpec] | Link] = {}
    for name in names:
        choice = draw(st.sampled_from(
            ["element"] * 6 + ["link", "dangling", "loop"]))
        if choice == "element":
            root[name] = draw(elements())
        elif choice == "link":
            other = draw(st.sampled_from(NAMES))
            root[name] = Link(draw(st.sampled_from(
                [other, f"../r{1 - index}/{other}", "."])))
        elif choice == "dangling":
            root[name] = Link("does-not-exist")
        else:
            root[name] = Link(name)
    if draw(st.booleans()):
        root.setdefault("os", {"element-provides": "operating-system\n"})
    return root


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    count = draw(st.integers(min_value=1, max_value=2))
    generated = tuple(draw(roots(i)) for i in range(count))
    requested = tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1,
                                    max_size=3)))
    modes = tuple(draw(st.lists(st.tuples(
        st.integers(0, count - 1), st.sampled_from(NAMES),
        st.sampled_from([0o000, 0o500, 0o111])), max_size=2)))
    return Tree(generated, requested, modes)


def _examples() -> int:
    return int(os.environ.get("TIE_HYPOTHESIS_EXAMPLES", "100"))


def _restore_modes(top: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)


class NoTracebackTest(testtools.TestCase):

    def run_cli(self, argv: list[str]) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:
                raise AssertionError(
                    f"build-image {argv!r} crashed:\n"
                    + traceback.format_exc()) from None
        return code, out.getvalue(), err.getvalue()

    def assert_clean_exit(self, argv: list[str], *,
                          findings_ok: bool = False) -> None:
        code, out, err = self.run_cli(argv)
        self.assertIn(code, (0, 1, 2), f"{argv!r}: exit {code}\n{err}")
        self.assertNotIn("Traceback", err, argv)
        if code == 0 or (code == 1 and findings_ok):
            return
        errors = [line for line in err.splitlines()
                  if line.startswith("error")]
        self.assertEqual(1, len(errors), f"{argv!r}: exit {code}\n{err}")
        # One line: everything on stderr after it would be a second line.
        self.assertTrue(err.rstrip("\n").endswith(errors[0]),
                        f"{argv!r}:\n{err}")

    # No shrinking: it can take minutes, and a generated tree is small
    # enough to read as it is.
    @settings(max_examples=_examples(), deadline=None, database=None,
              derandomize=os.environ.get("TIE_HYPOTHESIS_RANDOM") != "1",
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(trees())
    def test_never_a_traceback(self, tree: Tree) -> None:
        top = Path(tempfile.mkdtemp(prefix="tie-hyp-"))
        try:
            self._exercise(top, tree)
        finally:
            _restore_modes(top)
            shutil.rmtree(top, ignore_errors=True)

    def _exercise(self, top: Path, tree: Tree) -> None:
        paths = []
        for index, root in enumerate(tree.roots):
            path = top / f"r{index}"
            build_element_tree(path, root)
            paths.append(path)
        for index, name, mode in tree.modes:
            target = paths[index] / name
            if target.is_dir() and not target.is_symlink():
                os.chmod(target, mode)
        search = [arg for p in paths for arg in ("--elements-path", str(p))]
        request = [f"--element={name}" for name in tree.requested]
        env = {k: v for k, v in os.environ.items()
               if k != "ELEMENTS_PATH" and not k.startswith("DIB_")}
        with mock.patch.dict(os.environ, env, clear=True):
            self.assert_clean_exit(
                ["plan", "--no-defaults", "-a", "amd64",
                 "-o", str(top / "out" / "image"), *search, *request])
            self.assert_clean_exit(["list", *search])
            self.assert_clean_exit(["why", "--no-defaults", "-a", "amd64",
                                    *search, *request, "--",
                                    tree.requested[-1]])
            self.assert_clean_exit(["graph", "--no-defaults", "-a", "amd64",
                                    *search, *request])
            for path in paths:
                self.assert_clean_exit(
                    ["check", "--no-shellcheck", "--no-cache", str(path)],
                    findings_ok=True)
            one = paths[0] / tree.requested[0]
            if os.path.lexists(one):
                self.assert_clean_exit(
                    ["check", "--no-shellcheck", "--no-cache", str(one)],
                    findings_ok=True)
            self.assert_clean_exit(
                ["check", "--no-shellcheck", "--no-cache", *search,
                 *request], findings_ok=True)


class ModeHelperTest(testtools.TestCase):

    def test_restore_modes_makes_a_tree_removable(self) -> None:
        top = Path(tempfile.mkdtemp(prefix="tie-hyp-"))
        self.addCleanup(shutil.rmtree, top, True)
        (top / "a" / "b").mkdir(parents=True)
        os.chmod(top / "a", 0)
        _restore_modes(top)
        self.assertEqual(0o755, stat.S_IMODE(os.stat(top / "a").st_mode))
