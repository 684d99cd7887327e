"""testing.scripts: the sandbox, per-call stubs and the runner's bugs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import fixtures
import testtools

from tripleo_elements import errors
from tripleo_elements.testing import sandbox
from tripleo_elements.testing.scripts import (
    Reply, run_orc_phase, run_script, Stub, When)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _sandbox_works() -> bool:
    try:
        sandbox.find_bwrap()
    except errors.SandboxUnavailable:
        return False
    return True


class ScriptTestCase(testtools.TestCase):

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(self.useFixture(fixtures.TempDir()).path)
        self.root = self.tmp / "root"
        self.root.mkdir()

    def script(self, body: str, name: str = "install.d/50-x") -> Path:
        return _write(self.tmp / "element" / name,
                      "#!/bin/bash\nset -eu\n" + body)


class SandboxTest(ScriptTestCase):

    def setUp(self) -> None:
        super().setUp()
        if not _sandbox_works():
            self.skipTest("bubblewrap cannot run here")

    def test_unstubbed_rm_fails_the_test_and_spares_the_host(self) -> None:
        host = self.tmp / "precious"
        (host / "data").mkdir(parents=True)
        (host / "data/file").write_text("keep")
        script = self.script(f"echo start\nrm -rf {host}\necho after\n")
        error = self.assertRaises(errors.CommandNotAllowed, run_script,
                                  script, self.root)
        self.assertEqual("keep", (host / "data/file").read_text())
        self.assertIn("`rm -rf " + str(host) + "`", error.message)
        self.assertIn(f"{script}:4", error.message)
        self.assertIn("stubs=['rm']", error.hint)
        self.assertIsInstance(error, AssertionError)
        self.assertEqual("start\n", error.result.stdout)
        self.assertEqual(127, error.result.returncode)
        self.assertEqual(("rm", "-rf", str(host)),
                         error.result.denied[0].argv)

    def test_absolute_path_is_refused_too(self) -> None:
        script = self.script("/bin/rm -f /etc/x || true\n"
                             "/usr/sbin/useradd bob || true\n")
        error = self.assertRaises(errors.CommandNotAllowed, run_script,
                                  script, self.root)
        self.assertEqual(["rm", "useradd"],
                         [d.name for d in error.result.denied])

    def test_root_is_slash_and_writes_stay_in_it(self) -> None:
        outside = self.tmp / "outside"
        outside.mkdir()
        script = self.script(
            "mkdir -p /etc/app /opt/app\n"
            "echo conf > /etc/app/conf\n"
            f"echo x > {outside}/file || echo refused\n"
            "echo tmp > /tmp/t\n"
            "ls -a /\n")
        result = run_script(script, self.root).check()
        self.assertEqual("conf\n",
                         (self.root / "etc/app/conf").read_text())
        self.assertEqual([], list(outside.iterdir()))
        self.assertIn("refused\n", result.stdout)
        # Mount points are removed afterwards: only what the script wrote.
        self.assertEqual(["etc", "opt"],
                         sorted(p.name for p in self.root.iterdir()))
        self.assertEqual(["app"],
                         [p.name for p in (self.root / "etc").iterdir()])

    def test_host_paths_into_the_root_still_work(self) -> None:
        script = self.script('mkdir -p "$TARGET"\necho v > "$TARGET/f"\n')
        run_script(script, self.root,
                   env={"TARGET": str(self.root / "d")}).check()
        self.assertEqual("v\n", (self.root / "d/f").read_text())

    def test_no_network(self) -> None:
        server = socket.socket()
        self.addCleanup(server.close)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        script = self.script(
            "python3 -c 'import socket; "
            f"socket.create_connection((\"127.0.0.1\", {port}), 2)' "
            "&& echo connected || echo no-network\n")
        result = run_script(script, self.root).check()
        self.assertEqual("no-network\n", result.stdout)

    def test_xtrace_output_is_the_scripts_own(self) -> None:
        script = self.script("set -x\necho a\n")
        result = run_script(script, self.root).check()
        self.assertEqual("+ echo a\n", result.stderr)

    def test_strict_false_runs_unlisted_commands(self) -> None:
        script = self.script("mkdir -p /d/e\nrm -r /d/e\nls /d\n")
        result = run_script(script, self.root, strict=False).check()
        self.assertEqual((), result.denied)
        self.assertFalse((self.root / "d/e").exists())

    def test_allow_adds_commands(self) -> None:
        script = self.script("touch /f\nrm /f\n")
        run_script(script, self.root, allow=["rm"]).check()
        self.assertFalse((self.root / "f").exists())

    def test_relative_script_path(self) -> None:
        # Bug: the path was resolved against the scratch root.
        script = self.script("echo ok\n")
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        os.chdir(self.tmp)
        result = run_script(script.relative_to(self.tmp), self.root)
        self.assertEqual("ok\n", result.check().stdout)

    def test_relative_phase_path(self) -> None:
        self.script("echo one\n", "configure.d/10-one")
        cwd = os.getcwd()
        self.addCleanup(os.chdir, cwd)
        os.chdir(self.tmp)
        result = run_orc_phase(Path("element/configure.d"), self.root)
        self.assertEqual(["10-one"], result.ran)
        self.assertEqual("one\n", result.results[0].stdout)


class StubTest(ScriptTestCase):

    def test_answers_per_call(self) -> None:
        script = self.script(
            "service ntp status || echo \"status $?\"\n"
            "service ntp start\n"
            "os-apply-config --key a.b --type raw\n"
            "os-apply-config --key c\n"
            "lookup long-name; lookup x\n")
        result = run_script(script, self.root, stubs=[
            Stub("service", when=[When(["ntp", "status"], exit_code=3,
                                       stderr="not running\n")]),
            Stub("os-apply-config", stdout="default\n", when=[
                When(prefix=["--key", "a.b"], stdout="10.0.0.1\n")]),
            Stub("lookup", when=[When(test=lambda args: len(args[0]) > 3,
                                      stdout="long\n")], stdout="short\n"),
        ]).check()
        self.assertEqual("status 3\n10.0.0.1\ndefault\nlong\nshort\n",
                         result.stdout)
        self.assertEqual("not running\n", result.stderr)
        self.assertEqual([("service", "ntp", "status"),
                          ("service", "ntp", "start")],
                         result.calls_of("service"))

    def test_a_failing_rule_fails_the_test(self) -> None:
        script = self.script("tool x || true\n")

        def broken(args: tuple[str, ...]) -> bool:
            raise KeyError("rule bug")
        self.assertRaises(KeyError, run_script, script, self.root,
                          stubs=[Stub("tool", when=[When(test=broken)])])

    def test_sequence(self) -> None:
        script = self.script(
            "until curl -s http://x; do echo retry; done\n"
            "curl -s http://x\n")
        result = run_script(script, self.root, stubs=[
            Stub("curl", sequence=[1, Reply(7), Reply(0, "body\n")])]).check()
        self.assertEqual("retry\nretry\nbody\nbody\n", result.stdout)
        self.assertEqual(4, len(result.calls_of("curl")))

    def test_passthrough_records_and_runs_the_real_command(self) -> None:
        (self.root / "f").write_text("content\n")
        script = self.script('cat "$F"\n')
        result = run_script(script, self.root, env={
            "F": str(self.root / "f")},
            stubs=[Stub("cat", passthrough=True)]).check()
        self.assertEqual("content\n", result.stdout)
        self.assertEqual([("cat", str(self.root / "f"))],
                         result.calls_of("cat"))

    def test_path_in_env_keeps_stubs(self) -> None:
        # Bug: a PATH in env replaced the stub directory.
        script = self.script("systemctl enable x\n")
        result = run_script(script, self.root, stubs=["systemctl"],
                            env={"PATH": "/usr/bin:/bin"}).check()
        self.assertEqual([("systemctl", "enable", "x")],
                         result.calls_of("systemctl"))

    def test_stubs_last_one_run(self) -> None:
        # Bug: stubs stayed installed for later runs under the same root.
        script = self.script("fake-tool-xyz && echo stubbed\n")
        run_script(script, self.root, stubs=["fake-tool-xyz"],
                   sandbox=False).check()
        result = run_script(script, self.root, sandbox=False)
        self.assertEqual(127, result.returncode)
        self.assertEqual((), result.calls)

    def test_timeout_is_a_library_error_with_output_and_calls(self) -> None:
        # Bug: subprocess.TimeoutExpired escaped, without output or calls.
        script = self.script("echo before\nsystemctl start x\nsleep 30\n")
        error = self.assertRaises(
            errors.ScriptTimedOut, run_script, script, self.root,
            stubs=["systemctl"], timeout=1, sandbox=_sandbox_works())
        self.assertEqual("before\n", error.stdout)
        self.assertEqual((("systemctl", "start", "x"),), error.calls)
        self.assertIn("did not finish within 1 s", error.message)

    def test_phase_result(self) -> None:
        self.script("svc a\n", "configure.d/10-a")
        self.script("svc b\nexit 4\n", "configure.d/20-b")
        self.script("svc c\n", "configure.d/30-c")
        result = run_orc_phase(self.tmp / "element/configure.d", self.root,
                               stubs=["svc"])
        self.assertEqual(["10-a", "20-b"], result.ran)
        self.assertEqual(4, result.returncode)
        self.assertEqual([("svc", "a"), ("svc", "b")], result.calls_of("svc"))
        error = self.assertRaises(AssertionError, result.check)
        self.assertIn("20-b exited 4", str(error))

    def test_sandbox_false_runs_on_the_host(self) -> None:
        script = self.script('echo x > "$OUT"\n')
        out = self.tmp / "host-file"
        run_script(script, self.root, sandbox=False,
                   env={"OUT": str(out)}).check()
        self.assertEqual("x\n", out.read_text())

    def test_bad_stub_name(self) -> None:
        self.assertRaises(ValueError, Stub, "a/b")
