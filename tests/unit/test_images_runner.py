"""``build-image build -f FILE`` against a fake disk-image-create: many
images, --parallel, --keep-going, the summary table and exit code, the
manifest's provenance, the SPDX SBOM (checked by spdx-tools' own
validator) and the ``publish:`` list."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import fixtures
import testtools

from tests.unit.test_images_sources import make_repo
from tests.unit.test_plan import FAKE_DIB, SOURCES
from tripleo_elements import cli
from tripleo_elements import plan as plan_mod
from tripleo_elements.images import cli as images_cli
from tripleo_elements.images import project, runner, sbom


def validate_spdx(path: Path) -> list[str]:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import \
        validate_full_spdx_document
    document = parse_file(str(path))
    return [m.validation_message
            for m in validate_full_spdx_document(document)]


class RunnerTest(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        fake = self.tmp / "fake-dib"
        fake.write_text(FAKE_DIB)
        fake.chmod(0o755)
        for name, value in {
                "XDG_CACHE_HOME": str(self.tmp / "xdg"),
                "DIB_IMAGE_CACHE": str(self.tmp / "dl"),
                "FAKE_DIB_MODE": "ok", "FAKE_DIB_WRITE": ".tar",
                "FAKE_DIB_RECORD": str(self.tmp / "argv"),
                "ELEMENTS_PATH": None}.items():
            self.useFixture(fixtures.EnvironmentVariable(name, value))

        def image_plan(prepared: project.Prepared) -> plan_mod.BuildPlan:
            return plan_mod.make_plan(prepared.options, prepared.index,
                                      prepared.environ, apt_sources=SOURCES,
                                      dib_command=str(fake))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.images.cli.image_plan", image_plan))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.images.runner.host.check_host_tools",
            lambda: None))
        self.repo = self.tmp / "repo"
        self.commit = make_repo(self.repo, {
            "elements/app/element-deps": "debian-minimal\n",
            "elements/app/install.d/50-app": "#!/bin/bash\n",
            "settings": "DIB_FROM_SOURCE=yes\n"})
        self.pub = self.tmp / "pub"

    def write(self, images: str) -> Path:
        file = self.tmp / "images.yaml"
        file.write_text(
            f"sources:\n  - name: mine\n    git: file://{self.repo}\n"
            "defaults:\n  types: [tar]\n  no_defaults: true\n"
            "  output: out/\n" + images)
        return file

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_two_images_in_parallel_with_provenance_sbom_publish(self
                                                                 ) -> None:
        file = self.write(
            "images:\n"
            "  - name: one\n    elements: [app]\n"
            "    environment: {FAKE_DIB_RECORD: " + str(self.tmp / "r1") +
            ", DIB_FROM_SOURCE: image}\n"
            f"    publish: ['dir://{self.pub}']\n"
            "  - name: two\n    elements: [debian-minimal]\n"
            "    environment: {FAKE_DIB_RECORD: " + str(self.tmp / "r2") +
            "}\n")
        code, out, err = self.run_cli("build", "-f", str(file),
                                      "--parallel", "2")
        self.assertEqual(0, code, out + err)
        rows = [line.split() for line in out.splitlines()
                if line.startswith(("one ", "two "))]
        self.assertEqual([["one", "ok"], ["two", "ok"]],
                         [r[:2] for r in rows])
        self.assertIn(str(self.tmp / "out" / "one.tar"), out)
        # Settings: the image's environment wins over the source's.
        env1 = (self.tmp / "r1.env").read_text().splitlines()
        env2 = (self.tmp / "r2.env").read_text().splitlines()
        self.assertIn("DIB_FROM_SOURCE=image", env1)
        self.assertIn("DIB_FROM_SOURCE=yes", env2)
        manifest = json.loads(
            (self.tmp / "out" / "one.manifest.json").read_text())
        prov = manifest["provenance"]
        self.assertEqual("one", prov["image"])
        self.assertRegex(prov["diskimage_builder"], r"^\d+\.")
        app = prov["elements"]["app"]
        self.assertEqual(("mine", self.commit),
                         (app["source"], app["commit"]))
        self.assertTrue(app["hash"].startswith("sha256:"))
        self.assertEqual("diskimage-builder",
                         prov["elements"]["debian-minimal"]["source"])
        self.assertEqual(["app"], prov["options"]["elements"])
        self.assertIn("one.spdx.json", manifest["outputs"])
        self.assertEqual("1:1.2.13", manifest["packages"]["zlib1g"])
        for name in ("one", "two"):
            path = self.tmp / "out" / f"{name}.spdx.json"
            self.assertEqual([], validate_spdx(path))
        doc = json.loads((self.tmp / "out" / "one.spdx.json").read_text())
        purls = [r["referenceLocator"] for p in doc["packages"]
                 for r in p.get("externalRefs", ())]
        self.assertIn("pkg:deb/debian/zlib1g@1%3A1.2.13", purls)
        elements = {p["name"]: p for p in doc["packages"]
                    if p["SPDXID"].startswith("SPDXRef-Element-")}
        self.assertEqual(self.commit, elements["app"]["versionInfo"])
        # Published after the build, by the dir provider.
        built = self.tmp / "out" / "one.tar"
        digest = built.with_name("one.tar.sha256").read_text().split()[0]
        published = self.pub / "one" / f"{digest}.tar"
        self.assertTrue(published.is_file(), err)
        self.assertEqual(built.read_bytes(), published.read_bytes())
        self.assertIn("[one] published to dir://", out)
        self.assertFalse((self.pub / "two").exists())

    def test_failure_exit_code_keep_going_and_skip(self) -> None:
        file = self.write(
            "images:\n"
            "  - name: bad\n    elements: [debian-minimal]\n"
            "    environment: {FAKE_DIB_MODE: fail}\n"
            "  - name: good\n    elements: [debian-minimal]\n")
        code, out, err = self.run_cli("build", "-f", str(file))
        self.assertEqual(1, code)
        self.assertRegex(out, r"\nbad +failed")
        self.assertRegex(out, r"\ngood +skipped")
        self.assertFalse((self.tmp / "out" / "good.tar").exists())
        code, out, err = self.run_cli("build", "-f", str(file),
                                      "--keep-going")
        self.assertEqual(1, code)
        self.assertRegex(out, r"\ngood +ok")
        self.assertTrue((self.tmp / "out" / "good.tar").exists())

    def test_missing_bindep_package_stops_before_building(self) -> None:
        from tests.unit.test_images_sources import commit
        commit(self.repo, {"bindep.txt": "tie-no-such-package-zz\n"})
        file = self.write("images:\n  - name: one\n"
                          "    elements: [app]\n")
        code, out, err = self.run_cli("build", "-f", str(file))
        self.assertEqual(2, code)
        self.assertIn("source 'mine' needs tie-no-such-package-zz", err)
        self.assertFalse((self.tmp / "out").exists())
        # What tools/setup-host -f FILE installs.
        code, out, err = self.run_cli("host-packages", "-f", str(file))
        self.assertEqual((0, "tie-no-such-package-zz\n"), (code, out), err)

    def test_bad_publish_target_stops_before_fetching(self) -> None:
        file = self.write("images:\n  - name: one\n    elements: [app]\n"
                          "    publish: [{provider: no-such-provider}]\n")
        code, out, err = self.run_cli("build", "-f", str(file))
        self.assertEqual(2, code)
        self.assertIn("no-such-provider", err)
        self.assertFalse((self.tmp / "xdg").exists())

    def test_ctrl_c_stops_parallel_builds_and_cleans_up(self) -> None:
        import signal
        import subprocess
        import sys
        import time
        file = self.write(
            "images:\n"
            "  - name: one\n    elements: [debian-minimal]\n"
            "  - name: two\n    elements: [debian-minimal]\n")
        driver = self.tmp / "driver.py"
        driver.write_text(f"""\
