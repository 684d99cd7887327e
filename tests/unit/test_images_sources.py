"""Element sources with real git repositories made by the tests
(``file://``): refs, the mirror cache, the lock, the source contract,
and the URLs and refs we refuse."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import cli, errors
from tripleo_elements.images import gitcache, sources
from tripleo_elements.images.definitions import SourceSpec

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, **GIT_ENV)
    return subprocess.run(["git", "-C", str(repo), *args], env=env,
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str], branch: str = "main"
              ) -> str:
    """A repository with one commit of ``files``; returns the commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", branch)
    return commit(path, files)


def commit(repo: Path, files: dict[str, str], message: str = "c") -> str:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


ELEMENT = {"elements/app/element-deps": "debian-minimal\n",
           "elements/app/README.rst": "app\n"}


class SourcesTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.cache = gitcache.GitCache(self.tmp / "cache")
        self.warnings: list[str] = []

    def resolve(self, *specs: SourceSpec, **kw: object
                ) -> tuple[sources.Source, ...]:
        return sources.resolve(specs, self.cache, warn=self.warnings.append,
                               **kw)  # type: ignore[arg-type]

    def url(self, repo: Path) -> str:
        return f"file://{repo}"

    def test_branch_tag_commit_and_default_branch(self) -> None:
        repo = self.tmp / "repo"
        first = make_repo(repo, {**ELEMENT, "VERSION": "1\n"})
        git(repo, "tag", "v1")
        git(repo, "checkout", "-q", "-b", "stable")
        second = commit(repo, {"VERSION": "2\n"})
        git(repo, "checkout", "-q", "main")
        third = commit(repo, {"VERSION": "3\n"})
        url = self.url(repo)
        cases = {None: third, "main": third, "stable": second, "v1": first,
                 first: first, first[:10]: first}
        for ref, want in cases.items():
            (found,) = self.resolve(SourceSpec("s", git=url, ref=ref))
            self.assertEqual(want, found.commit, ref)
            self.assertTrue((found.elements_dir / "app").is_dir())
        (found,) = self.resolve(SourceSpec("s", git=url, ref="stable"))
        self.assertEqual("2\n", (found.root / "VERSION").read_text())
        self.assertEqual([], self.warnings)
        # One mirror for the URL, shared by every resolution.
        self.assertEqual(1, len(list((self.tmp / "cache" / "mirrors")
                                     .iterdir())))

    def test_concurrent_resolutions_share_one_mirror(self) -> None:
        import threading
        repo = self.tmp / "repo"
        head = make_repo(repo, ELEMENT)
        spec = SourceSpec("s", git=self.url(repo))
        found: list[str] = []
        failures: list[BaseException] = []

        def one() -> None:
            try:
                cache = gitcache.GitCache(self.tmp / "cache")
                (source,) = sources.resolve([spec], cache, warn=print)
                found.append(source.commit or "")
                self.assertTrue((source.elements_dir / "app").is_dir())
            except BaseException as exc:
                failures.append(exc)
        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([], failures)
        self.assertEqual([head] * 4, found)
        self.assertEqual([head], [p.name for p in (
            self.tmp / "cache" / "checkouts").iterdir()])

    def test_unknown_ref(self) -> None:
        repo = self.tmp / "repo"
        make_repo(repo, ELEMENT)
        exc = self.assertRaises(errors.SourceError, self.resolve,
                                SourceSpec("s", git=self.url(repo),
                                           ref="nope"))
        self.assertIn("has no branch, tag or commit 'nope'", exc.message)

    def test_deleted_remote_uses_cache_with_warning(self) -> None:
        repo = self.tmp / "repo"
        head = make_repo(repo, ELEMENT)
        spec = SourceSpec("s", git=self.url(repo))
        self.resolve(spec)
        shutil.rmtree(repo)
        (found,) = self.resolve(spec)
        self.assertEqual(head, found.commit)
        self.assertEqual(1, len(self.warnings))
        self.assertIn("cannot be reached", self.warnings[0])
        # Locked and unreachable: the cached locked commit, with a warning.
        locked = {"s": sources.LockedSource(head, None)}
        (found,) = self.resolve(spec, locked=locked)
        self.assertEqual(head, found.commit)
        self.assertIn("cached locked commit", self.warnings[-1])

    def test_nothing_cached_is_a_clear_error(self) -> None:
        exc = self.assertRaises(
            errors.SourceError, self.resolve,
            SourceSpec("s", git=self.url(self.tmp / "nowhere")))
        self.assertIn("cannot be reached", exc.message)
        self.assertIn("nothing is cached", exc.message)

    def test_locked_refuses_a_moved_ref(self) -> None:
        repo = self.tmp / "repo"
        old = make_repo(repo, ELEMENT)
        spec = SourceSpec("s", git=self.url(repo), ref="main")
        locked = {"s": sources.LockedSource(old, "main")}
        (found,) = self.resolve(spec, locked=locked)
        self.assertEqual(old, found.commit)
        new = commit(repo, {"more": "x"})
        exc = self.assertRaises(errors.LockStale, self.resolve, spec,
                                locked=locked)
        self.assertEqual(2, exc.exit_code)
        self.assertIn("source 's' ref main", exc.message)
        self.assertIn(old[:12], exc.message)
        self.assertIn(new[:12], exc.message)
        # A deleted branch is stale too (not "unreachable").
        git(repo, "branch", "-q", "gone")
        gone = SourceSpec("s", git=self.url(repo), ref="gone")
        self.resolve(gone)
        git(repo, "branch", "-q", "-D", "gone")
        exc = self.assertRaises(errors.LockStale, self.resolve, gone,
                                locked={"s": sources.LockedSource(new,
                                                                  "gone")})
        self.assertIn("ref gone: locked", exc.message)
        self.assertEqual([], self.warnings)
        # update: the source named fresh moves.
        (found,) = self.resolve(spec, locked=locked, fresh=frozenset("s"))
        self.assertEqual(new, found.commit)

    def test_hostile_urls_refused(self) -> None:
        for url in ("--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x",
                    "http://example.invalid/r", "git@host:path",
                    "-ufoo", "file:///tmp/a b", "https://h/x\nrm",
                    "ssh://-oProxyCommand=touch%20x/r", "https:///r"):
            exc = self.assertRaises(errors.SourceError, self.resolve,
                                    SourceSpec("s", git=url))
            self.assertIn("refused URL", exc.message)
        self.assertFalse((self.tmp / "cache").exists())

    def test_hostile_refs_refused(self) -> None:
        repo = self.tmp / "repo"
        make_repo(repo, ELEMENT)
        for ref in ("--upload-pack=x", "-b", "a..b", "x@{1}", "a b"):
            exc = self.assertRaises(
                errors.SourceError, self.resolve,
                SourceSpec("s", git=self.url(repo), ref=ref))
            self.assertIn("refused ref", exc.message)

    def test_credentials_redacted(self) -> None:
        self.assertEqual("https://***@example.invalid/r.git",
                         gitcache.redact("https://u:secret@example.invalid"
                                         "/r.git"))
        self.assertEqual("ssh://git@example.invalid/r",
                         gitcache.redact("ssh://git@example.invalid/r"))
        self.assertEqual(
            "fatal: unable to access 'https://***@h.invalid/r/': no",
            gitcache.redact("fatal: unable to access "
                            "'https://tok:hunter2@h.invalid/r/': no"))
        self.assertEqual("https://***@h.invalid",
                         gitcache.redact("https://token@h.invalid"))
        url = "https://user:hunter2@127.0.0.1:9/r.git"
        exc = self.assertRaises(errors.SourceError, self.resolve,
                                SourceSpec("s", git=url))
        self.assertNotIn("hunter2", exc.render())
        self.assertIn("***@127.0.0.1", exc.message)
        # Nor on any command line: the URL only lives in the mirror's
        # config file.
        mirror = self.cache.mirror_path(url)
        self.assertIn("hunter2", (mirror / "config").read_text())

    def test_subdir_escaping_refused(self) -> None:
        repo = self.tmp / "repo"
        make_repo(repo, ELEMENT)
        for subdir in ("../", "elements/../../"):
            exc = self.assertRaises(
                errors.SourceError, self.resolve,
                SourceSpec("s", git=self.url(repo), subdir=subdir))
            self.assertIn("leaves its checkout", exc.message)
        (self.tmp / "local" / "elements").mkdir(parents=True)
        os.symlink("/etc", self.tmp / "local" / "escape")
        exc = self.assertRaises(
            errors.SourceError, self.resolve,
            SourceSpec("p", path=self.tmp / "local", subdir="escape"))
        self.assertIn("leaves its checkout", exc.message)

    def test_requires_orders_and_checks(self) -> None:
        def src(name: str, requires: tuple[str, ...] = ()) -> sources.Source:
            return sources.Source(name, self.tmp, self.tmp, name,
                                  requires=requires)
        ordered = sources.order([src("base"), src("mid", ("base",)),
                                 src("top", ("mid", "base"))])
        self.assertEqual(["top", "mid", "base"], [s.name for s in ordered])
        unrelated = sources.order([src("a"), src("b")])
        self.assertEqual(["a", "b"], [s.name for s in unrelated])
        exc = self.assertRaises(errors.SourceError, sources.order,
                                [src("a", ("ghost",))])
        self.assertIn("source 'a' requires 'ghost'", exc.message)
        exc = self.assertRaises(
            errors.SourceError, sources.order,
            [src("x"), src("a", ("b",)), src("b", ("c",)), src("c", ("a",))])
        self.assertIn("cycle: a -> b -> c -> a", exc.message)

    def test_contract_files_read_from_repo(self) -> None:
        base = self.tmp / "base"
        make_repo(base, {**ELEMENT, "settings": "# c\nDIB_X=base\nDIB_Y=y\n"})
        top = self.tmp / "top"
        make_repo(top, {"elements/app/README.rst": "top's app\n",
                        "requires": "base\n",
                        "settings": "DIB_X=top\n",
                        "bindep.txt": "tie-no-such-package-zz\n"
                                      "other [test]\n"})
        found = self.resolve(SourceSpec("base", git=self.url(base)),
                             SourceSpec("top", git=self.url(top)))
        self.assertEqual(["top", "base"], [s.name for s in found])
        self.assertEqual(("tie-no-such-package-zz",), found[0].bindep)
        env, applied = sources.apply_settings(
            {"DIB_Y": "user"}, {"DIB_Z": "image"}, found)
        self.assertEqual("top", env["DIB_X"])
        self.assertEqual("user", env["DIB_Y"])
        self.assertEqual("image", env["DIB_Z"])
        self.assertEqual({"DIB_X": "top"}, applied)
        env, _ = sources.apply_settings({}, {"DIB_X": "image"}, found)
        self.assertEqual("image", env["DIB_X"])
        exc = self.assertRaises(errors.HostToolsMissing,
                                sources.check_bindep, found)
        self.assertIn("source 'top' needs tie-no-such-package-zz",
                      exc.message)
        self.assertIn("apt-get install tie-no-such-package-zz", exc.hint)
        sources.check_bindep(found[1:])

    def test_bad_settings_line(self) -> None:
        root = self.tmp / "p"
        (root / "elements").mkdir(parents=True)
        (root / "settings").write_text("OK=1\nnot a setting\n")
        exc = self.assertRaises(errors.SourceError, self.resolve,
                                SourceSpec("p", path=root))
        self.assertIn("settings:2: not NAME=value", exc.message)

    def test_content_hash_tracks_content_and_mode(self) -> None:
        element = self.tmp / "el"
        (element / "install.d").mkdir(parents=True)
        script = element / "install.d" / "50-x"
        script.write_text("#!/bin/bash\n")
        first = sources.content_hash(element)
        self.assertEqual(first, sources.content_hash(element))
        script.chmod(0o755)
        second = sources.content_hash(element)
        self.assertNotEqual(first, second)
        script.write_text("#!/bin/bash\ntrue\n")
        self.assertNotEqual(second, sources.content_hash(element))


