"""The stage cache against a fake disk-image-create that captures and
restores a root the way the helper element's hooks do: what moves the
key and what does not, hit and miss through ``build-image plan``, which
hooks a restored build leaves out, corrupt and partial entries, prune."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import testtools

from tests.unit.test_plan import FAKE_DIB, SOURCES, TREE
from tests.unit.trees import make_tree
from tripleo_elements import buildcache, buildcache_cli, options, stagecache
from tripleo_elements import plan as plan_mod
from tripleo_elements.discovery import discover

# Runs before the ordinary fake: plays the helper element's capture
# (writes the "root") or restore (records the staged hooks it was given).
STAGE_DIB = """#!/bin/bash
if [ "${TIE_STAGE_MODE:-}" = capture ]; then
    echo "root of $$" > "$TIE_STAGE_FILE"
fi
if [ "${TIE_STAGE_MODE:-}" = restore ]; then
    # As the restore hook: the sha256 is checked while unpacking.
    if [ "$(sha256sum < "$TIE_STAGE_FILE" | cut -d' ' -f1)" \
            != "$TIE_STAGE_SHA256" ]; then
        touch "$TIE_STAGE_CORRUPT"
        exit 1
    fi
    cat "$TIE_STAGE_FILE" > "$FAKE_DIB_RECORD.restored"
    (cd "$ELEMENTS_PATH" && find -L . -type f | sort) \\
        > "$FAKE_DIB_RECORD.hooks"