import sys
from tests.unit.test_plan import SOURCES
from tripleo_elements import cli, plan
from tripleo_elements.images import cli as images_cli, runner
def image_plan(p):
    return plan.make_plan(p.options, p.index, p.environ,
                          apt_sources=SOURCES,
                          dib_command={str(self.tmp / "fake-dib")!r})
images_cli.image_plan = image_plan
runner.host.check_host_tools = lambda: None
sys.exit(cli.main(["build", "-f", {str(file)!r}, "--parallel", "2"]))
""")
        env = dict(os.environ, FAKE_DIB_MODE="hang",
                   PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        proc = subprocess.Popen([sys.executable, str(driver)], env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        logs = [self.tmp / "out" / f"{n}.log" for n in ("one", "two")]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                p.exists() and "waiting" in p.read_text() for p in logs):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(130, proc.returncode, out + err)
        for log in logs:
            self.assertIn("cleanup trap ran", log.read_text())
        self.assertRegex(out, r"\none +failed")
        self.assertEqual([], [p.name for p in (self.tmp / "out").iterdir()
                              if p.name.endswith(".tie-build")])

    def test_stop_children_stops_only_own_group_leaders(self) -> None:
        import subprocess
        leader = subprocess.Popen(["sleep", "60"], start_new_session=True)
        same_group = subprocess.Popen(["sleep", "60"])
        self.addCleanup(same_group.wait)
        self.addCleanup(same_group.kill)
        self.assertEqual([], runner.stop_children(skip={leader.pid}))
        self.assertIsNone(leader.poll())
        self.assertEqual([leader.pid], runner.stop_children())
        self.assertEqual(-15, leader.wait(timeout=10))
        self.assertIsNone(same_group.poll())

    def test_stop_reaches_a_build_started_later_with_one_sigterm(self) -> None:
        # After Ctrl-C, a job that was between two steps starts its
        # disk-image-create late: it is stopped too, and every child gets
        # SIGTERM once (a second one could cut its cleanup short).
        import argparse
        import subprocess
        import time
        terms = self.tmp / "terms"
        script = (f"trap 'echo TERM >> {terms}' TERM; "
                  "for i in $(seq 30); do sleep 0.1; done")

        def job() -> int:
            time.sleep(0.6)
            child = subprocess.Popen(["bash", "-c", script],
                                     start_new_session=True)
            return child.wait()

        pool = concurrent.futures.ThreadPoolExecutor(1)
        self.addCleanup(pool.shutdown)
        future = pool.submit(job)
        failed = threading.Event()
        args = argparse.Namespace(keep_going=True)
        runner._stop({future: "one"}, failed, args)
        self.assertTrue(future.done())
        self.assertEqual(0, future.result())
        self.assertEqual(["TERM"], terms.read_text().split())
        self.assertTrue(failed.is_set())
        self.assertFalse(args.keep_going)

    def test_table(self) -> None:
        text = runner.table([runner.Outcome("a", "ok", 3.2, 2**20, "/x"),
                             runner.Outcome("bb", "skipped")])
        self.assertEqual(
            "IMAGE  RESULT   TIME  SIZE     PATH\n"
            "a      ok       3 s   1.0 MiB  /x\n"
            "bb     skipped  -     -        -\n", text)
        self.assertTrue(callable(images_cli.image_plan))

    def test_purl_escapes(self) -> None:
        self.assertEqual(
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64",
            sbom.purl({"name": "libstdc++6", "version": "12.2.0-14",
                       "arch": "amd64"}))

    def test_build_file_goes_through_the_build_cache(self) -> None:
        record = self.tmp / "argv"
        file = self.write("images:\n  - name: one\n    elements: [app]\n")
        code, out, err = self.run_cli("build", "-f", str(file))
        self.assertEqual(0, code, out + err)
        self.assertTrue(record.exists())
        first = (self.tmp / "out" / "one.tar").read_bytes()
        record.unlink()
        # Unchanged inputs: a hit, disk-image-create does not run.
        code, out, err = self.run_cli("build", "-f", str(file))
        self.assertEqual(0, code, out + err)
        self.assertFalse(record.exists())
        self.assertEqual(first, (self.tmp / "out" / "one.tar").read_bytes())
        self.assertTrue((self.tmp / "out" / "one.spdx.json").is_file())
        # --no-cache builds afresh.
        code, out, err = self.run_cli("build", "-f", str(file), "--no-cache")
        self.assertEqual(0, code, out + err)
        self.assertTrue(record.exists())

    def test_plain_build_has_provenance_and_a_valid_sbom(self) -> None:
        # build-image -e ... (no file) records the same provenance and
        # writes a valid SBOM beside the image.
        fake = self.tmp / "fake-dib"

        def plan_from_options(opts, index, environ):  # type: ignore
            return plan_mod.make_plan(opts, index, environ,
                                      apt_sources=SOURCES,
                                      dib_command=str(fake))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.cli.plan_mod.plan_from_options",
            plan_from_options))
        self.useFixture(fixtures.MonkeyPatch(
            "tripleo_elements.cli.host.check_host_tools", lambda: None))
        elements = self.tmp / "els" / "app"
        (elements / "install.d").mkdir(parents=True)
        (elements / "element-deps").write_text("debian-minimal\n")
        code, out, err = self.run_cli(
            "build", "--no-cache", "--no-defaults", "-t", "tar",
            "--elements-path", str(self.tmp / "els"), "-e", "app",
            "-o", str(self.tmp / "plain" / "img"))
        self.assertEqual(0, code, out + err)
        sbom = self.tmp / "plain" / "img.spdx.json"
        self.assertIn(f"sbom:     {sbom}", out)
        self.assertEqual([], validate_spdx(sbom))
        manifest = json.loads(
            (self.tmp / "plain" / "img.manifest.json").read_text())
        prov = manifest["provenance"]["elements"]
        self.assertEqual("elements-path", prov["app"]["source"])
        self.assertEqual("diskimage-builder",
                         prov["debian-minimal"]["source"])
        self.assertTrue(prov["app"]["hash"].startswith("sha256:"))
        self.assertIn("img.spdx.json", manifest["outputs"])

    def test_no_stage_cache_flag_reaches_each_build(self) -> None:
        """``--no-stage-cache`` turns the stage cache off for every image
        of the file, as it does for a single build."""
        file = self.write(
            "images:\n"
            "  - name: one\n    elements: [app]\n"
            "    environment: {FAKE_DIB_RECORD: " + str(self.tmp / "r1") +
            "}\n")
        self.useFixture(fixtures.EnvironmentVariable("TIE_STAGE_CACHE"))
        code, out, err = self.run_cli("build", "-f", str(file),
                                      "--no-stage-cache")
        self.assertEqual(0, code, out + err)
        env = (self.tmp / "r1.env").read_text().splitlines()
        self.assertIn("TIE_STAGE_CACHE=0", env)
        self.assertEqual([], [v for v in env
                              if v.startswith("TIE_STAGE_MODE=")])
        self.assertNotIn("TIE_STAGE_CACHE", os.environ)