class LockCliTest(testtools.TestCase):
    """lock / --locked / update through build-image itself."""

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.tmp / "cache")))
        self.useFixture(fixtures.EnvironmentVariable("ELEMENTS_PATH"))
        self.repo = self.tmp / "repo"
        self.first = make_repo(self.repo, ELEMENT)
        self.file = self.tmp / "images.yaml"
        self.file.write_text(
            f"sources:\n  - name: mine\n    git: file://{self.repo}\n"
            "    ref: main\n"
            "images:\n  - name: small\n    elements: [app]\n"
            "    types: [tar]\n    no_defaults: true\n")

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_lock_locked_update(self) -> None:
        code, out, err = self.run_cli("lock", "-f", str(self.file))
        self.assertEqual(0, code, err)
        lock = json.loads((self.tmp / "images.yaml.lock").read_text())
        entry = lock["sources"]["mine"]
        self.assertEqual(self.first, entry["commit"])
        self.assertEqual(["app"], list(entry["elements"]))
        self.assertTrue(entry["elements"]["app"].startswith("sha256:"))
        code, out, err = self.run_cli("plan", "-f", str(self.file),
                                      "--locked", "--format", "json",
                                      "--only", "small")
        self.assertEqual(0, code, err)
        plan = json.loads(out)
        self.assertEqual("small", plan["name"])
        self.assertEqual({"source": "mine", "commit": self.first},
                         {k: plan["element_sources"]["app"][k]
                          for k in ("source", "commit")})
        self.assertEqual("diskimage-builder",
                         plan["element_sources"]["debian-minimal"]["source"])
        second = commit(self.repo, {"elements/app/README.rst": "v2\n"})
        code, out, err = self.run_cli("plan", "-f", str(self.file),
                                      "--locked")
        self.assertEqual(2, code)
        self.assertIn("error[lock-stale]: source 'mine' ref main: locked "
                      f"{self.first[:12]}, current {second[:12]}", err)
        # Without --locked the current commit is used.
        code, out, err = self.run_cli("plan", "-f", str(self.file))
        self.assertEqual(0, code, err)
        self.assertRegex(out, rf"\n  app +mine@{second[:12]}\n")
        code, out, err = self.run_cli("update", "-f", str(self.file),
                                      "mine")
        self.assertEqual(0, code, err)
        lock = json.loads((self.tmp / "images.yaml.lock").read_text())
        self.assertEqual(second, lock["sources"]["mine"]["commit"])
        code, out, err = self.run_cli("plan", "-f", str(self.file),
                                      "--locked", "--format", "json")
        self.assertEqual(0, code, err)
        self.assertIsInstance(json.loads(out), list)

    def test_locked_without_lock_file(self) -> None:
        code, _, err = self.run_cli("plan", "-f", str(self.file), "--locked")
        self.assertEqual(2, code)
        self.assertIn("images.yaml.lock does not exist", err)

    def test_why_and_graph_with_a_file(self) -> None:
        code, out, err = self.run_cli("why", "-f", str(self.file),
                                      "debootstrap")
        self.assertEqual(0, code, err)
        self.assertEqual("app -> debian-minimal -> debootstrap\n", out)
        code, out, err = self.run_cli("graph", "-f", str(self.file),
                                      "--format", "dot")
        self.assertEqual(0, code, err)
        self.assertIn('"app" -> "debian-minimal"', out)

    def test_list_shows_source_and_overrides(self) -> None:
        commit(self.repo, {"elements/base/README.rst": "mine\n"})
        code, out, err = self.run_cli("list", "-f", str(self.file))
        self.assertEqual(0, code, err)
        lines = {line.split()[0]: line for line in out.splitlines()
                 if not line.startswith(" ")}
        self.assertIn("mine@", lines["app"])
        self.assertIn("mine@", lines["base"])
        self.assertIn("overrides diskimage-builder", out)
