"""Element discovery: what is an element, what it is called, and the
one-line errors for trees that cannot be read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import testtools

from tripleo_elements import errors, graph
from tripleo_elements.discovery import (discover, element_dirs,
                                        is_element_dir)
from tripleo_elements.element import list_files, load_element
from tripleo_elements.testing.elements import (Link, build_element_tree,
                                               element_files)

OS = element_files(provides=["operating-system"])


class DiscoveryTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_symlinked_element_is_named_by_its_real_directory(self) -> None:
        # diskimage-builder: name = basename(realpath(entry)).
        build_element_tree(self.tmp / "common", {
            "nginx": element_files(deps=["os"])})
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "web": Link("../common/nginx")})
        index = discover([root])
        self.assertEqual(["nginx", "os"], index.names())
        self.assertEqual(self.tmp / "common" / "nginx", index["nginx"].path)
        self.assertEqual(root, index["nginx"].root)
        res = graph.resolve(index, ["nginx"])
        self.assertEqual(("nginx", "os"), res.elements)
        err = self.assertRaises(errors.ElementNotFound, graph.resolve,
                                index, ["web"])
        self.assertIn("'web' not found", err.message)

    def test_same_names_as_diskimage_builder(self) -> None:
        from diskimage_builder import element_dependencies
        build_element_tree(self.tmp / "common", {"nginx": {}, "x": {}})
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "web": Link("../common/nginx"), "x": Link(
                str(self.tmp / "common" / "x")),
            "dangling": Link("nowhere"), "file": {}, ".hidden": {}})
        (root / "plain-file").write_text("not an element\n")
        theirs = element_dependencies._find_all_elements(str(root))
        ours = discover([root])
        self.assertEqual(sorted(theirs), ours.names())
        self.assertEqual({n: os.path.realpath(e.path)
                          for n, e in theirs.items()},
                         {n: os.path.realpath(e.path)
                          for n, e in ours.elements.items()})

    def test_two_links_to_one_directory_are_one_element(self) -> None:
        build_element_tree(self.tmp / "common", {"nginx": {}})
        root = build_element_tree(self.tmp / "r", {
            "a": Link("../common/nginx"), "b": Link("../common/nginx")})
        self.assertEqual([("nginx", str(self.tmp / "common" / "nginx"))],
                         element_dirs(root))

    def test_two_directories_of_one_name_in_one_root_is_an_error(
            self) -> None:
        build_element_tree(self.tmp / "one", {"nginx": {}})
        build_element_tree(self.tmp / "two", {"nginx": {}})
        root = build_element_tree(self.tmp / "r", {
            "a": Link("../one/nginx"), "b": Link("../two/nginx")})
        err = self.assertRaises(errors.ElementNameClash, discover, [root])
        self.assertIn("'a' and 'b' are both the element 'nginx'",
                      err.message)
        self.assertTrue(err.hint)

    def test_override_follows_the_real_name(self) -> None:
        build_element_tree(self.tmp / "common", {"nginx": {}})
        first = build_element_tree(self.tmp / "r0", {
            "web": Link("../common/nginx")})
        second = build_element_tree(self.tmp / "r1", {"nginx": {}})
        index = discover([first, second])
        self.assertEqual(self.tmp / "common" / "nginx", index["nginx"].path)
        self.assertEqual((second / "nginx",),
                         index.overrides["nginx"].shadowed)

    def test_readme_and_bin_make_an_element(self) -> None:
        # diskimage-builder copies bin/ into the image; a directory with
        # only a README and bin/ is an element there, and so here.
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "tool": {"README": "a tool\n",
                               "bin/tool": ("#!/bin/sh\n", 0o755)}})
        self.assertIn("tool", discover([root]))
        self.assertTrue(is_element_dir(root / "tool"))
        self.assertFalse(is_element_dir(root))
        only_bin = build_element_tree(self.tmp / "b", {
            "tool": {"bin/tool": ("#!/bin/sh\n", 0o755)}})
        self.assertTrue(is_element_dir(only_bin / "tool"))
        self.assertFalse(is_element_dir(only_bin))

    def test_an_element_called_bin_in_a_directory_of_elements(self) -> None:
        root = build_element_tree(self.tmp / "r", {
            "bin": {"README.rst": "x\n"}, "os": OS})
        self.assertFalse(is_element_dir(root))

    def test_symlink_loop_among_elements_is_a_one_line_error(self) -> None:
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "loop1": Link("loop2"), "loop2": Link("loop1")})
        err = self.assertRaises(errors.SymlinkLoop, discover, [root])
        self.assertIn(str(root / "loop1"), err.message)
        self.assertIn("symbolic link loop", err.message)
        self.assertEqual("error[symlink-loop]", err.render().split(":")[0])
        self.assertNotIn("\n", err.render())

    def test_looping_element_deps_is_a_one_line_error(self) -> None:
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "a": {"element-deps": Link("element-deps")}})
        index = discover([root])
        err = self.assertRaises(errors.SymlinkLoop, graph.resolve,
                                index, ["os", "a"])
        self.assertIn(str(root / "a" / "element-deps"), err.message)
        looping = build_element_tree(self.tmp / "p", {
            "os": OS, "a": {"element-provides": Link("element-provides")}})
        self.assertRaises(errors.SymlinkLoop, discover, [looping])

    def test_element_deps_that_is_a_directory(self) -> None:
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "a": {"element-deps/x": "y\n"}})
        err = self.assertRaises(errors.UnreadablePath, graph.resolve,
                                discover([root]), ["os", "a"])
        self.assertIn("element-deps", err.message)
        self.assertIn("Is a directory", err.message)

    def _unreadable(self, path: Path) -> None:
        os.chmod(path, 0)
        self.addCleanup(os.chmod, path, 0o755)
        if os.access(path, os.R_OK):
            self.skipTest("running as root: permissions are not enforced")

    def test_unreadable_element_deps_real(self) -> None:
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "a": element_files(deps=["os"])})
        self._unreadable(root / "a" / "element-deps")
        err = self.assertRaises(errors.UnreadablePath, graph.resolve,
                                discover([root]), ["os", "a"])
        self.assertIn("permission denied", err.message)

    def test_unreadable_root_real(self) -> None:
        root = build_element_tree(self.tmp / "r", {"os": OS})
        self._unreadable(root)
        self.assertRaises(errors.UnreadablePath, discover, [root])

    def test_permission_denied_reading_element_files(self) -> None:
        # Tests run as root here, where chmod 0 does not stop a read:
        # make the read itself fail as it does for anyone else.
        root = build_element_tree(self.tmp / "r", {
            "os": OS, "a": element_files(deps=["os"])})
        index = discover([root])
        real_open = open

        def deny(path: object, *args: object, **kwargs: object) -> object:
            if str(path).endswith("element-deps"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)  # type: ignore

        with mock.patch("builtins.open", deny):
            err = self.assertRaises(errors.UnreadablePath, graph.resolve,
                                    index, ["os", "a"])
        self.assertEqual(
            f"error[unreadable]: {root / 'a' / 'element-deps'} "
            "(element-deps): permission denied", err.render().split(
                " (hint")[0])

    def test_permission_denied_listing_a_root(self) -> None:
        root = build_element_tree(self.tmp / "r", {"os": OS})

        def deny(path: object) -> object:
            raise PermissionError(13, "Permission denied", str(path))

        with mock.patch("os.scandir", deny):
            err = self.assertRaises(errors.UnreadablePath, discover, [root])
            self.assertIn(str(root), err.message)
            self.assertRaises(errors.UnreadablePath, list_files, root)


class ListFilesTest(testtools.TestCase):

    def test_files_links_and_directories(self) -> None:
        tmp = Path(self.useFixture(__import__("fixtures").TempDir()).path)
        build_element_tree(tmp, {"e": {
            "install.d/10-a": "x", "install.d/sub/x": "y",
            "install.d/20-loop": Link("20-loop"),
            "install.d/30-dangling": Link("nowhere")}})
        phase = tmp / "e" / "install.d"
        self.assertEqual(("10-a", "20-loop", "30-dangling"),
                         list_files(phase))
        self.assertEqual(("10-a", "20-loop", "30-dangling", "sub"),
                         list_files(phase, include_dirs=True))
        self.assertEqual((), list_files(tmp / "e" / "missing"))
        self.assertEqual((), list_files(phase / "10-a"))

    def test_load_element_of_dot(self) -> None:
        tmp = Path(self.useFixture(__import__("fixtures").TempDir()).path)
        build_element_tree(tmp, {"e": {}})
        cwd = os.getcwd()
        os.chdir(tmp / "e")
        self.addCleanup(os.chdir, cwd)
        self.assertEqual("e", load_element(".").name)


class OneLineErrorTest(testtools.TestCase):

    def test_names_with_line_breaks_stay_on_one_line(self) -> None:
        # An element directory may be called "new\nline"; the error
        # quoting it is still one line.
        err = errors.ElementNotFound("element 'new\nline' not found",
                                     "searched: /x\t/y")
        self.assertEqual("error[element-not-found]: element 'new\\nline' "
                         "not found (hint: searched: /x\\t/y)", err.render())
        self.assertEqual("plain ünï", errors.one_line("plain ünï"))


class CheckAgreesOnWhatIsAnElementTest(testtools.TestCase):
    """``build-image check`` takes the same elements as discovery (and
    diskimage-builder): a README and ``bin/`` make one.  Needs check to
    use :func:`discovery.is_element_dir` and :func:`discovery.element_dirs`
    (reported to the lead: check.py belongs to another change)."""

    def run_check(self, *argv: str) -> tuple[int, str, str]:
        import contextlib
        import io

        from tripleo_elements import cli
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = cli.main(["check", "--no-shellcheck", "--no-cache",
                             *argv])
        return code, out.getvalue(), err.getvalue()

    def test_readme_and_bin_element_is_checked(self) -> None:
        tmp = Path(self.useFixture(__import__("fixtures").TempDir()).path)
        root = build_element_tree(tmp / "r", {
            "os": {**OS, "README.rst": "An OS.\n"},
            "tool": {"README": "A tool.\n",
                     "bin/tool": ("#!/bin/bash\necho hi\n", 0o755)}})
        code, out, err = self.run_check(str(root / "tool"))
        self.assertIn(code, (0, 1), err)
        self.assertEqual("", err)
        code, out, err = self.run_check(str(root))
        self.assertIn(str(root / "tool"), out)