fi
exec "$(dirname "$0")/fake-dib" "$@"
"""

STAGE_TREE = dict(TREE)
STAGE_TREE.update({
    "debian-minimal": {"provides": ["operating-system"],
                       "deps": ["debootstrap", "dpkg"]},
    "debootstrap": {"root.d/08-debootstrap": "#!/bin/bash\n",
                    "install.d/10-debian-networking": "#!/bin/bash\n"},
    "dpkg": {"root.d/50-shared-apt-cache": "#!/bin/bash\n",
             "root.d/50-block-daemons": "#!/bin/bash\n",
             "pre-install.d/99-apt-get-update": "#!/bin/bash\n",
             "finalise.d/99-write-dpkg-manifest": "#!/bin/bash\n"},
    "os-collect-config": {
        "install.d/10-occ": "#!/bin/bash\n",
        "install.d/99-os-refresh-config-scripts": "#!/bin/bash\n",
        "install.d/hook-script.py": "print('data')\n",
        "post-install.d/60-bootstrap": "#!/bin/bash\n",
        "os-refresh-config/configure.d/55-heat-config": "#!/bin/bash\n",
        "os-apply-config/etc/x.conf": "x={{x}}\n",
        "package-installs.yaml": "curl:\n"},
})


class StageCacheTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.elements = make_tree(self.tmp / "elements", STAGE_TREE)
        (self.tmp / "fake-dib").write_text(FAKE_DIB)
        self.fake = self.tmp / "stage-dib"
        self.fake.write_text(STAGE_DIB)
        for path in (self.fake, self.tmp / "fake-dib"):
            path.chmod(0o755)
        self.out = self.tmp / "out"
        self.out.mkdir()
        self.root = self.tmp / "xdg" / "tripleo-image-elements" / "stages"
        self.env = {"TIE_STAGE_CACHE": "1",
                    "DIB_IMAGE_CACHE": str(self.tmp / "dl"),
                    "XDG_CACHE_HOME": str(self.tmp / "xdg")}
        self.runs = 0

    def make(self, name: str = "img", **kw: object) -> plan_mod.BuildPlan:
        index = discover([self.elements])
        opts = options.BuildOptions(output=self.out / name, **kw)
        return plan_mod.make_plan(opts, index, self.env,
                                  apt_sources=SOURCES,
                                  dib_command=str(self.fake))

    def build(self, plan: plan_mod.BuildPlan, use_cache: bool = True,
              **extra: str) -> tuple[object, Path]:
        self.runs += 1
        record = self.tmp / f"argv-{self.runs}"
        env = dict(os.environ, FAKE_DIB_MODE="ok",
                   FAKE_DIB_RECORD=str(record))
        env.update(self.env)
        for name, value in extra.items():
            if value:
                env[name] = value
            else:
                env.pop(name, None)
        result = buildcache.execute(plan, env, lambda p, s: None,
                                    use_cache=use_cache)
        return result, record

    def change(self, rel: str, text: str = "#!/bin/bash\necho 2\n") -> None:
        (self.elements / rel).write_text(text)

    def key(self, **kw: object) -> str:
        return buildcache.key_of(stagecache.inputs(
            self.make(**kw), self.env, code="c", dib="3.43.0"))

    # ---- the key

    def test_late_changes_do_not_move_the_key(self) -> None:
        before = self.key()
        for rel in ("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config",
                    "os-collect-config/install.d/99-os-refresh-config-scripts",
                    "os-collect-config/post-install.d/60-bootstrap",
                    "os-collect-config/os-apply-config/etc/x.conf",
                    "dpkg/finalise.d/99-write-dpkg-manifest"):
            self.change(rel)
            self.assertEqual(before, self.key(), rel)
        (self.elements / "os-collect-config/os-refresh-config/configure.d/"
         "60-new").write_text("#!/bin/bash\n")
        self.assertEqual(before, self.key())
        self.assertEqual(before, self.key(name="other"))

    def test_early_changes_move_the_key(self) -> None:
        seen = {self.key()}
        for rel in ("os-collect-config/install.d/10-occ",
                    "os-collect-config/install.d/hook-script.py",
                    "os-collect-config/package-installs.yaml",
                    "dpkg/pre-install.d/99-apt-get-update",
                    "debootstrap/root.d/08-debootstrap"):
            self.change(rel, "wget:\n" if rel.endswith(".yaml")
                        else "#!/bin/bash\necho 2\n")
            key = self.key()
            self.assertNotIn(key, seen, rel)
            seen.add(key)
        for kw in ({"release": "trixie"},):
            self.assertNotIn(self.key(**kw), seen)
        other_dib = buildcache.key_of(stagecache.inputs(
            self.make(), self.env, code="c", dib="3.44.0"))
        self.assertNotIn(other_dib, seen)

    def test_capture_order_follows_dib_run_parts(self) -> None:
        self.assertTrue(stagecache.before_capture("install.d/01-package"))
        self.assertTrue(stagecache.before_capture("install.d/98-a"))
        self.assertFalse(stagecache.before_capture("install.d/98-z"))
        self.assertFalse(stagecache.before_capture("install.d/99-a"))
        self.assertFalse(stagecache.before_capture("install.d/100-a"))
        self.assertTrue(stagecache.before_capture("install.d/x.py"))
        self.assertTrue(stagecache.before_capture("static/etc/x"))
        self.assertFalse(stagecache.before_capture("cleanup.d/01-x"))

    # ---- builds

    def test_capture_then_restore_without_the_hooks_that_ran(self) -> None:
        _, record = self.build(self.make())
        self.assertIn("tie-stage", record.read_text().split())
        self.assertEqual(1, len(buildcache.entries(self.root)))
        self.change("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config")
        text = buildcache.describe_text(buildcache.describe(
            self.make(), self.env))
        self.assertIn("build cache: miss", text)
        self.assertIn("element os-collect-config: changed", text)
        self.assertIn("stage cache: hit", text)
        result, record = self.build(self.make())
        self.assertIn("root of", Path(f"{record}.restored").read_text())
        hooks = Path(f"{record}.hooks").read_text().split()
        for gone in ("./debootstrap/root.d/08-debootstrap",
                     "./dpkg/root.d/50-block-daemons",
                     "./dpkg/pre-install.d/99-apt-get-update",
                     "./os-collect-config/install.d/10-occ",
                     "./debootstrap/install.d/10-debian-networking"):
            self.assertNotIn(gone, hooks)
        for kept in ("./dpkg/root.d/50-shared-apt-cache",
                     "./os-collect-config/install.d/"
                     "99-os-refresh-config-scripts",
                     "./os-collect-config/install.d/hook-script.py",
                     "./os-collect-config/post-install.d/60-bootstrap",
                     "./tie-stage/root.d/07-tie-stage-restore",
                     "./tie-stage/install.d/98-tie-stage-capture"):
            self.assertIn(kept, hooks)
        self.assertTrue(any("stage cache hit" in n
                            for n in result.notices))  # type: ignore
        # The element sources themselves are untouched.
        self.assertTrue((self.elements / "dpkg/root.d/50-block-daemons")
                        .exists())

    def test_early_change_is_a_stage_miss_naming_it(self) -> None:
        self.build(self.make())
        self.change("os-collect-config/install.d/10-occ")
        answer = buildcache.describe(self.make(), self.env)
        stage = answer["stage"]
        self.assertEqual("miss", stage["status"])  # type: ignore
        self.assertEqual(["element os-collect-config: changed"],
                         stage["changed"])  # type: ignore
        _, record = self.build(self.make())
        self.assertFalse(Path(f"{record}.restored").exists())
        self.assertEqual(2, len(buildcache.entries(self.root)))

    def test_corrupt_or_partial_stage_is_rebuilt_never_used(self) -> None:
        self.build(self.make())
        entry = buildcache.entries(self.root)[0]
        tarball = entry.path / stagecache.TARBALL
        # Same size, other bytes: found while restoring.
        tarball.write_text("X" * len(tarball.read_text()))
        self.assertIsNotNone(stagecache.plausible(self.root, entry.key))
        self.change("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config")
        result, record = self.build(self.make())
        self.assertFalse(Path(f"{record}.restored").exists(),
                         "a corrupt stage must not be restored")
        self.assertIn("did not have its recorded sha256",
                      " ".join(result.notices))
        self.assertIsNotNone(stagecache.usable(self.root, entry.key))
        self.assertIn("stored in the stage cache", " ".join(result.notices))
        # Another size: not even tried.
        tarball.write_text("root of 0\n")
        self.assertIsNone(stagecache.plausible(self.root, entry.key))
        self.change("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config", "#!/bin/bash\necho 5\n")
        _, record = self.build(self.make())
        self.assertFalse(Path(f"{record}.restored").exists())
        self.assertIsNotNone(stagecache.usable(self.root, entry.key))
        # Partial: the tarball gone.
        (entry.path / stagecache.TARBALL).unlink()
        self.change("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config", "#!/bin/bash\necho 3\n")
        _, record = self.build(self.make())
        self.assertFalse(Path(f"{record}.restored").exists())
        self.assertIsNotNone(stagecache.usable(self.root, entry.key))

    def test_off_switch_and_other_families(self) -> None:
        _, record = self.build(self.make(), TIE_STAGE_CACHE="0")
        self.assertNotIn("tie-stage", record.read_text().split())
        self.assertEqual([], buildcache.entries(self.root))
        off = {**self.env, "TIE_STAGE_CACHE": "0"}
        self.assertIn("off (TIE_STAGE_CACHE=0", stagecache.describe_text(
            stagecache.describe(self.make(), off)))
        # On by default (an empty value: the variable unset).
        self.change("os-collect-config/os-refresh-config/configure.d/"
                    "55-heat-config", "#!/bin/bash\necho 4\n")
        _, record = self.build(self.make(), TIE_STAGE_CACHE="")
        self.assertIn("tie-stage", record.read_text().split())
        self.assertEqual(1, len(buildcache.entries(self.root)))
        unset = {k: v for k, v in self.env.items() if k != "TIE_STAGE_CACHE"}
        self.assertTrue(stagecache.enabled(unset))
        self.assertTrue(stagecache.enabled({"TIE_STAGE_CACHE": " "}))
        for value in ("0", "no", "OFF", "false"):
            self.assertFalse(stagecache.enabled({"TIE_STAGE_CACHE": value}))
        plan = self.make()
        plan = plan_mod.BuildPlan(**{
            **{f: getattr(plan, f) for f in plan.__dataclass_fields__},
            "elements": tuple(e for e in plan.elements
                              if e != "debootstrap")})
        text = stagecache.describe_text(stagecache.describe(plan, self.env))
        self.assertIn("stage cache: not used: not a Debian-family", text)
        self.assertEqual(1, text.count("\n"))

    def test_plan_says_on_by_default_and_off_with_the_flag(self) -> None:
        import contextlib
        import io

        import fixtures

        from tripleo_elements import cli
        self.useFixture(fixtures.EnvironmentVariable(
            "XDG_CACHE_HOME", str(self.tmp / "xdg")))
        self.useFixture(fixtures.EnvironmentVariable("TIE_STAGE_CACHE"))
        argv = ["plan", "--no-defaults", "--elements-path",
                str(self.elements), "-e", "debian-minimal", "-e",
                "os-collect-config", "-o", str(self.out / "cli")]
        for extra, expected in (([], "stage cache: miss"), (
                ["--no-stage-cache"], "stage cache: not used: off")):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(0, cli.main(argv + extra))
            self.assertIn(expected, out.getvalue())

    def test_no_cache_builds_without_the_stage(self) -> None:
        _, record = self.build(self.make(), use_cache=False)
        self.assertNotIn("tie-stage", record.read_text().split())
        self.assertFalse(self.root.exists())

    # ---- list and prune

    def test_list_and_prune_cover_stages(self) -> None:
        self.build(self.make())
        out = self._cli(["list", "--format", "json"])
        kinds = sorted(e["kind"] for e in json.loads(out))
        self.assertEqual(["build", "stage"], kinds)
        self.assertIn("stage", self._cli(["list"]))
        out = self._cli(["prune", "--all"])
        self.assertIn("2 removed", out)
        self.assertEqual([], buildcache.entries(self.root))

    def _cli(self, argv: list[str]) -> str:
        import io
        buf = io.StringIO()
        args = buildcache_cli.build_parser().parse_args(argv)
        self.assertEqual(0, buildcache_cli.run(args, self.env, buf))
        return buf.getvalue()

    def test_helper_hooks_are_valid_bash_and_executable(self) -> None:
        import subprocess
        element = stagecache.write_element(self.tmp / "helper")
        hooks = sorted(p for p in element.rglob("*") if p.is_file()
                       and p.suffix not in (".py", ".rst"))
        self.assertEqual(["07-tie-stage-restore", "98-tie-stage-capture",
                          "99-tie-stage-collect"],
                         sorted(p.name for p in hooks))
        for hook in hooks:
            self.assertTrue(os.access(hook, os.X_OK), hook)
            subprocess.run(["bash", "-n", str(hook)], check=True)
            # Each one acts only in its own mode.
            done = subprocess.run(["bash", str(hook)], env={"PATH": "/bin"},
                                  capture_output=True, text=True)
            self.assertEqual((0, ""), (done.returncode, done.stdout), hook)

    def test_collect_and_restore_hash_as_they_copy(self) -> None:
        import hashlib
        import subprocess
        element = stagecache.write_element(self.tmp / "helper")
        bin_dir = self.tmp / "bin"
        bin_dir.mkdir()
        (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
        (bin_dir / "sudo").chmod(0o755)
        src = self.tmp / "src"
        (src / "etc").mkdir(parents=True)
        (src / "etc/hosts").write_text("127.0.0.1 localhost\n")
        (src / "etc/resolv.conf.ORIG").write_text("nameserver 10.0.0.1\n")
        mount = self.tmp / "mount"
        (mount / "tmp").mkdir(parents=True)
        subprocess.run(["tar", "-C", str(src), "-cf",
                        str(mount / "tmp/tie-stage.tar"), "."], check=True)
        data = (mount / "tmp/tie-stage.tar").read_bytes()
        stage = self.tmp / "stage.tar"
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}",
               "DIB_PYTHON_EXEC": "python3"}

        def hook(rel: str, **more: str) -> subprocess.CompletedProcess:
            return subprocess.run(["bash", str(element / rel)],
                                  env={**env, **more}, capture_output=True,
                                  text=True)

        done = hook("post-root.d/99-tie-stage-collect",
                    TIE_STAGE_MODE="capture", TMP_MOUNT_PATH=str(mount),
                    TIE_STAGE_FILE=str(stage))
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual(data, stage.read_bytes())
        digest = hashlib.sha256(data).hexdigest()
        self.assertEqual(digest, Path(f"{stage}.sha256").read_text().strip())
        self.assertFalse((mount / "tmp/tie-stage.tar").exists())
        marker = self.tmp / "corrupt"
        restore = {"TIE_STAGE_MODE": "restore", "TIE_STAGE_FILE": str(stage),
                   "TIE_STAGE_CORRUPT": str(marker)}
        target = self.tmp / "target"
        target.mkdir()
        done = hook("root.d/07-tie-stage-restore", TARGET_ROOT=str(target),
                    TIE_STAGE_SHA256=digest, **restore)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual("nameserver 10.0.0.1\n",
                         (target / "etc/resolv.conf").read_text())
        self.assertTrue((target / "etc/hosts").is_file())
        self.assertFalse(marker.exists())
        # A tar failure that is no corruption: no marker.
        done = hook("root.d/07-tie-stage-restore",
                    TARGET_ROOT=str(self.tmp / "missing"),
                    TIE_STAGE_SHA256=digest, **restore)
        self.assertNotEqual(0, done.returncode)
        self.assertFalse(marker.exists())
        # Corrupt (same size): the build fails and says so.
        stage.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
        done = hook("root.d/07-tie-stage-restore", TARGET_ROOT=str(target),
                    TIE_STAGE_SHA256=digest, **restore)
        self.assertEqual(1, done.returncode)
        self.assertTrue(marker.exists())
        self.assertIn("does not have its recorded sha256", done.stderr)
